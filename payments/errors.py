"""Domain errors with the HTTP status, type and code that API.md gives each."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error a client can act on; the API turns it into `{"error": {...}}`."""

    status = 400
    type = "invalid_request"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        details: dict[str, Any] | None = None,
        message_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.details = details
        self.message_args = message_args or {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request"
    code = "invalid_request"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request"
    code = "body_too_large"


class ValidationFailed(GatewayError):
    status = 422
    type = "invalid_request"
    code = "parameter_invalid"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication"
    code = "authentication_failed"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission"
    code = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "not_found"
    code = "resource_missing"


class Conflict(GatewayError):
    status = 409
    type = "conflict"
    code = "invalid_state"


class RateLimited(GatewayError):
    """Too many requests: the API answers it with `Retry-After`."""

    status = 429
    type = "rate_limited"
    code = "rate_limited"


class ProviderFailed(GatewayError):
    status = 502
    type = "provider"
    code = "provider_error"


class Unavailable(GatewayError):
    status = 503
    type = "unavailable"
    code = "unavailable"
