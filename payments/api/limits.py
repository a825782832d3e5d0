"""Rate limits: per API key (or its agency's own), per address without a valid key and on /pay."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit

from config.settings import Settings, check_rate_limit
from payments.api import ratestore
from payments.api.context import caller
from payments.api.http import REQUEST_ID_RE, error_response
from payments.checkout.pages import error_page
from payments.errors import GatewayError, RateLimited
from payments.service.access import Principal

# Pages limited per client address, GETs and POSTs apart; the finance console's sign-in page
# joins them by its path when it exists.
PAGE_PREFIXES = ("/pay/",)
# A Redis that does not answer within this is taken as down: the limits then count in this
# process until it answers again (flask-limiter's in-memory fallback, with a logged warning).
REDIS_TIMEOUT_S = 0.5
KEY_PREFIX = "gateway"
PER_KEY = "api-key"  # the counters of API keys are named so


def _is_api() -> bool:
    return request.path == "/v1" or request.path.startswith("/v1/")


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


def _retry_after_s(breached: RequestLimit) -> int:
    """Whole seconds until the breached window lets a request through again (at least 1)."""
    try:
        reset_at = breached.window[0]
    except Exception:  # the store went away between the hit and this read
        return max(1, breached.limit.get_expiry())
    return max(1, math.ceil(reset_at - time.time()))


def _on_breach(breached: RequestLimit) -> None:
    g.rate_limit_retry_after_s = _retry_after_s(breached)
    g.rate_limit_per_key = any(arg.startswith(f"{PER_KEY}:") for arg in breached.request_args)


def _limits(settings: Settings) -> list[str | Callable[[], str] | ApplicationLimit]:
    """One limit whose rate and counter depend on the request: per API key on /v1 (its
    agency's own or the default), per address on /v1 without a valid key, and per address on
    the hosted pages, GETs and POSTs apart; nothing else is limited (an empty string)."""
    for name, value in (
        ("rate_limit", settings.rate_limit),
        ("rate_limit_unauthenticated", settings.rate_limit_unauthenticated),
        ("rate_limit_checkout", settings.rate_limit_checkout),
        ("rate_limit_checkout_post", settings.rate_limit_checkout_post),
        *((f"rate_limits_by_agency[{a}]", v) for a, v in settings.rate_limits_by_agency),
    ):
        check_rate_limit(value, name)
    by_agency = dict(settings.rate_limits_by_agency)

    def applicable() -> tuple[str, str]:
        """The one limit this request counts against and what it counts by, worked out once
        per request (flask-limiter asks for both)."""
        known: tuple[str, str] | None = g.get("rate_limit_applicable")
        if known is not None:
            return known
        limit, counted_by = "", ""
        if _is_api():
            caller = _caller()
            if caller is not None:
                limit = by_agency.get(caller.agency_id or "", settings.rate_limit)
                counted_by = f"{PER_KEY}:{caller.key_id}"
            else:
                limit = settings.rate_limit_unauthenticated
                counted_by = f"api-address:{_address()}"
        elif _is_page() and request.method == "POST":
            limit, counted_by = settings.rate_limit_checkout_post, f"page-post:{_address()}"
        elif _is_page():
            limit, counted_by = settings.rate_limit_checkout, f"page-get:{_address()}"
        g.rate_limit_applicable = (limit, counted_by)
        return limit, counted_by

    return [
        ApplicationLimit(
            lambda: applicable()[0], key_function=lambda: applicable()[1], scope="requests"
        )
    ]


def _refused(exc: RateLimitExceeded) -> Response:
    """The answer to a breached limit: the API's error shape, or the hosted page's error page
    (asking the payer to try again in a few minutes)."""
    if "request_id" not in g:  # refused before payments.api.http assigns one
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else f"req_{uuid.uuid4().hex}"
    retry_after_s = g.setdefault("rate_limit_retry_after_s", max(1, exc.limit.limit.get_expiry()))
    if _is_page():
        return error_page(429, "server_error")
    who = "this API key" if g.get("rate_limit_per_key") else "this address"
    return error_response(
        RateLimited(f"too many requests from {who}; retry after {retry_after_s} seconds")
    )


def _retry_after(response: Response) -> Response:
    if response.status_code == 429 and "rate_limit_retry_after_s" in g:
        response.headers["Retry-After"] = str(g.rate_limit_retry_after_s)
    return response


def install(app: Flask, settings: Settings) -> Limiter:
    """Limit `app`'s /v1 calls and hosted pages. Call before `http.install`: Flask runs
    before-request hooks in order, so a limited request is refused before `http` parses it or
    claims its idempotency key."""
    shared = settings.redis_url is not None
    # redis.Redis takes its timeouts in (fractional) seconds.
    redis_options: dict[str, Any] = {
        "socket_connect_timeout": REDIS_TIMEOUT_S,
        "socket_timeout": REDIS_TIMEOUT_S,
    }
    limiter = Limiter(
        key_func=_address,
        application_limits=_limits(settings),
        storage_uri=settings.redis_url or f"{ratestore.SCHEME}://",
        storage_options=redis_options if shared else {},
        strategy="fixed-window",
        key_prefix=KEY_PREFIX,
        in_memory_fallback_enabled=shared,
        swallow_errors=True,
        on_breach=_on_breach,
        headers_enabled=False,
        # Unrouted paths count too (flask-limiter skips requests without an endpoint).
        request_identifier=lambda: request.endpoint or "unrouted",
    )
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _refused)
    app.after_request(_retry_after)
    return limiter
