"""Fixed-window counters shared by every worker: in Redis when one is configured, in this
process otherwise and while Redis does not answer. The API's rate limits and the finance
console's sign-in limits count in them."""

from __future__ import annotations

import logging
import math
import threading
import time

from limits import RateLimitItem
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from payments import ratestore

log = logging.getLogger(__name__)

# A Redis that does not answer within this is taken as down: the limits then count in this
# process, and Redis is tried again after REDIS_RETRY_S (a warning logged each way).
REDIS_TIMEOUT_S = 0.5
REDIS_RETRY_S = 5.0
KEY_PREFIX = "gateway"


class Counters:
    """Fixed-window counters: in Redis when configured, shared by every worker; in this process
    otherwise, and while Redis does not answer. A store that fails never fails a request."""

    def __init__(self, redis_url: str | None) -> None:
        self._local = FixedWindowRateLimiter(storage_from_string(f"{ratestore.SCHEME}://"))
        self._shared = (
            FixedWindowRateLimiter(
                storage_from_string(
                    redis_url,
                    socket_connect_timeout=REDIS_TIMEOUT_S,
                    socket_timeout=REDIS_TIMEOUT_S,
                )
            )
            if redis_url
            else None
        )
        self._shared_away_until: float | None = None  # set while Redis does not answer
        self._lock = threading.Lock()

    def _counting(self) -> tuple[FixedWindowRateLimiter, bool]:
        """The counters to use now, and whether they are Redis's."""
        away_until = self._shared_away_until
        if self._shared is None or (away_until is not None and time.monotonic() < away_until):
            return self._local, False
        return self._shared, True

    def hit(self, limits: tuple[RateLimitItem, ...], counter: str) -> int | None:
        """Count one request against each of `limits` under `counter`: None if it is within
        them all, else the whole seconds until every one it passed lets a request through
        again (at least 1)."""
        counting, shared = self._counting()
        try:
            refused_until = 0.0
            for limit in limits:
                if not counting.hit(limit, KEY_PREFIX, counter):
                    stats = counting.get_window_stats(limit, KEY_PREFIX, counter)
                    refused_until = max(refused_until, stats.reset_time)
        except Exception as exc:  # a store that fails lets the request through
            if not shared:
                log.warning("rate limit counters failed", exc_info=exc)
                return None
            self._away(exc)
            return self.hit(limits, counter)
        self._answered(shared)
        if not refused_until:
            return None
        return max(1, math.ceil(refused_until - time.time()))

    def refused(self, limits: tuple[RateLimitItem, ...], counter: str) -> int | None:
        """Whether `counter` has used up any of `limits`, without counting: None if not, else
        the whole seconds until it may again (at least 1)."""
        counting, shared = self._counting()
        try:
            refused_until = 0.0
            for limit in limits:
                if not counting.test(limit, KEY_PREFIX, counter):
                    stats = counting.get_window_stats(limit, KEY_PREFIX, counter)
                    refused_until = max(refused_until, stats.reset_time)
        except Exception as exc:  # a store that fails refuses nothing
            if not shared:
                log.warning("rate limit counters failed", exc_info=exc)
                return None
            self._away(exc)
            return self.refused(limits, counter)
        self._answered(shared)
        if not refused_until:
            return None
        return max(1, math.ceil(refused_until - time.time()))

    def _away(self, exc: Exception) -> None:
        with self._lock:
            if self._shared_away_until is None:
                log.warning(
                    "Redis does not answer; falling back to in-memory rate limit counters",
                    extra={"error": repr(exc)},
                )
            self._shared_away_until = time.monotonic() + REDIS_RETRY_S

    def _answered(self, shared: bool) -> None:
        if shared and self._shared_away_until is not None:
            with self._lock:
                if self._shared_away_until is not None:
                    self._shared_away_until = None
                    log.warning("Redis answers again; rate limits are counted there")
