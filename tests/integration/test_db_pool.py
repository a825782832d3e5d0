"""PostgreSQL's connection pool: a connection whose server process went away while it sat idle
is replaced before use; one that died under load fails its one statement as an outage, and
the pool starts afresh."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from payments import db
from payments.errors import Unavailable
from payments.gateway import Gateway, build_gateway
from tests.conftest import _libpq, make_settings


@pytest.fixture
def pg(postgres_url: str, tmp_path: Path) -> Iterator[Gateway]:
    gateway = build_gateway(make_settings(postgres_url, tmp_path))
    yield gateway
    gateway.db.dispose()


def _backend(gw: Gateway) -> int:
    with gw.db.read() as session:
        pid: int = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _terminate(postgres_url: str, pid: int) -> None:
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def test_an_idle_connection_that_died_is_replaced_before_use(
    pg: Gateway, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(pg)
    _terminate(postgres_url, first)
    monkeypatch.setattr(db, "IDLE_PING_S", 0.0)  # as if it had sat idle long enough
    second = _backend(pg)
    assert second != first


def test_a_busy_connection_that_died_is_one_outage_then_the_pool_starts_afresh(
    pg: Gateway, postgres_url: str
) -> None:
    first = _backend(pg)
    _terminate(postgres_url, first)
    with pytest.raises(Unavailable):  # used again at once: no ping, the statement fails
        _backend(pg)
    assert _backend(pg) != first
