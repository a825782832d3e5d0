"""The payment life cycle through the API on both databases."""

from __future__ import annotations

from flask.testing import FlaskClient

from payments.gateway import Gateway
from payments.links import read_token
from tests.conftest import PAYMENT, auth, card


def create(client: FlaskClient, key: str, **overrides: object) -> dict[str, object]:
    response = client.post("/v1/payments", json={**PAYMENT, **overrides}, headers=auth(key))
    assert response.status_code == 201, response.json
    body: dict[str, object] = response.json  # type: ignore[assignment]
    return body


def test_create_confirm_refund(client: FlaskClient, agency_key: str, gw: Gateway) -> None:
    payment = create(client, agency_key)
    assert payment["status"] == "created"
    next_url = str(payment["next_url"])
    assert next_url.startswith("http://gateway.test/pay/")
    token = next_url.removeprefix("http://gateway.test/pay/")
    assert read_token(gw.settings.secret_key, token) == payment["id"]
    assert str(payment["id"]) not in token  # signed, not merely the id in the clear
    confirmed = client.post(
        f"/v1/payments/{payment['id']}/confirm", json=card(), headers=auth(agency_key)
    )
    assert confirmed.status_code == 200
    assert confirmed.json is not None
    assert confirmed.json["status"] == "succeeded"
    assert confirmed.json["amount_captured"] == 12500
    assert confirmed.json["payment_method"] == {
        "type": "card",
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
    }
    refund = client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 2500}, headers=auth(agency_key)
    )
    assert refund.status_code == 201
    assert refund.json is not None and refund.json["status"] == "succeeded"
    balance = client.get("/v1/balance", headers=auth(agency_key)).json
    assert balance is not None
    assert balance["balances"] == [{"currency": "OMR", "payable": 10000}]
