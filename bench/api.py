"""Payments per second of the gateway beside two yardsticks, all under gunicorn with the
gateway's server settings on the same database, driven by wrk; then the gateway paced at half
its peak for its latency there (bench/paced.py: a constant-rate client, since wrk cannot pace
gunicorn's sync workers fairly).

The yardsticks: a bare Flask app that inserts one row and updates it (bench/yardstick.py), and
the durable yardstick (bench/durable/), a bare Flask app on raw DB-API connections that
replays the statements the gateway itself runs for a payment, recorded from the gateway in
this process at the start of the run (on a database of its own), with a constant-time stand-in
for the acquirer's call.

Run by hand: `.venv/bin/python -m bench.api [--db postgresql|sqlite|both] [--seconds 10]
[--connections 4] [--workers 2] [--rounds 2]`. It needs Debian's `wrk`. Each server runs on a
free port with a fresh database (PostgreSQL at 127.0.0.1:5432, or SQLite files in a temporary
directory) and is stopped when done; every run is bounded by its duration. Each wrk connection
(one per wrk thread) creates a payment and confirms it with 4242…, again and again
(bench/payment.lua), every POST with a fresh Idempotency-Key as clients send (and once more
without, for the key's cost); the servers take turns, `--rounds` times each.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import durable, paced
from bench.payments import free_port
from bench.webhooks import database

BIN = Path(sys.executable).parent
SCRIPT = Path(__file__).with_name("payment.lua")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
WARM_UP_S = 3


@dataclasses.dataclass(frozen=True)
class Run:
    """One wrk run's whole-payment figures."""

    payments: int | float
    errors: int | float
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.payments / self.seconds


@contextlib.contextmanager
def databases(db: str, tmp: Path) -> Iterator[tuple[str, str, str, str]]:
    """Fresh databases, each in a directory of its own: the gateway's, the yardstick's, the
    durable yardstick's, and the one the gateway's statements are recorded on."""
    with contextlib.ExitStack() as stack:
        urls = []
        for name in ("api", "bare", "durable", "recording"):
            (tmp / name).mkdir()
            urls.append(stack.enter_context(database(db, str(tmp / name))))
        gateway, bare, durable_db, recording = urls
        yield gateway, bare, durable_db, recording


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], log: Path, port: int) -> Iterator[str]:
    """A server process on `port` until the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command[0]} exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{command[0]} did not listen within 30 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _paced(url: str, key: str, rate: float, seconds: float) -> dict[str, float]:
    figures = paced.run(url, key, rate, seconds)
    print(f"  (constant-rate client's own CPU: {figures.pop('client_cpu_s'):.2f} s)")
    return figures


def wrk(url: str, key: str, seconds: float, connections: int, *, keyed: bool = True) -> Run:
    """`connections` wrk threads of one connection each, as fast as the server answers; every
    POST with a fresh Idempotency-Key unless not `keyed`."""
    done = subprocess.run(
        [
            "wrk",
            "-t",
            str(connections),
            "-c",
            str(connections),
            "-d",
            f"{round(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(SCRIPT),
            url,
        ],
        env={**os.environ, "BENCH_KEY": key, "BENCH_KEYED": "1" if keyed else "0"},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{"))
    figures = json.loads(line)
    figures.pop("socket_errors")
    return Run(**figures)


def gateway_env(tmp: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {
        **env,
        "GATEWAY_ENV": "test",
        "GATEWAY_VAR_DIR": str(tmp / "var"),
        "GATEWAY_DATABASE_URL": url,
        "GATEWAY_LOG_LEVEL": "WARNING",
        # The limits stay in the path, set above what one key sends here.
        "GATEWAY_RATE_LIMIT": "1000000/second",
        "XDG_RUNTIME_DIR": str(tmp),
    }


def seeded_key(env: dict[str, str], cwd: Path) -> str:
    """Migrate and seed the database of `env` as `make run` does; the om-moh demo key."""
    cli = [str(BIN / "gateway")]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, cwd=cwd, capture_output=True)
    seeded = subprocess.run(
        [*cli, "demo", "seed"], env=env, check=True, cwd=cwd, capture_output=True, text=True
    ).stdout
    return next(line.split()[1] for line in seeded.splitlines() if "om-moh" in line)


def counted(statements: int, transactions: int) -> str:
    plural = "" if transactions == 1 else "s"
    return f"{statements} statements in {transactions} transaction{plural}"


def record(tmp: Path, key: str, durable_url: str, recording_url: str) -> durable.Summary:
    """The gateway's statements for one payment, recorded on a database of their own; the
    durable yardstick's database migrated and seeded as the gateway's, and its ledger
    accounts opened by a payment of the gateway, as the recording's were."""
    recording_env = gateway_env(tmp, recording_url)
    durable_env = gateway_env(tmp, durable_url)
    # The same secret key (the same var dir): the same demo key on every database.
    if seeded_key(recording_env, tmp) != key or seeded_key(durable_env, tmp) != key:
        raise SystemExit("the databases were seeded with different demo keys")
    summary = durable.record(recording_env, key, tmp / "durable" / "recording.json")
    durable.prepare(durable_env, key)
    return summary


def bench(db: str, seconds: float, connections: int, workers: int, rounds: int) -> float:
    """The servers on fresh `db` databases; prints the table and returns the gateway's peak."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with databases(db, tmp) as (gw_url, bare_url, durable_url, recording_url):
            env = gateway_env(tmp, gw_url)
            cli = [str(BIN / "gateway")]
            key = seeded_key(env, tmp)
            recorded = record(tmp, key, durable_url, recording_url)
            gw_port, bare_port, durable_port = free_port(), free_port(), free_port()
            gw_cmd = [
                *cli,
                "serve",
                "--port",
                str(gw_port),
                "--workers",
                str(workers),
                "--no-worker",
            ]
            bare_cmd = [
                str(BIN / "python"),
                "-m",
                "bench.yardstick",
                bare_url,
                f"127.0.0.1:{bare_port}",
                str(workers),
            ]
            durable_cmd = [
                str(BIN / "python"),
                "-m",
                "bench.durable",
                str(tmp / "durable" / "recording.json"),
                durable_url,
                f"127.0.0.1:{durable_port}",
                str(workers),
            ]
            bare_env = {**env, "PYTHONPATH": str(Path(__file__).parent.parent)}
            with (
                serving(gw_cmd, env, tmp / "gateway.log", gw_port) as gateway,
                serving(bare_cmd, bare_env, tmp / "yardstick.log", bare_port) as yardstick,
                serving(durable_cmd, bare_env, tmp / "durable.log", durable_port) as replay,
            ):
                wrk(gateway, key, WARM_UP_S, connections)
                wrk(yardstick, key, WARM_UP_S, connections)
                wrk(replay, key, WARM_UP_S, connections)
                runs: dict[str, list[Run]] = {
                    "gateway": [],
                    "no keys": [],
                    "yardstick": [],
                    "durable": [],
                }
                for _ in range(rounds):
                    runs["gateway"].append(wrk(gateway, key, seconds, connections))
                    runs["no keys"].append(wrk(gateway, key, seconds, connections, keyed=False))
                    runs["yardstick"].append(wrk(yardstick, key, seconds, connections))
                    runs["durable"].append(wrk(replay, key, seconds, connections))
                peak = statistics.mean(run.rate for run in runs["gateway"])
                paced = Run(**_paced(gateway, key, peak / 2, seconds))
            verified = subprocess.run(
                [*cli, "ledger", "verify"],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                check=False,
            )
    print(f"\n{db}: {connections} connections, {workers} gunicorn workers, {seconds:g} s a run")
    print(
        f"  durable yardstick: the gateway's recorded create, {counted(*recorded.create)}; "
        f"confirm, {counted(*recorded.confirm)}; the acquirer a "
        f"{recorded.acquirer_s * 1e6:.0f} µs busy-wait"
    )
    print(
        f"  {'server':<10} {'run':>4} {'payments/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for server, server_runs in runs.items():
        for number, run in enumerate(server_runs, 1):
            print(
                f"  {server:<10} {number:>4} {run.rate:>11.1f} {run.p50_ms:>8.1f} "
                f"{run.p99_ms:>8.1f} {run.errors:>7}"
            )
    yard = statistics.mean(run.rate for run in runs["yardstick"])
    durable_rate = statistics.mean(run.rate for run in runs["durable"])
    bare = statistics.mean(run.rate for run in runs["no keys"])
    print(
        f"  gateway with Idempotency-Keys {peak:.1f}/s, yardstick {yard:.1f}/s: "
        f"ratio {peak / yard:.2f}x"
    )
    print(
        f"  gateway with Idempotency-Keys {peak:.1f}/s, durable yardstick {durable_rate:.1f}/s: "
        f"ratio {peak / durable_rate:.2f}x"
    )
    print(f"  gateway without keys {bare:.1f}/s: with keys {peak / bare:.2f}x of it")
    print(
        f"  gateway paced at {paced.rate:.1f}/s (half its peak): p50 {paced.p50_ms:.1f} ms, "
        f"p99 {paced.p99_ms:.1f} ms, errors {paced.errors}"
    )
    print(f"  gateway ledger verify: {(verified.stdout or verified.stderr).strip()}")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    dbs = ("postgresql", "sqlite") if args.db == "both" else (args.db,)
    peaks = {db: bench(db, args.seconds, args.connections, args.workers, args.rounds) for db in dbs}
    if len(peaks) == 2:
        print(
            f"\ngateway on SQLite {peaks['sqlite']:.1f}/s, on PostgreSQL "
            f"{peaks['postgresql']:.1f}/s: {peaks['sqlite'] / peaks['postgresql']:.2f}x"
        )


if __name__ == "__main__":
    main()
