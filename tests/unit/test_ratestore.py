"""The rate limits' in-process counters: counted as `limits`' fixed windows count, expired
windows swept inline, no thread started."""

from __future__ import annotations

import threading

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from payments.api.ratestore import SCHEME, SWEEP_EVERY_S, ProcessCounters


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_scheme_names_the_counters_and_they_limit_like_limits_memory() -> None:
    storage = storage_from_string(f"{SCHEME}://")
    assert isinstance(storage, ProcessCounters)
    three = parse("3/minute")
    ours = FixedWindowRateLimiter(storage)
    theirs = FixedWindowRateLimiter(MemoryStorage())
    assert [ours.hit(three, "key") for _ in range(5)] == [True, True, True, False, False]
    assert [theirs.hit(three, "key") for _ in range(5)] == [True, True, True, False, False]
    assert ours.get_window_stats(three, "key").remaining == 0


def test_a_window_ends_and_a_new_one_starts_with_the_next_hit() -> None:
    clock = Clock()
    storage = ProcessCounters(clock=clock)
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.get_expiry("k") == 1_060.0
    clock.now = 1_060.0
    assert storage.get("k") == 0  # read after its window: zero at once
    assert storage.incr("k", 60) == 1 and storage.get_expiry("k") == 1_120.0
    storage.clear("k")
    assert storage.get("k") == 0


def test_expired_windows_are_swept_inline_and_no_thread_is_started() -> None:
    clock = Clock()
    before = threading.active_count()
    storage = ProcessCounters(clock=clock)
    storage.incr("old", 0.5)
    storage.incr("live", 60)
    clock.now += 0.6
    storage.incr("live", 60)  # within a second of the last sweep: nothing swept
    assert storage.keys() == 2
    clock.now += SWEEP_EVERY_S
    storage.incr("live", 60)
    assert storage.keys() == 1 and storage.get("live") == 3
    assert threading.active_count() == before
