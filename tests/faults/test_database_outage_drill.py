"""The database outage drill: PostgreSQL stopped (a fast shutdown, then a crash) and started
again while backends create and confirm payments. While it is away every request answers 503
`unavailable` with `Retry-After`; once it is back, the gateway and its background worker carry
on by themselves, and nothing is half-written.

The drill runs a PostgreSQL server of its own, so stopping it touches no other test. Size by
`GATEWAY_DRILL_OUTAGES`, `GATEWAY_DRILL_CLIENTS` and `GATEWAY_DRILL_PAYMENTS` (per client);
the defaults fit CI. Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.webhook_support import WEBHOOK_ENV, wait_until
from tests.faults.books import assert_books_hold, settle_and_read
from tests.faults.load import RETRY_BUDGET_S, Tally, client, is_unavailable
from tests.faults.servers import PostgresServer, Server, drill_gateway
from tests.integration.webhook_support import Receiver

pytestmark = pytest.mark.e2e

OUTAGES = int(os.environ.get("GATEWAY_DRILL_OUTAGES", "2"))
CLIENTS = int(os.environ.get("GATEWAY_DRILL_CLIENTS", "4"))
PAYMENTS = int(os.environ.get("GATEWAY_DRILL_PAYMENTS", "6"))
OUTAGE_S = 3.0
AGENCY = "om-moh"
PROBE_TIMEOUT = (2.0, 10.0)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    if not PostgresServer.binaries() and not os.environ.get("CI"):
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


def _probe(
    base_url: str, key: str, payment_id: str | None, page_url: str, wrong: list[str]
) -> dict[str, bool]:
    """What an agency, a citizen and a load balancer get while the database is away: each
    call by whether it was API.md's 503 `unavailable` with `Retry-After` (the hosted page:
    a 503 page that asks to come back, never a traceback); what any other answer was goes
    to `wrong`."""
    auth = {"Authorization": f"Bearer {key}"}
    calls: dict[str, requests.Response] = {}
    calls["create"] = requests.post(
        base_url + "/v1/payments",
        json={
            "amount": 5000,
            "currency": "OMR",
            "reference": f"PROBE-{uuid.uuid4().hex[:8]}",
            "description": "Outage probe",
            "return_url": "https://moh.example.om/done",
        },
        headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
        timeout=PROBE_TIMEOUT,
    )
    calls["list"] = requests.get(base_url + "/v1/payments", headers=auth, timeout=PROBE_TIMEOUT)
    if payment_id is not None:
        calls["retrieve"] = requests.get(
            f"{base_url}/v1/payments/{payment_id}", headers=auth, timeout=PROBE_TIMEOUT
        )
    seen = {name: is_unavailable(response) for name, response in calls.items()}
    page = requests.get(page_url, timeout=PROBE_TIMEOUT)
    calls["hosted page"] = page
    seen["hosted page"] = (
        page.status_code == 503
        and page.headers.get("Retry-After") == "1"
        and page.headers["Content-Type"].startswith("text/html")
        and "Traceback" not in page.text
    )
    ready = requests.get(base_url + "/readyz", timeout=PROBE_TIMEOUT)
    calls["readyz"] = ready
    seen["readyz"] = ready.status_code == 503 and ready.json().get("status") == "unavailable"
    for name, ok in seen.items():
        if not ok:
            answer = calls[name]
            wrong.append(f"{name}: {answer.status_code} {dict(answer.headers)} {answer.text[:300]}")
    return seen


def _outages(
    postgres: PostgresServer,
    base_url: str,
    key: str,
    page_url: str,
    tally: Tally,
    over: threading.Event,
    probes: Counter[tuple[str, bool]],
    wrong: list[str],
    seed: int,
) -> None:
    rng = random.Random(seed)
    try:
        for n in range(OUTAGES):
            time.sleep(rng.uniform(0.5, 1.5))
            postgres.stop("fast" if n % 2 == 0 else "immediate")
            back_at = time.monotonic() + OUTAGE_S
            with tally.lock:
                some_payment = next(iter(tally.created.values()), None)
            probes.update(_probe(base_url, key, some_payment, page_url, wrong).items())
            time.sleep(max(0.0, back_at - time.monotonic()))
            postgres.start()
    finally:
        over.set()


def test_postgres_away_and_back_loses_nothing_and_recovers_by_itself(
    postgres: PostgresServer, tmp_path: Path, report_counts: Callable[[str], None]
) -> None:
    workdir = tmp_path / "gateway"
    workdir.mkdir()
    seed = random.randrange(1 << 30)
    gw, port = drill_gateway("postgresql", workdir, postgres.url, **WEBHOOK_ENV)
    key = gw.keys[AGENCY]
    # The probes have a key of their own: what they see while the database is away must not
    # depend on how much of the clients' rate limit is left.
    probe_key = gw.cli("keys", "create", "--agency", AGENCY).stdout.strip().splitlines()[-1]
    server = Server(gw, port, worker=True)
    server.start()
    tally = Tally()
    probes: Counter[tuple[str, bool]] = Counter()
    wrong: list[str] = []
    with Receiver() as receiver:
        endpoint = requests.post(
            gw.base_url + "/v1/webhook-endpoints",
            json={"url": receiver.url(), "events": ["*"]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=PROBE_TIMEOUT,
        )
        assert endpoint.status_code == 201, endpoint.text
        waiting = requests.post(  # a citizen has the hosted page open when the database goes
            gw.base_url + "/v1/payments",
            json={
                "amount": 7000,
                "currency": "OMR",
                "reference": "PAGE-OPEN",
                "description": "Outage drill",
                "return_url": "https://moh.example.om/done",
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=PROBE_TIMEOUT,
        )
        assert waiting.status_code == 201, waiting.text
        over = threading.Event()
        run = uuid.uuid4().hex[:8]
        outages = threading.Thread(
            target=_outages,
            args=(
                postgres,
                gw.base_url,
                probe_key,
                waiting.json()["next_url"],
                tally,
                over,
                probes,
                wrong,
                seed,
            ),
        )
        clients = [
            threading.Thread(
                target=client,
                args=(gw.base_url, key, f"{run}-{number}", tally),
                kwargs={"at_least": PAYMENTS, "done": over.is_set},
            )
            for number in range(CLIENTS)
        ]
        outages.start()
        for thread in clients:
            thread.start()
        outages.join(timeout=OUTAGES * 60)
        for thread in clients:
            thread.join(timeout=RETRY_BUDGET_S * PAYMENTS * 20 + 60)

        # The server's own worker, never restarted, tells the ministry of every payment whose
        # outcome its backend was told, those finished during an outage included.
        told_final = {pid for pid, st in tally.confirmed.items() if st != "processing"}

        def delivered() -> set[str]:
            return {json.loads(post.body)["data"]["id"] for post in receiver.posts()}

        try:
            wait_until(lambda: told_final <= delivered(), timeout_s=90)
        finally:
            server.stop()
        books = settle_and_read(gw)

    report_counts(
        f"\ndatabase outage drill (seed {seed}): {postgres.stops} stops of PostgreSQL "
        f"({OUTAGE_S} s each), {CLIENTS} clients; created {len(tally.created)}, confirmed "
        f"{len(tally.confirmed)}, gave up {len(tally.gave_up)}; answers {dict(tally.answers)}; "
        f"probes while away {dict(probes)}; webhooks delivered for {len(delivered())} "
        f"payments; {books.summary()}"
    )
    assert postgres.stops == OUTAGES
    assert tally.bad_refusals == [], tally.bad_refusals
    assert probes and all(ok for (_, ok) in probes), (probes, wrong)
    assert tally.answers["HTTP 503 unavailable"] + probes[("create", True)] > 0
    assert_books_hold(books, tally)
