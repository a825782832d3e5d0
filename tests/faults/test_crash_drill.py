"""The crash drill: `kill -9` of the gunicorn master and its workers at random moments while
backends create and confirm payments, each retrying with its Idempotency-Key as API.md tells
it to; then a restart, the worker's pass, and the books.

Size by `GATEWAY_DRILL_CLIENTS`, `GATEWAY_DRILL_PAYMENTS` (per client) and
`GATEWAY_DRILL_KILLS`; the defaults fit CI. Every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from config import load_settings
from payments import clock
from payments.gateway import build_gateway
from payments.models import Attempt, Event, IdempotencyRecord, Payment
from payments.service.resolution import run_pass
from tests.e2e.conftest import (
    BACKENDS,
    GATEWAY_BIN,
    LiveGateway,
    _wait_until_healthy,
    database_for,
    operator_env,
    parse_seed_keys,
)
from tests.e2e.conftest import free_port as _free_port

pytestmark = pytest.mark.e2e

CLIENTS = int(os.environ.get("GATEWAY_DRILL_CLIENTS", "4"))
PAYMENTS = int(os.environ.get("GATEWAY_DRILL_PAYMENTS", "6"))
KILLS = int(os.environ.get("GATEWAY_DRILL_KILLS", "3"))
LEASE_S = 2  # the drill's Idempotency-Key lease: retries take dead keys over within seconds
RETRY_BUDGET_S = 60.0  # what a client spends on one request before giving up
REQUEST_TIMEOUT = (2.0, 15.0)
AGENCY = "om-moh"
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "737"}
CHARGED = ("authorized", "captured", "succeeded")  # sandbox charge states that took money


@dataclasses.dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    created: dict[str, str] = dataclasses.field(default_factory=dict)  # reference -> id
    confirmed: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> status
    gave_up: list[str] = dataclasses.field(default_factory=list)
    answers: Counter[str] = dataclasses.field(default_factory=Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def saw(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1


class Server:
    """`gateway serve` as an operator starts it, which the drill kills and starts again."""

    def __init__(self, gw: LiveGateway, port: int) -> None:
        self.gw = gw
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.gw.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(GATEWAY_BIN),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    "2",
                    "--no-worker",
                ],
                cwd=self.gw.workdir,
                env=self.gw.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_until_healthy(self.process, self.gw.base_url, self.gw.log_path)

    def kill(self) -> None:
        """SIGKILL to the master and every worker at once: nothing runs its cleanup."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.kill()


def _send(
    session: requests.Session, tally: Tally, url: str, key: str, idem: str, body: dict[str, Any]
) -> requests.Response | None:
    """POST until a definitive answer, as a backend following API.md would: the same key and
    body again after a lost connection, a 5xx, or 409 `idempotency_key_in_use`."""
    deadline = time.monotonic() + RETRY_BUDGET_S
    while time.monotonic() < deadline:
        try:
            response = session.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException:
            tally.saw("connection lost")
            time.sleep(0.2)
            continue
        if response.status_code >= 500:
            tally.saw(f"HTTP {response.status_code}")
            time.sleep(0.2)
            continue
        if response.status_code == 409 and "idempotency_key_in_use" in response.text:
            tally.saw("409 idempotency_key_in_use")
            time.sleep(0.5)
            continue
        tally.saw(f"HTTP {response.status_code}")
        return response
    return None


def _client(
    base_url: str, key: str, number: int, run: str, tally: Tally, killed: threading.Event
) -> None:
    """At least `PAYMENTS` payments, and on until every kill has happened (at most ten times
    as many)."""
    with requests.Session() as session:
        for n in range(PAYMENTS * 10):
            if n >= PAYMENTS and killed.is_set():
                return
            reference = f"DRILL-{run}-{number}-{n}"
            body = {
                "amount": 1000 + n,
                "currency": "OMR",
                "reference": reference,
                "description": "Crash drill",
                "return_url": "https://moh.example.om/done",
            }
            made = _send(session, tally, base_url + "/v1/payments", key, f"{reference}-c", body)
            if made is None or made.status_code != 201:
                tally.gave_up.append(f"create {reference}: {made and made.text[:200]}")
                continue
            payment_id = made.json()["id"]
            with tally.lock:
                tally.created[reference] = payment_id
            confirmed = _send(
                session,
                tally,
                f"{base_url}/v1/payments/{payment_id}/confirm",
                key,
                f"{reference}-p",
                {"payment_method": {"type": "card", "card": CARD}},
            )
            if confirmed is None or confirmed.status_code != 200:
                tally.gave_up.append(f"confirm {payment_id}: {confirmed and confirmed.text[:200]}")
                continue
            with tally.lock:
                tally.confirmed[payment_id] = confirmed.json()["status"]


def _killer(server: Server, killed: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 2.0))
            server.kill()
            server.start()
    finally:
        killed.set()


@contextlib.contextmanager
def _drill_gateway(backend: str, workdir: Path) -> Iterator[tuple[LiveGateway, int]]:
    with database_for(backend, workdir) as url:
        port = _free_port()
        env = operator_env(workdir, url, port)
        env["GATEWAY_IDEMPOTENCY_LEASE_S"] = str(LEASE_S)
        gw = LiveGateway(
            backend=backend,
            workdir=workdir,
            env=env,
            base_url=f"http://127.0.0.1:{port}",
            database_url=url,
            log_path=workdir / "server.log",
            cli_log_path=workdir / "cli.log",
        )
        gw.cli("db", "upgrade")
        gw.keys = parse_seed_keys(gw.cli("demo", "seed").stdout)
        yield gw, port


def _charges(sandbox_db: Path) -> dict[str, str]:
    """The sandbox acquirer's own record: charge state by the attempt that asked for it."""
    with contextlib.closing(sqlite3.connect(sandbox_db)) as conn:
        return dict(conn.execute("SELECT idempotency_key, state FROM charges").fetchall())


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_loses_nothing_and_charges_nothing_twice(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp(f"crash-drill-{backend}")
    seed = random.randrange(1 << 30)
    with _drill_gateway(backend, workdir) as (gw, port):
        server = Server(gw, port)
        server.start()
        tally = Tally()
        run = uuid.uuid4().hex[:8]
        killed = threading.Event()
        killer = threading.Thread(target=_killer, args=(server, killed, seed))
        clients = [
            threading.Thread(
                target=_client, args=(gw.base_url, gw.keys[AGENCY], number, run, tally, killed)
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

        settings = load_settings(gw.env)
        gateway = build_gateway(settings)
        try:
            # The worker's pass, once the open attempts' grace is over.
            later = clock.now() + dt.timedelta(minutes=10)
            clock.set_clock(lambda: later)
            try:
                reports = [run_pass(gateway) for _ in range(2)]
            finally:
                clock.set_clock(None)
            with gateway.db.read() as session:
                payments = session.execute(
                    select(Payment.id, Payment.reference, Payment.status)
                ).all()
                attempts = dict(session.execute(select(Attempt.id, Attempt.payment_id)).all())
                events = Counter(
                    (object_id, type_)
                    for object_id, type_ in session.execute(select(Event.object_id, Event.type))
                )
                keys_left = session.execute(
                    select(func.count())
                    .select_from(IdempotencyRecord)
                    .where(IdempotencyRecord.state == "started")
                ).scalar_one()
        finally:
            gateway.db.dispose()
        verified = gw.cli("ledger", "verify", check=False)

    charges = _charges(settings.sandbox_database)
    by_reference = Counter(reference for _, reference, _ in payments)
    status = {pid: st for pid, _, st in payments}
    charged_per_payment = Counter(
        attempts[key] for key, state in charges.items() if state in CHARGED and key in attempts
    )
    print(
        f"\ncrash drill ({backend}, seed {seed}): {CLIENTS} clients, "
        f"{server.kills} kill -9s; created {len(tally.created)}, confirmed "
        f"{len(tally.confirmed)}, gave up {len(tally.gave_up)}; answers {dict(tally.answers)}; "
        f"payments by status {dict(Counter(status.values()))}; attempts {len(attempts)}, "
        f"sandbox charges {len(charges)}; worker resolved "
        f"{sum(r.attempts_resolved for r in reports)} attempts; keys still started {keys_left}"
    )
    assert server.kills == KILLS
    assert tally.gave_up == [], tally.gave_up
    # Every acknowledged payment exists, and none exists twice.
    assert all(by_reference[reference] == 1 for reference in tally.created), by_reference
    assert all(count == 1 for count in by_reference.values()), by_reference
    assert set(tally.created.values()) <= set(status)
    # None is charged twice, and none is left in doubt.
    assert all(count == 1 for count in charged_per_payment.values()), charged_per_payment
    assert "processing" not in status.values(), status
    for payment_id, final in status.items():
        if final in ("succeeded", "failed"):
            assert events[(payment_id, f"payment.{final}")] == 1, (payment_id, final)
            assert charged_per_payment[payment_id] == (1 if final == "succeeded" else 0)
    # What a client was told is what happened, or an earlier moment of it.
    for payment_id, told in tally.confirmed.items():
        assert told == status[payment_id] or told == "processing", (payment_id, told)
    assert verified.returncode == 0, verified.stdout + verified.stderr
