"""Hypothesis settings shared by the fuzz tests: small runs by default, larger on request."""

from __future__ import annotations

import os
from collections.abc import Sequence

from hypothesis import HealthCheck, settings

# `GATEWAY_FUZZ_EXAMPLES=2000 pytest tests/unit/test_fuzz_*.py` runs every fuzz test with that
# many examples; unset, each test runs its own small default (all of them within a minute).
ENV_VAR = "GATEWAY_FUZZ_EXAMPLES"


def examples(default: int) -> int:
    """The number of examples a fuzz test runs: `default`, or the environment's override."""
    override = os.environ.get(ENV_VAR, "").strip()
    return int(override) if override else default


def fuzz(default: int, *, suppress: Sequence[HealthCheck] = ()) -> settings:
    """Settings for one fuzz test: `examples(default)` examples and no per-example deadline."""
    return settings(
        max_examples=examples(default),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, *suppress],
    )
