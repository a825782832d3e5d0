"""A small in-process cache whose entries expire after a fixed time, for facts that may be a
second stale (verified API keys and their agencies)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most `max_entries` values, each kept `ttl_s` seconds from when it was put. Full, it
    starts again empty: cheaper than tracking use, and a miss only costs one look-up."""

    def __init__(
        self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[V, float]] = {}

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        value, expires_at = found
        if self._clock() >= expires_at:
            self._entries.pop(key, None)
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (value, self._clock() + self.ttl_s)

    def forget(self, matches: Callable[[V], bool]) -> None:
        """Drop every entry whose value `matches` (a key revoked in this process)."""
        for key in [k for k, (v, _) in self._entries.items() if matches(v)]:
            self._entries.pop(key, None)
