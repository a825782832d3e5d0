"""Every benchmark under bench/ runs to its end at a tiny size and prints its table, so none
rots unseen between the runs by hand that read its figures. The figures themselves are not
checked here: a test that timed the gateway would fail on a busy machine, not on a slow
gateway (README: "Benchmarks")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300

# Each benchmark at a tiny size, and words its table always prints.
SMOKE_RUNS = {
    "api": (
        ["--db", "sqlite", "--seconds", "1", "--connections", "1", "--workers", "1"],
        ["--rounds", "1"],
        ("payments/s", "yardstick", "durable", "ratio", "ledger verified"),
    ),
    "payments": (
        ["--db", "sqlite", "--clients", "1", "--payments", "10", "--workers", "1"],
        [],
        ("payments/s", "p99"),
    ),
    "webhooks": (
        ["--db", "sqlite", "--deliveries", "20", "--payments", "10", "--rate", "10"],
        ["--clients", "1"],
        ("deliveries/s", "success to arrival"),
    ),
    "ledger": (["--clients", "1", "--seconds", "1"], [], ("pgbench", "ok=True")),
    "cost": (["--db", "sqlite", "--payments", "5", "--warm-up", "1"], [], ("ms CPU",)),
    "reconcile": (["--n", "200", "--drop"], [], ("matched", "pandas", "ledger agrees")),
}
NEEDS = {"api": "wrk", "ledger": "pgbench"}


@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_the_benchmark_runs_to_its_end(name: str) -> None:
    args, more, words = SMOKE_RUNS[name]
    tool = NEEDS.get(name)
    if tool is not None and shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"bench.{name} needs Debian's {tool} (.ci/run installs it)")
        pytest.skip(f"bench.{name} needs Debian's {tool}")
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args, *more],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for word in words:
        assert word in done.stdout, (word, done.stdout[-2000:])
