"""Rate limits: per API key (or its agency's own), per address without a valid key and on /pay,
counted in fixed windows by the `limits` library, in Redis when one is configured."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from config.settings import Settings, check_rate_limit
from payments.api import ratestore
from payments.api.context import caller
from payments.api.http import REQUEST_ID_RE, error_response, is_api
from payments.checkout.pages import error_page
from payments.errors import GatewayError, RateLimited
from payments.principal import Principal

log = logging.getLogger(__name__)

# Pages limited per client address, GETs and POSTs apart: the hosted page and the finance
# console's sign-in (whose failures also lock the account: payments/finance/accounts.py).
PAGE_PREFIXES = ("/pay/", "/finance/sign-in")
# A Redis that does not answer within this is taken as down: the limits then count in this
# process, and Redis is tried again after REDIS_RETRY_S (a warning logged each way).
REDIS_TIMEOUT_S = 0.5
REDIS_RETRY_S = 5.0
KEY_PREFIX = "gateway"
PER_KEY = "api-key"  # the counters of API keys are named so


def _is_page() -> bool:
    return request.path.startswith(PAGE_PREFIXES)


def _address() -> str:
    return request.remote_addr or "unknown"


def _caller() -> Principal | None:
    """The API key the request authenticates with; None without a valid one. The limits run
    before `payments.api.http` (and so before any idempotency key is claimed); the key is
    verified once for both."""
    try:
        return caller()
    except GatewayError:  # a malformed, unknown or revoked key, or the database is away
        return None


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


@functools.lru_cache(maxsize=64)
def _parsed(limit: str) -> tuple[RateLimitItem, ...]:
    """The limits of a limit string such as `100/second;3000/minute`."""
    return tuple(parse_many(limit))


def _applicable(settings: Settings, by_agency: dict[str, str]) -> tuple[str, str]:
    """The one limit a request counts against and the counter it counts in: per API key on
    /v1 (its agency's own or the default), per address on /v1 without a valid key, and per
    address on the hosted pages, GETs and POSTs apart; nothing else is limited ("")."""
    if is_api(request.path):
        found = _caller()
        if found is not None:
            limit = by_agency.get(found.agency_id or "", settings.rate_limit)
            return limit, f"{PER_KEY}:{found.key_id}"
        return settings.rate_limit_unauthenticated, f"api-address:{_address()}"
    if _is_page() and request.method == "POST":
        return settings.rate_limit_checkout_post, f"page-post:{_address()}"
    if _is_page():
        return settings.rate_limit_checkout, f"page-get:{_address()}"
    return "", ""


def _refused(retry_after_s: int, per_key: bool) -> Response:
    """The answer to a breached limit: the API's error shape, or the hosted page's error page
    (asking the payer to try again in a few minutes), with Retry-After."""
    if "request_id" not in g:  # refused before payments.api.http assigns one
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else f"req_{uuid.uuid4().hex}"
    if _is_page():
        response = error_page(429, "server_error")
    else:
        who = "this API key" if per_key else "this address"
        response = error_response(
            RateLimited(f"too many requests from {who}; retry after {retry_after_s} seconds")
        )
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def _check_settings(settings: Settings) -> dict[str, str]:
    """Refuse a malformed limit at start-up; the agencies' own limits by agency."""
    for name, value in (
        ("rate_limit", settings.rate_limit),
        ("rate_limit_unauthenticated", settings.rate_limit_unauthenticated),
        ("rate_limit_checkout", settings.rate_limit_checkout),
        ("rate_limit_checkout_post", settings.rate_limit_checkout_post),
        *((f"rate_limits_by_agency[{a}]", v) for a, v in settings.rate_limits_by_agency),
    ):
        check_rate_limit(value, name)
    return dict(settings.rate_limits_by_agency)


def install(app: Flask, settings: Settings) -> Counters:
    """Limit `app`'s /v1 calls and hosted pages. Call before `http.install`: Flask runs
    before-request hooks in order, so a limited request is refused before `http` parses it or
    claims its idempotency key."""
    by_agency = _check_settings(settings)
    counters = Counters(settings.redis_url)

    @app.before_request
    def _limit() -> Response | None:
        limit, counter = _applicable(settings, by_agency)
        if not limit:
            return None
        retry_after_s = counters.hit(_parsed(limit), counter)
        if retry_after_s is None:
            return None
        return _refused(retry_after_s, per_key=counter.startswith(f"{PER_KEY}:"))

    return counters
