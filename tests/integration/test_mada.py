"""mada: a Saudi debit card, recognised by its BIN, goes to the mada-capable acquirer (purchase
only, 3-D Secure on every hosted-page payment); on a manual-capture payment, or where no mada
acquirer takes the payment, it travels as any card."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from payments.gateway import Gateway
from payments.service.audit import audit
from providers.cards import brand
from providers.mada import is_mada, mada_bins
from tests.conftest import auth, new_agency
from tests.integration.test_checkout_pages import (
    answer,
    local,
    page_path,
    pay,
    see_other,
)

MADA_CARDS = ("4464040000000007", "5888450000000003")  # API.md, "National schemes"
SAR_PAYMENT = {
    "amount": 15000,
    "currency": "SAR",
    "reference": "MOI-2026-000042",
    "description": "Passport renewal fee",
    "return_url": "https://moi.example.sa/done",
}


@pytest.fixture
def saudi_key(gw: Gateway) -> str:
    return new_agency(gw, "sa-moi", "SAR", "SA")


def _create(client: FlaskClient, key: str, **overrides: Any) -> dict[str, Any]:
    created = client.post("/v1/payments", json={**SAR_PAYMENT, **overrides}, headers=auth(key))
    assert created.status_code == 201, created.json
    body: dict[str, Any] = created.json  # type: ignore[assignment]
    return body


def _confirm(client: FlaskClient, key: str, payment_id: str, number: str) -> dict[str, Any]:
    card = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    confirmed = client.post(
        f"/v1/payments/{payment_id}/confirm",
        json={"payment_method": {"type": "card", "card": card}},
        headers=auth(key),
    )
    assert confirmed.status_code == 200, confirmed.json
    body: dict[str, Any] = confirmed.json  # type: ignore[assignment]
    return body


def test_the_bin_list_is_data_and_knows_the_sandbox_cards() -> None:
    assert all(len(b) == 6 and b.isdigit() for b in mada_bins())
    assert all(is_mada(number) and brand(number) == "mada" for number in MADA_CARDS)
    assert not is_mada("4242424242424242") and brand("4242424242424242") == "visa"


@pytest.mark.parametrize("number", MADA_CARDS)
def test_a_mada_card_goes_to_the_mada_acquirer(
    client: FlaskClient, gw: Gateway, saudi_key: str, number: str
) -> None:
    payment = _create(client, saudi_key)
    paid = _confirm(client, saudi_key, payment["id"], number)
    assert paid["status"] == "succeeded" and paid["provider"] == "mada"
    assert paid["payment_method"]["type"] == "card"
    assert paid["payment_method"]["brand"] == "mada"
    assert paid["payment_method"]["last4"] == number[-4:]
    refund = client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 5000}, headers=auth(saudi_key)
    )
    assert refund.status_code == 201 and (refund.json or {})["status"] == "succeeded"
    assert audit(gw).ok


def test_an_international_card_in_saudi_arabia_is_not_mada(
    client: FlaskClient, saudi_key: str
) -> None:
    payment = _create(client, saudi_key)
    paid = _confirm(client, saudi_key, payment["id"], "4242424242424242")
    assert paid["provider"] == "sandbox" and paid["payment_method"]["brand"] == "visa"


def test_a_manual_capture_payment_is_not_offered_mada(client: FlaskClient, saudi_key: str) -> None:
    """mada has no authorisation apart from capture: the card travels as any card."""
    payment = _create(client, saudi_key, capture_method="manual")
    authorised = _confirm(client, saudi_key, payment["id"], MADA_CARDS[0])
    assert authorised["status"] == "requires_capture" and authorised["provider"] == "sandbox"


def test_mada_declines_amounts_ending_in_13(client: FlaskClient, saudi_key: str) -> None:
    payment = _create(client, saudi_key, amount=10013)
    declined = _confirm(client, saudi_key, payment["id"], MADA_CARDS[1])
    assert declined["status"] == "failed" and declined["provider"] == "mada"
    assert declined["failure"]["code"] == "card_declined"


def test_outside_saudi_arabia_a_mada_card_travels_as_a_card(
    client: FlaskClient, gw: Gateway
) -> None:
    kuwaiti = new_agency(gw, "kw-moi", "KWD", "KW")
    payment = _create(client, kuwaiti, amount=1250, currency="KWD")
    paid = _confirm(client, kuwaiti, payment["id"], MADA_CARDS[0])
    assert paid["status"] == "succeeded" and paid["provider"] == "sandbox"


def test_the_hosted_page_always_asks_a_mada_card_for_3d_secure(
    client: FlaskClient, saudi_key: str
) -> None:
    payment = _create(client, saudi_key, language="en")
    path = page_path(payment)
    challenge = local(see_other(pay(client, path, MADA_CARDS[0])))
    assert challenge.startswith("/sandbox/3ds/"), challenge
    back = local(answer(client, challenge, "complete"))
    assert back.startswith(f"{path}/return"), back
    finished = see_other(client.get(back))
    assert finished == SAR_PAYMENT["return_url"]
    paid = client.get(f"/v1/payments/{payment['id']}", headers=auth(saudi_key)).json or {}
    assert paid["status"] == "succeeded" and paid["provider"] == "mada"
