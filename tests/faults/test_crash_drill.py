"""The crash drill: `kill -9` of the gunicorn master and its workers at random moments while
backends create and confirm payments, each retrying with its Idempotency-Key as API.md tells
it to; then a restart, the worker's pass, and the books.

Size by `GATEWAY_DRILL_CLIENTS`, `GATEWAY_DRILL_PAYMENTS` (per client) and
`GATEWAY_DRILL_KILLS`; the defaults fit CI. Every loop is bounded in count and time.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from tests.e2e.conftest import BACKENDS, database_for
from tests.faults.books import assert_books_hold, settle_and_read
from tests.faults.load import RETRY_BUDGET_S, Tally, client
from tests.faults.servers import Server, drill_gateway

pytestmark = pytest.mark.e2e

CLIENTS = int(os.environ.get("GATEWAY_DRILL_CLIENTS", "4"))
PAYMENTS = int(os.environ.get("GATEWAY_DRILL_PAYMENTS", "6"))
KILLS = int(os.environ.get("GATEWAY_DRILL_KILLS", "3"))
AGENCY = "om-moh"


def _killer(server: Server, killed: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.0))
            server.kill()
            server.start()
    finally:
        killed.set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_loses_nothing_and_charges_nothing_twice(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    report_counts: Callable[[str], None],
) -> None:
    workdir = tmp_path_factory.mktemp(f"crash-drill-{backend}")
    seed = random.randrange(1 << 30)
    with database_for(backend, workdir) as url:
        gw, port = drill_gateway(backend, workdir, url)
        server = Server(gw, port)
        server.start()
        tally = Tally()
        run = uuid.uuid4().hex[:8]
        killed = threading.Event()
        killer = threading.Thread(target=_killer, args=(server, killed, seed))
        clients = [
            threading.Thread(
                target=client,
                args=(gw.base_url, gw.keys[AGENCY], f"{run}-{number}", tally),
                kwargs={"at_least": PAYMENTS, "done": killed.is_set},
            )
            for number in range(CLIENTS)
        ]
        killer.start()
        for thread in clients:
            thread.start()
        killer.join(timeout=KILLS * 60)
        for thread in clients:
            thread.join(timeout=RETRY_BUDGET_S * PAYMENTS * 20 + 60)
        server.stop()

        books = settle_and_read(gw)

    report_counts(
        f"\ncrash drill ({backend}, seed {seed}): {CLIENTS} clients, "
        f"{server.kills} kill -9s; created {len(tally.created)}, confirmed "
        f"{len(tally.confirmed)}, gave up {len(tally.gave_up)}; answers {dict(tally.answers)}; "
        f"{books.summary()}"
    )
    assert server.kills == KILLS
    assert_books_hold(books, tally)
