"""Rate limits through the Flask test client, on both databases: per API key and per agency,
per address without a valid key and on the hosted page, 429 `rate_limited` with Retry-After,
nothing written by a refused request, and counts shared through Redis between two workers."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from config import Settings
from payments.api import limits
from payments.api.app import create_app
from payments.gateway import Gateway
from payments.models import IdempotencyRecord
from tests.conftest import PAYMENT, auth, count_rows, new_agency

# A database of the test Redis that nothing else uses; only it is ever flushed.
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
PUBLIC = "http://gateway.test"
MINUTE_S = 60


def limited_app(settings: Settings, gw: Gateway, **limits: Any) -> Flask:
    """Another app (another gunicorn worker) on the same database, with these limits."""
    return create_app(dataclasses.replace(settings, **limits), gw=gw)


def assert_limited(response: TestResponse, *, max_retry_after_s: int = MINUTE_S) -> None:
    """A 429 in API.md's error shape, with a Retry-After of whole seconds."""
    assert response.status_code == 429, (response.status_code, response.get_data(as_text=True))
    body = response.json
    assert body is not None
    error = body["error"]
    assert error["type"] == "rate_limited"
    assert error["code"] == "rate_limited"
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert set(error) <= {"type", "code", "message", "param", "details", "request_id"}
    retry_after = response.headers["Retry-After"]
    assert re.fullmatch(r"[0-9]+", retry_after), retry_after
    assert 1 <= int(retry_after) <= max_retry_after_s


def list_payments(client: FlaskClient, key: str | None, **environ: str) -> TestResponse:
    headers = auth(key) if key else {}
    return client.get("/v1/payments", headers=headers, environ_base=environ)


def test_the_request_after_the_limit_is_refused(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    client = limited_app(settings, gw, rate_limit="3/minute").test_client()
    for _ in range(3):
        assert list_payments(client, agency_key).status_code == 200
    refused = client.get(
        "/v1/payments", headers=auth(agency_key, **{"X-Request-Id": "agency-req-42"})
    )
    assert_limited(refused)
    assert refused.headers["X-Request-Id"] == "agency-req-42"
    assert refused.headers["Cache-Control"] == "no-store"
    arabic = client.get("/v1/payments", headers=auth(agency_key, **{"Accept-Language": "ar"}))
    assert_limited(arabic)
    assert arabic.json is not None
    assert arabic.json["error"]["message"] == "طلبات كثيرة جدًا؛ أعد المحاولة لاحقًا."


def test_every_limit_of_a_string_counts_and_the_wait_is_the_longest(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    client = limited_app(settings, gw, rate_limit="5/minute;2/hour").test_client()
    for _ in range(2):
        assert list_payments(client, agency_key).status_code == 200
    refused = list_payments(client, agency_key)  # within the minute's five, past the hour's two
    assert_limited(refused, max_retry_after_s=3600)
    assert int(refused.headers["Retry-After"]) > MINUTE_S


def test_one_keys_burst_does_not_limit_another(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    other_agency = new_agency(gw, "ae-icp", "AED", "AE")
    client = limited_app(settings, gw, rate_limit="2/minute").test_client()
    for _ in range(2):
        assert list_payments(client, agency_key).status_code == 200
    assert_limited(list_payments(client, agency_key))
    # The same address, another agency's key: its own count, untouched by the first's burst.
    for _ in range(2):
        assert list_payments(client, other_agency).status_code == 200
    assert_limited(list_payments(client, other_agency))


def test_an_agency_override_replaces_the_default(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    big = new_agency(gw, "om-mol", "OMR", "OM")
    client = limited_app(
        settings, gw, rate_limit="2/minute", rate_limits_by_agency=(("om-mol", "5/minute"),)
    ).test_client()
    for _ in range(5):
        assert list_payments(client, big).status_code == 200
    assert_limited(list_payments(client, big))
    for _ in range(2):
        assert list_payments(client, agency_key).status_code == 200
    assert_limited(list_payments(client, agency_key))


def test_calls_without_a_valid_key_are_limited_per_address(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    client = limited_app(settings, gw, rate_limit_unauthenticated="3/minute").test_client()
    assert list_payments(client, None).status_code == 401
    assert list_payments(client, "gw_test_" + "x" * 40).status_code == 401
    assert client.get("/v1/no-such-route").status_code == 401
    assert_limited(list_payments(client, None))
    assert_limited(list_payments(client, "gw_test_" + "y" * 40))
    # Another address still gets its answer; a valid key from the same address has its own.
    assert list_payments(client, None, REMOTE_ADDR="192.0.2.7").status_code == 401
    assert list_payments(client, agency_key).status_code == 200


def test_the_refusal_says_whether_the_key_or_the_address_was_limited(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    client = limited_app(
        settings, gw, rate_limit="1/minute", rate_limit_unauthenticated="1/minute"
    ).test_client()
    assert list_payments(client, agency_key).status_code == 200
    by_key = list_payments(client, agency_key)
    assert_limited(by_key)
    assert by_key.json is not None and "this API key" in by_key.json["error"]["message"]
    assert list_payments(client, None).status_code == 401
    by_address = list_payments(client, None)
    assert_limited(by_address)
    assert by_address.json is not None and "this address" in by_address.json["error"]["message"]


def test_the_hosted_page_is_limited_per_address_posts_more_tightly(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    client = limited_app(
        settings, gw, rate_limit_checkout="3/minute", rate_limit_checkout_post="1/minute"
    ).test_client()
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key))
    assert created.status_code == 201
    assert created.json is not None
    path = created.json["next_url"].removeprefix(PUBLIC)
    payment_id = created.json["id"]

    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found
    form = {"csrf_token": found.group(1), "lang": "ar"}
    card = {"exp_month": "12", "exp_year": "2034", "cvc": "123", "name": "Test Payer"}
    declined = client.post(f"{path}/card", data={**form, **card, "number": "4000000000000002"})
    assert declined.status_code in (200, 303)

    before = count_rows(gw)
    refused = client.post(f"{path}/card", data={**form, **card, "number": "4242424242424242"})
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"  # the payer sees a page, not JSON
    assert refused.headers["X-Request-Id"].startswith("req_")
    assert "Please try again in a few minutes" in refused.get_data(as_text=True)
    assert 1 <= int(refused.headers["Retry-After"]) <= MINUTE_S
    assert count_rows(gw) == before
    payment = client.get(f"/v1/payments/{payment_id}", headers=auth(agency_key))
    assert payment.json is not None and payment.json["status"] == "created"
    assert client.post(f"{path}/cancel", data=form).status_code == 429

    # GETs count apart from POSTs, and more loosely: two more pages, then a refusal.
    assert client.get(path).status_code == 200
    assert client.get(path).status_code == 200
    limited_page = client.get(path)
    assert limited_page.status_code == 429
    assert 1 <= int(limited_page.headers["Retry-After"]) <= MINUTE_S
    assert client.get(path, environ_base={"REMOTE_ADDR": "192.0.2.8"}).status_code == 200


def test_a_limited_post_claims_no_key_and_writes_nothing(
    settings: Settings, gw: Gateway, agency_key: str
) -> None:
    client = limited_app(settings, gw, rate_limit="1/minute").test_client()
    first = client.post(
        "/v1/payments", json=PAYMENT, headers=auth(agency_key, **{"Idempotency-Key": "k-1"})
    )
    assert first.status_code == 201
    before = count_rows(gw)
    refused = client.post(
        "/v1/payments",
        json={**PAYMENT, "reference": "MOH-2"},
        headers=auth(agency_key, **{"Idempotency-Key": "k-2"}),
    )
    assert_limited(refused)
    # Refused before the key is looked at: even a retry of the finished request is not replayed.
    retry = client.post(
        "/v1/payments", json=PAYMENT, headers=auth(agency_key, **{"Idempotency-Key": "k-1"})
    )
    assert_limited(retry)
    assert "Idempotent-Replayed" not in retry.headers
    assert count_rows(gw) == before
    with gw.db.read() as session:
        keys = session.execute(select(IdempotencyRecord.key)).scalars().all()
    assert [*keys] == ["k-1"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_operations_endpoints_are_never_limited(settings: Settings, gw: Gateway, path: str) -> None:
    client = limited_app(
        settings,
        gw,
        rate_limit="1/minute",
        rate_limit_unauthenticated="1/minute",
        rate_limit_checkout="1/minute",
        rate_limit_checkout_post="1/minute",
    ).test_client()
    for _ in range(5):
        assert client.get(path).status_code != 429


# --------------------------------------------------------------------------- Redis


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis does not answer at {REDIS_URL}")
        pytest.skip("Redis does not answer; set GATEWAY_TEST_REDIS_URL")
    return client


@pytest.fixture
def shared_store() -> Iterator[str]:
    client = redis_or_skip()
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def test_two_workers_share_the_counts_through_redis(
    settings: Settings, gw: Gateway, agency_key: str, shared_store: str
) -> None:
    workers = [
        limited_app(settings, gw, rate_limit="3/minute", redis_url=shared_store).test_client()
        for _ in range(2)
    ]
    assert list_payments(workers[0], agency_key).status_code == 200
    assert list_payments(workers[1], agency_key).status_code == 200
    assert list_payments(workers[0], agency_key).status_code == 200
    assert_limited(list_payments(workers[1], agency_key))
    assert_limited(list_payments(workers[0], agency_key))
    # Each in its own memory, the second worker would have let all of these through.
    alone = limited_app(settings, gw, rate_limit="3/minute").test_client()
    assert list_payments(alone, agency_key).status_code == 200


def test_an_unreachable_redis_falls_back_to_counting_in_the_process(
    settings: Settings, gw: Gateway, agency_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = limited_app(
        settings, gw, rate_limit="2/minute", redis_url="redis://127.0.0.1:1/0"
    ).test_client()
    for _ in range(2):
        assert list_payments(client, agency_key).status_code == 200
    assert_limited(list_payments(client, agency_key))
    assert any("falling back to in-memory" in r.getMessage() for r in caplog.records)


def test_counting_returns_to_redis_when_it_answers_again(
    shared_store: str, caplog: pytest.LogCaptureFixture
) -> None:
    counters = limits.Counters(shared_store)
    three = limits._parsed("3/minute")
    counters._shared_away_until = time.monotonic() - 1  # it was away; the retry time is past
    assert counters.hit(three, "api-key:k1") is None
    assert counters._shared_away_until is None
    assert any("answers again" in r.getMessage() for r in caplog.records)
    other = limits.Counters(shared_store)  # another worker sees the same count
    assert [other.hit(three, "api-key:k1") for _ in range(3)][-1] is not None
