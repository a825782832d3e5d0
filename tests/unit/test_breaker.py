"""Circuit breakers open after repeated unavailable results and let one trial through later."""

from __future__ import annotations

import logging
import threading

import pytest

from config import BreakerConfig
from payments.breaker import Breakers, BreakerState, CircuitBreaker

CONFIG = BreakerConfig(failures=3, window_s=60.0, cooldown_s=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("sandbox", CONFIG, clock)


def _open(breaker: CircuitBreaker, clock: Clock) -> None:
    for _ in range(CONFIG.failures):
        breaker.record_unavailable()
        clock.now += 1
    assert breaker.state == BreakerState.OPEN


def test_opens_after_the_configured_failures_within_the_window(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(CONFIG.failures - 1):
        breaker.record_unavailable()
        clock.now += 10
    assert (breaker.state, breaker.allow()) == (BreakerState.CLOSED, True)
    breaker.record_unavailable()
    assert breaker.state == BreakerState.OPEN
    assert not breaker.available() and not breaker.allow()
    assert breaker.transitions == {("closed", "open"): 1}


def test_failures_spread_beyond_the_window_do_not_open_it(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(10):
        breaker.record_unavailable()
        clock.now += CONFIG.window_s / (CONFIG.failures - 1)
    assert breaker.state == BreakerState.CLOSED
    assert breaker.transitions == {}


def test_successes_while_closed_do_not_hide_failures(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.failures):
        breaker.record_unavailable()
        breaker.record_success()
    assert breaker.state == BreakerState.OPEN


def test_stays_open_for_the_cool_down(breaker: CircuitBreaker, clock: Clock) -> None:
    _open(breaker, clock)
    clock.now += CONFIG.cooldown_s - 2
    assert not breaker.available() and not breaker.allow()
    breaker.record_unavailable()  # a call that began before the breaker opened
    breaker.record_success()
    assert breaker.state == BreakerState.OPEN


def test_half_open_lets_exactly_one_trial_through(breaker: CircuitBreaker, clock: Clock) -> None:
    _open(breaker, clock)
    clock.now += CONFIG.cooldown_s
    assert breaker.state == BreakerState.HALF_OPEN
    # Routing looks without claiming, as often as it likes.
    assert breaker.available() and breaker.available()
    assert breaker.allow()
    assert not breaker.allow()
    assert not breaker.available()


def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: Clock) -> None:
    _open(breaker, clock)
    clock.now += CONFIG.cooldown_s
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()
    # The failures before it opened are forgotten: it takes a full count again.
    for _ in range(CONFIG.failures - 1):
        breaker.record_unavailable()
    assert breaker.state == BreakerState.CLOSED
    assert breaker.transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }


def test_a_failed_trial_opens_it_for_another_cool_down(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    _open(breaker, clock)
    clock.now += CONFIG.cooldown_s
    assert breaker.allow()
    breaker.record_unavailable()
    assert breaker.state == BreakerState.OPEN
    clock.now += CONFIG.cooldown_s - 1
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()
    assert breaker.transitions[("half_open", "open")] == 1
    assert breaker.transitions[("open", "half_open")] == 2


def test_a_trial_that_never_reports_is_given_up_after_a_cool_down(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    _open(breaker, clock)
    clock.now += CONFIG.cooldown_s
    assert breaker.allow()
    clock.now += CONFIG.cooldown_s
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.allow()


def test_transitions_are_logged(
    breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="payments.breaker"):
        _open(breaker, clock)
        clock.now += CONFIG.cooldown_s
        assert breaker.allow()
        breaker.record_success()
    moves = [
        (r.levelname, r.__dict__["provider"], r.__dict__["from"], r.__dict__["to"])
        for r in caplog.records
    ]
    assert moves == [
        ("WARNING", "sandbox", "closed", "open"),
        ("INFO", "sandbox", "open", "half_open"),
        ("INFO", "sandbox", "half_open", "closed"),
    ]


def test_breakers_keep_one_per_acquirer(clock: Clock) -> None:
    breakers = Breakers(CONFIG, clock)
    assert breakers.for_name("sandbox") is breakers.for_name("sandbox")
    for _ in range(CONFIG.failures):
        breakers.for_name("sandbox").record_unavailable()
    assert not breakers.for_name("sandbox").available()
    assert breakers.for_name("sandbox-backup").available()
    assert breakers.transitions() == {("sandbox", "closed", "open"): 1}


def test_only_one_of_many_threads_gets_the_trial(clock: Clock) -> None:
    breakers = Breakers(CONFIG, clock)
    breaker = breakers.for_name("sandbox")
    _open(breaker, clock)
    clock.now += CONFIG.cooldown_s
    start = threading.Barrier(8)
    granted: list[bool] = []

    def claim() -> None:
        start.wait()
        granted.append(breakers.for_name("sandbox").allow())

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(granted) == [False] * 7 + [True]
