"""Many threads posting to the same hot accounts on PostgreSQL: no deadlock, no lost update."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import ledger
from ledger import AccountRef, Direction, Entry, Kind, TransactionSpec
from payments import clock
from payments.gateway import build_gateway
from tests.conftest import make_settings

THREADS = 12
PER_THREAD = 40
HOT = [AccountRef(f"hot:{name}", "SAR", Kind.ASSET) for name in ("a", "b", "c", "d")]
SINK = AccountRef("hot:sink", "SAR", Kind.LIABILITY)


def test_concurrent_postings_on_hot_accounts(postgres_url: str, tmp_path: Path) -> None:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    gw = build_gateway(make_settings(postgres_url, tmp_path), pool_size=THREADS)
    expected: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker(index: int) -> int:
        rng = random.Random(index)
        barrier.wait(timeout=30)
        for n in range(PER_THREAD):
            # Two or three hot accounts in random order: the book must lock them in its own.
            picked = rng.sample(HOT, rng.choice((2, 3)))
            amounts = [rng.randint(1, 10_000) for _ in picked]
            entries = tuple(
                Entry(a, Direction.DEBIT, x) for a, x in zip(picked, amounts, strict=True)
            )
            entries += (Entry(SINK, Direction.CREDIT, sum(amounts)),)
            spec = TransactionSpec(f"t{index}-{n}", "hot", entries, clock.now())
            with gw.db.transaction() as session:
                ledger.post(session, spec, clock.now())
            with lock:
                for account, amount in zip(picked, amounts, strict=True):
                    expected[account.code] += amount
                expected[SINK.code] += sum(amounts)
        return PER_THREAD

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        done = sum(pool.map(worker, range(THREADS)))
    assert done == THREADS * PER_THREAD
    with gw.db.read() as session:
        for account in [*HOT, SINK]:
            balance = ledger.account_balance(session, account.code, "SAR")
            assert balance is not None
            assert balance.balance_minor == expected[account.code], account.code
        report = ledger.verify(session)
    assert report.ok, report.problems
    # A posting that found another sealing leaves its row queued for the next seal.
    assert report.transactions + report.pending == THREADS * PER_THREAD
    with gw.db.transaction() as session:
        ledger.seal(session)
    with gw.db.read() as session:
        report = ledger.verify(session)
    assert report.ok and report.transactions == THREADS * PER_THREAD
    gw.db.dispose()


@pytest.mark.parametrize("copies", [8])
def test_concurrent_duplicates_post_once(postgres_url: str, tmp_path: Path, copies: int) -> None:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_url)
    gw = build_gateway(make_settings(postgres_url, tmp_path), pool_size=copies)
    spec = TransactionSpec(
        "once",
        "dup",
        (Entry(HOT[0], Direction.DEBIT, 5), Entry(SINK, Direction.CREDIT, 5)),
        clock.now(),
    )
    barrier = threading.Barrier(copies)

    def send(_: int) -> bool:
        barrier.wait(timeout=30)
        with gw.db.transaction() as session:
            return ledger.post(session, spec, clock.now()).replayed

    with ThreadPoolExecutor(max_workers=copies) as pool:
        replayed = list(pool.map(send, range(copies)))
    assert replayed.count(False) == 1
    with gw.db.read() as session:
        balance = ledger.account_balance(session, HOT[0].code, "SAR")
        assert balance is not None and balance.balance_minor == 5
        assert ledger.verify(session).ok
    gw.db.dispose()
