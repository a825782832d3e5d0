"""Ledger postings per second on PostgreSQL, beside pgbench's TPC-B-like figure as yardstick.

Run by hand: `.venv/bin/python -m bench.ledger [--clients 4] [--seconds 10]`. It creates a
database of its own on 127.0.0.1:5432, runs, prints each figure with its ratio to pgbench,
and drops the database. Every run is bounded in time and count.

(a) one transaction per commit from N client processes, spread over many accounts;
(b) the same, every transaction on one hot account pair;
(c) batches of 1,000 transactions per commit, one client.

Each client holds one connection, as pgbench's clients do, and posts through `ledger.post` in
a session on it. pgbench runs just before each figure and the ratio is to that run, so that a
machine whose speed drifts (a shared virtual machine) compares like with like.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import subprocess
import time
import uuid
from collections.abc import Callable

import psycopg
from sqlalchemy.orm import Session

import ledger
from ledger import AccountRef, Direction, Entry, Kind, TransactionSpec
from payments import clock
from payments.db import Database, make_engine
from payments.migrate import upgrade

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_TRANSACTIONS = 2_000_000
ACCOUNTS = 1_000


def _spec(external_id: str, debit: AccountRef, credit: AccountRef, amount: int) -> TransactionSpec:
    return TransactionSpec(
        external_id,
        "bench",
        (Entry(debit, Direction.DEBIT, amount), Entry(credit, Direction.CREDIT, amount)),
        clock.now(),
    )


def _client(url: str, mode: str, index: int, seconds: float, results: Callable[..., None]) -> None:
    engine = make_engine(url, pool_size=1)
    connection = engine.connect()
    session = Session(bind=connection)
    rng = random.Random(index)
    assets = [AccountRef(f"asset:{n}", "SAR", Kind.ASSET) for n in range(ACCOUNTS)]
    owed = [AccountRef(f"owed:{n}", "SAR", Kind.LIABILITY) for n in range(ACCOUNTS)]
    hot = (
        AccountRef("hot:asset", "SAR", Kind.ASSET),
        AccountRef("hot:owed", "SAR", Kind.LIABILITY),
    )
    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline and done < MAX_TRANSACTIONS:
        if mode == "batch":
            specs = [
                _spec(f"{mode}-{index}-{done + n}", rng.choice(assets), rng.choice(owed), 100)
                for n in range(1000)
            ]
            with session.begin():
                ledger.post_many(session, specs, clock.now())
            done += len(specs)
            continue
        debit, credit = hot if mode == "hot" else (rng.choice(assets), rng.choice(owed))
        with session.begin():
            ledger.post(session, _spec(f"{mode}-{index}-{done}", debit, credit, 100), clock.now())
        done += 1
    results(done)
    session.close()
    connection.close()
    engine.dispose()


def _run(url: str, mode: str, clients: int, seconds: float) -> float:
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=_client, args=(url, mode, i, seconds, queue.put))
        for i in range(clients)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    total = sum(queue.get(timeout=seconds + 120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    return total / (time.perf_counter() - started)


PGBENCH = ["pgbench", "-h", "127.0.0.1", "-U", "postgres"]


def _pgbench(dbname: str, clients: int, seconds: float) -> float:
    out = subprocess.run(
        [
            "pgbench",
            *PGBENCH[1:],
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(int(seconds)),
            dbname,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match is not None, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    seconds = min(args.seconds, 120.0)
    dbname = f"gwbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
    try:
        upgrade(url)
        init = [*PGBENCH, "-i", "-q", "-s", "4", dbname]
        subprocess.run(init, check=True, capture_output=True)
        for label, mode, clients in (
            ("(a) one per commit, many accounts", "spread", args.clients),
            ("(b) one per commit, one hot pair", "hot", args.clients),
            ("(c) 1,000 per commit, one client", "batch", 1),
        ):
            yardstick = _pgbench(dbname, args.clients, seconds)
            rate = _run(url, mode, clients, seconds)
            print(
                f"{label}, {clients} client(s): {rate:,.0f} transactions/s = "
                f"{rate / yardstick:.2f}x pgbench TPC-B-like "
                f"({args.clients} clients, {yardstick:,.0f} tps just before)"
            )
        db = Database(make_engine(url))
        with db.read() as session:
            report = ledger.verify(session)
        print(f"verify: {report.transactions:,} transactions, ok={report.ok}")
        db.dispose()
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
