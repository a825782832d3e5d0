"""Failover only when an acquirer never charged; manual capture and cancellation."""

from __future__ import annotations

import dataclasses

import pytest
from flask.testing import FlaskClient

from config import RoutingRule
from payments.api.app import create_app
from payments.gateway import Gateway
from payments.models import Attempt
from providers import ProviderRegistry
from providers.sandbox import SandboxProvider, SandboxStore
from tests.conftest import PAYMENT, auth, card


@pytest.fixture
def two_acquirers(gw: Gateway) -> Gateway:
    store = SandboxStore(gw.settings.sandbox_database)
    registry = ProviderRegistry(
        [
            SandboxProvider(store, name="sandbox"),
            SandboxProvider(store, name="sandbox-backup", errors_before_charge=False),
        ]
    )
    rule = RoutingRule(name="both", livemode=False, providers=("sandbox", "sandbox-backup"))
    return dataclasses.replace(gw, providers=registry, routing_rules=(rule,))


def _pay(client: FlaskClient, key: str, number: str, **extra: object) -> dict[str, object]:
    created = client.post("/v1/payments", json={**PAYMENT, **extra}, headers=auth(key))
    assert created.status_code == 201 and created.json is not None
    confirmed = client.post(
        f"/v1/payments/{created.json['id']}/confirm", json=card(number), headers=auth(key)
    )
    assert confirmed.status_code == 200, confirmed.json
    body: dict[str, object] = confirmed.json  # type: ignore[assignment]
    return body


def test_error_before_charge_fails_over_to_the_next_acquirer(
    two_acquirers: Gateway, agency_key: str
) -> None:
    client = create_app(gw=two_acquirers).test_client()
    payment = _pay(client, agency_key, "4000000000000119")
    assert payment["status"] == "succeeded"
    assert payment["provider"] == "sandbox-backup"
    with two_acquirers.db.read() as session:
        attempts = session.query(Attempt).filter_by(payment_id=payment["id"]).order_by(Attempt.id)
        assert [(a.provider, a.status) for a in attempts] == [
            ("sandbox", "unavailable"),
            ("sandbox-backup", "succeeded"),
        ]


@pytest.mark.parametrize("number", ["4000000000000002", "4000000000005126"])
def test_declines_and_unknown_outcomes_never_fail_over(
    two_acquirers: Gateway, agency_key: str, number: str
) -> None:
    client = create_app(gw=two_acquirers).test_client()
    payment = _pay(client, agency_key, number)
    assert payment["status"] in ("failed", "processing")
    with two_acquirers.db.read() as session:
        providers = [a.provider for a in session.query(Attempt).filter_by(payment_id=payment["id"])]
    assert providers == ["sandbox"]


def test_error_before_charge_without_another_acquirer_fails(
    client: FlaskClient, agency_key: str
) -> None:
    payment = _pay(client, agency_key, "4000000000000119")
    assert payment["status"] == "failed"
    assert payment["failure"] == {
        "code": "provider_unavailable",
        "message": "No acquirer could take the payment; nothing was charged.",
    }


def test_manual_capture_of_part_of_the_authorisation(client: FlaskClient, agency_key: str) -> None:
    payment = _pay(client, agency_key, "5555555555554444", capture_method="manual")
    assert payment["status"] == "requires_capture"
    assert payment["amount_captured"] == 0
    too_much = client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount": 12501}, headers=auth(agency_key)
    )
    assert too_much.status_code == 422
    captured = client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount": 10000}, headers=auth(agency_key)
    )
    assert captured.status_code == 200 and captured.json is not None
    assert captured.json["status"] == "succeeded"
    assert captured.json["amount_captured"] == 10000
    again = client.post(f"/v1/payments/{payment['id']}/capture", headers=auth(agency_key))
    assert again.status_code == 409
    balance = client.get("/v1/balance", headers=auth(agency_key)).json
    assert balance is not None and balance["balances"] == [{"currency": "OMR", "payable": 10000}]
    refund = client.post(f"/v1/payments/{payment['id']}/refunds", headers=auth(agency_key))
    assert refund.json is not None and refund.json["amount"] == 10000


def test_cancel_an_authorisation_and_a_created_payment(
    client: FlaskClient, agency_key: str
) -> None:
    authorised = _pay(client, agency_key, "4242424242424242", capture_method="manual")
    cancelled = client.post(f"/v1/payments/{authorised['id']}/cancel", headers=auth(agency_key))
    assert cancelled.status_code == 200 and cancelled.json is not None
    assert cancelled.json["status"] == "cancelled"
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert created is not None
    cancelled = client.post(f"/v1/payments/{created['id']}/cancel", headers=auth(agency_key))
    assert cancelled.json is not None and cancelled.json["status"] == "cancelled"
    again = client.post(f"/v1/payments/{created['id']}/cancel", headers=auth(agency_key))
    assert again.status_code == 409
    events = client.get("/v1/events?type=payment.cancelled", headers=auth(agency_key)).json
    assert events is not None and len(events["data"]) == 2
    balance = client.get("/v1/balance", headers=auth(agency_key)).json
    assert balance is not None and balance["balances"] == []


def test_refund_of_a_refunded_payment_is_refused(client: FlaskClient, agency_key: str) -> None:
    payment = _pay(client, agency_key, "4242424242424242")
    full = client.post(f"/v1/payments/{payment['id']}/refunds", headers=auth(agency_key))
    assert full.status_code == 201 and full.json is not None and full.json["amount"] == 12500
    more = client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 1}, headers=auth(agency_key)
    )
    assert more.status_code == 422
    assert more.json is not None and more.json["error"]["code"] == "amount_exceeds_refundable"
    body = client.get(f"/v1/payments/{payment['id']}", headers=auth(agency_key)).json
    assert body is not None and body["amount_refunded"] == 12500
