"""Database engine and units of work: SQLite (WAL, foreign keys, BEGIN IMMEDIATE for writes)
or PostgreSQL (row locks), each unit of work one transaction that rolls back unless it ends
cleanly."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from payments.errors import Unavailable
from payments.writer_turn import WriterTurn
from statements import driver

SQLITE_BUSY_TIMEOUT_S = 30
IDLE_PING_S = 5.0  # a pooled PostgreSQL connection idle this long is pinged before use


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("gateway_write", False)
        driver.run(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN", ())


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _configure_sqlite(engine)
        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it has been idle a while: a busy pool's
    connections were proven a moment ago, and pinging each checkout is a round trip per
    transaction. A connection that died all the same fails its statement as an outage (503,
    retry with the same key), and SQLAlchemy then replaces every connection of the pool."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure: the pool connects afresh and tries again
            raise DisconnectionError(str(exc)) from exc


class Database:
    """Read and write sessions on one engine; writes take the database's write lock first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        path = engine.url.database if self.dialect == "sqlite" else None
        self._turn = (
            WriterTurn(Path(path), SQLITE_BUSY_TIMEOUT_S) if path and path != ":memory:" else None
        )
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(
            engine.execution_options(gateway_write=True), expire_on_commit=False
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with (
            _unavailable_on_outage(),
            self._turn() if self._turn else contextlib.nullcontext(),
            self._write() as session,
            session.begin(),
        ):
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction, rolled back at the end."""
        with _unavailable_on_outage(), self._read() as session:
            yield session

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction in which every query sees the same moment (audits): on
        PostgreSQL REPEATABLE READ; a SQLite read transaction is one snapshot already."""
        with self.read() as session:
            if self.dialect == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def refresh_statistics(self, *tables: str) -> None:
        """Tell the query planner about rows a batch job just wrote, so that the next report
        over them is planned from their real counts rather than autovacuum's last look."""
        with self.transaction() as session:
            analyze(session, *tables)

    def dispose(self) -> None:
        self.engine.dispose()


# What one sort or hash of a batch job (a settlement import, a reconciliation report) may use
# before it spills to disk; PostgreSQL's default, 4 MB, spills a hundred thousand lines.
BATCH_WORK_MEM = "128MB"


def batch_job(session: Session) -> None:
    """Give the rest of the session's transaction the memory of a batch job (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{BATCH_WORK_MEM}'"))


def analyze(session: Session, *tables: str) -> None:
    """Refresh the planner's statistics of `tables` inside the session's transaction, which
    on PostgreSQL counts the rows the transaction itself has written so far: a batch job that
    grows a table calls it as the table grows, or its later look-ups are planned for the table
    as it was (a sequential scan per look-up, quadratic in the batch)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {', '.join(tables)}"))
    else:
        session.execute(text("PRAGMA optimize"))


# PostgreSQL's SQLSTATEs for a server that is away: connection exceptions (class 08), an
# administrator's or a crash's shutdown, a server starting up or recovering, no free slot.
OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite's: another process holds the write lock past the busy timeout.
SQLITE_OUTAGES = ("database is locked", "unable to open database file", "disk i/o error")


@contextlib.contextmanager
def _unavailable_on_outage() -> Iterator[None]:
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or is_outage(exc):
            raise Unavailable("the database is unavailable; retry with the same key") from exc
        raise


def is_outage(exc: DBAPIError) -> bool:
    """Whether the database failed for being away rather than for what was asked of it."""
    if hasattr(exc.orig, "sqlstate"):  # psycopg: the server's SQLSTATE, or None from libpq
        sqlstate: str | None = getattr(exc.orig, "sqlstate")  # noqa: B009
        if sqlstate is None:  # the connection failed or was lost before the server answered
            return isinstance(exc, OperationalError | InterfaceError)
        return sqlstate.startswith(OUTAGE_SQLSTATES)
    return isinstance(exc, OperationalError) and any(
        marker in str(exc.orig).lower() for marker in SQLITE_OUTAGES
    )
