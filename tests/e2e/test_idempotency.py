"""Idempotency-Key over HTTP: replays, reuse with another body, and a burst of identical
requests racing on two gunicorn workers."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    LiveGateway,
    card_body,
    expect_error,
    json_of,
    payment_body,
    race,
    unique,
)

pytestmark = pytest.mark.e2e

RACERS = 20


def test_same_key_same_body_replays(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    body = payment_body("OMR")
    key = {"Idempotency-Key": unique("idem")}

    first = agency.post("/v1/payments", body, headers=key)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = agency.post("/v1/payments", body, headers=key)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.text == first.text
    assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]

    listed = agency.ok("/v1/payments", params={"reference": body["reference"]})
    assert [p["id"] for p in listed["data"]] == [json_of(first)["id"]]


def test_same_key_other_body_is_refused(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    body = payment_body("OMR")
    key = {"Idempotency-Key": unique("idem")}
    assert agency.post("/v1/payments", body, headers=key).status_code == 201

    other = agency.post("/v1/payments", {**body, "amount": body["amount"] + 1}, headers=key)
    error = expect_error(other, 422, "invalid_request", "idempotency_key_reused")
    assert error["param"] == "Idempotency-Key"
    assert "Idempotent-Replayed" not in other.headers
    listed = agency.ok("/v1/payments", params={"reference": body["reference"]})
    assert len(listed["data"]) == 1
    assert listed["data"][0]["amount"] == body["amount"]
    # Still the first request's key: the original body replays.
    replay = agency.post("/v1/payments", body, headers=key)
    assert replay.headers.get("Idempotent-Replayed") == "true"


def test_keys_are_scoped_to_the_api_key(gateway: LiveGateway) -> None:
    """The same key and body under another agency's API key is a request of its own."""
    a, b = gateway.api("om-moh"), gateway.api("ae-icp")
    key = {"Idempotency-Key": unique("shared")}
    reference = unique("REF")
    first = a.post("/v1/payments", payment_body("OMR", reference=reference), headers=key)
    assert first.status_code == 201, first.text
    second = b.post("/v1/payments", payment_body("AED", reference=reference), headers=key)
    assert second.status_code == 201, second.text
    assert "Idempotent-Replayed" not in second.headers
    assert json_of(second)["agency"] == "ae-icp"
    assert json_of(second)["id"] != json_of(first)["id"]


def test_replayed_confirm_charges_once(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    payable_before = agency.payable("OMR")
    pid = agency.create_payment(amount=3300)["id"]
    key = {"Idempotency-Key": unique("confirm")}
    first = agency.post(f"/v1/payments/{pid}/confirm", card_body("4242424242424242"), headers=key)
    assert first.status_code == 200 and json_of(first)["status"] == "succeeded", first.text
    again = agency.post(f"/v1/payments/{pid}/confirm", card_body("4242424242424242"), headers=key)
    assert again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.text == first.text
    assert agency.payable("OMR") == payable_before + 3300
    assert len(agency.events_for(pid, "payment.succeeded")) == 1

    refund_key = {"Idempotency-Key": unique("refund")}
    refunds = [
        agency.post(f"/v1/payments/{pid}/refunds", {"amount": 300}, headers=refund_key)
        for _ in range(3)
    ]
    assert [r.status_code for r in refunds] == [201, 201, 201]
    assert {r.text for r in refunds} == {refunds[0].text}
    assert agency.ok(f"/v1/payments/{pid}")["amount_refunded"] == 300
    assert len(agency.list_all(f"/v1/payments/{pid}/refunds")) == 1
    assert agency.payable("OMR") == payable_before + 3000


def test_invalid_idempotency_key_is_refused(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    body = payment_body("OMR")
    too_long = agency.post("/v1/payments", body, headers={"Idempotency-Key": "k" * 256})
    expect_error(too_long, 422, "invalid_request")
    assert agency.ok("/v1/payments", params={"reference": body["reference"]})["data"] == []
    longest = agency.post("/v1/payments", body, headers={"Idempotency-Key": "k" * 255})
    assert longest.status_code == 201, longest.text


def test_concurrent_identical_requests_create_one_payment(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    body = payment_body("OMR", amount=990)
    headers = {"Idempotency-Key": unique("race")}
    responses = race(
        RACERS, lambda: agency.send("POST", "/v1/payments", json=body, headers=headers)
    )

    listed = agency.ok("/v1/payments", params={"reference": body["reference"]})
    assert len(listed["data"]) == 1, listed
    payment = listed["data"][0]

    originals = [
        r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(originals) == 1, [(r.status_code, r.headers, r.text[:200]) for r in responses]
    original = originals[0]
    assert json_of(original)["id"] == payment["id"]
    for response in responses:
        if response is original:
            continue
        if response.status_code == 409:
            expect_error(response, 409, "conflict", "idempotency_key_in_use")
            assert "Idempotent-Replayed" not in response.headers
        else:
            assert response.status_code == 201, (response.status_code, response.text[:300])
            assert response.headers.get("Idempotent-Replayed") == "true"
            assert response.text == original.text

    # Once the first is done, a late repeat is always a replay.
    late = agency.post("/v1/payments", body, headers=headers)
    assert late.status_code == 201 and late.headers.get("Idempotent-Replayed") == "true"
    assert late.text == original.text
