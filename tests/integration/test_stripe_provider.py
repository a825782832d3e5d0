"""The Stripe acquirer, real SDK against the fake Stripe: what each answer means for the money."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import (
    AuthorizeRequest,
    Card,
    InvalidNotification,
    Outcome,
    ProviderResult,
    RefundOutcome,
    RefundRequest,
)
from providers.stripe import StripeProvider
from tests.fakes.stripe_server import (
    FakeStripeServer,
    build_event,
    forged_event,
    send_event,
    signature_header,
    signed_event,
)
from tests.integration.webhook_support import Receiver

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_test_" + "s" * 24
VISA = "4242424242424242"
RETURN_URL = "https://gateway.test/pay/return"


@pytest.fixture
def fake() -> Iterator[FakeStripeServer]:
    with FakeStripeServer() as server:
        yield server
    assert server.errors == []


def make_provider(
    fake: FakeStripeServer,
    *,
    api_key: str | None = None,
    webhook_secret: str | None = SECRET,
    timeout_s: float = 5.0,
) -> StripeProvider:
    return StripeProvider(
        api_key=api_key or fake.api_key,
        api_base=fake.url,
        webhook_secret=webhook_secret,
        timeout_s=timeout_s,
    )


@pytest.fixture
def stripe(fake: FakeStripeServer) -> Iterator[StripeProvider]:
    provider = make_provider(fake)
    yield provider
    provider.close()


def charge(
    number: str = VISA,
    *,
    key: str = "att_1",
    amount_minor: int = 1000,
    currency: str = "SAR",
    capture: bool = True,
    payer_present: bool = False,
    return_url: str | None = None,
) -> AuthorizeRequest:
    return AuthorizeRequest(
        idempotency_key=key,
        amount_minor=amount_minor,
        currency=currency,
        method="card",
        capture=capture,
        description="Residence permit renewal",
        card=Card(number=number, exp_month=12, exp_year=2034, cvc="123", name="Test Payer"),
        return_url=return_url,
        payer_present=payer_present,
    )


def approved(stripe: StripeProvider, request: AuthorizeRequest | None = None) -> ProviderResult:
    result = stripe.authorize(request or charge())
    assert result.outcome in (Outcome.APPROVED, Outcome.REQUIRES_CAPTURE), result
    assert result.reference is not None
    return result


# ---- charges


def test_a_card_payment_is_captured_at_once(stripe: StripeProvider, fake: FakeStripeServer) -> None:
    result = stripe.authorize(charge(amount_minor=12500))

    assert result.outcome is Outcome.APPROVED
    assert result.amount_captured_minor == 12500
    assert result.reference is not None
    intent = fake.payment_intent(result.reference)
    assert intent["status"] == "succeeded"
    assert intent["currency"] == "sar"
    assert intent["metadata"] == {"gateway_attempt": "att_1"}
    # Server-to-server confirm is a MOTO payment: exempt from 3-D Secure.
    assert intent["payment_method_options"]["card"] == {"moto": True}
    assert stripe.status("att_1", result.reference) == result


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
        ("4000000000000119", "card_declined"),  # processing_error: any other code
    ],
)
def test_a_declined_card_says_why(stripe: StripeProvider, number: str, code: str) -> None:
    result = stripe.authorize(charge(number))

    assert result.outcome is Outcome.DECLINED
    assert result.decline_code == code
    assert result.reference is not None and result.reference.startswith("pi_")
    later = stripe.status("att_1", result.reference)
    assert (later.outcome, later.decline_code) == (Outcome.DECLINED, code)


def test_manual_capture_of_the_whole_amount(stripe: StripeProvider, fake: FakeStripeServer) -> None:
    held = approved(stripe, charge(capture=False))
    assert held.outcome is Outcome.REQUIRES_CAPTURE
    assert held.reference is not None

    captured = stripe.capture("att_1-capture", held.reference, 1000, "SAR")

    assert captured.outcome is Outcome.APPROVED
    assert captured.amount_captured_minor == 1000
    assert fake.payment_intent(held.reference)["status"] == "succeeded"
    # The same capture again (the worker re-sending it) is a replay, not a second capture.
    assert stripe.capture("att_1-capture", held.reference, 1000, "SAR") == captured


def test_partial_capture_and_a_capture_over_the_authorisation(stripe: StripeProvider) -> None:
    held = approved(stripe, charge(capture=False))
    assert held.reference is not None

    refused = stripe.capture("att_1-capture", held.reference, 1001, "SAR")
    assert refused.outcome is Outcome.DECLINED
    assert stripe.status("att_1", held.reference).outcome is Outcome.REQUIRES_CAPTURE

    captured = stripe.capture("att_1-capture-2", held.reference, 600, "SAR")
    assert (captured.outcome, captured.amount_captured_minor) == (Outcome.APPROVED, 600)


def test_cancel_an_authorisation(stripe: StripeProvider) -> None:
    held = approved(stripe, charge(capture=False))
    assert held.reference is not None

    assert stripe.cancel("att_1-cancel", held.reference).outcome is Outcome.CANCELLED
    assert stripe.status("att_1", held.reference).outcome is Outcome.CANCELLED


def test_a_cancel_after_capture_reports_the_capture(stripe: StripeProvider) -> None:
    paid = approved(stripe)
    assert paid.reference is not None

    answer = stripe.cancel("att_1-cancel", paid.reference)

    assert (answer.outcome, answer.amount_captured_minor) == (Outcome.APPROVED, 1000)


# ---- refunds


def test_partial_refund_then_the_rest_then_nothing_more(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    paid = approved(stripe)
    assert paid.reference is not None

    first = stripe.refund(RefundRequest("re_a", paid.reference, 400, "SAR"))
    rest = stripe.refund(RefundRequest("re_b", paid.reference, 600, "SAR"))
    more = stripe.refund(RefundRequest("re_c", paid.reference, 1, "SAR"))

    assert first.outcome is RefundOutcome.SUCCEEDED and first.reference is not None
    assert rest.outcome is RefundOutcome.SUCCEEDED
    assert more.outcome is RefundOutcome.FAILED
    assert [r["amount"] for r in fake.refunds()] == [600, 400]
    assert fake.refund(first.reference)["metadata"] == {"gateway_refund": "re_a"}


def test_a_refund_over_the_captured_amount_is_refused(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    paid = approved(stripe)
    assert paid.reference is not None

    result = stripe.refund(RefundRequest("re_a", paid.reference, 1001, "SAR"))

    assert result.outcome is RefundOutcome.FAILED
    assert result.message is not None and "greater than" in result.message
    assert fake.refunds() == []
    assert stripe.refund_status("re_a").outcome is RefundOutcome.UNAVAILABLE


def test_refund_status_finds_the_refund_by_its_key(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    paid = approved(stripe, charge("4000000000007726"))  # its refunds start pending
    assert paid.reference is not None
    pending = stripe.refund(RefundRequest("re_a", paid.reference, 500, "SAR"))
    assert pending.outcome is RefundOutcome.PENDING and pending.reference is not None

    assert stripe.refund_status("re_a") == pending
    fake.settle_refund(pending.reference, "succeeded")
    assert stripe.refund_status("re_a").outcome is RefundOutcome.SUCCEEDED
    assert stripe.refund_status("re_unknown").outcome is RefundOutcome.UNAVAILABLE


def test_a_refund_whose_answer_is_lost_is_unknown_until_asked(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    paid = approved(stripe)
    assert paid.reference is not None
    fake.fail_next(1)

    lost = stripe.refund(RefundRequest("re_a", paid.reference, 300, "SAR"))

    assert lost.outcome is RefundOutcome.UNKNOWN
    found = stripe.refund_status("re_a")
    assert found.outcome is RefundOutcome.SUCCEEDED
    assert found.reference == fake.refunds()[0]["id"]


# ---- idempotency and failures


def test_the_same_key_twice_makes_one_payment(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    first = stripe.authorize(charge())
    again = stripe.authorize(charge())

    assert again == first
    assert len(fake.payment_intents()) == 1
    assert [r.replayed for r in fake.requests] == [False, True]


def test_the_same_key_with_other_parameters_is_never_a_failover(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    stripe.authorize(charge())

    result = stripe.authorize(charge(amount_minor=2000))

    # Something was already done under this key: only `status` can say what.
    assert result.outcome is Outcome.UNKNOWN
    assert len(fake.payment_intents()) == 1


def test_a_timeout_after_charging_is_unknown_until_status_says(fake: FakeStripeServer) -> None:
    impatient = make_provider(fake, timeout_s=0.5)
    fake.slow_next(1, delay_s=2.0)
    try:
        started = time.monotonic()
        result = impatient.authorize(charge())
        assert time.monotonic() - started < 1.5
        assert result.outcome is Outcome.UNKNOWN
        assert fake.payment_intents()[0]["status"] == "succeeded"  # the charge was made

        truth = impatient.status("att_1", None)  # the reference was never learnt
    finally:
        impatient.close()
    assert truth.outcome is Outcome.APPROVED
    assert truth.reference == fake.payment_intents()[0]["id"]
    assert truth.amount_captured_minor == 1000


def test_a_500_after_charging_is_unknown(stripe: StripeProvider, fake: FakeStripeServer) -> None:
    fake.fail_next(1)

    result = stripe.authorize(charge())

    assert result.outcome is Outcome.UNKNOWN
    assert stripe.status("att_1", None).outcome is Outcome.APPROVED
    # A retry under the same key replays the charge Stripe made; it does not charge twice.
    assert stripe.authorize(charge()).outcome is Outcome.APPROVED
    assert len(fake.payment_intents()) == 1


def test_a_refused_connection_is_unavailable_and_charges_nothing(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    fake.refuse_connections()
    try:
        assert stripe.authorize(charge()).outcome is Outcome.UNAVAILABLE
        # Asking while Stripe is unreachable proves nothing: never "no charge".
        assert stripe.status("att_1", None).outcome is Outcome.UNKNOWN
        assert stripe.refund_status("re_a").outcome is RefundOutcome.UNKNOWN
    finally:
        fake.accept_connections()
    assert fake.payment_intents() == []
    assert stripe.status("att_1", None).outcome is Outcome.UNAVAILABLE


def test_a_wrong_api_key_is_unavailable(fake: FakeStripeServer) -> None:
    wrong = make_provider(fake, api_key="sk_test_wrong")
    try:
        result = wrong.authorize(charge())
    finally:
        wrong.close()
    assert result.outcome is Outcome.UNAVAILABLE
    assert fake.payment_intents() == []


def test_an_amount_stripe_refuses_is_unavailable(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    result = stripe.authorize(charge(amount_minor=12505, currency="OMR"))

    assert result.outcome is Outcome.UNAVAILABLE  # refused before acting: failover allowed
    assert fake.payment_intents() == []


def test_capabilities_refuse_a_three_decimal_amount_not_ending_in_zero(
    stripe: StripeProvider,
) -> None:
    accepts = stripe.capabilities.accepts
    assert not accepts(currency="KWD", amount_minor=1005, method="card", manual=False)
    assert accepts(currency="KWD", amount_minor=1000, method="card", manual=False)
    assert accepts(currency="SAR", amount_minor=1005, method="card", manual=True)
    assert not accepts(currency="KWD", amount_minor=1000, method="knet", manual=False)
    assert stripe.capabilities.livemode


# ---- 3-D Secure


def test_a_payer_on_the_page_is_sent_to_3ds(stripe: StripeProvider, fake: FakeStripeServer) -> None:
    result = stripe.authorize(charge("4000000000003220", payer_present=True, return_url=RETURN_URL))

    assert result.outcome is Outcome.REDIRECT
    assert result.reference is not None
    assert result.redirect_url == f"{fake.url}/3ds/{result.reference}"
    assert fake.payment_intent(result.reference)["payment_method_options"]["card"] == {
        "request_three_d_secure": "automatic"
    }
    assert stripe.status("att_1", result.reference).outcome is Outcome.REDIRECT


def test_the_payer_completes_3ds_on_the_challenge_page(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    result = stripe.authorize(
        charge("4000000000003220", payer_present=True, return_url=RETURN_URL, capture=False)
    )
    assert result.redirect_url is not None and result.reference is not None
    url = urllib.parse.urlsplit(result.redirect_url)

    connection = http.client.HTTPConnection(url.netloc, timeout=5)
    try:
        connection.request("GET", url.path)
        page = connection.getresponse().read().decode()
        assert 'action="' + url.path + '/complete"' in page
    finally:
        connection.close()
    connection = http.client.HTTPConnection(url.netloc, timeout=5)
    try:
        connection.request("POST", url.path + "/complete")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == 303
    back = urllib.parse.urlsplit(response.headers["Location"])
    assert back._replace(query="").geturl() == RETURN_URL
    assert urllib.parse.parse_qs(back.query)["redirect_status"] == ["succeeded"]
    assert stripe.status("att_1", result.reference).outcome is Outcome.REQUIRES_CAPTURE


def test_a_failed_3ds_challenge_is_an_authentication_failure(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    result = stripe.authorize(charge("4000000000003220", payer_present=True, return_url=RETURN_URL))
    assert result.reference is not None

    fake.fail_3ds(result.reference)

    later = stripe.status("att_1", result.reference)
    assert (later.outcome, later.decline_code) == (Outcome.DECLINED, "authentication_failed")


def test_an_abandoned_challenge_can_be_voided(stripe: StripeProvider) -> None:
    result = stripe.authorize(charge("4000000000003220", payer_present=True, return_url=RETURN_URL))
    assert result.reference is not None

    voided = stripe.cancel("att_1-abandon", result.reference)

    assert (voided.outcome, voided.reference) == (Outcome.CANCELLED, result.reference)


def test_a_moto_payment_skips_3ds(stripe: StripeProvider) -> None:
    result = stripe.authorize(charge("4000000000003220", payer_present=False))

    assert result.outcome is Outcome.APPROVED


def test_a_payer_present_payment_without_a_return_address_sends_nothing(
    stripe: StripeProvider, fake: FakeStripeServer
) -> None:
    result = stripe.authorize(charge(payer_present=True))

    assert result.outcome is Outcome.UNAVAILABLE
    assert fake.requests == []


# ---- status without a reference


def test_status_without_a_reference_finds_the_payment_by_its_key(
    stripe: StripeProvider,
) -> None:
    paid = stripe.authorize(charge(key="att_found"))
    stripe.authorize(charge(key="att_other"))

    assert stripe.status("att_found", None) == paid
    missing = stripe.status("att_never", None)
    assert (missing.outcome, missing.reference) == (Outcome.UNAVAILABLE, None)
    # A key with a quote in it is quoted, not read as query syntax.
    assert stripe.status("att_' OR status:'succeeded", None).outcome is Outcome.UNAVAILABLE


def test_status_of_a_reference_from_another_attempt_is_unknown(stripe: StripeProvider) -> None:
    paid = approved(stripe, charge(key="att_1"))
    assert paid.reference is not None

    assert stripe.status("att_2", paid.reference).outcome is Outcome.UNKNOWN


# ---- status answers belong to their attempt


def test_every_answer_says_what_the_payment_is_for(stripe: StripeProvider) -> None:
    held = approved(stripe, charge(amount_minor=12340, currency="KWD", capture=False))
    assert held.reference is not None
    captured = stripe.capture("att_1-capture", held.reference, 5000, "KWD")
    later = stripe.status("att_1", held.reference)
    declined = stripe.authorize(charge("4000000000000002", key="att_2", amount_minor=700))

    # What the payment is for, not what was captured of it, so that the gateway can tell an
    # answer about its own payment from one about another.
    for answer in (held, captured, later):
        assert (answer.amount_minor, answer.currency) == (12340, "KWD"), answer
    assert captured.amount_captured_minor == 5000
    assert (declined.outcome, declined.amount_minor, declined.currency) == (
        Outcome.DECLINED,
        700,
        "SAR",
    )


@pytest.mark.parametrize(
    ("metadata", "differs"),
    [
        (None, "it carries no gateway_attempt metadata"),  # a Payment Link, the Dashboard
        ({"gateway_attempt": "att_2"}, "its gateway_attempt metadata names another attempt"),
        ({"order": "att_1"}, "it carries no gateway_attempt metadata"),
    ],
)
def test_a_payment_that_is_not_the_attempts_answers_nothing_and_is_logged(
    stripe: StripeProvider,
    fake: FakeStripeServer,
    caplog: pytest.LogCaptureFixture,
    metadata: dict[str, str] | None,
    differs: str,
) -> None:
    elsewhere = fake.payment_made_elsewhere(1000, "SAR", metadata=metadata)
    assert elsewhere["status"] == "succeeded"
    caplog.set_level(logging.WARNING, logger="providers.stripe")

    answer = stripe.status("att_1", elsewhere["id"])

    assert answer.outcome is Outcome.UNKNOWN
    assert (answer.reference, answer.amount_captured_minor, answer.amount_minor) == (None,) * 3
    [warning] = [r for r in caplog.records if r.name == "providers.stripe"]
    assert warning.levelno == logging.WARNING
    assert warning.__dict__["provider"] == "stripe"
    assert warning.__dict__["attempt"] == "att_1"
    assert warning.__dict__["reference"] == elsewhere["id"]
    assert warning.__dict__["differs"] == differs


# ---- notifications


@pytest.mark.parametrize(
    "event_type", ["payment_intent.succeeded", "charge.refunded", "charge.refund.updated"]
)
def test_a_genuine_event_names_its_payment(stripe: StripeProvider, event_type: str) -> None:
    body, headers = signed_event(event_type, "pi_123", SECRET)

    notification = stripe.parse_notification(body, headers)

    assert notification.type == event_type
    assert notification.reference == "pi_123"
    assert notification.event_id == json.loads(body)["id"]


def test_an_event_sent_over_http_verifies(stripe: StripeProvider, fake: FakeStripeServer) -> None:
    paid = approved(stripe)
    assert paid.reference is not None
    with Receiver() as receiver:
        assert fake.send_event(receiver.url(), "payment_intent.succeeded", paid.reference, SECRET)
        assert send_event(receiver.url(), "charge.refunded", paid.reference, SECRET, forged=True)
        genuine, forged = receiver.posts()

    notification = stripe.parse_notification(genuine.body, genuine.headers)
    assert notification.reference == paid.reference
    assert json.loads(genuine.body)["data"]["object"]["status"] == "succeeded"
    with pytest.raises(InvalidNotification):
        stripe.parse_notification(forged.body, forged.headers)


def test_forged_stale_and_malformed_events_are_refused(stripe: StripeProvider) -> None:
    forged = forged_event("payment_intent.succeeded", "pi_123")
    stale = signed_event("payment_intent.succeeded", "pi_123", SECRET, int(time.time()) - 600)
    body, headers = signed_event("payment_intent.succeeded", "pi_123", SECRET)
    tampered = body.replace(b"pi_123", b"pi_999")
    not_event = b'{"object": "payment_intent", "id": "pi_123"}'
    not_json = b"\xff\xfe not json"

    for refused_body, refused_headers in [
        forged,
        stale,
        (tampered, headers),
        (body, {}),
        (body, {"Stripe-Signature": "garbage"}),
        (not_event, {"Stripe-Signature": signature_header(not_event, SECRET)}),
        (not_json, {"Stripe-Signature": signature_header(not_json, SECRET)}),
    ]:
        with pytest.raises(InvalidNotification):
            stripe.parse_notification(refused_body, refused_headers)


def test_without_a_webhook_secret_no_event_verifies(fake: FakeStripeServer) -> None:
    unconfigured = make_provider(fake, webhook_secret=None)
    body = build_event("payment_intent.succeeded", "pi_123")
    headers = {"stripe-signature": signature_header(body, SECRET)}
    try:
        with pytest.raises(InvalidNotification):
            unconfigured.parse_notification(body, headers)
    finally:
        unconfigured.close()


# ---- card data


def test_no_card_number_reaches_a_log_or_a_result(
    stripe: StripeProvider, fake: FakeStripeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    numbers = [VISA, "4000000000009995", "4000000000003220", "4000000000000127"]
    results = [stripe.authorize(charge(n, key=f"att_{i}")) for i, n in enumerate(numbers)]
    fake.fail_next(1)
    results.append(stripe.authorize(charge(VISA, key="att_lost")))
    results.append(stripe.authorize(charge(VISA, key="att_lost")))

    assert caplog.records, "the SDK's DEBUG records were captured"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    shown = "\n".join(repr(result) + str(result.message) for result in results)
    stored = json.dumps(fake.payment_intents())
    for text in (logged, shown, stored):
        assert not any(number in text for number in numbers)
        assert "[cvc]" not in text and "%5Bcvc%5D" not in text


# Charges each card number given through a StripeProvider in a process of its own: the SDK
# reads STRIPE_LOG once, when it is imported; the settings hand the provider the same value.
CHARGE_IN_A_PROCESS = """
import sys
from providers.base import AuthorizeRequest, Card
from providers.stripe import StripeProvider

api_key, api_base, *numbers = sys.argv[1:]
stripe = StripeProvider(
    api_key=api_key, api_base=api_base, timeout_s=5.0, sdk_console_log="debug"
)
for n, number in enumerate(numbers):
    card = Card(number=number, exp_month=12, exp_year=2034, cvc="123")
    request = AuthorizeRequest(f"att_{n}", 1000, "SAR", "card", True, "Visa fee", card)
    print(stripe.authorize(request).outcome.value)
stripe.close()
"""


def test_the_sdk_console_log_never_prints_card_data(fake: FakeStripeServer) -> None:
    """`STRIPE_LOG=debug` has the SDK print each request body to stderr itself, past the
    `stripe` logger and its filter; the provider keeps those bodies off the console."""
    numbers = [VISA, "4000000000009995"]

    done = subprocess.run(
        [sys.executable, "-c", CHARGE_IN_A_PROCESS, fake.api_key, fake.url, *numbers],
        cwd=ROOT,
        env={**os.environ, "STRIPE_LOG": "debug"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["approved", "declined"]
    assert "Request to Stripe api" in done.stderr, "the SDK's console log was on"
    assert not any(number in done.stderr for number in numbers)
    assert "[cvc]" not in done.stderr and "%5Bcvc%5D" not in done.stderr
    assert "post_data" not in done.stderr
