"""Statements run on the database driver's own cursor, inside a SQLAlchemy connection's
transaction: for the hot path, where SQLAlchemy's per-statement execution and result machinery
costs more than the statement. The engine's `before_cursor_execute` listeners still hear each
statement (statement budgets count them), driver errors are raised as SQLAlchemy's, and a lost
connection is invalidated, as for any other statement."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

Parameters = Sequence[Any] | Mapping[str, Any]
_CURSOR = "statements.driver cursor"  # the key of the shared cursor in the connection's `info`


@dataclasses.dataclass(frozen=True)
class Ran:
    """What a statement returned: its rows (none for a write without RETURNING) and the
    driver's row count (the rows an INSERT or UPDATE wrote)."""

    rows: list[Any]
    rowcount: int


def run(conn: Connection, statement: str, parameters: Parameters) -> Ran:
    """Run `statement`, written in the driver's parameter style, with `parameters`."""
    with _cursor(conn, statement, parameters, many=False) as cursor:
        cursor.execute(statement, parameters)
        rows = cursor.fetchall() if _returned_rows(cursor) else []
        return Ran(list(rows), cursor.rowcount)


def _returned_rows(cursor: Any) -> bool:
    """Whether the statement returned rows (a SELECT, or a write with RETURNING). psycopg's
    `description` builds a column object for each column each time it is read; its result's
    status says the same for nothing."""
    if isinstance(cursor, psycopg.Cursor):
        result = cursor.pgresult
        return result is not None and result.status == pq.ExecStatus.TUPLES_OK
    return cursor.description is not None


def run_many(conn: Connection, statement: str, parameters: Sequence[Parameters]) -> int:
    """Run the write `statement` once for each of `parameters`, as one statement for the
    listeners (the driver's `executemany`). Returns the driver's row count."""
    with _cursor(conn, statement, parameters, many=True) as cursor:
        cursor.executemany(statement, parameters)
        return int(cursor.rowcount)


@contextlib.contextmanager
def _cursor(conn: Connection, statement: str, parameters: Any, *, many: bool) -> Iterator[Any]:
    """The driver cursor for one statement, the listeners told of it first; a driver error is
    raised as SQLAlchemy's, a lost connection invalidated."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = _own_cursor(conn)
    try:
        conn.dispatch.before_cursor_execute(conn, cursor, statement, parameters, None, many)
        yield cursor
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            parameters,
            exc,
            dbapi.Error,
            connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc


def _own_cursor(conn: Connection) -> Any:
    """The driver cursor these statements share on `conn`'s database connection, made on first
    use: kept in the pool's `info` for that connection, which lives as long as it does (a
    connection invalidated and replaced starts with none), so no statement pays for a new one.
    Statements on one connection run one at a time, and each fetches all it returns."""
    proxied = conn.connection
    cursor = proxied.info.get(_CURSOR)
    if cursor is None:
        cursor = proxied.info[_CURSOR] = proxied.cursor()
    return cursor
