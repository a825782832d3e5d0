"""The console's browser protections: the hosted page's response headers, with forms that
post only to the console itself, and CSRF tokens kept in the signed session cookie."""

from __future__ import annotations

from flask import Response, request
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms import ValidationError

CSRF_FIELD = "csrf_token"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)


def headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def csrf_token() -> str:
    return str(generate_csrf())


def csrf_ok() -> bool:
    """Whether the POSTed form carries this session's token (checked here rather than by
    `CSRFProtect`, which would guard the JSON API too)."""
    try:
        validate_csrf(request.form.get(CSRF_FIELD))
    except ValidationError:
        return False
    return True
