"""The PostgreSQL side of posting: the `ledger_post` and `ledger_seal` functions as the
migration leaves them, and a connection lost in the middle of a posting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

import ledger
from payments import clock
from payments.errors import Unavailable
from payments.gateway import Gateway, build_gateway
from tests.conftest import _truncate_postgres, make_settings
from tests.integration.ledger_support import post, spec, verify


@pytest.fixture
def pg(postgres_url: str, tmp_path: Path) -> Iterator[Gateway]:
    _truncate_postgres(postgres_url)
    gateway = build_gateway(make_settings(postgres_url, tmp_path))
    yield gateway
    gateway.db.dispose()


def test_the_functions_never_compile_their_plans(pg: Gateway) -> None:
    with pg.db.read() as session:
        rows = session.execute(
            text("SELECT proname, proconfig FROM pg_proc WHERE proname LIKE 'ledger\\_%'")
        ).all()
    settings = {name: config for name, config in rows}
    assert settings["ledger_post"] == ["jit=off"]
    assert settings["ledger_seal"] == ["jit=off"]


def test_a_connection_lost_while_posting_is_an_outage_that_leaves_no_trace(pg: Gateway) -> None:
    post(pg, spec("before", 5))
    raised: list[BaseException] = []
    with pytest.raises(Unavailable), pg.db.transaction() as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with pg.db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        try:
            ledger.post(session, spec("lost", 7), clock.now())
        except BaseException as exc:
            raised.append(exc)
            raise
    # The driver's error reaches the caller as SQLAlchemy's, the connection marked lost.
    assert isinstance(raised[0], OperationalError) and raised[0].connection_invalidated
    after = post(pg, spec("after", 9))  # the pool replaced the dead connection
    assert not after.replayed
    with pg.db.read() as session:
        names = session.execute(
            text("SELECT external_id FROM ledger_transactions ORDER BY id")
        ).scalars()
        assert list(names) == ["before", "after"]
    assert verify(pg).ok
