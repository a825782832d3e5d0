"""Access to the gateway and the calling principal from inside a request."""

from __future__ import annotations

from flask import current_app, g, request

from payments.errors import AuthenticationFailed, GatewayError, PermissionDenied
from payments.gateway import Gateway
from payments.principal import Principal
from payments.service.access import verify


def gateway() -> Gateway:
    gw: Gateway = current_app.extensions["gateway"]
    return gw


def principal() -> Principal:
    found: Principal | None = g.get("principal")
    if found is None:
        raise AuthenticationFailed("an API key is required")
    return found


def agency_principal() -> Principal:
    """The caller, who must hold an agency key (finance keys only read)."""
    found = principal()
    if found.is_finance:
        raise PermissionDenied("a finance key may only read")
    return found


def caller() -> Principal:
    """The principal of the request's `Authorization: Bearer` key, verified once per request
    (the rate limits ask first, then `payments.api.http`); raises what refused it."""
    if "caller" not in g:
        try:
            g.caller = _verify_header()
        except GatewayError as exc:  # malformed, unknown, revoked, or the database is away
            g.caller = exc
    if isinstance(g.caller, GatewayError):
        raise g.caller
    found: Principal = g.caller
    return found


def _verify_header() -> Principal:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed("send the API key as 'Authorization: Bearer <key>'")
    return verify(gateway(), secret.strip())
