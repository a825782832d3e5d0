"""Replaying a recording's requests on a DB-API connection to a database of its own."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import pq

from bench.durable.compiler import Context, Request, compile_request
from bench.durable.errors import RecordingError
from bench.durable.tags import decode
from payments.ids import new_id

Connection = sqlite3.Connection | psycopg.Connection[Any]


def returned_rows(cursor: Any) -> bool:
    """Whether the statement returned rows (psycopg's result status is cheaper to read than
    its `description`)."""
    if isinstance(cursor, psycopg.Cursor):
        result = cursor.pgresult
        return result is not None and result.status == pq.ExecStatus.TUPLES_OK
    return cursor.description is not None


def stand_in(seconds: float) -> None:
    """The acquirer's call: busy-waits `seconds`, as the sandbox's own call keeps the worker
    busy (most of its time is CPU: its own SQLite write, in the worker's process)."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


class Replay:
    """The recording of `path`, ready to replay on a database with the gateway's schema."""

    def __init__(self, path: Path) -> None:
        recording = json.loads(path.read_text(encoding="utf-8"))
        self.session: list[str] = recording["session"]
        self.acquirer_s: float = recording["acquirer"]["seconds"]
        self.lookup: dict[str, Any] | None = recording["lookup"]
        payment_id = recording["payment_id"]
        requests = recording["requests"]
        self.create = compile_request(requests["create"], payment_id)
        self.confirm = compile_request(requests["confirm"], payment_id)
        self.existing: dict[str, str] = {}

    def resolve(self, conn: Connection) -> None:
        """Find in `conn`'s database the rows the recorded requests named by id and that
        existed before them (the API key's), with the gateway's own look-up."""
        if self.lookup is None:
            return
        cursor = conn.cursor()
        cursor.execute(self.lookup["sql"], decode(self.lookup["parameters"]))
        row = cursor.fetchone()
        conn.rollback()
        if row is None:
            raise RecordingError("the API key of the recording is not in this database")
        self.existing = {recorded: row[c] for recorded, c in self.lookup["columns"].items()}

    def run(self, conn: Connection, request: Request, ctx: Context) -> tuple[int, str]:
        cursor: Any = conn.cursor()
        for step in request.steps:
            if step.end == "acquirer":
                stand_in(self.acquirer_s)
                continue
            try:
                for statement in step.statements:
                    parameters = statement.parameters(ctx)
                    if statement.many:
                        cursor.executemany(statement.sql, parameters)
                    else:
                        cursor.execute(statement.sql, parameters)
                    if returned_rows(cursor):
                        rows = cursor.fetchall()
                        if statement.feeds:
                            ctx.results[statement.index] = rows
                if step.end == "commit":
                    conn.commit()
                else:
                    conn.rollback()
            except BaseException:
                conn.rollback()
                raise
        return request.status, request.body(ctx)

    def context(self, key: str, reference: str | None, payment_id: str) -> Context:
        return Context(dt.datetime.now(dt.UTC), key, reference, payment_id, self.existing)

    def create_payment(self, conn: Connection, key: str, reference: str) -> tuple[int, str]:
        return self.run(conn, self.create, self.context(key, reference, new_id("pay")))

    def confirm_payment(self, conn: Connection, key: str, payment_id: str) -> tuple[int, str]:
        return self.run(conn, self.confirm, self.context(key, None, payment_id))
