"""Rate limits: per API key (or its agency's own), per address without a valid key and on /pay,
counted in fixed windows by the `limits` library, in Redis when one is configured."""

from __future__ import annotations

import functools
import logging
import uuid

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse_many

from config.settings import Settings, check_rate_limit
from payments.api.context import caller
from payments.api.http import REQUEST_ID_RE, error_response, is_api
from payments.checkout.pages import error_page
from payments.counters import Counters
from payments.errors import GatewayError, RateLimited
from payments.principal import Principal

log = logging.getLogger(__name__)

# Pages limited per client address, GETs and POSTs apart: the hosted page and the finance
# console's sign-in (whose failures are limited per account too, payments/finance/guard.py).
PAGE_PREFIXES = ("/pay/", "/finance/sign-in")
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
