"""Browser-facing protections of the payer's pages: response headers and CSRF tokens."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms import ValidationError

from config import Settings

CSRF_FIELD = "csrf_token"


def content_security_policy(settings: Settings) -> str:
    """No script at all, styles only from the gateway itself.

    `form-action` also governs where a form's POST may be redirected, and the card and cancel
    forms answer with a 303 to the acquirer's page or to the agency's `return_url`; so it must
    name those origins. They are not known in advance, hence any `https:` address (and `http:`
    outside production, where API.md allows `http` return URLs).
    """
    form_action = "'self' https:" if settings.is_production else "'self' http: https:"
    return "; ".join(
        (
            "default-src 'none'",
            "style-src 'self'",
            "img-src 'self'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )


def _headers(response: Response) -> Response:
    settings: Settings = current_app.extensions["gateway"].settings
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def protect(blueprint: Blueprint) -> None:
    """Send the headers on every response of `blueprint`, error pages included."""
    blueprint.after_request(_headers)


def csrf_token() -> str:
    """The token for the forms of this page (kept in the signed session cookie)."""
    return str(generate_csrf())


def csrf_ok() -> bool:
    """Whether the POSTed form carries this session's token.

    Checked here rather than through `CSRFProtect`: that one guards every view of the app
    (the JSON API and acquirer notifications must not need a token) and on HTTPS also
    demands a same-origin Referer, which `Referrer-Policy: no-referrer` never sends.
    """
    try:
        validate_csrf(request.form.get(CSRF_FIELD))
    except ValidationError:
        return False
    return True
