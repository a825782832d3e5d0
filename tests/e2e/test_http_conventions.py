"""The conventions of API.md section 2 as a client meets them: request ids, languages, the
one error shape for every refusal."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.e2e.conftest import LiveGateway, card_body, expect_error, json_of, payment_body

pytestmark = pytest.mark.e2e

ARABIC = re.compile(r"[\u0600-\u06FF]")
LATIN = re.compile(r"[A-Za-z]")
GENERATED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,100}$")


def test_request_id_is_echoed_when_given(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    ok = agency.get("/v1/payments", headers={"X-Request-Id": "ministry-req-0001"})
    assert ok.status_code == 200
    assert ok.headers["X-Request-Id"] == "ministry-req-0001"
    refused = agency.get("/v1/payments/pay_nope", headers={"X-Request-Id": "ministry-req-0002"})
    expect_error(refused, 404, "not_found")  # checks a request_id in the body against it
    assert refused.headers["X-Request-Id"] == "ministry-req-0002"
    health = gateway.api(None).get("/healthz", headers={"X-Request-Id": "probe-7"})
    assert health.headers["X-Request-Id"] == "probe-7"


def test_request_id_is_generated_when_not_given(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    seen = set()
    for response in (
        agency.get("/v1/payments"),
        agency.get("/v1/payments"),
        gateway.api(None).get("/v1/payments"),
        agency.post("/v1/payments", {"amount": 1}),
    ):
        request_id = response.headers["X-Request-Id"]
        assert GENERATED_REQUEST_ID.match(request_id), request_id
        seen.add(request_id)
    assert len(seen) == 4, "each request gets an id of its own"


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status"),
    [
        (None, "GET", "/v1/payments", None, 401),
        ("om-moh", "GET", "/v1/payments/pay_missing", None, 404),
        ("om-moh", "POST", "/v1/payments", {"amount": 0}, 422),
        ("finance", "POST", "/v1/payments", "valid", 403),
    ],
)
def test_arabic_messages(
    gateway: LiveGateway, who: str | None, method: str, path: str, body: Any, status: int
) -> None:
    api = gateway.api(who)
    body = payment_body("OMR") if body == "valid" else body
    english = api.request(method, path, json=body, headers={"Accept-Language": "en"})
    arabic = api.request(method, path, json=body, headers={"Accept-Language": "ar"})
    assert english.status_code == arabic.status_code == status
    en, ar = json_of(english)["error"], json_of(arabic)["error"]
    assert (en["type"], en["code"]) == (ar["type"], ar["code"])
    assert not ARABIC.search(en["message"]), en
    assert ARABIC.search(ar["message"]), ar
    assert not LATIN.search(ar["message"].replace("JSON", "")), ar
    default = api.request(method, path, json=body)
    assert json_of(default)["error"]["message"] == en["message"], "English by default"


@pytest.mark.parametrize(
    ("accept_language", "arabic"),
    [
        ("ar-OM", True),
        ("ar-SA,ar;q=0.9,en;q=0.7", True),
        ("ar-OM,en;q=0.5", True),  # Arabic (of Oman) first, English as a fallback
        ("en-US,ar;q=0.9", False),  # English (of the US) first, Arabic as a fallback
        ("ar;q=0.1,en", False),
        ("fr", False),
    ],
)
def test_language_follows_the_callers_preference(
    gateway: LiveGateway, accept_language: str, arabic: bool
) -> None:
    """A region subtag names the same language: `ar-OM` asks for Arabic (RFC 4647 lookup)."""
    response = gateway.api(None).get("/v1/payments", headers={"Accept-Language": accept_language})
    message = expect_error(response, 401, "authentication")["message"]
    assert bool(ARABIC.search(message)) is arabic, (accept_language, message)


def test_refused_bodies(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    valid = payment_body("OMR")
    cases: list[tuple[dict[str, Any], str]] = [
        ({**valid, "amount": 12.5}, "amount"),
        ({**valid, "amount": "12500"}, "amount"),
        ({**valid, "amount": 0}, "amount"),
        ({**valid, "amount": -5}, "amount"),
        ({**valid, "amount": 10**12 + 1}, "amount"),
        ({**valid, "amount": True}, "amount"),
        ({k: v for k, v in valid.items() if k != "amount"}, "amount"),
        ({**valid, "currency": "EUR"}, "currency"),
        ({**valid, "currency": "SAR"}, "currency"),  # a currency om-moh does not accept
        ({**valid, "reference": ""}, "reference"),
        ({**valid, "description": "x" * 256}, "description"),
        ({**valid, "return_url": "ftp://agency.example/done"}, "return_url"),
        ({**valid, "language": "fr"}, "language"),
        ({**valid, "capture_method": "later"}, "capture_method"),
        ({**valid, "service_code": "has space"}, "service_code"),
        ({**valid, "metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({**valid, "surprise": 1}, "surprise"),
    ]
    for body, field in cases:
        response = agency.post("/v1/payments", body)
        error = expect_error(response, 422, "invalid_request")
        assert error.get("param") == field, (body, error)
        assert field in error.get("details", {}), (body, error)
    listed = agency.list_all("/v1/payments", {"reference": valid["reference"]})
    assert listed == [], "a refused request writes nothing"

    pid = agency.create_payment()["id"]
    for card, field in [
        (card_body("4242424242424241"), "payment_method.card.number"),
        (card_body("4242424242424242", exp_month=13), "payment_method.card.exp_month"),
        (card_body("4242424242424242", exp_year=2020), "payment_method.card.exp_year"),
        (card_body("4242424242424242", cvc="12"), "payment_method.card.cvc"),
    ]:
        response = agency.post(f"/v1/payments/{pid}/confirm", card)
        error = expect_error(response, 422, "invalid_request")
        assert error.get("param") == field, (card, error)
    assert agency.ok(f"/v1/payments/{pid}")["status"] == "created"


def test_refused_requests(gateway: LiveGateway) -> None:
    agency = gateway.api("om-moh")
    json_type = {"Content-Type": "application/json"}
    not_json = agency.request("POST", "/v1/payments", data="{not json", headers=json_type)
    expect_error(not_json, 400, "invalid_request")
    array = agency.request("POST", "/v1/payments", data="[1, 2]", headers=json_type)
    expect_error(array, 400, "invalid_request")
    nan = agency.request("POST", "/v1/payments", data='{"amount": NaN}', headers=json_type)
    expect_error(nan, 400, "invalid_request")
    huge = {**payment_body("OMR"), "description": "x" * (65 * 1024)}
    too_large = agency.request("POST", "/v1/payments", data=json.dumps(huge), headers=json_type)
    expect_error(too_large, 413, "invalid_request")
    expect_error(agency.get("/v1/nothing-here"), 404, "not_found")
    for limit in (0, 101, "many"):
        listing = agency.get("/v1/payments", params={"limit": limit})
        assert expect_error(listing, 422, "invalid_request").get("param") == "limit"
    expect_error(agency.get("/v1/events", params={"type": "payment.bogus"}), 422, "invalid_request")
    balance = gateway.api("finance").get("/v1/balance")
    expect_error(balance, 403, "permission")
    trial = agency.get("/v1/ledger/trial-balance")
    expect_error(trial, 403, "permission")
