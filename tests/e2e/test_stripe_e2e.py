"""Stripe as the live acquirer of a real `gateway serve`, against the fake Stripe server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.e2e.conftest import (
    HTTP_TIMEOUT,
    Api,
    LiveGateway,
    card_body,
    expect_error,
    gateway_with,
    json_of,
)
from tests.fakes.stripe_server import FakeStripeServer, forged_event, signed_event

pytestmark = pytest.mark.e2e

SECRET = "whsec_e2e_" + "x" * 24
VISA = "4242424242424242"
NOTIFICATIONS = "/providers/stripe/notifications"


class Stripe:
    """The running gateway with Stripe configured, the fake behind it and live keys."""

    def __init__(self, gateway: LiveGateway, fake: FakeStripeServer) -> None:
        self.gateway = gateway
        self.fake = fake
        self.om = gateway.with_key(self._live_key("om-moh"), "om-moh")
        self.kw = gateway.with_key(self._live_key("kw-moi"), "kw-moi")

    def _live_key(self, agency: str) -> str:
        done = self.gateway.cli("keys", "create", "--agency", agency, "--mode", "live")
        key = done.stdout.strip().splitlines()[-1]
        assert key.startswith("gw_live_"), done.stdout
        return key

    def notify(
        self, body: bytes, headers: dict[str, str], provider: str = "stripe"
    ) -> requests.Response:
        return requests.post(
            f"{self.gateway.base_url}/providers/{provider}/notifications",
            data=body,
            headers=headers,
            timeout=HTTP_TIMEOUT,
        )


@pytest.fixture(scope="module")
def stripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stripe]:
    """SQLite only: the integration tests run the same flows on both databases."""
    with FakeStripeServer() as fake:
        extra = {
            "GATEWAY_STRIPE_API_KEY": fake.api_key,
            "GATEWAY_STRIPE_API_BASE": fake.url,
            "GATEWAY_STRIPE_WEBHOOK_SECRET": SECRET,
        }
        with gateway_with("sqlite", tmp_path_factory, "stripe", extra) as gateway:
            yield Stripe(gateway, fake)
    assert fake.errors == []


def _charged_but_unanswered(stripe: Stripe) -> tuple[str, str]:
    """A payment Stripe charged while its answer was lost (a 500 after acting)."""
    agency = stripe.om
    payment = agency.create_payment()
    before = {i["id"] for i in stripe.fake.payment_intents()}
    stripe.fake.fail_next(1)
    paid = agency.confirm(payment["id"], VISA)
    assert (paid["status"], paid["provider"], paid["provider_reference"]) == (
        "processing",
        "stripe",
        None,
    )
    [intent] = [i for i in stripe.fake.payment_intents() if i["id"] not in before]
    assert intent["status"] == "succeeded"
    return payment["id"], intent["id"]


def test_a_live_card_payment_is_charged_on_stripe(stripe: Stripe) -> None:
    agency = stripe.om
    payable = agency.payable("OMR")
    payment = agency.create_payment()

    paid = agency.confirm(payment["id"], VISA)

    assert (paid["status"], paid["livemode"], paid["provider"]) == ("succeeded", True, "stripe")
    intent = stripe.fake.payment_intent(paid["provider_reference"])
    assert (intent["status"], intent["amount_received"], intent["currency"]) == (
        "succeeded",
        12500,
        "omr",
    )
    assert intent["payment_method_options"]["card"] == {"moto": True}
    assert agency.payable("OMR") == payable + 12500
    assert len(agency.events_for(payment["id"], "payment.succeeded")) == 1


def test_a_decline_is_final(stripe: Stripe) -> None:
    agency = stripe.om
    payment = agency.create_payment()

    declined = agency.confirm(payment["id"], "4000000000000002")

    assert (declined["status"], declined["failure"]["code"]) == ("failed", "card_declined")
    assert declined["provider_reference"].startswith("pi_")
    again = agency.post(f"/v1/payments/{payment['id']}/confirm", card_body(VISA))
    expect_error(again, 409, "conflict")


def test_capture_of_part_then_refunds_of_part_and_the_rest(stripe: Stripe) -> None:
    agency = stripe.om
    payable = agency.payable("OMR")
    payment = agency.create_payment(capture_method="manual")
    held = agency.confirm(payment["id"], VISA)
    assert held["status"] == "requires_capture"

    captured = agency.post(f"/v1/payments/{payment['id']}/capture", {"amount": 10000})
    assert captured.status_code == 200, captured.text
    assert json_of(captured)["amount_captured"] == 10000
    assert stripe.fake.payment_intent(held["provider_reference"])["amount_received"] == 10000

    part = agency.post(f"/v1/payments/{payment['id']}/refunds", {"amount": 4000})
    rest = agency.post(f"/v1/payments/{payment['id']}/refunds")
    assert (part.status_code, rest.status_code) == (201, 201), (part.text, rest.text)
    assert [json_of(r)["amount"] for r in (part, rest)] == [4000, 6000]
    assert {json_of(r)["status"] for r in (part, rest)} == {"succeeded"}
    assert agency.ok(f"/v1/payments/{payment['id']}")["amount_refunded"] == 10000
    refunded = [
        r for r in stripe.fake.refunds() if r["payment_intent"] == held["provider_reference"]
    ]
    assert sorted(r["amount"] for r in refunded) == [4000, 6000]
    assert agency.payable("OMR") == payable
    for response in (part, rest):
        assert len(agency.events_for(json_of(response)["id"], "refund.succeeded")) == 1


def test_a_charge_whose_answer_is_lost_is_resolved_by_the_worker(stripe: Stripe) -> None:
    payment_id, intent_id = _charged_but_unanswered(stripe)
    count = len(stripe.fake.payment_intents())

    stripe.gateway.cli("worker", "--once")

    payment = stripe.om.ok(f"/v1/payments/{payment_id}")
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", intent_id)
    assert len(stripe.fake.payment_intents()) == count  # asked about, never charged again
    assert len(stripe.om.events_for(payment_id, "payment.succeeded")) == 1


def test_notifications_are_verified_then_only_prompt_a_status_query(stripe: Stripe) -> None:
    payment_id, intent_id = _charged_but_unanswered(stripe)
    stale = int(time.time()) - 600
    body, headers = signed_event("payment_intent.succeeded", intent_id, SECRET)

    for bad_body, bad_headers in (
        forged_event("payment_intent.succeeded", intent_id),
        signed_event("payment_intent.succeeded", intent_id, SECRET, timestamp=stale),
        (body, {"Content-Type": "application/json"}),
    ):
        refused = stripe.notify(bad_body, bad_headers)
        expect_error(refused, 400, "invalid_request", "notification_invalid")
    assert stripe.om.ok(f"/v1/payments/{payment_id}")["status"] == "processing"
    expect_error(stripe.notify(body, headers, provider="adyen"), 404, "not_found")

    first = stripe.notify(body, headers)
    second = stripe.notify(body, headers)

    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert (json_of(first)["duplicate"], json_of(second)["duplicate"]) == (False, True)
    payment = stripe.om.ok(f"/v1/payments/{payment_id}")
    assert (payment["status"], payment["provider_reference"]) == ("succeeded", intent_id)
    assert len(stripe.om.events_for(payment_id, "payment.succeeded")) == 1


def test_a_kwd_amount_stripe_cannot_take_is_routed_away(stripe: Stripe) -> None:
    agency = stripe.kw
    sent = len(stripe.fake.requests)

    odd = agency.confirm(agency.create_payment(amount=12345)["id"], VISA)

    assert (odd["status"], odd["failure"]["code"]) == ("failed", "provider_unavailable")
    assert odd["provider"] is None
    assert len(stripe.fake.requests) == sent

    even = agency.confirm(agency.create_payment(amount=12340)["id"], VISA)

    assert (even["status"], even["provider"]) == ("succeeded", "stripe")
    intent = stripe.fake.payment_intent(even["provider_reference"])
    assert (intent["amount"], intent["currency"]) == (12340, "kwd")


def test_a_test_key_never_reaches_stripe(stripe: Stripe) -> None:
    agency: Api = stripe.gateway.api("om-moh")
    sent = len(stripe.fake.requests)

    paid = agency.confirm(agency.create_payment()["id"], VISA)

    assert (paid["status"], paid["livemode"], paid["provider"]) == ("succeeded", False, "sandbox")
    assert len(stripe.fake.requests) == sent
