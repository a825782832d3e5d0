"""Webhook delivery on loopback: deliveries per second by one worker, and the time from a
payment's success to its webhook's arrival at a steady payment rate.

Run by hand: `.venv/bin/python -m bench.webhooks [--db sqlite|postgresql] [--deliveries 2000]
[--payments 500] [--rate 100] [--clients 4]`. It works in a temporary directory, starts its
own receiver (a separate process on 127.0.0.1), and for the latency part its own `gateway
worker`; everything it starts is stopped when done, and every loop is bounded by a count and
a deadline.

1. Throughput: N events are written to the outbox (one endpoint, the real fan-out), then one
   worker (`deliver_due`, this process) drains them; deliveries per second = N / time taken.
2. Latency: payments are created and confirmed at `--rate` per second (through the service
   layer, in this process) while a `gateway worker` process delivers; the receiver notes when
   each webhook arrives; latency = arrival - the payment's `updated_at` (the moment it
   succeeded), read from the webhook body itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

BIN = Path(sys.executable).parent
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
RECEIVER_LIFETIME_S = 900.0  # the receiver stops by itself after this
MAX_DELIVERIES = 20_000
MAX_PAYMENTS = 5_000
DRAIN_DEADLINE_S = 300.0
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


# --------------------------------------------------------------------------- the receiver


async def _serve_receiver(port: int) -> None:
    arrivals: list[tuple[str, float, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
            if lines[0].startswith("POST"):
                updated_at = json.loads(body)["data"].get("updated_at", "")
                arrivals.append((headers.get("webhook-id", ""), time.time(), updated_at))
                answer = b"ok"
            else:
                answer = json.dumps(arrivals).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await asyncio.sleep(RECEIVER_LIFETIME_S)


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """A receiver in its own process, so it does not share the worker's interpreter."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.webhooks", "--receiver", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with contextlib.suppress(requests.ConnectionError):
                requests.get(url + "/arrivals", timeout=1)
                break
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def arrivals(url: str) -> list[tuple[str, float, str]]:
    found: list[tuple[str, float, str]] = requests.get(url + "/arrivals", timeout=30).json()
    return found


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def database(db: str, tmp: str) -> Iterator[str]:
    if db == "sqlite":
        yield f"sqlite:///{tmp}/gateway.db"
        return
    name = f"gwbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --------------------------------------------------------------------------- 1. throughput


def throughput(db: str, count: int) -> None:
    from config import Settings
    from payments.gateway import build_gateway
    from payments.migrate import upgrade
    from payments.models import Payment
    from payments.outbox import payment_event
    from payments.service import access, payments, webhooks
    from payments.service.payments import NewPayment
    from payments.webhooks.delivery import deliver_due
    from providers import Card

    with tempfile.TemporaryDirectory() as tmp, database(db, tmp) as url, receiver() as hook:
        upgrade(url)
        settings = Settings(
            env="test",
            database_url=url,
            var_dir=Path(tmp),
            secret_key="bench-secret-" + "s" * 32,
            encryption_key="bench-encryption-" + "e" * 32,
            sandbox_database=Path(tmp) / "sandbox.db",
            webhook_allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
            log_level="WARNING",
        )
        gw = build_gateway(settings)
        access.create_agency(
            gw, "om-moh", name="MOH", name_ar="وزارة", state="OM", currencies=["OMR"]
        )
        _key, secret = access.create_key(gw, agency_id="om-moh", role="agency")
        who = access.verify(gw, secret)  # the principal a request under the key is
        webhooks.create_endpoint(gw, who, webhooks.NewEndpoint(url=hook + "/hooks", events=["*"]))
        new = NewPayment(12500, "OMR", "BENCH-1", "bench", "https://moh.example.om/done")
        paid = payments.confirm_payment(
            gw,
            who,
            payments.create_payment(gw, who, new).id,
            Card(number="4242424242424242", exp_month=12, exp_year=2034, cvc="123"),
        )
        with gw.db.transaction() as session:
            payment = session.get(Payment, paid.id)
            assert payment is not None
            for _ in range(count):  # the real event body and fan-out, written in bulk
                payment_event(session, "payment.succeeded", payment)
        started = time.perf_counter()
        delivered = 0
        while delivered < count + 1 and time.perf_counter() - started < DRAIN_DEADLINE_S:
            delivered += deliver_due(gw).delivered
        elapsed = time.perf_counter() - started
        arrived = len(arrivals(hook))
        gw.db.dispose()
    print(
        f"{db}: one worker delivered {delivered} webhooks in {elapsed:.2f} s: "
        f"{delivered / elapsed:.0f} deliveries/s ({arrived} arrived at the receiver)"
    )


# --------------------------------------------------------------------------- 2. latency


def latency(db: str, payments: int, rate: float, clients: int) -> None:
    """Payments are paid through the service layer at `rate` per second (so the load generator
    does not compete with an HTTP server for the two cores); a `gateway worker` process
    delivers their webhooks."""
    from config import load_settings
    from payments.gateway import build_gateway
    from payments.migrate import upgrade
    from payments.service import access, webhooks
    from payments.service import payments as service
    from payments.service.payments import NewPayment
    from providers import Card

    card = Card(number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
    with tempfile.TemporaryDirectory() as tmp, database(db, tmp) as url, receiver() as hook:
        env = {
            **os.environ,
            "GATEWAY_ENV": "test",
            "GATEWAY_VAR_DIR": f"{tmp}/var",
            "GATEWAY_DATABASE_URL": url,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        }
        upgrade(url)
        gw = build_gateway(load_settings(env))
        access.create_agency(
            gw, "om-moh", name="MOH", name_ar="وزارة", state="OM", currencies=["OMR"]
        )
        _key, secret = access.create_key(gw, agency_id="om-moh", role="agency")
        who = access.verify(gw, secret)  # the principal a request under the key is
        webhooks.create_endpoint(gw, who, webhooks.NewEndpoint(url=hook + "/hooks", events=["*"]))
        worker = subprocess.Popen([BIN / "gateway", "worker"], env=env, cwd=tmp)
        try:
            time.sleep(2.0)  # the worker is up and idle

            def one(i: int) -> None:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                new = NewPayment(12500, "OMR", f"B-{i}", "bench", "https://moh.example.om/done")
                service.confirm_payment(gw, who, service.create_payment(gw, who, new).id, card)

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(one, range(payments)))
            sent_s = time.perf_counter() - started
            deadline = time.monotonic() + 30
            seen = arrivals(hook)
            while len(seen) < payments and time.monotonic() < deadline:
                time.sleep(0.2)
                seen = arrivals(hook)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            gw.db.dispose()
    waits = [
        arrived - dt.datetime.fromisoformat(updated_at.replace("Z", "+00:00")).timestamp()
        for _, arrived, updated_at in seen
    ]
    print(
        f"{db}: {payments} payments by {clients} clients at {payments / sent_s:.0f}/s "
        f"(asked {rate:.0f}/s), "
        f"{len(seen)} webhooks arrived; success to arrival: "
        f"p50 {statistics.median(waits) * 1000:.0f} ms, "
        f"p99 {percentile(waits, 0.99) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--clients", type=int, default=4, help="threads paying at once")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            asyncio.run(_serve_receiver(args.receiver))
        return
    throughput(args.db, min(args.deliveries, MAX_DELIVERIES))
    latency(args.db, min(args.payments, MAX_PAYMENTS), args.rate, min(args.clients, 64))


if __name__ == "__main__":
    main()
