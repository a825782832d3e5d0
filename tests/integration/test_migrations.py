"""Migrations build the schema the models describe, from empty, on both databases."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from ledger.models import LedgerBase
from payments.db import make_engine
from payments.finance import models as finance_models  # noqa: F401 - registers their tables
from payments.migrate import alembic_config, is_current, upgrade
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


def test_the_ledger_functions_go_back_and_forth_on_postgres(postgres_url: str) -> None:
    """Each version of `ledger_post` the migrations install is the ledger's own SQL: 0007 adds
    `p_seal`, and going back below it restores 0003's two-argument function."""
    name = f"{make_url(postgres_url).database}_fn"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    config = alembic_config(url)

    def arguments() -> str:
        with psycopg.connect(_libpq(url)) as conn:
            row = conn.execute(
                "SELECT pg_get_function_identity_arguments('ledger_post'::regproc)"
            ).fetchone()
        assert row is not None
        return str(row[0])

    try:
        upgrade(url)
        assert arguments().startswith("p_now timestamp with time zone, p_batch json, p_seal")
        command.downgrade(config, "0006")
        assert arguments().startswith("p_now timestamp with time zone, p_batch json, OUT")
        upgrade(url)
        assert "p_seal boolean" in arguments()
    finally:
        with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
