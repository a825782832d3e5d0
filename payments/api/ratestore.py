"""The rate limits' in-process counters: fixed windows in a dict behind one lock, with expired
windows swept inline at most once a second. A `limits` storage (its public `Storage` interface,
registered under `gateway-memory://`), written here because `limits`' own memory storage
starts a timer thread to expire counters, on most requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from limits.storage import Storage

SCHEME = "gateway-memory"
SWEEP_EVERY_S = 1.0


class ProcessCounters(Storage):
    """Counts hits per key in fixed windows, for `FixedWindowRateLimiter`: a key's window
    starts at its first hit and lasts `expiry` seconds; a counter read after its window is
    zero at once, so sweeping only gives memory back."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        clock: Callable[[], float] = time.time,
        **options: str,
    ) -> None:
        self._counts: dict[str, int] = {}
        self._window_ends: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = self._clock()
        with self._lock:
            self._sweep(now)
            if self._window_ends.get(key, 0.0) <= now:  # a new window starts with this hit
                self._counts[key] = 0
                self._window_ends[key] = now + expiry
            self._counts[key] += amount
            return self._counts[key]

    def get(self, key: str) -> int:
        with self._lock:
            if self._window_ends.get(key, 0.0) <= self._clock():
                return 0
            return self._counts.get(key, 0)

    def get_expiry(self, key: str) -> float:
        with self._lock:
            return self._window_ends.get(key, self._clock())

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)
            self._window_ends.pop(key, None)

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            count = len(self._counts)
            self._counts.clear()
            self._window_ends.clear()
            return count

    def keys(self) -> int:
        """How many windows are held (expired ones included until the next sweep)."""
        with self._lock:
            return len(self._counts)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_S
        for key in [k for k, end in self._window_ends.items() if end <= now]:
            del self._counts[key], self._window_ends[key]
