"""A constant-rate client for bench/api.py: payments started on a fixed schedule, each on a
fresh connection opened only when its request is due, its latency counted from when it was due.

wrk paces by opening the next connection at once and waiting before sending on it; against
gunicorn's sync workers (one connection each, no keep-alive) that idle connection holds a
worker, so wrk's paced figures measure wrk. This client is light at the rates it is used for
(half the gateway's peak); its own CPU time is reported beside its figures.
"""

from __future__ import annotations

import http.client
import json
import queue
import resource
import threading
import time
import urllib.parse
import uuid

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def _post(host: str, port: int, path: str, key: str, body: dict[str, object]) -> tuple[int, bytes]:
    """One POST as a backend sends it: with a fresh Idempotency-Key."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def run(url: str, key: str, rate: float, seconds: float, threads: int = 16) -> dict[str, float]:
    """Start `rate` payments a second for `seconds`; returns payments, errors, seconds, p50_ms,
    p99_ms and the client's own CPU seconds."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    due: queue.Queue[float | None] = queue.Queue()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    run_id = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def worker() -> None:
        nonlocal errors
        while (at := due.get()) is not None:
            time.sleep(max(0.0, at - time.monotonic()))
            n = next(counter)
            status, body = _post(
                host,
                port,
                "/v1/payments",
                key,
                {
                    "amount": 12500,
                    "currency": "OMR",
                    "description": "Benchmark fee",
                    "return_url": "https://moh.example.om/done",
                    "reference": f"PACED-{run_id}-{n}",
                },
            )
            ok = status == 201
            if ok:
                payment_id = json.loads(body)["id"]
                path = f"/v1/payments/{payment_id}/confirm"
                status, body = _post(
                    host, port, path, key, {"payment_method": {"type": "card", "card": CARD}}
                )
                ok = status == 200 and json.loads(body).get("status") == "succeeded"
            with lock:
                if ok:
                    latencies.append((time.monotonic() - at) * 1000)
                else:
                    errors += 1

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start = time.monotonic() + 0.05
    count = int(rate * seconds)
    for n in range(count):
        due.put(start + n / rate)
    for _ in pool:
        due.put(None)
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * p + 0.999) - 1))]

    return {
        "payments": len(ordered),
        "errors": errors,
        "seconds": elapsed,
        "p50_ms": pct(0.5) if ordered else -1.0,
        "p99_ms": pct(0.99) if ordered else -1.0,
        "client_cpu_s": cpu,
    }
