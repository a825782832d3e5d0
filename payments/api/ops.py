"""Operations endpoints (liveness, readiness, Prometheus metrics) and the per-request hooks that
time every request and give every log line of a request its request id, agency and payment."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, g, has_request_context, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from payments import logs, metrics
from payments.api.context import gateway
from payments.migrate import is_current

blp = Blueprint("ops", __name__)
log = logging.getLogger("gateway.ops")


@blp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blp.get("/readyz")
def readyz() -> tuple[Response, int]:
    gw = gateway()
    try:
        with gw.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = is_current(gw.db.engine)
    except Exception:
        return jsonify({"status": "unavailable", "database": "unreachable"}), 503
    if not current:
        return jsonify({"status": "unavailable", "database": "migrations pending"}), 503
    return jsonify({"status": "ok", "database": "ok"}), 200


@blp.get("/metrics")
def metrics_text() -> Response:
    """Prometheus text format: this node's processes, and the backlogs read now."""
    response = Response(metrics.exposition(_backlog), status=200)
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


def _backlog() -> metrics.Backlog | None:
    try:
        with gateway().db.read() as session:
            return metrics.read_backlog(session)
    except SQLAlchemyError:
        log.warning("metrics: the database did not answer; backlogs left out")
        return None


# --------------------------------------------------------------------------- every request
# Registered with the blueprint, which the app registers before its other hooks: the clock
# starts before authentication and stops after the idempotency key is stored.


@blp.before_app_request
def _start_clock() -> None:
    g.metrics_started_at = time.perf_counter()


@blp.after_app_request
def _count(response: Response) -> Response:
    started = g.get("metrics_started_at")
    rule = request.url_rule
    metrics.http_request(
        rule.rule if rule is not None else "unmatched",
        request.method,
        response.status_code,
        time.perf_counter() - started if started is not None else 0.0,
    )
    return response


def _request_fields() -> dict[str, Any]:
    """The ids every log line written while answering a request carries."""
    if not has_request_context():
        return {}
    fields: dict[str, Any] = {}
    request_id = g.get("request_id")
    if request_id:
        fields["request_id"] = request_id
    principal = g.get("principal")
    if principal is not None and principal.agency_id:
        fields["agency"] = principal.agency_id
    payment = (request.view_args or {}).get("payment_id")
    if payment:
        fields["payment"] = payment
    return fields


@blp.record_once
def _log_request_fields(_state: BlueprintSetupState) -> None:
    logs.add_context(_request_fields)
