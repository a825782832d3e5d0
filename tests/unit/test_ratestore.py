"""The rate limits' in-process counters: counted as `limits` counts them, swept without a
thread per request."""

from __future__ import annotations

import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from payments.api.ratestore import SCHEME, SweptMemoryStorage


def test_the_scheme_names_the_swept_storage_and_it_limits_like_memory() -> None:
    storage = storage_from_string(f"{SCHEME}://")
    assert isinstance(storage, SweptMemoryStorage)
    limiter = FixedWindowRateLimiter(storage)
    three = parse("3/minute")
    assert [limiter.hit(three, "key") for _ in range(4)] == [True, True, True, False]


def test_counting_starts_no_thread_and_expired_counters_are_swept() -> None:
    storage = SweptMemoryStorage()
    first_timer = storage.timer
    first_timer.join()  # the one timer `limits` starts with the storage
    storage.incr("live", 60)  # sweeps, and not again for a second
    storage.incr("old", 0.01)
    for _ in range(4):
        storage.incr("live", 60)
        time.sleep(0.015)  # past the 10 ms after which `limits` would start another timer
    assert storage.timer is first_timer
    assert storage.get("live") == 5
    assert "old" in storage.storage  # not read since it expired, not swept yet
    storage._next_sweep = 0.0  # as if a second had passed
    storage.incr("live", 60)
    assert "old" not in storage.storage
    assert storage.get("live") == 6
