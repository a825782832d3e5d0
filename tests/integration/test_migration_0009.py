"""Migration 0009 on both databases: every unkeyed request fingerprint kept before it is
dropped, and a kept answer that held a webhook signing secret loses its body (or, with no
object to answer from, the whole row)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from payments.migrate import alembic_config
from tests.conftest import BACKENDS, _libpq, postgres_available, postgres_base_url

SECRET = "whsec_" + "A" * 43 + "="
ROWS = [
    # key, plain SHA-256 of the request, kept answer, object committed under the key
    ("confirm", "ab" * 32, '{"id": "pay_1", "status": "succeeded"}', "pay_1"),
    ("hook", "cd" * 32, '{"id": "we_1", "secret": "' + SECRET + '"}', "we_1"),
    ("old-hook", "ef" * 32, '{"id": "we_2", "secret": "' + SECRET + '"}', None),
]


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    if not postgres_available():
        pytest.skip("PostgreSQL does not answer")
    name = f"gwmig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(postgres_base_url()).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_unkeyed_fingerprints_and_kept_secrets_are_gone(empty_url: str) -> None:
    config = alembic_config(empty_url)
    command.upgrade(config, "0008")
    engine = create_engine(empty_url)
    now = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        for key, digest, body, recovery in ROWS:
            conn.execute(
                text(
                    "INSERT INTO idempotency_keys (api_key_id, key, request_hash, state, "
                    "response_status, response_body, created_at, recovery_object) VALUES "
                    "('key_1', :key, :digest, 'finished', 201, :body, :now, :recovery)"
                ),
                {"key": key, "digest": digest, "body": body, "now": now, "recovery": recovery},
            )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        rows = {
            row.key: row
            for row in conn.execute(
                text("SELECT key, request_hash, request_key, response_body FROM idempotency_keys")
            )
        }
    engine.dispose()
    assert set(rows) == {"confirm", "hook"}
    assert all(row.request_hash is None and row.request_key is None for row in rows.values())
    assert rows["confirm"].response_body == ROWS[0][2]
    assert rows["hook"].response_body is None
