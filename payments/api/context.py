"""Access to the gateway and the calling principal from inside a request."""

from __future__ import annotations

from flask import current_app, g

from payments.errors import AuthenticationFailed, PermissionDenied
from payments.gateway import Gateway
from payments.service.access import Principal


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
