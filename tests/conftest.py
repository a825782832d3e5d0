"""Fixtures: a migrated SQLite file and a migrated PostgreSQL database, the gateway on each,
the Flask app and client, and helpers to make agencies and keys."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from config import Settings
from ledger.models import GENESIS_HASH
from payments import clock
from payments.api.app import create_app
from payments.db import make_engine
from payments.gateway import Gateway, build_gateway
from payments.migrate import upgrade
from payments.service import access

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# What the drills and fuzzers counted, for the end of the run: a passing test's output is hidden.
_COUNTS: list[str] = []
BACKENDS = ("sqlite", "postgresql")


def postgres_base_url() -> str:
    return os.environ.get("GATEWAY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_available() -> bool:
    try:
        psycopg.connect(_libpq(postgres_base_url()), connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "gateway.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test session, migrated once, dropped at the end."""
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL does not answer at " + postgres_base_url())
        pytest.skip("PostgreSQL does not answer; set GATEWAY_TEST_POSTGRES_URL")
    base = make_url(postgres_base_url())
    name = f"gwtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with psycopg.connect(_libpq(postgres_base_url()), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_postgres(url: str) -> None:
    """Empty every table, back to the rows the migrations seed (the ledger's chain head)."""
    engine = make_engine(url)
    tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        conn.execute(
            text("INSERT INTO ledger_chain_head (id, seq, hash) VALUES (1, 0, :genesis)"),
            {"genesis": GENESIS_HASH},
        )
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "var_dir": tmp_path,
        "secret_key": "test-secret-key-" + "s" * 32,
        "encryption_key": "test-encryption-key-" + "e" * 32,
        "public_url": "http://gateway.test",
        "sandbox_database": tmp_path / "sandbox.db",
        "log_level": "WARNING",
        # Tests call from one address far faster than a client would: the limits themselves
        # are tested in test_rate_limits.py, with settings of their own.
        "rate_limit_unauthenticated": "100000/second",
        "rate_limit_checkout": "100000/second",
        "rate_limit_checkout_post": "100000/second",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def gw(settings: Settings) -> Iterator[Gateway]:
    gateway = build_gateway(settings)
    yield gateway
    gateway.db.dispose()
    clock.set_clock(None)


@pytest.fixture
def app(gw: Gateway) -> Flask:
    return create_app(gw=gw)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def new_agency(
    gw: Gateway, agency_id: str = "om-moh", currency: str = "OMR", state: str = "OM"
) -> str:
    """Register an agency and return a test-mode key for it."""
    access.create_agency(
        gw, agency_id, name=f"Agency {agency_id}", name_ar="جهة", state=state, currencies=[currency]
    )
    return access.create_key(gw, agency_id=agency_id, role="agency", mode="test")[1]


@pytest.fixture
def agency_key(gw: Gateway) -> str:
    return new_agency(gw)


@pytest.fixture
def finance_key(gw: Gateway) -> str:
    return access.create_key(gw, agency_id=None, role="finance")[1]


def auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def count_rows(gw: Gateway) -> dict[str, int]:
    """Rows in every table, to prove that a refused request wrote nothing."""
    with gw.db.engine.connect() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}


PAYMENT = {
    "amount": 12500,
    "currency": "OMR",
    "reference": "MOH-2026-000123",
    "description": "Medical certificate fee",
    "return_url": "https://moh.example.om/done",
}


def card(number: str = "4242424242424242") -> dict[str, Any]:
    return {
        "payment_method": {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    }


@pytest.fixture
def report_counts() -> Callable[[str], None]:
    """Print a drill's or a fuzzer's counts, and repeat them at the end of the run."""

    def report(text: str) -> None:
        print(text)
        _COUNTS.append(text.strip())

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _COUNTS:
        terminalreporter.section("drill and fuzz counts")
        for line in _COUNTS:
            terminalreporter.write_line(line)
