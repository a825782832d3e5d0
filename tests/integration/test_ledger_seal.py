"""Sealing on PostgreSQL: postings that find the chain head taken stay queued and are sealed
later, in an order that verify accepts; concurrent sealers never fork the chain; a queued
transaction that waits past the grace period, or leaves the queue unsealed, is flagged."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

import ledger
from ledger import AccountRef, Kind
from payments import clock
from payments.gateway import Gateway, build_gateway
from payments.service.resolution import run_pass
from tests.conftest import _truncate_postgres, make_settings
from tests.integration.ledger_support import post, spec, tamper, verify

BANK = AccountRef("bank", "OMR", Kind.ASSET)
FEES = AccountRef("fees", "OMR", Kind.LIABILITY)


@pytest.fixture
def pg(postgres_url: str, tmp_path: Path) -> Iterator[Gateway]:
    _truncate_postgres(postgres_url)
    gateway = build_gateway(make_settings(postgres_url, tmp_path), pool_size=8)
    yield gateway
    gateway.db.dispose()
    clock.set_clock(None)


@contextlib.contextmanager
def holding_head(gw: Gateway) -> Iterator[None]:
    """Hold the chain head's row lock from another connection, as a slow sealer would."""
    with gw.db.engine.connect() as conn:
        conn.execute(text("SELECT 1 FROM ledger_chain_head WHERE id = 1 FOR UPDATE"))
        yield
        conn.rollback()


def _chained(gw: Gateway) -> list[int]:
    with gw.db.read() as session:
        rows = session.execute(
            select(ledger.ChainLink.transaction_id).order_by(ledger.ChainLink.seq)
        )
        return [row[0] for row in rows]


def _seal(gw: Gateway) -> int:
    with gw.db.transaction() as session:
        return ledger.seal(session)


def test_postings_that_find_the_head_taken_are_sealed_by_the_worker(pg: Gateway) -> None:
    with holding_head(pg):
        posted = [post(pg, spec(f"q{i}", i + 1)) for i in range(3)]
        report = verify(pg)
        assert report.ok and (report.transactions, report.pending) == (0, 3)
    assert _chained(pg) == []
    assert run_pass(pg).ledger_transactions_sealed == 3
    assert _chained(pg) == [p.transaction_id for p in posted]
    report = verify(pg)
    assert report.ok and (report.transactions, report.pending) == (3, 0)
    assert run_pass(pg).ledger_transactions_sealed == 0
    after = post(pg, spec("q3", 4))  # the head is free again: sealed inline
    assert _chained(pg)[-1] == after.transaction_id


def test_a_lower_id_committed_late_is_sealed_after_higher_ones(pg: Gateway) -> None:
    with pg.db.transaction() as late:
        with holding_head(pg):
            first = ledger.post(late, spec("late", 5), clock.now())
        # Committed while `late` is still open: its seal cannot see `late`'s queue row.
        second = post(pg, spec("early", 7, debit=BANK, credit=FEES))
        assert second.transaction_id > first.transaction_id
        assert _chained(pg) == [second.transaction_id]
    assert verify(pg).pending == 1
    assert _seal(pg) == 1
    assert _chained(pg) == [second.transaction_id, first.transaction_id]
    report = verify(pg)
    assert report.ok and report.transactions == 2


def _waiting_for_locks(gw: Gateway) -> int:
    with gw.db.engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(conn.execute(text(query)).scalar_one())


def test_two_sealers_waiting_for_the_head_seal_each_transaction_once(pg: Gateway) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        with holding_head(pg):
            posted = [post(pg, spec(f"w{i}", i + 1)) for i in range(5)]
            sealers = [pool.submit(_seal, pg) for _ in range(2)]
            deadline = time.monotonic() + 10
            while _waiting_for_locks(pg) < 2:  # both queued behind the head before it frees
                assert time.monotonic() < deadline, "the sealers never waited for the head"
                time.sleep(0.01)
        assert sorted(s.result(timeout=30) for s in sealers) == [0, 5]
    assert _chained(pg) == [p.transaction_id for p in posted]
    assert verify(pg).ok


def test_concurrent_postings_and_sealers_never_fork_the_chain(pg: Gateway) -> None:
    threads, per_thread = 6, 25
    done = threading.Event()

    def poster(index: int) -> None:
        for n in range(per_thread):
            debit = AccountRef(f"cash:{(index + n) % 4}", "OMR", Kind.ASSET)
            post(pg, spec(f"p{index}-{n}", n + 1, debit=debit))

    def sealer(_: int) -> int:
        sealed = 0
        while not done.is_set():
            sealed += _seal(pg)
        return sealed

    with ThreadPoolExecutor(max_workers=threads + 2) as pool:
        sealers = [pool.submit(sealer, i) for i in range(2)]
        try:
            list(pool.map(poster, range(threads)))
        finally:
            done.set()
        for future in sealers:
            future.result(timeout=60)
    _seal(pg)
    total = threads * per_thread
    with pg.db.read() as session:
        seqs = session.execute(select(ledger.ChainLink.seq).order_by(ledger.ChainLink.seq))
        assert [row[0] for row in seqs] == list(range(1, total + 1))
        count = select(func.count(func.distinct(ledger.ChainLink.transaction_id)))
        assert session.execute(count).scalar_one() == total
    report = verify(pg)
    assert report.ok, report.problems
    assert (report.transactions, report.pending) == (total, 0)


def test_a_transaction_queued_past_the_grace_period_is_flagged(pg: Gateway) -> None:
    long_ago = clock.now() - dt.timedelta(minutes=10)
    with holding_head(pg):
        with pg.db.transaction() as session:
            ledger.post(session, spec("stale", 5), long_ago)
        post(pg, spec("fresh", 6))
    report = verify(pg)
    assert report.pending == 1
    assert [(p.check, p.where) for p in report.problems] == [("chain", "transaction 1 (stale)")]
    assert "was never sealed" in report.problems[0].detail
    with pg.db.read() as session:
        lenient = ledger.verify(session, grace=dt.timedelta(minutes=15))
    assert lenient.ok and lenient.pending == 2
    assert _seal(pg) == 2
    assert verify(pg).ok


def test_a_transaction_taken_off_the_queue_unsealed_is_flagged_at_once(pg: Gateway) -> None:
    with holding_head(pg):
        post(pg, spec("t1", 5))
    tamper(pg, "DELETE FROM ledger_unsealed")
    report = verify(pg)
    assert [(p.check, p.where) for p in report.problems] == [("chain", "transaction 1 (t1)")]
    assert report.pending == 0
    assert _seal(pg) == 0  # nothing queued: it stays outside the chain, and flagged
