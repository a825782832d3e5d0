"""Every sandbox card of API.md, and the worker resolving the card whose acquirer times out."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import (
    SANDBOX_CARDS,
    TIMEOUT_CARD,
    LiveGateway,
    card_body,
    expect_error,
    json_of,
)
from tests.e2e.test_payment_flows import without_payer

pytestmark = pytest.mark.e2e

FINAL_CARDS = sorted(number for number in SANDBOX_CARDS if number != TIMEOUT_CARD)


@pytest.mark.parametrize("number", FINAL_CARDS)
def test_sandbox_card_outcome(gateway: LiveGateway, number: str) -> None:
    status, failure, brand = SANDBOX_CARDS[number]
    agency = gateway.api("qa-moph")
    payable_before = agency.payable("QAR")
    pid = agency.create_payment(amount=4200)["id"]

    payment = agency.confirm(pid, number)
    assert payment["status"] == status, payment
    assert payment["payment_method"] == {
        "type": "card",
        "brand": brand,
        "last4": number[-4:],
        "exp_month": 12,
        "exp_year": 2034,
    }
    assert agency.ok(f"/v1/payments/{pid}") == payment
    if status == "succeeded":
        assert payment["failure"] is None
        assert payment["amount_captured"] == 4200
        assert agency.payable("QAR") == payable_before + 4200
        [event] = agency.events_for(pid, "payment.succeeded")
    else:
        assert payment["failure"] is not None
        assert payment["failure"]["code"] == failure
        assert isinstance(payment["failure"]["message"], str) and payment["failure"]["message"]
        assert payment["amount_captured"] == 0
        assert agency.payable("QAR") == payable_before
        [event] = agency.events_for(pid, "payment.failed")
        # A final outcome is final: the payment cannot be paid again or refunded.
        again = agency.post(f"/v1/payments/{pid}/confirm", card_body("4242424242424242"))
        expect_error(again, 409, "conflict")
        expect_error(agency.post(f"/v1/payments/{pid}/refunds"), 409, "conflict")
        assert agency.ok(f"/v1/payments/{pid}") == payment
    assert event["data"] == without_payer(payment)


def test_timeout_card_stays_processing_until_the_worker_asks(gateway: LiveGateway) -> None:
    agency = gateway.api("bh-lmra")  # BHD
    payable_before = agency.payable("BHD")
    pid = agency.create_payment(amount=7250)["id"]

    processing = agency.confirm(pid, TIMEOUT_CARD)
    assert processing["status"] == "processing", processing
    assert processing["amount_captured"] == 0 and processing["failure"] is None
    assert processing["payment_method"]["last4"] == "5126"
    assert agency.ok(f"/v1/payments/{pid}")["status"] == "processing"
    assert agency.payable("BHD") == payable_before  # not yet known, so not yet owed
    assert agency.events_for(pid, "payment.succeeded") == []
    # While the outcome is unknown nothing else may happen to it.
    expect_error(agency.post(f"/v1/payments/{pid}/cancel"), 409, "conflict")
    expect_error(agency.post(f"/v1/payments/{pid}/refunds"), 409, "conflict")
    expect_error(agency.post(f"/v1/payments/{pid}/capture"), 409, "conflict")

    done = gateway.cli("worker", "--once")
    match = re.search(r"resolved (\d+) attempts", done.stdout)
    assert match is not None and int(match.group(1)) >= 1, done.stdout

    resolved = agency.ok(f"/v1/payments/{pid}")
    assert resolved["status"] == "succeeded", resolved
    assert resolved["amount_captured"] == 7250
    assert resolved["provider"] == "sandbox" and resolved["provider_reference"]
    assert agency.payable("BHD") == payable_before + 7250
    [event] = agency.events_for(pid, "payment.succeeded")
    assert event["data"] == without_payer(resolved)

    # A second pass finds nothing more to do for it and changes nothing.
    gateway.cli("worker", "--once")
    assert agency.ok(f"/v1/payments/{pid}") == resolved
    assert agency.payable("BHD") == payable_before + 7250
    assert len(agency.events_for(pid, "payment.succeeded")) == 1

    refund = agency.post(f"/v1/payments/{pid}/refunds", {"amount": 250})
    assert refund.status_code == 201, refund.text
    assert json_of(refund)["status"] == "succeeded"
    assert agency.payable("BHD") == payable_before + 7000
