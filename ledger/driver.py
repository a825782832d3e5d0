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

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

Parameters = Sequence[Any] | Mapping[str, Any]


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
        rows = cursor.fetchall() if cursor.description is not None else []
        return Ran(list(rows), cursor.rowcount)


def run_many(conn: Connection, statement: str, parameters: Sequence[Parameters]) -> int:
    """Run the write `statement` once for each of `parameters`, as one statement for the
    listeners (the driver's `executemany`). Returns the driver's row count."""
    with _cursor(conn, statement, parameters, many=True) as cursor:
        cursor.executemany(statement, parameters)
        return int(cursor.rowcount)


@contextlib.contextmanager
def _cursor(conn: Connection, statement: str, parameters: Any, *, many: bool) -> Iterator[Any]:
    """A driver cursor for one statement, the listeners told of it first; a driver error is
    raised as SQLAlchemy's, a lost connection invalidated."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
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
    finally:
        cursor.close()
