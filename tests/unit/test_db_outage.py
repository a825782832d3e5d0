"""Which database failures the gateway answers as an outage (503 `unavailable`, retry with the
same key) and which it does not."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from payments.db import is_outage


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown()),  # 57P01, fast stop
        OperationalError("SELECT 1", {}, psycopg.errors.CrashShutdown()),  # 57P02
        OperationalError("SELECT 1", {}, psycopg.errors.CannotConnectNow()),  # 57P03, starting
        OperationalError("SELECT 1", {}, psycopg.errors.TooManyConnections()),  # 53300
        OperationalError("SELECT 1", {}, psycopg.errors.ConnectionFailure()),  # 08006
        # libpq's own: refused, or the server closed the connection mid-statement.
        OperationalError("SELECT 1", {}, psycopg.OperationalError("connection failed")),
        InterfaceError("SELECT 1", {}, psycopg.InterfaceError("the connection is closed")),
        OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")),
    ],
)
def test_a_database_that_is_away_is_an_outage(error: DBAPIError) -> None:
    assert is_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation()),
        # psycopg files a serialization failure under OperationalError: it is the statement's
        # own conflict, for the caller to handle, not an outage.
        OperationalError("UPDATE", {}, psycopg.errors.SerializationFailure()),
        OperationalError("SELECT", {}, psycopg.errors.QueryCanceled()),
        DBAPIError("SELECT", {}, psycopg.ProgrammingError("bad query")),
        OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: payments")),
    ],
)
def test_a_failure_of_the_statement_itself_is_not_an_outage(error: DBAPIError) -> None:
    assert not is_outage(error)
