"""The payments benchmark's yardstick: a bare Flask app whose create inserts one row and whose
confirm updates it, served by gunicorn with the gateway's own server settings."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication
from sqlalchemy import Engine, create_engine, text

SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_payments (
    id VARCHAR(40) PRIMARY KEY,
    amount BIGINT NOT NULL,
    currency VARCHAR(3) NOT NULL,
    reference VARCHAR(255) NOT NULL,
    description VARCHAR(255) NOT NULL,
    return_url VARCHAR(2048) NOT NULL,
    status VARCHAR(20) NOT NULL,
    card_last4 VARCHAR(4)
)
"""


def create_app(engine: Engine) -> Flask:
    app = Flask("yardstick")

    def answer(row: Any, status: int) -> Response:
        body = json.dumps({"object": "payment", **dict(row._mapping)})
        return Response(body, status=status, mimetype="application/json")

    @app.post("/v1/payments")
    def create() -> Response:
        body = request.get_json()
        with engine.begin() as conn:
            row = conn.execute(
                text(
                    "INSERT INTO bare_payments (id, amount, currency, reference, description, "
                    "return_url, status) VALUES (:id, :amount, :currency, :reference, "
                    ":description, :return_url, 'created') RETURNING *"
                ),
                {"id": f"pay_{uuid.uuid4().hex}", **body},
            ).one()
        return answer(row, 201)

    @app.post("/v1/payments/<payment_id>/confirm")
    def confirm(payment_id: str) -> Response:
        card = request.get_json()["payment_method"]["card"]
        with engine.begin() as conn:
            row = conn.execute(
                text(
                    "UPDATE bare_payments SET status = 'succeeded', card_last4 = :last4 "
                    "WHERE id = :id RETURNING *"
                ),
                {"id": payment_id, "last4": card["number"][-4:]},
            ).one_or_none()
        if row is None:
            return Response('{"error": "not found"}', status=404, mimetype="application/json")
        return answer(row, 200)

    return app


class YardstickServer(BaseApplication):  # type: ignore[misc]
    """The bare app under gunicorn with `options` (the gateway's `server_options`)."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(create_engine(self.url, pool_size=5, max_overflow=5))

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None


def main() -> None:
    """`python -m bench.yardstick URL BIND WORKERS`: create the table, then serve."""
    import sys

    from payments.api.server import server_options

    url, bind, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(SCHEMA))
    engine.dispose()
    options = server_options(os.environ)
    # The gateway's hooks check the gateway's settings and keep its metrics: not the app's.
    for hook in ("on_starting", "child_exit"):
        options.pop(hook)
    options.update(bind=bind, workers=workers)
    YardstickServer(url, options).run()


if __name__ == "__main__":
    main()
