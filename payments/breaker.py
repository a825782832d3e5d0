"""Circuit breakers: stop offering payments to an acquirer that keeps answering `unavailable`.

A breaker per acquirer instance goes closed -> open after `failures` unavailable results within
`window_s` seconds, stays open for `cooldown_s`, then turns half-open and lets exactly one trial
call through: its success closes the breaker, another unavailable result opens it for a new
cool-down. Routing asks `available()`, which claims nothing, for every acquirer of a rule; the
caller claims the trial with `allow()` only just before it calls that acquirer, so a route that
lists several acquirers does not use up their trials.

State lives in this process: each gunicorn worker (and the delivery worker) keeps its own
breakers and counts its own failures; `gateway_circuit_breaker_state` counts the processes in
each state as each last saw it (an open breaker turns half-open when next asked). That is
enough to stop hammering a failing acquirer and needs no shared store; a payment is never
charged twice because of it, since failover only follows results that say nothing was charged.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Callable

from config import BreakerConfig
from payments import metrics

log = logging.getLogger(__name__)


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One acquirer instance's breaker; every method is safe to call from several threads."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert config.failures >= 1 and config.window_s > 0 and config.cooldown_s > 0
        self.name = name
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        # Only the last `failures` times matter: the breaker opens when the oldest of them
        # is still within the window, so the list never grows beyond that.
        self._failures: collections.deque[float] = collections.deque(maxlen=config.failures)
        self._opened_at = 0.0
        self._trial_started_at: float | None = None
        # (from, to) -> how many times, in this breaker.
        self.transitions: dict[tuple[str, str], int] = {}
        metrics.breaker_moved(name, None, BreakerState.CLOSED.value)

    def transition_counts(self) -> dict[tuple[str, str], int]:
        """A copy of `transitions` taken under the lock."""
        with self._lock:
            return dict(self.transitions)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current(self._clock())

    def available(self) -> bool:
        """Could a call go to this acquirer now? Claims nothing: for routing."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            return state == BreakerState.CLOSED or (
                state == BreakerState.HALF_OPEN and not self._trial_running(now)
            )

    def allow(self) -> bool:
        """May the caller call this acquirer now? In half-open this claims the one trial."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            if state == BreakerState.CLOSED:
                return True
            if state == BreakerState.OPEN or self._trial_running(now):
                return False
            self._trial_started_at = now
            return True

    def record_success(self) -> None:
        """The acquirer answered (approved, declined, anything but unavailable)."""
        with self._lock:
            if self._current(self._clock()) == BreakerState.HALF_OPEN:
                self._failures.clear()
                self._move(BreakerState.CLOSED)

    def record_unavailable(self) -> None:
        """The acquirer said it could not take the call and charged nothing."""
        with self._lock:
            now = self._clock()
            state = self._current(now)
            if state == BreakerState.HALF_OPEN:
                self._open(now)
            elif state == BreakerState.CLOSED:
                self._failures.append(now)
                window_full = len(self._failures) == self.config.failures
                if window_full and now - self._failures[0] < self.config.window_s:
                    self._open(now)
            # Open: a call that started before the breaker opened adds nothing.

    def _current(self, now: float) -> BreakerState:
        """The state at `now`; the cool-down ending is a transition of its own."""
        if self._state == BreakerState.OPEN and now - self._opened_at >= self.config.cooldown_s:
            self._trial_started_at = None
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def _trial_running(self, now: float) -> bool:
        # A trial whose result never came back (the caller crashed, or its outcome was
        # unknown and it recorded nothing) is given up after one cool-down, so the breaker
        # cannot stay half-open and closed to everyone for ever.
        started = self._trial_started_at
        return started is not None and now - started < self.config.cooldown_s

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._trial_started_at = None
        self._failures.clear()
        self._move(BreakerState.OPEN)

    def _move(self, to: BreakerState) -> None:
        before = self._state
        self._state = to
        key = (before.value, to.value)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        metrics.breaker_moved(self.name, before.value, to.value)
        log.log(
            logging.WARNING if to == BreakerState.OPEN else logging.INFO,
            "circuit breaker %s: %s -> %s",
            self.name,
            before.value,
            to.value,
            extra={"provider": self.name, "from": before.value, "to": to.value},
        )


class Breakers:
    """The breakers of one process, one per acquirer instance, made on first use."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def for_name(self, name: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(name, self.config, self._clock)
                self._breakers[name] = breaker
            return breaker

    def transitions(self) -> dict[tuple[str, str, str], int]:
        """(acquirer, from, to) -> count, over every breaker of this process."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {
            (breaker.name, *key): count
            for breaker in breakers
            for key, count in breaker.transition_counts().items()
        }
