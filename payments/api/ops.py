"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from payments.api.context import gateway
from payments.migrate import is_current

blp = Blueprint("ops", __name__)


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
