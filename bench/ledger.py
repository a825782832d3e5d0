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
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

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

# Mode (a) without Python: pgbench's clients send each posting straight to `ledger_post`,
# the JSON document built by the server. What it measures is the server's share of a posting.
# Its content hashes are placeholders, so it runs after verify.
SERVER_ONLY_SCRIPT = """\\set a random(0, 999)
\\set b random(0, 999)
\\set n random(1, 2000000000)
SELECT * FROM ledger_post(now(), json_build_object(
 'journal', json_build_array(json_build_object('external_id',
   'pgbench-' || :client_id || '-' || :n || '-' || clock_timestamp(), 'description', 'bench',
   'effective_at', now(), 'metadata', '{}'::json, 'reverses_id', NULL,
   'content_hash', md5(:n::text))),
 'accounts', json_build_array(
   json_build_object('code', 'asset:' || :a, 'currency', 'SAR', 'kind', 'asset', 'floor', NULL),
   json_build_object('code', 'owed:' || :b, 'currency', 'SAR', 'kind', 'liability',
                     'floor', NULL)),
 'postings', json_build_array(
   json_build_object('journal', 1, 'account', 1, 'direction', 'debit', 'amount_minor', 100),
   json_build_object('journal', 1, 'account', 2, 'direction', 'credit', 'amount_minor', 100))),
 true);
"""


def _pgbench(dbname: str, clients: int, seconds: float, script: Path | None = None) -> float:
    custom = ["-n", "-f", str(script)] if script else []
    command = [*PGBENCH, *custom, "-c", str(clients), "-j", str(min(clients, 2))]
    out = subprocess.run(
        [*command, "-T", str(int(seconds)), dbname], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"tps = ([0-9.]+)", out)
    assert match is not None, out
    return float(match.group(1))


def _server_only(dbname: str, clients: int, seconds: float) -> None:
    yardstick = _pgbench(dbname, clients, seconds)
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "ledger_post.sql"
        script.write_text(SERVER_ONLY_SCRIPT)
        rate = _pgbench(dbname, clients, seconds, script)
    print(
        f"(a) without Python, pgbench calling ledger_post, {clients} clients: "
        f"{rate:,.0f} transactions/s = {rate / yardstick:.2f}x pgbench TPC-B-like "
        f"({yardstick:,.0f} tps just before)"
    )


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
        _server_only(dbname, args.clients, seconds)
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
