"""Listening to the gateway in-process: each request's transactions, statements and rows."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import event

if TYPE_CHECKING:
    from payments.gateway import Gateway
    from providers import AuthorizeRequest, Provider, ProviderResult


@dataclasses.dataclass
class Ran:
    """One statement as the driver got it, and the rows it returned."""

    sql: str
    parameters: Any
    many: bool
    rows: list[Any] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Transaction:
    """The statements between a `begin` and its `commit` or `rollback`."""

    statements: list[Ran] = dataclasses.field(default_factory=list)
    end: str | None = None  # "commit" or "rollback"


@dataclasses.dataclass
class Acquirer:
    """The gateway called an acquirer here, between its transactions."""

    provider: str


@dataclasses.dataclass
class Recorded:
    """One request to the gateway: its transactions and acquirer calls in order, its answer."""

    key: str
    reference: str | None
    started: dt.datetime
    steps: list[Transaction | Acquirer] = dataclasses.field(default_factory=list)
    status: int = 0
    body: str = ""

    def statements(self) -> list[Ran]:
        return [
            ran for step in self.steps if isinstance(step, Transaction) for ran in step.statements
        ]

    def counts(self) -> tuple[int, int]:
        """(statements, transactions)."""
        transactions = [step for step in self.steps if isinstance(step, Transaction)]
        return sum(len(t.statements) for t in transactions), len(transactions)


class KeepsRows:
    """A cursor part that keeps a copy of the rows its cursor fetches in `sink`."""

    sink: list[Any] | None = None

    def kept(self, rows: list[Any]) -> list[Any]:
        if self.sink is not None:
            self.sink.extend(rows)
        return rows

    def kept_one(self, row: Any) -> Any:
        if row is not None:
            self.kept([row])
        return row


class SqliteCursor(KeepsRows, sqlite3.Cursor):
    """sqlite3's cursor, keeping a copy of the rows it fetches in `sink`."""

    def fetchone(self) -> Any:
        return self.kept_one(super().fetchone())

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        return self.kept(super().fetchmany(size) if size is not None else super().fetchmany())

    def fetchall(self) -> list[Any]:
        return self.kept(super().fetchall())


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, whose cursors are `SqliteCursor`s."""

    def cursor(self, factory: Any = SqliteCursor) -> Any:
        return super().cursor(factory)


class PsycopgCursor(KeepsRows, psycopg.Cursor[Any]):
    """psycopg's cursor, keeping a copy of the rows it fetches in `sink`."""

    def fetchone(self) -> Any:
        return self.kept_one(super().fetchone())

    def fetchmany(self, size: int = 0) -> list[Any]:
        return self.kept(super().fetchmany(size))

    def fetchall(self) -> list[Any]:
        return self.kept(super().fetchall())


def keep_rows(dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    """`do_connect`: the gateway's connections made with cursors that keep what they fetch."""
    if dialect.name == "sqlite":
        params["factory"] = SqliteConnection
    else:
        params["cursor_factory"] = PsycopgCursor


class Recorder:
    """Listens to the gateway's engine (`before_cursor_execute`, `begin`, `commit`,
    `rollback`) and to its acquirers' `authorize`, and writes down each request's steps."""

    def __init__(self, gw: Gateway) -> None:
        self.engine = gw.db.engine
        self.providers = gw.providers
        self.current: Recorded | None = None
        self.open: Transaction | None = None
        self.called: list[tuple[Provider, AuthorizeRequest]] = []
        self.listeners = (
            ("before_cursor_execute", self.statement),
            ("begin", self.begin),
            ("commit", self.commit),
            ("rollback", self.rollback),
        )
        for name, listener in self.listeners:
            event.listen(self.engine, name, listener)
        for name in self.providers.names():
            self.watch(self.providers.get(name))

    def watch(self, provider: Provider) -> None:
        authorize = provider.authorize

        def watched(order: AuthorizeRequest) -> ProviderResult:
            try:
                return authorize(order)
            finally:
                if self.current is not None:
                    self.open = None
                    self.current.steps.append(Acquirer(provider.name))
                    self.called.append((provider, order))

        setattr(provider, "authorize", watched)  # noqa: B010

    def close(self) -> None:
        for name, listener in self.listeners:
            event.remove(self.engine, name, listener)
        for name in self.providers.names():
            with contextlib.suppress(AttributeError):
                delattr(self.providers.get(name), "authorize")

    def transaction(self) -> Transaction:
        assert self.current is not None
        if self.open is None:
            self.open = Transaction()
            self.current.steps.append(self.open)
        return self.open

    def begin(self, _conn: Any) -> None:
        # On SQLite the gateway's own `begin` listener has run its BEGIN statement already,
        # which opened the transaction.
        if self.current is not None:
            self.transaction()

    def statement(
        self, _conn: Any, cursor: Any, sql: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if self.current is None:
            return
        ran = Ran(sql, parameters, many)
        if isinstance(cursor, SqliteCursor | PsycopgCursor):
            cursor.sink = ran.rows
        self.transaction().statements.append(ran)

    def end(self, how: str) -> None:
        if self.current is not None and self.open is not None:
            self.open.end = how
            self.open = None

    def commit(self, _conn: Any) -> None:
        self.end("commit")

    def rollback(self, _conn: Any) -> None:
        self.end("rollback")

    @contextlib.contextmanager
    def request(self, key: str, reference: str | None = None) -> Iterator[Recorded]:
        self.current = Recorded(key, reference, dt.datetime.now(dt.UTC))
        self.open = None
        try:
            yield self.current
        finally:
            self.current = None
            self.open = None
