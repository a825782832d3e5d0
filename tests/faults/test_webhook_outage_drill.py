"""The webhook outage drill: a ministry's receiver is down for a whole run, long enough that
every delivery exhausts its retry schedule and is marked failed; then it is up again, the
ministry asks for recovery, and every event arrives, each once, signed.

Size by `GATEWAY_DRILL_WEBHOOK_PAYMENTS`; the default fits CI.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import standardwebhooks

from tests.e2e.webhook_support import (
    WebhookGateway,
    wait_until,
    webhook_gateway_running,
    workers_of,
)
from tests.integration.webhook_support import Receiver

pytestmark = pytest.mark.e2e

PAYMENTS = int(os.environ.get("GATEWAY_DRILL_WEBHOOK_PAYMENTS", "12"))
DECLINED = "4000000000000002"
# The schedule of tests/e2e/webhook_support.py: four retries 0.3 s apart, a 1 s timeout.
EXHAUSTED_AFTER = 5


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookGateway]:
    backend: str = request.param
    workdir: Path = tmp_path_factory.mktemp(f"webhook-outage-{backend}")
    with webhook_gateway_running(backend, workdir) as running:
        yield running


def test_a_receiver_down_for_the_whole_run_gets_every_event_once_it_is_back(
    server: WebhookGateway, report_counts: Callable[[str], None]
) -> None:
    moh = server.caller("om-moh")
    with Receiver() as receiver, workers_of(server) as start_worker:
        endpoint = moh.ok(
            "POST",
            "/v1/webhook-endpoints",
            {"url": receiver.url(), "events": ["*"]},
            status=201,
        )
        since = endpoint["created_at"]
        receiver.stop()
        start_worker()
        paid = [
            moh.pay("OMR", DECLINED if n % 4 == 3 else "4242424242424242") for n in range(PAYMENTS)
        ]

        def exhausted() -> bool:
            log = moh.deliveries(endpoint["id"])
            attempts = collections.Counter(row["event"] for row in log)
            return len(attempts) == PAYMENTS and min(attempts.values()) >= EXHAUSTED_AFTER

        wait_until(exhausted, timeout_s=60)
        log = moh.deliveries(endpoint["id"])
        assert not any(row["succeeded"] for row in log)
        assert {(row["error"] or {}).get("code") for row in log} == {"connection_refused"}

        receiver.start()
        recovered = moh.ok(
            "POST", f"/v1/webhook-endpoints/{endpoint['id']}/recover", {"since": since}
        )

        def delivered() -> bool:
            ids = {p.headers["webhook-id"] for p in receiver.posts()}
            return len(ids) >= PAYMENTS

        wait_until(delivered, timeout_s=60)
        posts = receiver.posts()
        arrivals = collections.Counter(p.headers["webhook-id"] for p in posts)
        report_counts(
            f"\nwebhook outage drill ({server.backend}): {PAYMENTS} events, "
            f"{len(log)} failed attempts while down, {recovered['requeued']} requeued by recovery, "
            f"{len(posts)} deliveries after, {len(arrivals)} distinct events"
        )
        assert set(arrivals.values()) == {1}, arrivals
        outcomes = {json.loads(p.body)["data"]["id"]: json.loads(p.body)["type"] for p in posts}
        assert outcomes == {payment["id"]: f"payment.{payment['status']}" for payment in paid}
        for post in posts:
            standardwebhooks.Webhook(endpoint["secret"]).verify(post.body, post.headers)
        moh.ok("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}")
