"""The Stripe acquirer inside the gateway, on both databases, against the fake Stripe server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from payments import clock
from payments.api.app import create_app
from payments.gateway import Gateway, build_gateway
from payments.models import Attempt, Event, Payment, ProviderNotification
from payments.routing import CANNOT_TAKE
from payments.service import access, checkout
from payments.service.outcomes import OPEN_ATTEMPT_GRACE_S
from payments.service.resolution import run_pass
from providers import Card, ProviderRegistry
from providers.stripe import StripeProvider
from tests.conftest import PAYMENT, auth, card, count_rows, make_settings, new_agency
from tests.fakes.stripe_server import FakeStripeServer, forged_event, signed_event

SECRET = "whsec_gateway_" + "w" * 24
VISA = "4242424242424242"
DECLINED = "4000000000000002"
THREE_DS = "4000000000003220"
RETURN_TO = "http://gateway.test/pay/token/return"
NOTIFICATIONS = "/providers/stripe/notifications"
SHORT_TIMEOUT_S = 0.5
LATE_S = 2.0  # how late the fake answers when a test wants the gateway to time out


@dataclasses.dataclass
class Live:
    """A gateway with Stripe configured, its API client, and an agency's live and test keys."""

    gw: Gateway
    client: FlaskClient
    fake: FakeStripeServer
    key: str
    test_key: str

    def create(self, key: str | None = None, **fields: Any) -> str:
        response = self.client.post(
            "/v1/payments", json={**PAYMENT, **fields}, headers=auth(key or self.key)
        )
        assert response.status_code == 201, response.json
        assert response.json is not None
        payment_id: str = response.json["id"]
        return payment_id

    def confirm(self, payment_id: str, number: str, key: str | None = None) -> dict[str, Any]:
        response = self.client.post(
            f"/v1/payments/{payment_id}/confirm", json=card(number), headers=auth(key or self.key)
        )
        assert response.status_code == 200, response.json
        body: dict[str, Any] = response.get_json()
        return body

    def pay(self, number: str = VISA, **fields: Any) -> dict[str, Any]:
        return self.confirm(self.create(**fields), number)

    def payment(self, payment_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/payments/{payment_id}", headers=auth(self.key))
        assert response.status_code == 200
        body: dict[str, Any] = response.get_json()
        return body

    def balances(self) -> list[dict[str, Any]]:
        response = self.client.get("/v1/balance", headers=auth(self.key))
        assert response.status_code == 200
        body = response.get_json()
        assert body["livemode"] is True
        balances: list[dict[str, Any]] = body["balances"]
        return balances

    def event_types(self, object_id: str) -> list[str]:
        response = self.client.get("/v1/events?limit=100", headers=auth(self.key))
        assert response.status_code == 200
        events = response.get_json()["data"]
        return sorted(e["type"] for e in events if e["data"]["id"] == object_id)

    def notify(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        response = self.client.post(NOTIFICATIONS, data=body, headers=headers)
        answer: dict[str, Any] = response.get_json()
        return response.status_code, answer


@pytest.fixture
def fake() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server
    assert server.errors == []


@pytest.fixture
def stripe_gw(database_url: str, tmp_path: Path, fake: FakeStripeServer) -> Iterator[Gateway]:
    """The gateway as `build_gateway` makes it when Stripe is configured."""
    settings = make_settings(
        database_url,
        tmp_path,
        stripe_api_key=fake.api_key,
        stripe_api_base=fake.url,
        stripe_webhook_secret=SECRET,
    )
    gateway = build_gateway(settings)
    yield gateway
    stripe = gateway.providers.get("stripe")
    assert isinstance(stripe, StripeProvider)
    stripe.close()
    gateway.db.dispose()
    clock.set_clock(None)


def _live(gw: Gateway, fake: FakeStripeServer) -> Live:
    test_key = new_agency(gw)
    key = access.create_key(gw, agency_id="om-moh", role="agency", mode="live")[1]
    return Live(gw, create_app(gw=gw).test_client(), fake, key, test_key)


@pytest.fixture
def live(stripe_gw: Gateway, fake: FakeStripeServer) -> Live:
    return _live(stripe_gw, fake)


@pytest.fixture
def impatient(stripe_gw: Gateway, fake: FakeStripeServer) -> Iterator[Live]:
    """The same gateway, but its Stripe gives up on an answer after SHORT_TIMEOUT_S."""
    stripe = StripeProvider(
        api_key=fake.api_key, api_base=fake.url, webhook_secret=SECRET, timeout_s=SHORT_TIMEOUT_S
    )
    registry = ProviderRegistry([stripe_gw.providers.get("sandbox"), stripe])
    yield _live(dataclasses.replace(stripe_gw, providers=registry), fake)
    stripe.close()


def _card(number: str) -> Card:
    return Card(number=number, exp_month=12, exp_year=2034, cvc="123", name="Citizen")


def _attempts(gw: Gateway, payment_id: str) -> list[Attempt]:
    with gw.db.read() as session:
        return list(
            session.execute(
                select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.id)
            ).scalars()
        )


def _routing(gw: Gateway, payment_id: str) -> dict[str, Any] | None:
    with gw.db.read() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        return payment.routing


def _stored_notifications(gw: Gateway) -> int:
    with gw.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(ProviderNotification)) or 0)


def _all_events(gw: Gateway) -> list[tuple[str, str]]:
    with gw.db.read() as session:
        rows = session.execute(select(Event.type, Event.object_id).order_by(Event.id)).all()
        return [(type_, object_id) for type_, object_id in rows]


def _charged_but_unanswered(live: Live, fault: str) -> str:
    """A payment whose charge Stripe made but whose answer never reached the gateway."""
    if fault == "timeout":
        live.fake.slow_next(1, delay_s=LATE_S)
    else:
        live.fake.fail_next(1)
    payment = live.pay()
    assert payment["status"] == "processing"
    assert payment["provider"] == "stripe"
    assert payment["provider_reference"] is None  # the answer, and the reference, were lost
    assert payment["failure"] is None
    [intent] = live.fake.payment_intents()
    assert intent["status"] == "succeeded"
    assert live.balances() == []
    assert live.event_types(payment["id"]) == []
    payment_id: str = payment["id"]
    return payment_id


# ---- charges


def test_a_live_card_payment_is_charged_on_stripe(live: Live) -> None:
    assert isinstance(live.gw.providers.get("stripe"), StripeProvider)
    payment = live.pay()

    assert payment["status"] == "succeeded"
    assert payment["livemode"] is True
    assert payment["provider"] == "stripe"
    assert payment["amount_captured"] == 12500
    assert payment["payment_method"]["last4"] == "4242"
    [intent] = live.fake.payment_intents()
    assert payment["provider_reference"] == intent["id"]
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", 12500, "omr")
    assert intent["amount_received"] == 12500
    [attempt] = _attempts(live.gw, payment["id"])
    assert intent["metadata"] == {"gateway_attempt": attempt.id}
    assert (attempt.provider, attempt.status, attempt.channel) == ("stripe", "succeeded", "api")
    assert _routing(live.gw, payment["id"]) == {
        "rule": "live-cards-stripe",
        "providers": ["stripe"],
        "skipped": {},
    }
    assert live.balances() == [{"currency": "OMR", "payable": 12500}]
    assert live.event_types(payment["id"]) == ["payment.succeeded"]


def test_a_decline_is_final_for_server_to_server_confirm(live: Live) -> None:
    payment = live.pay(DECLINED)

    assert payment["status"] == "failed"
    assert payment["provider"] == "stripe"
    assert payment["failure"]["code"] == "card_declined"
    [intent] = live.fake.payment_intents()
    assert payment["provider_reference"] == intent["id"]
    assert intent["status"] == "requires_payment_method"
    again = live.client.post(
        f"/v1/payments/{payment['id']}/confirm", json=card(VISA), headers=auth(live.key)
    )
    assert again.status_code == 409
    assert len(live.fake.payment_intents()) == 1
    assert live.balances() == []
    assert live.event_types(payment["id"]) == ["payment.failed"]


def test_manual_capture_then_capture_of_part(live: Live) -> None:
    payment = live.pay(capture_method="manual")
    assert payment["status"] == "requires_capture"
    assert payment["amount_captured"] == 0
    assert live.fake.payment_intent(payment["provider_reference"])["status"] == "requires_capture"
    assert live.balances() == []

    captured = live.client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount": 10000}, headers=auth(live.key)
    )

    assert captured.status_code == 200, captured.json
    body = captured.get_json()
    assert (body["status"], body["amount_captured"]) == ("succeeded", 10000)
    intent = live.fake.payment_intent(payment["provider_reference"])
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 10000)
    assert live.balances() == [{"currency": "OMR", "payable": 10000}]
    assert live.event_types(payment["id"]) == ["payment.requires_capture", "payment.succeeded"]


def test_a_capture_answered_without_its_amount_is_asked_about_again(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """Stripe captured, but its answer does not say how much: the gateway alerts, books
    nothing on a guess, and the worker's status query settles the capture."""
    payment = live.pay(capture_method="manual")
    [attempt] = _attempts(live.gw, payment["id"])
    live.fake.answer_without("amount_received")
    caplog.set_level(logging.ERROR)

    captured = live.client.post(
        f"/v1/payments/{payment['id']}/capture", json={"amount": 10000}, headers=auth(live.key)
    )

    assert captured.status_code == 200, captured.json
    assert (captured.get_json()["status"], captured.get_json()["amount_captured"]) == (
        "processing",
        0,
    )
    assert live.fake.payment_intent(payment["provider_reference"])["amount_received"] == 10000
    assert live.balances() == []
    assert live.event_types(payment["id"]) == ["payment.requires_capture"]
    [alert] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert alert.getMessage() == "acquirer answered a capture without the amount captured"
    assert (alert.__dict__["provider"], alert.__dict__["attempt"]) == ("stripe", attempt.id)

    report = run_pass(live.gw)

    assert report.attempts_resolved == 1
    after = live.payment(payment["id"])
    assert (after["status"], after["amount_captured"]) == ("succeeded", 10000)
    assert live.balances() == [{"currency": "OMR", "payable": 10000}]
    assert live.event_types(payment["id"]) == ["payment.requires_capture", "payment.succeeded"]
    captures = [r for r in live.fake.requests if r.path.endswith("/capture")]
    assert len(captures) == 1  # asked about, never captured again


def test_cancel_an_authorisation(live: Live) -> None:
    payment = live.pay(capture_method="manual")

    cancelled = live.client.post(f"/v1/payments/{payment['id']}/cancel", headers=auth(live.key))

    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.get_json()["status"] == "cancelled"
    assert live.fake.payment_intent(payment["provider_reference"])["status"] == "canceled"
    assert live.balances() == []
    assert "payment.cancelled" in live.event_types(payment["id"])


def test_a_partial_refund_then_the_rest(live: Live) -> None:
    payment = live.pay()
    refunds = f"/v1/payments/{payment['id']}/refunds"

    first = live.client.post(refunds, json={"amount": 5000}, headers=auth(live.key))
    assert first.status_code == 201, first.json
    assert (first.get_json()["status"], first.get_json()["amount"]) == ("succeeded", 5000)
    assert live.payment(payment["id"])["amount_refunded"] == 5000
    assert live.balances() == [{"currency": "OMR", "payable": 7500}]

    rest = live.client.post(refunds, headers=auth(live.key))
    assert rest.status_code == 201, rest.json
    assert (rest.get_json()["status"], rest.get_json()["amount"]) == ("succeeded", 7500)

    after = live.payment(payment["id"])
    assert (after["status"], after["amount_refunded"]) == ("succeeded", 12500)
    at_stripe = live.fake.refunds()
    assert sorted(r["amount"] for r in at_stripe) == [5000, 7500]
    assert {r["payment_intent"] for r in at_stripe} == {payment["provider_reference"]}
    assert {r["status"] for r in at_stripe} == {"succeeded"}
    assert live.balances() == [{"currency": "OMR", "payable": 0}]
    refund_ids = {first.get_json()["id"], rest.get_json()["id"]}
    refund_events = [(t, o) for t, o in _all_events(live.gw) if o in refund_ids]
    assert sorted(refund_events) == sorted(("refund.succeeded", r) for r in refund_ids)
    more = live.client.post(refunds, json={"amount": 1}, headers=auth(live.key))
    assert more.status_code == 422
    assert more.get_json()["error"]["code"] == "amount_exceeds_refundable"
    assert len(live.fake.refunds()) == 2


# ---- unknown outcomes and an unreachable Stripe


@pytest.mark.parametrize("fault", ["timeout", "500"])
def test_a_charge_whose_answer_is_lost_is_resolved_by_the_worker(
    impatient: Live, fault: str
) -> None:
    payment_id = _charged_but_unanswered(impatient, fault)
    later = clock.now() + dt.timedelta(seconds=OPEN_ATTEMPT_GRACE_S + 1)  # past every wait
    clock.set_clock(lambda: later)

    report = run_pass(impatient.gw)

    assert report.attempts_resolved == 1
    payment = impatient.payment(payment_id)
    [intent] = impatient.fake.payment_intents()  # asked, never charged again
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", intent["id"])
    assert payment["amount_captured"] == 12500
    assert impatient.balances() == [{"currency": "OMR", "payable": 12500}]
    assert impatient.event_types(payment_id) == ["payment.succeeded"]
    assert run_pass(impatient.gw).attempts_resolved == 0


def test_stripe_unreachable_before_charging_fails_and_charges_nothing(live: Live) -> None:
    payment_id = live.create()
    live.fake.refuse_connections()
    try:
        payment = live.confirm(payment_id, VISA)
    finally:
        live.fake.accept_connections()

    assert payment["status"] == "failed"
    assert payment["failure"]["code"] == "provider_unavailable"
    assert payment["provider_reference"] is None
    assert [(a.provider, a.status) for a in _attempts(live.gw, payment_id)] == [
        ("stripe", "unavailable")
    ]
    assert live.fake.payment_intents() == []
    assert live.fake.requests == []
    assert live.balances() == []
    assert live.event_types(payment_id) == ["payment.failed"]
    assert run_pass(live.gw).attempts_resolved == 0


# ---- 3-D Secure on the hosted page, MOTO through confirm


def test_3ds_on_the_hosted_page_then_the_payer_completes_it(live: Live) -> None:
    payment_id = live.create()

    sent = checkout.pay_with_card(live.gw, payment_id, _card(THREE_DS), return_to=RETURN_TO)

    [intent] = live.fake.payment_intents()
    assert sent.kind == checkout.REDIRECT
    assert sent.redirect_url == f"{live.fake.url}/3ds/{intent['id']}"
    assert intent["status"] == "requires_action"
    assert intent["next_action"]["redirect_to_url"]["return_url"] == RETURN_TO
    assert live.payment(payment_id)["status"] == "processing"
    assert live.balances() == []

    live.fake.complete_3ds(intent["id"])
    back = checkout.return_from_acquirer(live.gw, payment_id)

    assert back.kind == checkout.FINISHED
    payment = live.payment(payment_id)
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", intent["id"])
    assert [(a.channel, a.status) for a in _attempts(live.gw, payment_id)] == [
        ("page", "succeeded")
    ]
    assert live.balances() == [{"currency": "OMR", "payable": 12500}]
    assert live.event_types(payment_id) == ["payment.succeeded"]


def test_a_failed_3ds_challenge_is_a_declined_try(live: Live) -> None:
    payment_id = live.create()
    sent = checkout.pay_with_card(live.gw, payment_id, _card(THREE_DS), return_to=RETURN_TO)
    assert sent.kind == checkout.REDIRECT
    [intent] = live.fake.payment_intents()

    live.fake.fail_3ds(intent["id"])
    back = checkout.return_from_acquirer(live.gw, payment_id)

    assert (back.kind, back.decline_code) == (checkout.DECLINED, "authentication_failed")
    assert back.view.tries_left == 2
    assert live.payment(payment_id)["status"] == "created"
    assert [(a.status, a.decline_code) for a in _attempts(live.gw, payment_id)] == [
        ("declined", "authentication_failed")
    ]
    # The payer tries another card on the same page.
    again = checkout.pay_with_card(live.gw, payment_id, _card(VISA), return_to=RETURN_TO)
    assert again.kind == checkout.FINISHED
    assert live.payment(payment_id)["status"] == "succeeded"
    assert len(live.fake.payment_intents()) == 2


def test_server_to_server_confirm_of_a_3ds_card_is_moto(live: Live) -> None:
    payment = live.pay(THREE_DS)

    assert payment["status"] == "succeeded"
    intent = live.fake.payment_intent(payment["provider_reference"])
    assert intent["payment_method_options"]["card"] == {"moto": True}
    assert intent["next_action"] is None


# ---- notifications


def test_a_genuine_notification_resolves_a_payment_left_processing(impatient: Live) -> None:
    payment_id = _charged_but_unanswered(impatient, "timeout")
    [intent] = impatient.fake.payment_intents()
    body, headers = signed_event(
        "payment_intent.succeeded", intent["id"], SECRET, data_object=intent
    )

    status, answer = impatient.notify(body, headers)

    assert status == 200, answer
    assert answer["received"] is True and answer["duplicate"] is False
    payment = impatient.payment(payment_id)
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", intent["id"])
    assert impatient.balances() == [{"currency": "OMR", "payable": 12500}]
    assert impatient.event_types(payment_id) == ["payment.succeeded"]
    assert _stored_notifications(impatient.gw) == 1

    status, answer = impatient.notify(body, headers)  # Stripe delivers it again

    assert status == 200, answer
    assert answer["duplicate"] is True
    assert _stored_notifications(impatient.gw) == 1
    assert impatient.event_types(payment_id) == ["payment.succeeded"]
    assert len(impatient.fake.payment_intents()) == 1


def test_forged_stale_and_unsigned_notifications_change_nothing(impatient: Live) -> None:
    payment_id = _charged_but_unanswered(impatient, "timeout")
    [intent] = impatient.fake.payment_intents()
    stale = int(time.time()) - 600
    genuine_body, genuine_headers = signed_event("payment_intent.succeeded", intent["id"], SECRET)
    unsigned = {k: v for k, v in genuine_headers.items() if k != "Stripe-Signature"}
    before = count_rows(impatient.gw)

    for body, headers in (
        forged_event("payment_intent.succeeded", intent["id"]),
        signed_event("payment_intent.succeeded", intent["id"], SECRET, timestamp=stale),
        (genuine_body, unsigned),
    ):
        status, answer = impatient.notify(body, headers)
        assert status == 400, answer
        assert set(answer) == {"error"}
        assert answer["error"]["type"] == "invalid_request"
        assert answer["error"]["code"] == "notification_invalid"
        assert answer["error"]["message"]

    assert count_rows(impatient.gw) == before
    assert _stored_notifications(impatient.gw) == 0
    assert impatient.payment(payment_id)["status"] == "processing"
    assert impatient.event_types(payment_id) == []


@pytest.mark.parametrize(
    ("owner", "amount", "currency", "differs"),
    [
        # A Payment Link or a Dashboard charge: the gateway's metadata is not on it.
        (None, 12500, "OMR", "it carries no gateway_attempt metadata"),
        ("att_another", 12500, "OMR", "its gateway_attempt metadata names another attempt"),
        ("the attempt's", 2500, "OMR", "amount 2500 instead of 12500"),
        ("the attempt's", 12500, "SAR", "currency SAR instead of OMR"),
    ],
)
def test_a_notification_about_another_payment_changes_nothing(
    impatient: Live,
    caplog: pytest.LogCaptureFixture,
    owner: str | None,
    amount: int,
    currency: str,
    differs: str,
) -> None:
    """A genuine event about a payment made on the same Stripe account but not for this
    attempt must not settle the attempt left open, whatever its status says."""
    payment_id = _charged_but_unanswered(impatient, "timeout")
    [ours] = impatient.fake.payment_intents()
    [attempt] = _attempts(impatient.gw, payment_id)
    key = attempt.id if owner == "the attempt's" else owner
    elsewhere = impatient.fake.payment_made_elsewhere(
        amount, currency, metadata={"gateway_attempt": key} if key else None
    )
    assert elsewhere["status"] == "succeeded"
    body, headers = signed_event(
        "payment_intent.succeeded", elsewhere["id"], SECRET, data_object=elsewhere
    )
    caplog.set_level(logging.WARNING)

    status, answer = impatient.notify(body, headers)

    assert status == 200, answer
    payment = impatient.payment(payment_id)
    assert (payment["status"], payment["provider_reference"]) == ("processing", None)
    assert payment["amount_captured"] == 0
    assert impatient.balances() == []
    assert impatient.event_types(payment_id) == []
    [still_open] = _attempts(impatient.gw, payment_id)
    assert (still_open.status, still_open.pending_action) == ("open", "authorize")
    assert still_open.provider_reference is None
    refused = [r for r in caplog.records if r.__dict__.get("attempt") == attempt.id]
    assert [(r.levelno, r.__dict__["provider"], r.__dict__["differs"]) for r in refused] == [
        (logging.WARNING, "stripe", differs)
    ]

    # The event about the attempt's own payment settles it, with its own amount.
    body, headers = signed_event("payment_intent.succeeded", ours["id"], SECRET, data_object=ours)
    assert impatient.notify(body, headers)[0] == 200
    payment = impatient.payment(payment_id)
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", ours["id"])
    assert payment["amount_captured"] == 12500
    assert impatient.balances() == [{"currency": "OMR", "payable": 12500}]
    assert impatient.event_types(payment_id) == ["payment.succeeded"]


def test_a_notification_for_an_unknown_acquirer_is_not_found(live: Live) -> None:
    body, headers = signed_event("payment_intent.succeeded", "pi_123", SECRET)
    for name in ("adyen", "sandbox"):  # not configured; configured but sends none
        response = live.client.post(f"/providers/{name}/notifications", data=body, headers=headers)
        assert response.status_code == 404
        assert response.get_json()["error"]["type"] == "not_found"
    assert _stored_notifications(live.gw) == 0


# ---- routing


def test_a_kwd_amount_stripe_cannot_take_is_routed_away(
    stripe_gw: Gateway, fake: FakeStripeServer
) -> None:
    new_agency(stripe_gw, "kw-moi", "KWD", "KW")
    key = access.create_key(stripe_gw, agency_id="kw-moi", role="agency", mode="live")[1]
    live = Live(stripe_gw, create_app(gw=stripe_gw).test_client(), fake, key, "")

    odd = live.pay(amount=12345, currency="KWD")

    assert odd["status"] == "failed"
    assert odd["failure"]["code"] == "provider_unavailable"
    assert (odd["provider"], odd["provider_reference"]) == (None, None)
    assert _routing(stripe_gw, odd["id"]) == {
        "rule": "live-cards-stripe",
        "providers": [],
        "skipped": {"stripe": CANNOT_TAKE},
    }
    assert _attempts(stripe_gw, odd["id"]) == []
    assert fake.requests == []

    even = live.pay(amount=12340, currency="KWD")

    assert (even["status"], even["provider"]) == ("succeeded", "stripe")
    [intent] = fake.payment_intents()
    assert (intent["amount"], intent["currency"]) == (12340, "kwd")
    assert even["provider_reference"] == intent["id"]
    assert live.balances() == [{"currency": "KWD", "payable": 12340}]


def test_a_test_key_never_reaches_stripe(live: Live) -> None:
    payment = live.confirm(live.create(live.test_key), VISA, live.test_key)

    assert (payment["status"], payment["livemode"]) == ("succeeded", False)
    assert payment["provider"] == "sandbox"
    assert _routing(live.gw, payment["id"]) == {
        "rule": "test-mode-sandbox",
        "providers": ["sandbox"],
        "skipped": {},
    }
    assert live.fake.requests == []
    assert live.balances() == []  # the live balance: nothing


def test_a_search_that_trails_the_charge_is_not_taken_for_no_charge(impatient: Live) -> None:
    """Stripe's search can miss a PaymentIntent for a while after it is made; meanwhile its
    "no charge under this key" must not fail a payment the citizen has paid."""
    impatient.fake.search_behind(3600)
    payment_id = _charged_but_unanswered(impatient, "timeout")

    run_pass(impatient.gw)

    assert impatient.payment(payment_id)["status"] == "processing"
    assert impatient.event_types(payment_id) == []

    impatient.fake.search_behind(0)
    later = clock.now() + dt.timedelta(minutes=10)
    clock.set_clock(lambda: later)
    assert run_pass(impatient.gw).attempts_resolved == 1

    payment = impatient.payment(payment_id)
    [intent] = impatient.fake.payment_intents()
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", intent["id"])
    assert impatient.balances() == [{"currency": "OMR", "payable": 12500}]
