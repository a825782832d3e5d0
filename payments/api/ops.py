"""Operations endpoints (liveness, readiness, Prometheus metrics) and the per-request hooks that
time every request and give every log line of a request its request id, agency and payment.

`/metrics` is cheap to ask whoever asks: the backlogs it shows come from a sample read at most
once per `GATEWAY_METRICS_SAMPLE_S` in each process, and with `GATEWAY_METRICS_TOKEN` set it
answers only a scraper that sends the token.
"""

from __future__ import annotations

import copy
import hmac
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, g, has_request_context, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import text

from payments import logs, metrics
from payments.api.context import gateway
from payments.api.http import error_response
from payments.api.openapi import document_operations
from payments.errors import AuthenticationFailed
from payments.gateway import Gateway
from payments.migrate import is_current
from payments.service import backlog

blp = Blueprint("ops", __name__)
log = logging.getLogger("gateway.ops")
_SAMPLER = "gateway.backlog_sampler"


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
    """Prometheus text format: this node's processes, and the backlogs as last sampled."""
    refused = _without_the_token()
    if refused is not None:
        return refused
    sampler: metrics.BacklogSampler = current_app.extensions[_SAMPLER]
    response = Response(metrics.exposition(sampler.current), status=200)
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


def _without_the_token() -> Response | None:
    """A 401 unless the request carries `GATEWAY_METRICS_TOKEN` (when set) as its bearer token."""
    token = gateway().settings.metrics_token
    if token is None:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Compared in constant time: how long a refusal takes says nothing of the token.
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    response = error_response(
        AuthenticationFailed("send the metrics token as 'Authorization: Bearer <token>'")
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@blp.record_once
def _sample_backlogs(state: BlueprintSetupState) -> None:
    """One sampler per app, so per process: each gunicorn worker asks at most once per
    interval, whatever the number of scrapes."""
    gw: Gateway = state.app.extensions["gateway"]
    state.app.extensions[_SAMPLER] = metrics.BacklogSampler(
        lambda: backlog.read_backlog(gw), gw.settings.metrics_sample_s
    )


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


# --------------------------------------------------------------------------- the document
# API.md §6: these endpoints are served outside the versioned API and without a key, and are
# never rate limited; the OpenAPI document describes them as they answer.

_STATUS_OK = {"type": "string", "enum": ["ok"]}


def _readiness(status: list[str], database: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "database"],
        "properties": {
            "status": {"type": "string", "enum": status},
            "database": {"type": "string", "enum": database},
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPERATIONS: dict[str, dict[str, Any]] = {
    "ops.healthz": {
        "get": {
            "summary": "Liveness: the process is up",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": _json(
                    "The process answers",
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": _STATUS_OK},
                    },
                ),
            },
        }
    },
    "ops.readyz": {
        "get": {
            "summary": "Readiness: the database answers and its migrations are current",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": _json(
                    'Ready: `{"status": "ok", "database": "ok"}`', _readiness(["ok"], ["ok"])
                ),
                "503": _json(
                    "Not ready: `status` is `unavailable` and `database` says why "
                    "(`unreachable` or `migrations pending`)",
                    _readiness(["unavailable"], ["unreachable", "migrations pending"]),
                ),
            },
        }
    },
    "ops.metrics_text": {
        "get": {
            "summary": "Prometheus metrics of this node, in the Prometheus text format",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The metrics of this node's processes and the backlogs as "
                    "last sampled, at most `GATEWAY_METRICS_SAMPLE_S` ago "
                    f"(`Content-Type: {metrics.CONTENT_TYPE}`)",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
        }
    },
    "api-docs.openapi_json": {
        "get": {
            "summary": "This OpenAPI document",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": _json(
                    "The OpenAPI 3.1 document of the gateway",
                    {
                        "type": "object",
                        "required": ["openapi", "info", "paths"],
                        "properties": {
                            "openapi": {"type": "string"},
                            "info": {"type": "object"},
                            "paths": {"type": "object"},
                        },
                    },
                ),
            },
        }
    },
}


def _metrics_with_token() -> dict[str, Any]:
    """`/metrics` as it answers with `GATEWAY_METRICS_TOKEN` set: the token, or a 401."""
    operation = copy.deepcopy(OPERATIONS["ops.metrics_text"])
    operation["get"]["security"] = [{"bearer": []}]
    operation["get"]["responses"]["401"] = _json(
        "`authentication`: the metrics token is missing or wrong",
        {"$ref": "#/components/schemas/Error"},
    )
    return operation


@blp.record_once
def _document(state: BlueprintSetupState) -> None:
    """Put the endpoints above in the app's OpenAPI document. Registered after the views, so
    their rules exist when it runs; the app's Api was created before this blueprint."""
    operations = OPERATIONS
    if state.app.extensions["gateway"].settings.metrics_token is not None:
        operations = {**OPERATIONS, "ops.metrics_text": _metrics_with_token()}
    document_operations(state.app, operations)
