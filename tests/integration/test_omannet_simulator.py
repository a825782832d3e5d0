"""The OmanNet adapter and the bank gateway's simulator together, through `LocalTransport`: the
payer's round trip, lost callbacks, timeouts on a controlled clock, refunds and the bank's
settlement file."""

from __future__ import annotations

import csv
import datetime as dt
import io
import urllib.parse
from pathlib import Path

import pytest

from providers.base import (
    AuthorizeRequest,
    Outcome,
    RefundOutcome,
    RefundRequest,
    SchemeReturn,
)
from providers.omannet import OmanNetProvider, OmanNetTerminal
from providers.omannet_simulator import (
    COLUMNS,
    PAGE_TIMEOUT_S,
    OmanNetSimulator,
    PaymentPage,
    SimulatorRefused,
)
from providers.transport import LocalTransport

TERMINAL = OmanNetTerminal(
    merchant_id="TESTOMN001",
    access_code="A1B2C3D4",
    secure_secret="8F3A6C1D2E4B5A6978E1F20C3D4B5A69",
    user="amauser",
    password="s3cret-pass!",
)
PAGE_URL = "http://127.0.0.1:8000/sandbox/omannet/pay"
QUERY_URL = "http://127.0.0.1:8000/sandbox/omannet/dr"
RETURN_URL = "http://127.0.0.1:8000/pay/tok123/return?lang=ar"
DAY = dt.date(2026, 3, 1)


class Clock:
    """The simulator's clock, moved by the tests instead of sleeping."""

    def __init__(self) -> None:
        self.now = dt.datetime.combine(DAY, dt.time(9, 0), tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(tmp_path: Path, clock: Clock) -> OmanNetSimulator:
    return OmanNetSimulator(TERMINAL, tmp_path / "omannet.db", clock=clock)


def make_provider(sim: OmanNetSimulator, terminal: OmanNetTerminal = TERMINAL) -> OmanNetProvider:
    return OmanNetProvider(
        "omannet", terminal, PAGE_URL, QUERY_URL, LocalTransport({QUERY_URL: sim.handle_query})
    )


@pytest.fixture
def omannet(sim: OmanNetSimulator) -> OmanNetProvider:
    return make_provider(sim)


def query_of(url: str) -> dict[str, str]:
    query = urllib.parse.urlsplit(url).query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    fields = dict(pairs)
    assert len(fields) == len(pairs), "a field came twice"
    return fields


def start(
    omannet: OmanNetProvider, sim: OmanNetSimulator, key: str, amount_minor: int = 12500
) -> PaymentPage:
    """Authorize, and open the bank's page the payer is sent to."""
    result = omannet.authorize(
        AuthorizeRequest(
            idempotency_key=key,
            amount_minor=amount_minor,
            currency="OMR",
            method="omannet",
            capture=True,
            description="Medical certificate fee",
            return_url=RETURN_URL,
            payer_present=True,
            language="ar",
        )
    )
    assert result.outcome is Outcome.REDIRECT
    assert result.redirect_url is not None
    assert result.redirect_url.startswith(PAGE_URL + "?")
    return sim.open_page(query_of(result.redirect_url))


def pay(
    omannet: OmanNetProvider,
    sim: OmanNetSimulator,
    key: str,
    choice: str,
    amount_minor: int = 12500,
) -> SchemeReturn:
    """The payer's whole round trip: the page, their choice, the signed return."""
    page = start(omannet, sim, key, amount_minor)
    back = sim.answer(page.page_id, choice)
    assert back.startswith(RETURN_URL + "&")
    fields = query_of(back)
    assert fields.pop("lang") == "ar"  # the gateway's own parameter came back untouched
    return omannet.parse_return({**fields, "lang": "ar"})


def test_an_approved_payment_round_trip(omannet: OmanNetProvider, sim: OmanNetSimulator) -> None:
    page = start(omannet, sim, "att_approve")
    assert (page.merchant, page.merch_txn_ref) == ("TESTOMN001", "att_approve")
    assert (page.amount_minor, page.currency, page.locale) == (12500, "OMR", "ar")
    assert page.order_info == "Medical certificate fee"
    assert page.state == "initiated" and page.open
    assert start(omannet, sim, "att_approve").page_id == page.page_id  # a reload: the same page
    back = sim.answer(page.page_id, "approve")
    assert sim.answer(page.page_id, "approve") == back  # a second click changes nothing
    returned = omannet.parse_return(query_of(back))
    assert returned.attempt_key == "att_approve"
    assert (returned.amount_minor, returned.currency, returned.result) == (12500, "OMR", "0")
    assert returned.reference is not None and returned.reference.isdigit()
    status = omannet.status("att_approve", returned.reference)
    assert status.outcome is Outcome.APPROVED
    assert status.reference == returned.reference
    assert (status.amount_minor, status.amount_captured_minor, status.currency) == (
        12500,
        12500,
        "OMR",
    )
    assert sim.page(page.page_id).state == "approved"
    with pytest.raises(SimulatorRefused) as again:
        sim.answer(page.page_id, "cancel")
    assert again.value.reason == "conflict"


def test_an_amount_ending_in_13_is_declined(
    omannet: OmanNetProvider, sim: OmanNetSimulator
) -> None:
    returned = pay(omannet, sim, "att_13", "approve", amount_minor=10013)
    assert returned.result == "2"
    status = omannet.status("att_13", None)
    assert (status.outcome, status.decline_code) == (Outcome.DECLINED, "card_declined")
    assert status.amount_minor == 10013


def test_the_decline_button(omannet: OmanNetProvider, sim: OmanNetSimulator) -> None:
    assert pay(omannet, sim, "att_decline", "decline").result == "2"
    status = omannet.status("att_decline", None)
    assert (status.outcome, status.decline_code) == (Outcome.DECLINED, "card_declined")


def test_cancel_is_abandoned(omannet: OmanNetProvider, sim: OmanNetSimulator) -> None:
    assert pay(omannet, sim, "att_cancel", "cancel").result == "C"
    status = omannet.status("att_cancel", None)
    assert (status.outcome, status.decline_code) == (Outcome.DECLINED, "abandoned")


def test_a_lost_callback_is_found_by_the_query(
    omannet: OmanNetProvider, sim: OmanNetSimulator
) -> None:
    page = start(omannet, sim, "att_lost")
    sim.answer(page.page_id, "approve")  # the payer never comes back
    status = omannet.status("att_lost", None)
    assert status.outcome is Outcome.APPROVED
    assert status.amount_captured_minor == 12500


def test_an_unknown_reference_is_unavailable(
    omannet: OmanNetProvider, sim: OmanNetSimulator
) -> None:
    assert omannet.status("att_never_sent", None).outcome is Outcome.UNAVAILABLE
    # Redirected, but the payer never reached the bank's page: nothing there either.
    omannet.authorize(
        AuthorizeRequest("att_not_opened", 500, "OMR", "omannet", True, "Fee", None, RETURN_URL)
    )
    assert omannet.status("att_not_opened", None).outcome is Outcome.UNAVAILABLE


def test_an_open_page_is_unknown_until_it_times_out(
    omannet: OmanNetProvider, sim: OmanNetSimulator, clock: Clock
) -> None:
    page = start(omannet, sim, "att_wait")
    assert omannet.status("att_wait", None).outcome is Outcome.UNKNOWN
    clock.advance(seconds=PAGE_TIMEOUT_S - 1)
    assert omannet.status("att_wait", None).outcome is Outcome.UNKNOWN
    assert sim.page(page.page_id).open
    clock.advance(seconds=1)
    status = omannet.status("att_wait", None)
    assert (status.outcome, status.decline_code) == (Outcome.DECLINED, "abandoned")
    assert sim.page(page.page_id).state == "timed_out"
    with pytest.raises(SimulatorRefused) as late:
        sim.answer(page.page_id, "approve")
    assert late.value.reason == "expired"
    assert omannet.status("att_wait", None).outcome is Outcome.DECLINED  # still, after the refusal


def test_the_page_refuses_bad_requests_and_records_nothing(
    omannet: OmanNetProvider, sim: OmanNetSimulator
) -> None:
    result = omannet.authorize(
        AuthorizeRequest("att_bad", 12500, "OMR", "omannet", True, "Fee", None, RETURN_URL)
    )
    assert result.redirect_url is not None
    good = query_of(result.redirect_url)
    bad_requests = [
        {**good, "vpc_Amount": "1"},  # the hash no longer verifies
        {**good, "vpc_AccessCode": "WRONG123"},
        {**good, "vpc_Merchant": "OTHERMERCH"},
        {k: v for k, v in good.items() if k != "vpc_SecureHash"},
        {**good, "extra": "x"},
    ]
    for query in bad_requests:
        with pytest.raises(SimulatorRefused) as refused:
            sim.open_page(query)
        assert refused.value.reason == "bad_request"
        assert "att_bad" not in str(refused.value)
    assert omannet.status("att_bad", None).outcome is Outcome.UNAVAILABLE
    start(omannet, sim, "att_reused", 12500)
    with pytest.raises(SimulatorRefused) as reused:
        start(omannet, sim, "att_reused", 12600)
    assert reused.value.reason == "conflict"
    with pytest.raises(SimulatorRefused) as unknown:
        sim.answer("no-such-page", "approve")
    assert unknown.value.reason == "not_found"
    page = start(omannet, sim, "att_choice")
    with pytest.raises(SimulatorRefused):
        sim.answer(page.page_id, "maybe")
    assert sim.page(page.page_id).open


def test_two_processes_share_the_store(
    omannet: OmanNetProvider, sim: OmanNetSimulator, tmp_path: Path, clock: Clock
) -> None:
    other = OmanNetSimulator(TERMINAL, tmp_path / "omannet.db", clock=clock)
    page = start(omannet, sim, "att_shared")
    other.answer(page.page_id, "approve")
    assert omannet.status("att_shared", None).outcome is Outcome.APPROVED


def approved(omannet: OmanNetProvider, sim: OmanNetSimulator, key: str, amount: int) -> str:
    returned = pay(omannet, sim, key, "approve", amount)
    assert returned.result == "0" and returned.reference is not None
    return returned.reference


def refund(omannet: OmanNetProvider, key: str, reference: str, amount: int) -> RefundOutcome:
    return omannet.refund(RefundRequest(key, reference, amount, "OMR")).outcome


def test_full_refund(omannet: OmanNetProvider, sim: OmanNetSimulator) -> None:
    reference = approved(omannet, sim, "att_full", 12500)
    result = omannet.refund(RefundRequest("re_full", reference, 12500, "OMR"))
    assert result.outcome is RefundOutcome.SUCCEEDED
    assert result.reference is not None and result.reference != reference
    status = omannet.refund_status("re_full")
    assert (status.outcome, status.reference) == (RefundOutcome.SUCCEEDED, result.reference)
    assert refund(omannet, "re_more", reference, 1) is RefundOutcome.FAILED
    # Refunds leave the payment's own record as it was: captured in full.
    assert omannet.status("att_full", reference).amount_captured_minor == 12500


def test_partial_refunds_never_exceed_the_capture(
    omannet: OmanNetProvider, sim: OmanNetSimulator
) -> None:
    reference = approved(omannet, sim, "att_partial", 12500)
    assert refund(omannet, "re_p1", reference, 5000) is RefundOutcome.SUCCEEDED
    assert refund(omannet, "re_p2", reference, 5000) is RefundOutcome.SUCCEEDED
    over = omannet.refund(RefundRequest("re_p3", reference, 2501, "OMR"))
    assert over.outcome is RefundOutcome.FAILED
    assert omannet.refund_status("re_p3").outcome is RefundOutcome.FAILED  # recorded as refused
    assert refund(omannet, "re_p4", reference, 2500) is RefundOutcome.SUCCEEDED
    assert refund(omannet, "re_p5", reference, 1) is RefundOutcome.FAILED


def test_the_same_refund_key_twice_is_one_refund(
    omannet: OmanNetProvider, sim: OmanNetSimulator, clock: Clock
) -> None:
    reference = approved(omannet, sim, "att_twice", 12500)
    first = omannet.refund(RefundRequest("re_twice", reference, 8000, "OMR"))
    second = omannet.refund(RefundRequest("re_twice", reference, 8000, "OMR"))
    assert first.outcome is second.outcome is RefundOutcome.SUCCEEDED
    assert first.reference == second.reference
    # Only 8.000 was refunded, so 4.500 is left and 4.501 is too much.
    assert refund(omannet, "re_rest_over", reference, 4501) is RefundOutcome.FAILED
    assert refund(omannet, "re_rest", reference, 4500) is RefundOutcome.SUCCEEDED
    lines = list(csv.DictReader(io.StringIO(sim.settlement_file(DAY))))
    assert [line["AMOUNT"] for line in lines if line["TYPE"] == "REFUND"] == ["-8.000", "-4.500"]
    # The same key for another refund is refused outright, and changes nothing.
    conflict = omannet.refund(RefundRequest("re_twice", reference, 100, "OMR"))
    assert conflict.outcome is RefundOutcome.UNKNOWN
    assert omannet.refund_status("re_twice").reference == first.reference


def test_refund_status_and_refusals(omannet: OmanNetProvider, sim: OmanNetSimulator) -> None:
    assert omannet.refund_status("re_never").outcome is RefundOutcome.UNAVAILABLE
    pay(omannet, sim, "att_declined", "decline")
    declined = omannet.status("att_declined", None)
    assert declined.reference is not None
    assert refund(omannet, "re_declined", declined.reference, 100) is RefundOutcome.FAILED
    assert refund(omannet, "re_nothing", "3999999999", 100) is RefundOutcome.FAILED
    # A refund whose request never reached the bank is known not to have been made.
    unreachable = OmanNetProvider(
        "omannet", TERMINAL, PAGE_URL, QUERY_URL, LocalTransport({})
    ).refund(RefundRequest("re_unsent", declined.reference, 100, "OMR"))
    assert unreachable.outcome is RefundOutcome.UNAVAILABLE


def test_wrong_credentials_are_refused_and_leave_the_outcome_unknown(
    sim: OmanNetSimulator, omannet: OmanNetProvider
) -> None:
    approved(omannet, sim, "att_creds", 12500)
    wrong = OmanNetTerminal(
        merchant_id=TERMINAL.merchant_id,
        access_code=TERMINAL.access_code,
        secure_secret=TERMINAL.secure_secret,
        user=TERMINAL.user,
        password="not-the-password",
    )
    assert make_provider(sim, wrong).status("att_creds", None).outcome is Outcome.UNKNOWN
    reply = sim.handle_query(b"vpc_Command=queryDR", {"Content-Type": "text/plain"})
    assert reply.status == 400
    reply = sim.handle_query(b"\xff", {"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 400
    assert b"not-the-password" not in reply.body


def test_the_settlement_file_lists_the_days_captures_and_refunds(
    omannet: OmanNetProvider, sim: OmanNetSimulator, clock: Clock
) -> None:
    big = approved(omannet, sim, "att_day1_a", 12500)
    clock.advance(minutes=1)
    small = approved(omannet, sim, "att_day1_b", 1000)
    clock.advance(minutes=1)
    pay(omannet, sim, "att_day1_declined", "approve", 2013)  # declined: not settled
    pay(omannet, sim, "att_day1_cancelled", "cancel", 3000)  # cancelled: not settled
    clock.advance(minutes=1)
    assert refund(omannet, "re_day1", big, 2500) is RefundOutcome.SUCCEEDED
    assert refund(omannet, "re_day1_over", small, 1001) is RefundOutcome.FAILED  # not settled
    clock.now = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(0, 0, 5), tzinfo=dt.UTC)
    assert refund(omannet, "re_day2", small, 1000) is RefundOutcome.SUCCEEDED
    third = approved(omannet, sim, "att_day2", 1)

    text = sim.settlement_file(DAY)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [
        (line["MERCHANT_TXN_REF"], line["TYPE"], line["AMOUNT"], line["FEE"], line["NET"])
        for line in lines
    ] == [
        ("att_day1_a", "PURCHASE", "12.500", "0.125", "12.375"),
        ("att_day1_b", "PURCHASE", "1.000", "0.050", "0.950"),
        ("re_day1", "REFUND", "-2.500", "0.000", "-2.500"),
    ]
    assert [line["TRANSACTION_NO"] for line in lines[:2]] == [big, small]
    refund_no = omannet.refund_status("re_day1").reference
    assert lines[2]["TRANSACTION_NO"] == refund_no
    for line in lines:
        assert line["SETTLEMENT_DATE"] == "2026-03-01"
        assert line["MERCHANT_ID"] == "TESTOMN001"
        assert line["CURRENCY"] == "OMR"
        assert len(line["RECEIPT_NO"]) == 12 and line["RECEIPT_NO"].isdigit()
        assert line["TRANSACTION_TIME"].startswith("2026-03-01T09:0")

    next_day = list(csv.DictReader(io.StringIO(sim.settlement_file(DAY + dt.timedelta(days=1)))))
    assert [(line["TYPE"], line["AMOUNT"], line["FEE"], line["NET"]) for line in next_day] == [
        ("REFUND", "-1.000", "0.000", "-1.000"),
        ("PURCHASE", "0.001", "0.001", "0.000"),  # the fee never exceeds the amount
    ]
    assert next_day[1]["TRANSACTION_NO"] == third
    assert sim.settlement_file(DAY - dt.timedelta(days=1)) == ",".join(COLUMNS) + "\n"
