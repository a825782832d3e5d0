"""The Flask app factory: one composition root for the HTTP side."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_smorest import Api

from config import Settings, load_settings
from payments import logs
from payments.api import (
    http,
    ledger,
    limits,
    notifications,
    ops,
    payments,
    reads,
    refunds,
    reports,
    settlements,
    webhooks,
)
from payments.checkout import pages as checkout_pages
from payments.checkout import scheme_simulators, simulator
from payments.finance import pages as finance_pages
from payments.gateway import Gateway, build_gateway
from payments.schemas import ErrorSchema
from payments.settlement.desk import GatewaySettlementDesk


class GatewayApi(Api):  # type: ignore[misc]
    """flask-smorest, documenting the gateway's own error shape."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all `default` answer: each operation lists the statuses it can give
    # (payments/api/openapi.py), so an undocumented one is a disagreement the fuzzer sees.
    DEFAULT_ERROR_RESPONSE_NAME = None


class PageSessions(SecureCookieSessionInterface):
    """The signed session cookie for the pages only, which keep their CSRF secret in it. The
    API is stateless: its requests get Flask's null session (empty; writing to it raises)
    instead of a cookie read and a serializer built for every request."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if http.is_api(request.path):
            return None
        return super().open_session(app, request)


def create_app(settings: Settings | None = None, gw: Gateway | None = None) -> Flask:
    settings = settings or (gw.settings if gw else load_settings())
    gw = gw or build_gateway(settings)
    logs.configure(settings.log_level)
    app = Flask("payments")
    app.session_interface = PageSessions()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # A page session cookie signed before a secret key rotation still opens.
        SECRET_KEY_FALLBACKS=[settings.previous_secret_key] if settings.previous_secret_key else [],
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # The session cookie carries the pages' CSRF secret and the finance console's sign-in.
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env != "development",
        WTF_CSRF_TIME_LIMIT=4 * 3600,
        API_TITLE="GCC e-payment gateway",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
            "info": {"description": "Payments, refunds, events and balances of the gateway."},
        },
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["gateway"] = gw
    app.extensions["settlement_desk"] = GatewaySettlementDesk(gw)
    api = GatewayApi(app)
    for blueprint in (
        payments.blp,
        refunds.blp,
        reads.blp,
        ledger.blp,
        settlements.blp,
        reports.blp,
        webhooks.blp,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(ops.blp)
    app.register_blueprint(notifications.blp)
    app.register_blueprint(checkout_pages.blp)
    app.register_blueprint(finance_pages.blp)
    # The sandbox's 3-D Secure simulator exists only outside production.
    app.register_blueprint(simulator.absent_blp if settings.is_production else simulator.blp)
    app.register_blueprint(
        scheme_simulators.absent_blp if settings.is_production else scheme_simulators.blp
    )
    limits.install(app, settings)  # before http: a limited request is refused untouched
    http.install(app)  # after Api(), so our error handlers replace flask-smorest's
    return app
