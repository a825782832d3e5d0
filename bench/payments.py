"""Payments per second through a real gunicorn on loopback: create + confirm, N clients.

Run by hand: `.venv/bin/python -m bench.payments [--db sqlite|postgresql] [--clients 4]
[--payments 400]`. It starts its own server on a free port in a temporary directory and stops
it when done; every loop is bounded by the request count.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

BIN = Path(sys.executable).parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(db: str, clients: int, payments: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "GATEWAY_ENV": "test",
            "GATEWAY_VAR_DIR": f"{tmp}/var",
            "GATEWAY_LOG_LEVEL": "WARNING",
        }
        dbname = None
        if db == "postgresql":
            dbname = f"gwbench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{dbname}"')
            env["GATEWAY_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
        port = free_port()
        subprocess.run([BIN / "gateway", "db", "upgrade"], env=env, check=True, cwd=tmp)
        seeded = subprocess.run(
            [BIN / "gateway", "demo", "seed"],
            env=env,
            check=True,
            cwd=tmp,
            capture_output=True,
            text=True,
        ).stdout
        key = next(line.split()[1] for line in seeded.splitlines() if "om-moh" in line)
        log = open(f"{tmp}/server.log", "w")  # noqa: SIM115
        server = subprocess.Popen(
            [
                BIN / "gateway",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-worker",
            ],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    requests.get(f"{base}/healthz", timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            headers = {"Authorization": f"Bearer {key}"}
            card = {
                "payment_method": {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2034,
                        "cvc": "123",
                    },
                }
            }

            def one(i: int) -> float:
                session = sessions[i % clients]
                started = time.perf_counter()
                created = session.post(
                    f"{base}/v1/payments",
                    headers=headers,
                    timeout=30,
                    json={
                        "amount": 12500,
                        "currency": "OMR",
                        "reference": f"B-{i}",
                        "description": "bench",
                        "return_url": "https://moh.example.om/done",
                    },
                )
                created.raise_for_status()
                paid = session.post(
                    f"{base}/v1/payments/{created.json()['id']}/confirm",
                    headers=headers,
                    json=card,
                    timeout=30,
                )
                paid.raise_for_status()
                assert paid.json()["status"] == "succeeded"
                return time.perf_counter() - started

            sessions = [requests.Session() for _ in range(clients)]
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                latencies = sorted(pool.map(one, range(payments)))
            elapsed = time.perf_counter() - started
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
            print(
                f"{db}: {payments} payments (create+confirm) by {clients} clients, "
                f"{workers} gunicorn workers: {payments / elapsed:.1f} payments/s, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            if dbname:
                with psycopg.connect(POSTGRES, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--payments", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run(args.db, args.clients, min(args.payments, 20_000), args.workers)


if __name__ == "__main__":
    main()
