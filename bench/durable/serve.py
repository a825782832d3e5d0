"""The durable app, served by gunicorn with the gateway's server settings."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from flask import Flask, Response, request
from sqlalchemy.engine import make_url

from bench.durable.errors import RecordingError
from bench.durable.replay import Connection, Replay
from bench.yardstick import YardstickServer


def connect(url: str, session: list[str]) -> Connection:
    """A DB-API connection to `url` (SQLAlchemy's form), set as the gateway sets its own."""
    parsed = make_url(url)
    conn: Connection
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None)
    else:
        conn = psycopg.connect(parsed.set(drivername="postgresql").render_as_string(False))
    for sql in session:
        conn.execute(sql)
    if isinstance(conn, psycopg.Connection):
        conn.commit()
    return conn


def create_app(replay: Replay, url: str) -> Flask:
    """The durable app: each request reads its body (and the Authorization header, never
    verified but by the replayed statements) and replays its request on this process's own
    connection to `url`, opened on first use."""
    app = Flask("durable")
    held: list[Connection] = []

    def answer(run: Callable[[Connection], tuple[int, str]]) -> Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return Response('{"error": "unauthorized"}', 401, mimetype="application/json")
        if not held:
            held.append(connect(url, replay.session))
        try:
            status, body = run(held[0])
        except Exception as exc:
            app.logger.exception("replay failed")
            with contextlib.suppress(Exception):
                held.pop().close()
            return Response(json.dumps({"error": str(exc)}), 500, mimetype="application/json")
        return Response(body, status, mimetype="application/json")

    @app.post("/v1/payments")
    def create() -> Response:
        body = json.loads(request.get_data())
        key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        return answer(lambda conn: replay.create_payment(conn, key, str(body["reference"])))

    @app.post("/v1/payments/<payment_id>/confirm")
    def confirm(payment_id: str) -> Response:
        json.loads(request.get_data())
        key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        return answer(lambda conn: replay.confirm_payment(conn, key, payment_id))

    return app


def check(replay: Replay, conn: Connection) -> None:
    """One payment replayed, before serving: a recording that cannot replay fails here."""
    tag = secrets.token_hex(4)
    status, body = replay.create_payment(conn, f"durable-check-{tag}-create", f"CHECK-{tag}")
    payment_id = json.loads(body)["id"]
    status_2, body_2 = replay.confirm_payment(conn, f"durable-check-{tag}-confirm", payment_id)
    if (status, status_2) != (201, 200) or '"succeeded"' not in body_2:
        raise RecordingError(f"the replayed payment answered {status} then {status_2}")


class DurableServer(YardstickServer):
    """The durable app under gunicorn with `options` (the gateway's `server_options`)."""

    def __init__(self, replay: Replay, url: str, options: dict[str, Any]) -> None:
        self.replay = replay
        super().__init__(url, options)

    def load(self) -> Flask:
        return create_app(self.replay, self.url)


def main() -> None:
    """`python -m bench.durable RECORDING URL BIND WORKERS`: check the recording replays on
    URL's database (migrated and seeded as the gateway's), then serve."""
    from payments.api.server import server_options

    path, url, bind, workers = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    replay = Replay(path)
    conn = connect(url, replay.session)
    try:
        replay.resolve(conn)
        check(replay, conn)
    finally:
        conn.close()
    options = server_options(os.environ)
    # The gateway's hooks check the gateway's settings and keep its metrics: not the app's.
    for hook in ("on_starting", "child_exit"):
        options.pop(hook)
    options.update(bind=bind, workers=workers)
    DurableServer(replay, url, options).run()
