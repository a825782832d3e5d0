"""Webhooks end to end: `gateway serve` and `gateway worker` processes, a ministry's receiver on
loopback, signatures checked with the independent `standardwebhooks` package."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from tests.e2e.webhook_support import (
    WebhookGateway,
    Worker,
    wait_until,
    webhook_gateway_running,
    workers_of,
)
from tests.integration.webhook_support import Answer, Receiver

pytestmark = pytest.mark.e2e

BACKENDS = ("sqlite", "postgresql")
DECLINED = "4000000000000002"
CURRENCIES = {"om-moh": "OMR", "sa-moj": "SAR", "ae-icp": "AED", "kw-moi": "KWD"}
CURRENCIES |= {"qa-moph": "QAR", "bh-lmra": "BHD"}


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookGateway]:
    backend: str = request.param
    workdir: Path = tmp_path_factory.mktemp(f"webhooks-{backend}")
    with webhook_gateway_running(backend, workdir) as running:
        yield running


@pytest.fixture
def start_worker(server: WebhookGateway) -> Iterator[Callable[..., Worker]]:
    with workers_of(server) as start:
        yield start


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def _endpoint(server: WebhookGateway, agency: str, url: str) -> dict[str, Any]:
    return server.caller(agency).ok(
        "POST", "/v1/webhook-endpoints", {"url": url, "events": ["*"]}, status=201
    )


def _types(receiver: Receiver) -> list[str]:
    return sorted(json.loads(p.body)["type"] for p in receiver.posts())


def test_payment_events_arrive_signed_and_rotation_signs_with_both_secrets(
    server: WebhookGateway, start_worker: Callable[..., Worker], receiver: Receiver
) -> None:
    moh = server.caller("om-moh")
    endpoint = _endpoint(server, "om-moh", receiver.url())
    start_worker()
    paid = moh.pay("OMR")
    moh.ok("POST", f"/v1/payments/{paid['id']}/refunds", {"amount": 500}, status=201)
    assert moh.pay("OMR", DECLINED)["status"] == "failed"
    manual = moh.pay("OMR", capture_method="manual")
    moh.ok("POST", f"/v1/payments/{manual['id']}/cancel")
    expected = sorted(
        [
            "payment.succeeded",
            "refund.succeeded",
            "payment.failed",
            "payment.requires_capture",
            "payment.cancelled",
        ]
    )
    wait_until(lambda: _types(receiver) == expected)
    wrong = standardwebhooks.Webhook("whsec_" + "d3Jvbmc" * 6 + "A=")
    for post in receiver.posts():
        payload = standardwebhooks.Webhook(endpoint["secret"]).verify(post.body, post.headers)
        assert payload == moh.ok("GET", f"/v1/events/{payload['id']}")
        assert post.headers["webhook-id"] == payload["id"]
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            wrong.verify(post.body, post.headers)
    log = moh.deliveries(endpoint["id"])
    assert len(log) == 5 and all(row["succeeded"] for row in log)

    rotated = moh.ok("POST", f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
    later = moh.pay("OMR")
    wait_until(lambda: len(receiver.posts()) == 6)
    last = receiver.posts()[-1]
    assert json.loads(last.body)["data"]["id"] == later["id"]
    for secret in (endpoint["secret"], rotated["secret"]):
        standardwebhooks.Webhook(secret).verify(last.body, last.headers)
    moh.ok("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}")


def test_a_receiver_down_then_up_gets_the_event(
    server: WebhookGateway, start_worker: Callable[..., Worker], receiver: Receiver
) -> None:
    moj = server.caller("sa-moj")
    endpoint = _endpoint(server, "sa-moj", receiver.url())
    receiver.stop()
    start_worker()
    paid = moj.pay("SAR")
    wait_until(
        lambda: any(
            (row["error"] or {}).get("code") == "connection_refused"
            for row in moj.deliveries(endpoint["id"])
        )
    )
    receiver.start()
    wait_until(lambda: len(receiver.posts()) == 1)
    assert json.loads(receiver.posts()[0].body)["data"]["id"] == paid["id"]
    wait_until(lambda: moj.deliveries(endpoint["id"])[0]["succeeded"])
    moj.ok("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}")


def test_two_workers_at_once_deliver_each_event_once(
    server: WebhookGateway, start_worker: Callable[..., Worker], receiver: Receiver
) -> None:
    icp = server.caller("ae-icp")
    endpoint = _endpoint(server, "ae-icp", receiver.url())
    receiver.default = Answer(delay_s=0.01)
    start_worker()
    start_worker()
    count = 20
    with ThreadPoolExecutor(4) as pool:
        paid = set(pool.map(lambda _: icp.pay("AED")["id"], range(count)))
    wait_until(lambda: len(receiver.posts()) >= count)
    wait_until(lambda: len(icp.deliveries(endpoint["id"])) >= count)
    ids = collections.Counter(p.headers["webhook-id"] for p in receiver.posts())
    assert set(ids.values()) == {1}, ids
    assert {json.loads(p.body)["data"]["id"] for p in receiver.posts()} == paid
    log = icp.deliveries(endpoint["id"])
    assert len(log) == count and all(row["attempt"] == 1 for row in log)
    icp.ok("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}")


def test_a_worker_killed_mid_batch_loses_nothing(
    server: WebhookGateway, start_worker: Callable[..., Worker], receiver: Receiver
) -> None:
    moi = server.caller("kw-moi")
    endpoint = _endpoint(server, "kw-moi", receiver.url())
    count = 10
    paid = {moi.pay("KWD")["id"] for _ in range(count)}
    receiver.hold()  # requests arrive and wait: the batch is in flight
    first = start_worker()
    wait_until(lambda: len(receiver.posts()) >= 1)
    first.kill()
    receiver.release()
    assert moi.deliveries(endpoint["id"]) == []  # the dead worker recorded nothing

    start_worker()  # takes the batch again once the dead worker's lease ends

    def delivered() -> bool:
        log = moi.deliveries(endpoint["id"])
        return len({row["event"] for row in log if row["succeeded"]}) == count

    wait_until(delivered)
    arrived = {json.loads(p.body)["data"]["id"] for p in receiver.posts()}
    assert arrived == paid
    moi.ok("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}")


def test_private_addresses_are_refused_at_registration_and_at_connect_time(
    server: WebhookGateway, start_worker: Callable[..., Worker], receiver: Receiver
) -> None:
    moph = server.caller("qa-moph")
    for url in ("http://10.0.0.1/hooks", "http://169.254.169.254/", "http://[::ffff:192.168.0.1]/"):
        response = moph.call("POST", "/v1/webhook-endpoints", {"url": url, "events": ["*"]})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["error"]["code"] == "url_not_allowed"
    endpoint = _endpoint(server, "qa-moph", receiver.url())  # 127.0.0.0/8 is allowed here
    start_worker(GATEWAY_WEBHOOK_ALLOW_NETWORKS="")  # a worker that allows no private network
    moph.pay("QAR")
    wait_until(lambda: len(moph.deliveries(endpoint["id"])) >= 1)
    row = moph.deliveries(endpoint["id"])[-1]
    assert row["error"]["code"] == "blocked_address", row
    assert receiver.received == []
    moph.ok("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}")
