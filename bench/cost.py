"""The client-side cost of one payment (create + confirm), in this process: CPU milliseconds, or
machine instructions counted by valgrind's callgrind, which repeat to within a fraction of a
percent from run to run whatever else the machine is doing.

Run by hand: `.venv/bin/python -m bench.cost [--db postgresql|sqlite] [--payments 300]
[--callgrind] [--no-keys]`. Every POST carries a fresh Idempotency-Key, as README tells
backends to send, unless `--no-keys`. It makes a fresh database (`gateway db upgrade`,
`gateway demo seed`), builds the app in this process and drives it with Flask's test client and
the agency key of the demo data, after a warm-up of `--warm-up` payments (statements compiled,
accounts opened, the key verified). Without `--callgrind` it prints CPU and wall milliseconds
per payment for each of three rounds; with it, it runs itself again under `valgrind
--tool=callgrind` with counting switched on only around the measured payments and prints
instructions per payment. The database server's own work is not counted: this is the gateway's
Python side, which is what limits a 2-core machine's payments per second (`bench.api` measures
the whole). Every loop is bounded by `--payments`, at most 2,000.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.api import gateway_env, seeded_key
from bench.webhooks import database

MAX_PAYMENTS = 2_000
ROUNDS = 3
CARD = {
    "payment_method": {
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    }
}
COUNTING = "BENCH_COST_UNDER_CALLGRIND"


def _callgrind(switch: str) -> None:
    """Switch callgrind's counting on or off for this process (when running under it)."""
    if os.environ.get(COUNTING):
        subprocess.run(
            ["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True
        )


def measure(db: str, payments: int, warm_up: int, *, keyed: bool = True) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with database(db, name) as url:
            env = gateway_env(tmp, url)
            key = seeded_key(env, tmp)
            os.environ.update(env)
            from payments.api.app import create_app

            client = create_app().test_client()
            headers = {"Authorization": f"Bearer {key}"}

            def keyed_headers(n: int, step: str) -> dict[str, str]:
                if not keyed:
                    return headers
                return {**headers, "Idempotency-Key": f"cost-{n}-{step}"}

            def pay(n: int) -> None:
                created = client.post(
                    "/v1/payments",
                    json={
                        "amount": 12500,
                        "currency": "OMR",
                        "description": "Benchmark fee",
                        "return_url": "https://moh.example.om/done",
                        "reference": f"COST-{n}",
                    },
                    headers=keyed_headers(n, "create"),
                )
                assert created.status_code == 201, created.data
                confirmed = client.post(
                    f"/v1/payments/{created.json['id']}/confirm",  # type: ignore[index]
                    json=CARD,
                    headers=keyed_headers(n, "confirm"),
                )
                assert confirmed.status_code == 200, confirmed.data
                assert confirmed.json["status"] == "succeeded"  # type: ignore[index]

            for n in range(warm_up):
                pay(n)
            rounds = 1 if os.environ.get(COUNTING) else ROUNDS
            _callgrind("on")
            figures = []
            for r in range(rounds):
                cpu, wall = time.process_time(), time.perf_counter()
                for n in range(payments):
                    pay((r + 1) * MAX_PAYMENTS + n)
                figures.append(
                    (
                        (time.process_time() - cpu) / payments * 1000,
                        (time.perf_counter() - wall) / payments * 1000,
                    )
                )
            _callgrind("off")
            if not os.environ.get(COUNTING):
                for r, (cpu_ms, wall_ms) in enumerate(figures, 1):
                    print(
                        f"{db} round {r}: {cpu_ms:.2f} ms CPU, {wall_ms:.2f} ms wall a payment"
                        f" ({'with' if keyed else 'without'} Idempotency-Keys)"
                    )


def under_callgrind(db: str, payments: int, warm_up: int, *, keyed: bool = True) -> None:
    """Run `measure` again under callgrind and print its instructions per payment."""
    with tempfile.TemporaryDirectory() as name:
        out = Path(name) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.cost",
            "--db",
            db,
            "--payments",
            str(payments),
            "--warm-up",
            str(warm_up),
            *([] if keyed else ["--no-keys"]),
        ]
        done = subprocess.run(
            command,
            env={**os.environ, COUNTING: "1"},
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        totals = re.search(r"^totals: (\d+)", out.read_text() if out.exists() else "", re.M)
        if done.returncode != 0 or totals is None:
            sys.exit(f"callgrind run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        per_payment = int(totals.group(1)) / payments
        keys = "with Idempotency-Keys" if keyed else "without keys"
        print(f"{db}: {per_payment / 1e6:.2f} M instructions a payment (create + confirm, {keys})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--payments", type=int, default=None)
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--no-keys", dest="keyed", action="store_false")
    args = parser.parse_args()
    payments = args.payments or (40 if args.callgrind else 300)
    if not 0 < payments <= MAX_PAYMENTS or not 0 <= args.warm_up <= MAX_PAYMENTS:
        parser.error(f"--payments and --warm-up are at most {MAX_PAYMENTS}")
    if args.callgrind:
        under_callgrind(args.db, payments, args.warm_up, keyed=args.keyed)
    else:
        measure(args.db, payments, args.warm_up, keyed=args.keyed)


if __name__ == "__main__":
    main()
