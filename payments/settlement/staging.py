"""The staging table of a settlement import: the file's validated lines, written aside to disk
in COPY's text format while the file is checked, then loaded into a temporary table of the
import's own transaction (by COPY on PostgreSQL, by executemany on SQLite), where matching
reads them with joins. The table lives only as long as the transaction."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import IO

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from payments.settlement.parsers import ParsedLine

TABLE = "settlement_staging"
COLUMNS = (
    "line_no",
    "line_key",
    "settlement_date",
    "provider_reference",
    "type",
    "currency",
    "gross_minor",
    "fee_minor",
    "net_minor",
)
_DEFINITION = """(
    line_no INTEGER NOT NULL,
    line_key VARCHAR(64) NOT NULL,
    settlement_date DATE NOT NULL,
    provider_reference VARCHAR(255) NOT NULL,
    type VARCHAR(20) NOT NULL,
    currency VARCHAR(3) NOT NULL,
    gross_minor BIGINT NOT NULL,
    fee_minor BIGINT NOT NULL,
    net_minor BIGINT NOT NULL
)"""
COPY_BLOCK_BYTES = 1024 * 1024
ROWS_PER_INSERT = 5000
# COPY's text format: a backslash, tab, newline or carriage return in a field is escaped.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def row(line: ParsedLine) -> str:
    """One validated line as a row of COPY's text format (a provider reference is the only
    field that may hold a character COPY escapes)."""
    reference = line.provider_reference.translate(_ESCAPES)
    return (
        f"{line.line_no}\t{line.line_key}\t{line.settlement_date.isoformat()}\t{reference}\t"
        f"{line.type}\t{line.currency}\t{line.gross_minor}\t{line.fee_minor}\t{line.net_minor}\n"
    )


def temporary(
    session: Session, name: str, body: str, params: Mapping[str, object] | None = None
) -> None:
    """Create the temporary table `name` as `body` (a column list, or `AS` a query with
    `params`), dropped when the transaction ends: by PostgreSQL itself, on SQLite by `drop`
    before commit. A table made from a query gets PostgreSQL's statistics at once."""
    if _postgresql(session):
        query = body.startswith("AS ")
        create = (
            f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP {body}"
            if query
            else f"CREATE TEMPORARY TABLE {name} {body} ON COMMIT DROP"
        )
        session.execute(text(create), params)
        if query:
            # Autovacuum never visits a temporary table: without statistics the planner guesses.
            session.execute(text(f"ANALYZE {name}"))
    else:
        session.execute(text(f"DROP TABLE IF EXISTS temp.{name}"))
        session.execute(text(f"CREATE TEMPORARY TABLE {name} {body}"), params)


def drop(session: Session, *names: str) -> None:
    if not _postgresql(session):
        for name in names:
            session.execute(text(f"DROP TABLE IF EXISTS temp.{name}"))


def load(session: Session, rows: IO[str]) -> None:
    """Create the staging table and fill it with `rows` (what `row` wrote, from the start)."""
    temporary(session, TABLE, _DEFINITION)
    if _postgresql(session):
        driver = session.connection().connection.dbapi_connection
        assert isinstance(driver, psycopg.Connection)
        statement = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            while block := rows.read(COPY_BLOCK_BYTES):
                copy.write(block)
        session.execute(text(f"ANALYZE {TABLE}"))
        return
    insert = text(
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "  # nosec B608
        f"VALUES ({', '.join(':' + column for column in COLUMNS)})"
    )
    for chunk in _read_back(rows):
        session.execute(insert, chunk)


def _read_back(rows: IO[str]) -> Iterator[list[dict[str, object]]]:
    chunk: list[dict[str, object]] = []
    for line in rows:
        fields = line.rstrip("\n").split("\t")
        values: dict[str, object] = dict(zip(COLUMNS, fields, strict=True))
        values["provider_reference"] = _unescape(fields[3])
        for column in ("line_no", "gross_minor", "fee_minor", "net_minor"):
            values[column] = int(values[column])  # type: ignore[call-overload]
        chunk.append(values)
        if len(chunk) >= ROWS_PER_INSERT:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):  # bounded by the field's length
        pair = field[i : i + 2]
        if pair in _UNESCAPES:
            out.append(_UNESCAPES[pair])
            i += 2
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
