"""The payer's use cases behind the hosted page, on both databases: tries, 3-D Secure,
coming back from the acquirer's page, abandonment and cancellation."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from payments import clock
from payments.errors import Conflict
from payments.gateway import Gateway
from payments.models import Attempt, Event
from payments.service import checkout
from payments.service.resolution import run_pass
from providers import Card
from providers.sandbox import SandboxProvider
from tests.conftest import PAYMENT, auth, card

THREE_DS = "4000000000003220"
RETURN_TO = "http://gateway.test/pay/token/return"


def _card(number: str) -> Card:
    return Card(number=number, exp_month=12, exp_year=2034, cvc="123", name="Citizen")


def _create(client: FlaskClient, key: str, **extra: object) -> str:
    response = client.post("/v1/payments", json={**PAYMENT, **extra}, headers=auth(key))
    assert response.status_code == 201 and response.json is not None
    payment_id: str = response.json["id"]
    return payment_id


def _pay(gw: Gateway, payment_id: str, number: str) -> checkout.TryResult:
    return checkout.pay_with_card(gw, payment_id, _card(number), return_to=RETURN_TO)


def _attempts(gw: Gateway, payment_id: str) -> list[tuple[str, str, str | None]]:
    with gw.db.read() as session:
        rows = session.execute(
            select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.id)
        ).scalars()
        return [(a.channel, a.status, a.decline_code) for a in rows]


def _events(gw: Gateway, payment_id: str) -> list[str]:
    with gw.db.read() as session:
        return list(
            session.execute(
                select(Event.type).where(Event.object_id == payment_id).order_by(Event.id)
            ).scalars()
        )


def _sandbox(gw: Gateway) -> SandboxProvider:
    provider = gw.providers.get("sandbox")
    assert isinstance(provider, SandboxProvider)
    return provider


def test_the_page_shows_the_payment_and_the_methods_routing_allows(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key, language="en")
    page = checkout.view(gw, payment_id)
    assert (page.status, page.amount_minor, page.currency) == ("created", 12500, "OMR")
    assert page.description == PAYMENT["description"] and page.language == "en"
    assert page.agency_name == "Agency om-moh" and page.agency_name_ar == "جهة"
    assert page.methods == ("card", "omannet")  # an Omani agency: cards and OmanNet
    assert (page.tries_used, page.tries_left, page.last_decline) == (0, 3, None)
    assert not page.expired and page.redirect_url is None


def test_a_decline_leaves_the_payment_created_and_another_card_succeeds(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    declined = _pay(gw, payment_id, "4000000000000002")
    assert declined.kind == "declined" and declined.decline_code == "card_declined"
    assert declined.view.status == "created" and declined.view.tries_left == 2
    assert _events(gw, payment_id) == []  # nothing final happened: the agency hears nothing

    paid = _pay(gw, payment_id, "4242424242424242")
    assert paid.kind == "finished" and paid.view.status == "succeeded"
    assert _attempts(gw, payment_id) == [
        ("page", "declined", "card_declined"),
        ("page", "succeeded", None),
    ]
    assert _events(gw, payment_id) == ["payment.succeeded"]
    body = client.get(f"/v1/payments/{payment_id}", headers=auth(agency_key)).json
    assert body is not None and body["payment_method"]["last4"] == "4242"


def test_the_third_decline_fails_the_payment_with_its_code(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    assert _pay(gw, payment_id, "4000000000000002").kind == "declined"
    assert _pay(gw, payment_id, "4000000000000069").kind == "declined"
    last = _pay(gw, payment_id, "4000000000009995")
    assert last.kind == "finished"
    assert (last.view.status, last.view.failure_code) == ("failed", "insufficient_funds")
    assert _events(gw, payment_id) == ["payment.failed"]
    with pytest.raises(Conflict):
        _pay(gw, payment_id, "4242424242424242")
    assert len(_attempts(gw, payment_id)) == 3


@pytest.mark.parametrize(("completed", "status"), [(True, "succeeded"), (False, "created")])
def test_three_d_secure_on_the_page_is_finished_by_asking_the_acquirer(
    client: FlaskClient, agency_key: str, gw: Gateway, completed: bool, status: str
) -> None:
    payment_id = _create(client, agency_key)
    sent = _pay(gw, payment_id, THREE_DS)
    assert sent.kind == "redirect" and sent.redirect_url is not None
    assert sent.view.status == "processing"
    reference = sent.redirect_url.rsplit("/", 1)[1]
    challenge = _sandbox(gw).challenge(reference)
    assert challenge is not None and challenge.state == "pending"
    assert challenge.return_url == RETURN_TO

    # Coming back before answering changes nothing: the acquirer still waits on the payer.
    early = checkout.return_from_acquirer(gw, payment_id)
    assert early.kind == "processing" and early.view.status == "processing"

    assert _sandbox(gw).complete_challenge(reference, succeeded=completed) == RETURN_TO
    assert _sandbox(gw).complete_challenge(reference, succeeded=not completed) is None
    back = checkout.return_from_acquirer(gw, payment_id)
    assert back.view.status == status
    if completed:
        assert back.kind == "finished"
        assert _events(gw, payment_id) == ["payment.succeeded"]
    else:  # a failed challenge is a declined try: another card may follow
        assert (back.kind, back.decline_code) == ("declined", "authentication_failed")
        assert back.view.tries_left == 2
        assert _pay(gw, payment_id, "4242424242424242").view.status == "succeeded"


def test_server_to_server_confirm_is_moto_and_skips_three_d_secure(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    confirmed = client.post(
        f"/v1/payments/{payment_id}/confirm", json=card(THREE_DS), headers=auth(agency_key)
    )
    assert confirmed.json is not None and confirmed.json["status"] == "succeeded"
    assert _attempts(gw, payment_id) == [("api", "succeeded", None)]


def test_a_server_to_server_decline_is_final(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    confirmed = client.post(
        f"/v1/payments/{payment_id}/confirm",
        json=card("4000000000000002"),
        headers=auth(agency_key),
    )
    assert confirmed.json is not None and confirmed.json["status"] == "failed"


def test_a_payer_who_never_comes_back_fails_authentication_after_fifteen_minutes(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    sent = _pay(gw, payment_id, THREE_DS)
    assert sent.kind == "redirect"
    assert run_pass(gw).attempts_resolved == 0  # not asked while the payer may still answer
    start = clock.now()
    clock.set_clock(lambda: start + dt.timedelta(minutes=14))
    assert run_pass(gw).attempts_resolved == 0
    assert checkout.view(gw, payment_id).status == "processing"
    clock.set_clock(lambda: start + dt.timedelta(minutes=16))
    assert run_pass(gw).attempts_resolved == 1
    page = checkout.view(gw, payment_id)
    assert (page.status, page.failure_code) == ("failed", "authentication_failed")
    assert _events(gw, payment_id) == ["payment.failed"]
    reference = sent.redirect_url.rsplit("/", 1)[1] if sent.redirect_url else ""
    # The charge is void at the acquirer: a late answer from the payer cannot revive it.
    assert _sandbox(gw).complete_challenge(reference, succeeded=True) is None


def test_cancel_and_return(client: FlaskClient, agency_key: str, gw: Gateway) -> None:
    payment_id = _create(client, agency_key)
    assert checkout.cancel(gw, payment_id).status == "cancelled"
    assert _events(gw, payment_id) == ["payment.cancelled"]
    with pytest.raises(Conflict):
        checkout.cancel(gw, payment_id)


def test_an_expired_payment_says_so_and_takes_no_card(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    start = clock.now()
    clock.set_clock(lambda: start + dt.timedelta(hours=2))
    page = checkout.view(gw, payment_id)
    assert page.expired and page.methods == () and page.tries_left == 0
    with pytest.raises(Conflict):
        _pay(gw, payment_id, "4242424242424242")
