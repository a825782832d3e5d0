"""The rate limits' in-process counters: `limits`' memory storage, with expired counters swept
inline at most once a second instead of by a timer thread it would start on most requests."""

from __future__ import annotations

import time

from limits.storage import MemoryStorage

SCHEME = "gateway-memory"
SWEEP_EVERY_S = 1.0


class SweptMemoryStorage(MemoryStorage):
    """`memory://` as `limits` keeps it, under the scheme `gateway-memory://`. A counter read
    after its window is dropped on the spot (MemoryStorage.get), so sweeping only gives back
    memory: once a second is plenty, and starting a thread for it costs a request more than
    its rate limit does."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
