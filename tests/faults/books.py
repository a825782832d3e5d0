"""What a drill checks once its fault is over: the worker's pass settles what was left in
doubt, then every acknowledged payment exists once, none is charged twice, every final status
has its one event, and the ledger verifies."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from config import load_settings
from payments import clock
from payments.gateway import build_gateway
from payments.models import Attempt, Event, IdempotencyRecord, Payment
from payments.service.resolution import run_pass
from tests.e2e.conftest import LiveGateway
from tests.faults.load import Tally

CHARGED = ("authorized", "captured", "succeeded")  # sandbox charge states that took money


@dataclasses.dataclass
class Books:
    """The database and the sandbox acquirer's own record, after the worker's pass."""

    status: dict[str, str]  # payment id -> status
    failure: dict[str, str | None]  # payment id -> failure code
    by_reference: Counter[str]
    attempts: dict[str, str]  # attempt id -> payment id
    charges: dict[str, str]  # sandbox charge state by attempt id
    events: Counter[tuple[str, str]]  # (object id, type)
    resolved: int  # attempts the worker's pass settled
    keys_left: list[str]  # idempotency keys still `started`
    verified: subprocess.CompletedProcess[str]  # `gateway ledger verify`

    @property
    def charged_per_payment(self) -> Counter[str]:
        return Counter(
            self.attempts[key]
            for key, state in self.charges.items()
            if state in CHARGED and key in self.attempts
        )

    def summary(self) -> str:
        return (
            f"payments by status {dict(Counter(self.status.values()))}; attempts "
            f"{len(self.attempts)}, sandbox charges {len(self.charges)}; worker resolved "
            f"{self.resolved} attempts; keys still started {self.keys_left}"
        )


def settle_and_read(gw: LiveGateway, **env: str) -> Books:
    """The worker's pass once open attempts' grace is over (with the server's settings, `env`
    overriding them), then the books as they stand."""
    settings = load_settings({**gw.env, **env})
    gateway = build_gateway(settings)
    try:
        later = clock.now() + dt.timedelta(minutes=10)
        clock.set_clock(lambda: later)
        try:
            reports = [run_pass(gateway) for _ in range(2)]
        finally:
            clock.set_clock(None)
        with gateway.db.read() as session:
            payments = session.execute(
                select(Payment.id, Payment.reference, Payment.status, Payment.failure_code)
            ).all()
            attempts = dict(session.execute(select(Attempt.id, Attempt.payment_id)).all())
            events = Counter(
                (object_id, type_)
                for object_id, type_ in session.execute(select(Event.object_id, Event.type))
            )
            keys_left = list(
                session.execute(
                    select(IdempotencyRecord.key).where(IdempotencyRecord.state == "started")
                ).scalars()
            )
    finally:
        gateway.db.dispose()
    return Books(
        status={pid: st for pid, _, st, _ in payments},
        failure={pid: code for pid, _, _, code in payments},
        by_reference=Counter(reference for _, reference, _, _ in payments),
        attempts=attempts,
        charges=_charges(settings.sandbox_database),
        events=events,
        resolved=sum(r.attempts_resolved for r in reports),
        keys_left=keys_left,
        verified=gw.cli("ledger", "verify", check=False),
    )


def assert_books_hold(books: Books, tally: Tally) -> None:
    assert tally.gave_up == [], tally.gave_up
    # Every acknowledged payment exists, and none exists twice.
    assert all(books.by_reference[reference] == 1 for reference in tally.created)
    assert all(count == 1 for count in books.by_reference.values()), books.by_reference
    assert set(tally.created.values()) <= set(books.status)
    # None is charged twice, and none is left in doubt.
    charged = books.charged_per_payment
    assert all(count == 1 for count in charged.values()), charged
    assert "processing" not in books.status.values(), books.status
    for payment_id, final in books.status.items():
        if final in ("succeeded", "failed"):
            assert books.events[(payment_id, f"payment.{final}")] == 1, (payment_id, final)
            assert charged[payment_id] == (1 if final == "succeeded" else 0)
    # What a client was told is what happened, or an earlier moment of it.
    for payment_id, told in tally.confirmed.items():
        assert told == books.status[payment_id] or told == "processing", (payment_id, told)
    assert books.verified.returncode == 0, books.verified.stdout + books.verified.stderr


def _charges(sandbox_db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(sandbox_db)) as conn:
        return dict(conn.execute("SELECT idempotency_key, state FROM charges").fetchall())
