"""Prometheus metrics of the gateway, summed over every gunicorn worker and the worker process.

Counters and histograms are written to files under `PROMETHEUS_MULTIPROC_DIR` when it is set
(`gateway serve` and `gunicorn.conf.py` set it), so that `/metrics`, answered by any one
gunicorn worker, adds up every process of the node; without it they live in this process.
The metrics are built on first use, never at import: multiprocess mode must be chosen after
the directory is known. Backlogs (webhook jobs pending, ledger transactions unsealed) are read
from the database in one query, by a `BacklogSampler` that asks at most once per interval
however often `/metrics` is scraped, and cost nothing per request.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.orm import Session

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
BREAKER_STATES = ("closed", "open", "half_open")
# Seconds: HTTP answers and acquirer calls run from milliseconds to the 60 s worker timeout.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PENDING_KEY = "metrics.payments"
_Answer = TypeVar("_Answer")


@dataclasses.dataclass(frozen=True)
class _Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_seconds: Histogram
    payments: Counter
    acquirer_seconds: Histogram
    acquirer_errors: Counter
    breaker_state: Gauge
    breaker_transitions: Counter
    webhook_seconds: Histogram
    webhook_failures: Counter


_built: _Metrics | None = None
_lock = threading.Lock()


def _build() -> _Metrics:
    if os.environ.get(MULTIPROC_ENV):
        # prometheus_client picks its value class when first imported, which may have been
        # before `gateway serve` named the directory: pick again now that it is known (the
        # metrics below are the first of this process to use it).
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    return _Metrics(
        registry=registry,
        http_requests=Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route (the URL rule, not the path) and status.",
            ("endpoint", "method", "status"),
            registry=registry,
        ),
        http_seconds=Histogram(
            "gateway_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ("endpoint", "method"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        ),
        payments=Counter(
            "gateway_payments",
            "Payments that entered each status, by acquirer (none before routing).",
            ("status", "acquirer"),
            registry=registry,
        ),
        acquirer_seconds=Histogram(
            "gateway_acquirer_call_duration_seconds",
            "Time an acquirer took to answer a call (authorize, capture, cancel, refund, and "
            "the status inquiries status and refund_status).",
            ("acquirer", "call"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        ),
        acquirer_errors=Counter(
            "gateway_acquirer_call_errors",
            "Acquirer calls that did not answer: unavailable (nothing charged), unknown "
            "(no answer came back) or exception (the adapter raised).",
            ("acquirer", "call", "error"),
            registry=registry,
        ),
        breaker_state=Gauge(
            "gateway_circuit_breaker_state",
            "Processes whose circuit breaker for the acquirer is in this state (each gunicorn "
            "worker and the worker process keep their own).",
            ("acquirer", "state"),
            multiprocess_mode="livesum",
            registry=registry,
        ),
        breaker_transitions=Counter(
            "gateway_circuit_breaker_transitions",
            "Circuit breaker state changes, by acquirer.",
            ("acquirer", "from_state", "to_state"),
            registry=registry,
        ),
        webhook_seconds=Histogram(
            "gateway_webhook_delivery_duration_seconds",
            "Time of one webhook POST, DNS to response, whatever its outcome.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
            registry=registry,
        ),
        webhook_failures=Counter(
            "gateway_webhook_delivery_failures",
            "Webhook attempts that failed, by reason (an error class, or the HTTP status class).",
            ("reason",),
            registry=registry,
        ),
    )


def _metrics() -> _Metrics:
    global _built
    built = _built
    if built is None:
        with _lock:
            if _built is None:
                _built = _build()
            built = _built
    return built


def use_directory(path: Path) -> None:
    """Make `path` this node's fresh multiprocess directory, for this process and every
    process it starts: emptied, and named in `PROMETHEUS_MULTIPROC_DIR`."""
    global _built
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    with _lock:
        _built = None


def process_exited(pid: int) -> None:
    """Forget a dead process's live gauges (gunicorn's `child_exit`)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- recording


def http_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    m = _metrics()
    m.http_requests.labels(endpoint, method, str(status)).inc()
    m.http_seconds.labels(endpoint, method).observe(seconds)


def payment_moved(session: Session, status: str, acquirer: str | None) -> None:
    """Count a payment entering `status` once `session` commits; a rollback counts nothing."""
    _listen_to_sessions()
    session.info.setdefault(_PENDING_KEY, []).append((status, acquirer or "none"))


_listening = False


def _listen_to_sessions() -> None:
    global _listening
    if _listening:
        return
    with _lock:
        if not _listening:
            event.listen(Session, "after_commit", _committed)
            event.listen(Session, "after_rollback", _rolled_back)
            _listening = True


def _committed(session: Session) -> None:
    moved = session.info.pop(_PENDING_KEY, None)
    if moved:
        counter = _metrics().payments
        for status, acquirer in moved:
            counter.labels(status, acquirer).inc()


def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


def acquirer_call(acquirer: str, call: str, seconds: float, error: str | None) -> None:
    """One call to an acquirer and how long it took; `error` when it did not answer."""
    m = _metrics()
    m.acquirer_seconds.labels(acquirer, call).observe(seconds)
    if error is not None:
        m.acquirer_errors.labels(acquirer, call, error).inc()


def timed_acquirer_call(
    acquirer: str,
    call: str,
    send: Callable[[], _Answer],
    error_of: Callable[[_Answer], str | None],
) -> _Answer:
    """Make one call to an acquirer (`send`) and record it with `acquirer_call`: `error_of`
    names what an answer that is no answer was (None for a real answer); an exception counts
    as `exception` and propagates to the caller, which handles it as it always has."""
    started = time.perf_counter()
    try:
        answer = send()
    except Exception:
        acquirer_call(acquirer, call, time.perf_counter() - started, "exception")
        raise
    acquirer_call(acquirer, call, time.perf_counter() - started, error_of(answer))
    return answer


def breaker_moved(acquirer: str, before: str | None, after: str) -> None:
    """A breaker of this process is now `after` (`before` None: it was just made)."""
    m = _metrics()
    if before is not None:
        m.breaker_state.labels(acquirer, before).set(0)
        m.breaker_transitions.labels(acquirer, before, after).inc()
    m.breaker_state.labels(acquirer, after).set(1)


def webhook_attempt(seconds: float, failure: str | None) -> None:
    """One webhook POST; `failure` names why it failed, None when it was answered 2xx."""
    m = _metrics()
    m.webhook_seconds.observe(seconds)
    if failure is not None:
        m.webhook_failures.labels(failure).inc()


# --------------------------------------------------------------------------- scraping


@dataclasses.dataclass(frozen=True)
class Backlog:
    webhook_jobs_pending: int
    ledger_unsealed: int


# What a backlog sample's age is measured on: a monotonic clock, which no change of the wall
# clock can stop or hurry; tests move it (`set_monotonic`) instead of sleeping.
_monotonic: Callable[[], float] = time.monotonic


def set_monotonic(source: Callable[[], float] | None) -> None:
    """Replace the samplers' clock (tests); `None` restores `time.monotonic`."""
    global _monotonic
    _monotonic = source if source is not None else time.monotonic


class BacklogSampler:
    """The backlogs as last read, read again only once `interval_s` has passed.

    Whoever can reach `/metrics` may scrape it as often as they like: this process asks the
    database at most once per interval. A read that found the database away (None) stands for
    its interval too, so a database that does not answer is not asked again at every scrape.
    The lock makes a scrape that arrives during a read wait for its sample, not read again.
    """

    def __init__(self, read: Callable[[], Backlog | None], interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"a sample interval must be above 0 seconds, not {interval_s}")
        self._read = read
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._sample: Backlog | None = None
        self._taken_at: float | None = None

    def current(self) -> Backlog | None:
        with self._lock:
            now = _monotonic()
            if self._taken_at is None or now - self._taken_at >= self._interval_s:
                self._sample = self._read()
                self._taken_at = now
            return self._sample


class _BacklogCollector(Collector):
    """Gauges of the backlogs `read` gives when scraped; none when it has none (the database
    did not answer)."""

    def __init__(self, read: Callable[[], Backlog | None]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        backlog = self._read()
        if backlog is None:
            return
        yield GaugeMetricFamily(
            "gateway_webhook_backlog",
            "Webhook delivery jobs pending (due now or waiting for a retry).",
            value=backlog.webhook_jobs_pending,
        )
        yield GaugeMetricFamily(
            "gateway_ledger_seal_backlog",
            "Ledger transactions posted but not yet sealed into the hash chain.",
            value=backlog.ledger_unsealed,
        )


def exposition(read_backlog: Callable[[], Backlog | None]) -> bytes:
    """The text format of every metric: every process's when multiprocess, else this one's."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Registered(_metrics().registry))
    registry.register(_BacklogCollector(read_backlog))
    return generate_latest(registry)


class _Registered(Collector):
    """This process's own metrics, added to a registry made for one scrape."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()
