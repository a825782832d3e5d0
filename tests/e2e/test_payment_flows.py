"""A ministry backend's payment life cycles over HTTP: pay, refund, capture, cancel."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.e2e.conftest import (
    RFC3339_UTC,
    LiveGateway,
    card_body,
    expect_error,
    json_of,
    parse_seed_keys,
    race,
    unique,
)

pytestmark = pytest.mark.e2e

PAYMENT_KEYS = {
    "id", "object", "livemode", "agency", "status", "amount", "currency", "amount_captured",
    "amount_refunded", "reference", "description", "service_code", "language", "capture_method",
    "return_url", "next_url", "payment_method", "provider", "provider_reference", "failure",
    "metadata", "created_at", "updated_at", "expires_at",
}  # fmt: skip
REFUND_KEYS = {"id", "object", "payment", "amount", "currency", "status", "reason", "created_at"}


def check_payment(payment: dict[str, Any]) -> None:
    assert set(payment) >= PAYMENT_KEYS, PAYMENT_KEYS - set(payment)
    assert payment["object"] == "payment"
    assert re.fullmatch(r"pay_[A-Za-z0-9]+", payment["id"]), payment["id"]
    for field in ("created_at", "updated_at", "expires_at"):
        assert RFC3339_UTC.match(payment[field]), (field, payment[field])


def check_refund(refund: dict[str, Any], payment: dict[str, Any], amount: int) -> None:
    assert set(refund) >= REFUND_KEYS, REFUND_KEYS - set(refund)
    assert refund["object"] == "refund"
    assert re.fullmatch(r"re_[A-Za-z0-9]+", refund["id"]), refund["id"]
    assert refund["payment"] == payment["id"]
    assert refund["amount"] == amount
    assert refund["currency"] == payment["currency"]
    assert refund["status"] == "succeeded"
    assert RFC3339_UTC.match(refund["created_at"])


def test_operator_view(gateway: LiveGateway) -> None:
    """The server answers ready, and seeding again is idempotent: the same keys."""
    ready = gateway.api(None).get("/readyz")
    assert ready.status_code == 200, ready.text
    assert json_of(ready) == {"status": "ok", "database": "ok"}
    assert parse_seed_keys(gateway.cli("demo", "seed").stdout) == gateway.keys
    for who, key in gateway.keys.items():
        assert key.startswith("gw_fin_" if who == "finance" else "gw_test_"), (who, key)
        assert gateway.api(who).get("/v1/payments", params={"limit": 1}).status_code == 200


def without_payer(payment: dict[str, Any]) -> dict[str, Any]:
    """A payment as events carry it: everything but the payer's personal data."""
    return {key: value for key, value in payment.items() if key != "payer"}


def test_pay_refund_in_parts_then_refuse_more(gateway: LiveGateway) -> None:
    agency = gateway.api("kw-moi")  # KWD, three decimals: 12500 is 12.500 KWD
    payable_before = agency.payable("KWD")

    created = agency.create_payment(
        amount=12500,
        service_code="moi.passport",
        language="en",
        metadata={"file": "A-17"},
        payer={"email": "citizen@example.kw", "name": "Citizen"},
    )
    check_payment(created)
    assert created["status"] == "created"
    assert created["agency"] == "kw-moi" and created["livemode"] is False
    assert (created["amount"], created["currency"]) == (12500, "KWD")
    assert (created["amount_captured"], created["amount_refunded"]) == (0, 0)
    assert created["metadata"] == {"file": "A-17"}
    assert created["payer"] == {"email": "citizen@example.kw", "name": "Citizen"}
    listed_payer = agency.ok("/v1/payments", params={"reference": created["reference"]})["data"]
    assert [p["id"] for p in listed_payer] == [created["id"]]
    assert "payer" not in listed_payer[0]  # API.md: the payer is not shown in lists
    assert created["next_url"].startswith(f"{gateway.base_url}/pay/")
    assert created["id"] not in created["next_url"]  # a signed token, not the bare id
    pid = created["id"]

    paid = agency.confirm(pid, "4242424242424242")
    check_payment(paid)
    assert paid["status"] == "succeeded"
    assert paid["amount_captured"] == 12500 and paid["amount_refunded"] == 0
    assert paid["payment_method"] == {
        "type": "card",
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2034,
    }
    assert paid["provider"] == "sandbox" and paid["provider_reference"]
    assert paid["failure"] is None and paid["next_url"] is None
    assert agency.ok(f"/v1/payments/{pid}") == paid
    assert agency.payable("KWD") == payable_before + 12500

    first = agency.post(f"/v1/payments/{pid}/refunds", {"amount": 2500, "reason": "overpaid"})
    assert first.status_code == 201, first.text
    refund1 = json_of(first)
    check_refund(refund1, paid, 2500)
    assert refund1["reason"] == "overpaid"
    after_first = agency.ok(f"/v1/payments/{pid}")
    assert (after_first["status"], after_first["amount_refunded"]) == ("succeeded", 2500)
    assert agency.payable("KWD") == payable_before + 10000

    too_much = agency.post(f"/v1/payments/{pid}/refunds", {"amount": 10001})
    error = expect_error(too_much, 422, "invalid_request", "amount_exceeds_refundable")
    assert error["param"] == "amount"

    rest = agency.post(f"/v1/payments/{pid}/refunds", {})
    assert rest.status_code == 201, rest.text
    refund2 = json_of(rest)
    check_refund(refund2, paid, 10000)  # the default: what remains refundable
    assert refund2["reason"] is None
    final = agency.ok(f"/v1/payments/{pid}")
    assert (final["amount_captured"], final["amount_refunded"]) == (12500, 12500)
    assert agency.payable("KWD") == payable_before

    for body in ({"amount": 1}, {}):
        beyond = agency.post(f"/v1/payments/{pid}/refunds", body)
        expect_error(beyond, 422, "invalid_request", "amount_exceeds_refundable")
    assert agency.ok(f"/v1/payments/{pid}")["amount_refunded"] == 12500

    assert agency.ok(f"/v1/refunds/{refund1['id']}") == refund1
    assert agency.ok(f"/v1/refunds/{refund2['id']}") == refund2
    listed = agency.ok(f"/v1/payments/{pid}/refunds")
    assert listed["object"] == "list" and listed["has_more"] is False
    assert listed["data"] == [refund2, refund1]  # newest first
    one = agency.ok(f"/v1/payments/{pid}/refunds", params={"limit": 1})
    assert one["data"] == [refund2] and one["has_more"] is True
    rest_page = agency.ok(
        f"/v1/payments/{pid}/refunds", params={"limit": 1, "starting_after": refund2["id"]}
    )
    assert rest_page["data"] == [refund1] and rest_page["has_more"] is False

    # Events carry the object as the API returned it at that moment...
    succeeded = agency.events_for(pid, "payment.succeeded")
    assert len(succeeded) == 1, succeeded
    # ...less the payer's personal data, which events and lists never carry.
    assert succeeded[0]["data"] == without_payer(paid)
    assert "payer" not in succeeded[0]["data"]
    assert succeeded[0]["object"] == "event" and succeeded[0]["id"].startswith("evt_")
    assert RFC3339_UTC.match(succeeded[0]["timestamp"])
    assert agency.ok(f"/v1/events/{succeeded[0]['id']}") == succeeded[0]
    refund_events = {
        event["data"]["id"]: event
        for event in agency.list_all("/v1/events", {"type": "refund.succeeded"})
        if event["data"]["payment"] == pid
    }
    assert set(refund_events) == {refund1["id"], refund2["id"]}
    assert refund_events[refund1["id"]]["data"] == refund1
    assert refund_events[refund2["id"]]["data"] == refund2
    assert all(e["type"] == "refund.succeeded" for e in refund_events.values())

    trial = gateway.api("finance").ok("/v1/ledger/trial-balance")
    assert "KWD" in trial["currencies"]
    for currency, totals in trial["currencies"].items():
        assert totals["debits"] == totals["credits"], (currency, totals)


def test_manual_capture_of_part(gateway: LiveGateway) -> None:
    agency = gateway.api("sa-moj")
    payable_before = agency.payable("SAR")
    created = agency.create_payment(amount=15000, capture_method="manual")
    assert created["capture_method"] == "manual"
    pid = created["id"]

    authorised = agency.confirm(pid, "5555555555554444")
    assert authorised["status"] == "requires_capture"
    assert authorised["amount_captured"] == 0
    assert authorised["payment_method"]["brand"] == "mastercard"
    assert agency.payable("SAR") == payable_before  # nothing captured, nothing owed
    [event] = agency.events_for(pid, "payment.requires_capture")
    assert event["data"] == without_payer(authorised)

    not_yet = agency.post(f"/v1/payments/{pid}/refunds", {"amount": 100})
    expect_error(not_yet, 409, "conflict")

    over = agency.post(f"/v1/payments/{pid}/capture", {"amount": 15001})
    error = expect_error(over, 422, "invalid_request", "amount_exceeds_authorized")
    assert error["param"] == "amount"
    assert agency.ok(f"/v1/payments/{pid}")["status"] == "requires_capture"

    captured = agency.post(f"/v1/payments/{pid}/capture", {"amount": 10000})
    assert captured.status_code == 200, captured.text
    payment = json_of(captured)
    assert payment["status"] == "succeeded"
    assert (payment["amount"], payment["amount_captured"]) == (15000, 10000)
    assert agency.ok(f"/v1/payments/{pid}") == payment
    assert agency.payable("SAR") == payable_before + 10000
    [succeeded] = agency.events_for(pid, "payment.succeeded")
    assert succeeded["data"] == without_payer(payment)

    again = agency.post(f"/v1/payments/{pid}/capture", {"amount": 1000})
    expect_error(again, 409, "conflict")
    cancel = agency.post(f"/v1/payments/{pid}/cancel")
    expect_error(cancel, 409, "conflict")

    # Refunds are bounded by what was captured, not by what was authorised.
    beyond = agency.post(f"/v1/payments/{pid}/refunds", {"amount": 10001})
    expect_error(beyond, 422, "invalid_request", "amount_exceeds_refundable")
    refund = agency.post(f"/v1/payments/{pid}/refunds")
    assert refund.status_code == 201, refund.text
    assert json_of(refund)["amount"] == 10000
    assert agency.payable("SAR") == payable_before


def test_manual_capture_then_cancel(gateway: LiveGateway) -> None:
    agency = gateway.api("sa-moj")
    payable_before = agency.payable("SAR")
    pid = agency.create_payment(capture_method="manual")["id"]
    assert agency.confirm(pid, "4242424242424242")["status"] == "requires_capture"

    cancelled = agency.post(f"/v1/payments/{pid}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    payment = json_of(cancelled)
    assert payment["status"] == "cancelled" and payment["amount_captured"] == 0
    assert agency.ok(f"/v1/payments/{pid}") == payment
    [event] = agency.events_for(pid, "payment.cancelled")
    assert event["data"] == without_payer(payment)
    assert agency.payable("SAR") == payable_before

    expect_error(agency.post(f"/v1/payments/{pid}/capture"), 409, "conflict")
    expect_error(agency.post(f"/v1/payments/{pid}/cancel"), 409, "conflict")
    expect_error(agency.post(f"/v1/payments/{pid}/refunds"), 409, "conflict")


def test_cancel_before_paying_and_not_after(gateway: LiveGateway) -> None:
    agency = gateway.api("sa-moj")
    pid = agency.create_payment()["id"]
    cancelled = agency.post(f"/v1/payments/{pid}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert json_of(cancelled)["status"] == "cancelled"
    assert json_of(cancelled)["next_url"] is None
    refused = agency.post(f"/v1/payments/{pid}/confirm", card_body("4242424242424242"))
    expect_error(refused, 409, "conflict")
    assert agency.ok(f"/v1/payments/{pid}")["status"] == "cancelled"

    paid = agency.create_payment()["id"]
    assert agency.confirm(paid, "4242424242424242")["status"] == "succeeded"
    error = expect_error(agency.post(f"/v1/payments/{paid}/cancel"), 409, "conflict")
    assert error["code"] == "payment_invalid_state"
    after = agency.ok(f"/v1/payments/{paid}")
    assert after["status"] == "succeeded" and after["amount_captured"] == 12500
    expect_error(agency.post(f"/v1/payments/{paid}/capture"), 409, "conflict")


def test_concurrent_confirms_charge_once(gateway: LiveGateway) -> None:
    agency = gateway.api("sa-moj")
    payable_before = agency.payable("SAR")
    pid = agency.create_payment(amount=8800)["id"]
    path = f"/v1/payments/{pid}/confirm"
    responses = race(8, lambda: agency.send("POST", path, json=card_body("4242424242424242")))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 7, statuses
    for response in responses:
        if response.status_code == 409:
            expect_error(response, 409, "conflict", "payment_invalid_state")
    assert agency.ok(f"/v1/payments/{pid}")["amount_captured"] == 8800
    assert agency.payable("SAR") == payable_before + 8800
    assert len(agency.events_for(pid, "payment.succeeded")) == 1


def test_concurrent_refunds_never_exceed_the_capture(gateway: LiveGateway) -> None:
    agency = gateway.api("sa-moj")
    pid = agency.create_payment(amount=12500)["id"]
    assert agency.confirm(pid, "4242424242424242")["status"] == "succeeded"
    payable_before = agency.payable("SAR")
    path = f"/v1/payments/{pid}/refunds"
    responses = race(10, lambda: agency.send("POST", path, json={"amount": 2000}))
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 6, [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        if response.status_code != 201:
            expect_error(response, 422, "invalid_request", "amount_exceeds_refundable")
    assert agency.ok(f"/v1/payments/{pid}")["amount_refunded"] == 12000
    assert len(agency.list_all(f"/v1/payments/{pid}/refunds")) == 6
    assert agency.payable("SAR") == payable_before - 12000


def test_list_filters_and_pages_newest_first(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    code = unique("moh.list")
    created = []
    for _ in range(3):
        created.append(agency.create_payment(service_code=code))
        time.sleep(0.005)  # creation times a few milliseconds apart, for the time filters
    ids = [p["id"] for p in created]
    paid = agency.confirm(ids[1], "4242424242424242")
    assert paid["status"] == "succeeded"

    first = agency.ok("/v1/payments", params={"service_code": code, "limit": 2})
    assert [p["id"] for p in first["data"]] == [ids[2], ids[1]] and first["has_more"] is True
    second = agency.ok(
        "/v1/payments", params={"service_code": code, "limit": 2, "starting_after": ids[1]}
    )
    assert [p["id"] for p in second["data"]] == [ids[0]] and second["has_more"] is False

    by_status = agency.list_all("/v1/payments", {"service_code": code, "status": "succeeded"})
    assert [p["id"] for p in by_status] == [ids[1]]
    reference = agency.ok(f"/v1/payments/{ids[0]}")["reference"]
    by_reference = agency.ok("/v1/payments", params={"reference": reference})["data"]
    assert [p["id"] for p in by_reference] == [ids[0]]

    middle = created[1]["created_at"]
    assert created[0]["created_at"] < middle < created[2]["created_at"]
    since = agency.list_all("/v1/payments", {"service_code": code, "created_gte": middle})
    assert [p["id"] for p in since] == [ids[2], ids[1]]
    before = agency.list_all("/v1/payments", {"service_code": code, "created_lt": middle})
    assert [p["id"] for p in before] == [ids[0]]
