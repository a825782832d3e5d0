"""Migrations build the schema the models describe, from empty, on both databases."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from ledger.models import LedgerBase
from payments.db import make_engine
from payments.migrate import is_current, upgrade
from payments.models import Base
from tests.conftest import _libpq, postgres_base_url


def _assert_matches_models(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        diff = compare_metadata(context, [Base.metadata, LedgerBase.metadata])  # type: ignore[arg-type]
    engine.dispose()
    assert diff == []


def test_upgrade_from_empty_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/gateway.db"
    engine = make_engine(url)
    upgrade(url)
    assert is_current(engine)
    _assert_matches_models(url)
    upgrade(url)  # a second run is a no-op
    assert is_current(engine)
    engine.dispose()


def test_upgrade_from_empty_postgres(postgres_url: str) -> None:
    name = f"{make_url(postgres_url).database}_mig"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        assert not is_current(engine)
        upgrade(url)
        assert is_current(engine)
        _assert_matches_models(url)
        engine.dispose()
    finally:
        with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
