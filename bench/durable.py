"""Durable yardstick: a bare Flask + DB-API app replaying the gateway's recorded statements."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import decimal
import json
import os
import re
import secrets
import sqlite3
import string
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from flask import Flask, Response, request
from psycopg import pq
from psycopg.types.json import Json, Jsonb
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bench.yardstick import YardstickServer
from payments.ids import ID_PATTERN, new_id

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from payments.gateway import Gateway
    from providers import AuthorizeRequest, Provider, ProviderResult

Connection = sqlite3.Connection | psycopg.Connection[Any]
Template = Callable[["Context"], Any]
Filled = tuple[bool, Any]  # (differs per request, its template if so, else the value)
JSON_WRAPPERS = (Json, Jsonb)

# What bench/payment.lua sends, but for the reference and the Idempotency-Keys.
CREATE_BODY = {
    "amount": 12500,
    "currency": "OMR",
    "description": "Benchmark fee",
    "return_url": "https://moh.example.om/done",
}
CONFIRM_BODY = {
    "payment_method": {
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    }
}
# An identifier a request makes: a gateway id (`pay_` and 26 characters), or any other
# `prefix_` and 20 or more lower-case letters and digits (the sandbox's `sbx_ch_` references).
TOKEN = re.compile(r"(?<![0-9A-Za-z_])[a-z]+(?:_[a-z]+)*_[0-9a-z]{20,}(?![0-9A-Za-z_])")
# A timestamp written as text: SQLite's parameters, ISO 8601 in JSON bodies.
MOMENT = re.compile(
    r"(\d{4}-\d{2}-\d{2})([T ])(\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})?(?![\d:])"
)
SQLITE_SESSION = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
ACQUIRER_CALLS = 300  # timed calls of the acquirer's authorize, after a few untimed
SHAPE_TRIES = 5  # payments recorded at most until two in a row ran the same statements


class RecordingError(Exception):
    """The gateway's statements cannot be replayed as recorded."""


# --------------------------------------------------------------------------- JSON with tags


@dataclasses.dataclass(frozen=True)
class Returned:
    """A parameter the database returned to an earlier statement of the same request: row
    `row`, column `column` of statement `statement` (counted across the request)."""

    statement: int
    row: int
    column: int


def encode(value: Any) -> Any:
    """`value` as JSON, every type JSON lacks under a one-key `{"$type": ...}` object."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"$dict": {str(k): encode(v) for k, v in value.items()}}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": value.total_seconds()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, Json):
        return {"$json": encode(value.obj)}
    if isinstance(value, Jsonb):
        return {"$jsonb": encode(value.obj)}
    if isinstance(value, Returned):
        return {"$returned": [value.statement, value.row, value.column]}
    raise TypeError(f"cannot record a parameter of type {type(value).__name__}")


DECODERS: dict[str, Callable[[Any], Any]] = {
    "$tuple": lambda v: tuple(decode(x) for x in v),
    "$dict": lambda v: {k: decode(x) for k, x in v.items()},
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda v: dt.timedelta(seconds=v),
    "$decimal": decimal.Decimal,
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
    "$json": lambda v: Json(decode(v)),
    "$jsonb": lambda v: Jsonb(decode(v)),
    "$returned": lambda v: Returned(*v),
}


def decode(value: Any) -> Any:
    """The value `encode` wrote."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        ((tag, inner),) = value.items()
        return DECODERS[tag](inner)
    return value


# --------------------------------------------------------------------------- recording


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


class SqliteCursor(sqlite3.Cursor):
    """sqlite3's cursor, keeping a copy of the rows it fetches in `sink`."""

    sink: list[Any] | None = None

    def fetchone(self) -> Any:
        row = super().fetchone()
        if row is not None and self.sink is not None:
            self.sink.append(row)
        return row

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        rows = super().fetchmany(size) if size is not None else super().fetchmany()
        if self.sink is not None:
            self.sink.extend(rows)
        return rows

    def fetchall(self) -> list[Any]:
        rows = super().fetchall()
        if self.sink is not None:
            self.sink.extend(rows)
        return rows


class SqliteConnection(sqlite3.Connection):
    """sqlite3's connection, whose cursors are `SqliteCursor`s."""

    def cursor(self, factory: Any = SqliteCursor) -> Any:
        return super().cursor(factory)


class PsycopgCursor(psycopg.Cursor[Any]):
    """psycopg's cursor, keeping a copy of the rows it fetches in `sink`."""

    sink: list[Any] | None = None

    def fetchone(self) -> Any:
        row = super().fetchone()
        if row is not None and self.sink is not None:
            self.sink.append(row)
        return row

    def fetchmany(self, size: int = 0) -> list[Any]:
        rows = super().fetchmany(size)
        if self.sink is not None:
            self.sink.extend(rows)
        return rows

    def fetchall(self) -> list[Any]:
        rows = super().fetchall()
        if self.sink is not None:
            self.sink.extend(rows)
        return rows


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


@dataclasses.dataclass
class Payment:
    """A payment's two requests, as recorded."""

    create: Recorded
    confirm: Recorded


def pay(client: FlaskClient, recorder: Recorder, key: str, label: str) -> Payment:
    """One payment through the gateway's test client, as bench/payment.lua makes it."""
    tag = secrets.token_hex(4)
    reference = f"DURABLE-{label.upper()}-{tag}"
    made: list[Recorded] = []
    for step, path, body in (
        ("create", "/v1/payments", {**CREATE_BODY, "reference": reference}),
        ("confirm", "/v1/payments/{}/confirm", CONFIRM_BODY),
    ):
        idempotency_key = f"durable-{label}-{tag}-{step}"
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
        with recorder.request(idempotency_key, reference if step == "create" else None) as seen:
            url = path.format(json.loads(made[0].body)["id"]) if made else path
            answer = client.post(url, json=body, headers=headers)
        seen.status, seen.body = answer.status_code, answer.get_data(as_text=True)
        made.append(seen)
    create, confirm = made
    if create.status != 201 or confirm.status != 200 or '"succeeded"' not in confirm.body:
        raise RecordingError(f"the gateway refused a payment: {create.body} {confirm.body}")
    for done in made:
        for taken in done.steps:
            if isinstance(taken, Transaction) and taken.end is None:
                sql = [" ".join(r.sql.split())[:80] for r in taken.statements]
                raise RecordingError(f"a transaction neither committed nor rolled back: {sql}")
    return Payment(create, confirm)


def outline(value: Any, depth: int) -> Any:
    """The shape of a statement's parameters, as deep as numbers in them may be linked."""
    if depth and isinstance(value, dict):
        return ("dict", tuple((k, outline(v, depth - 1)) for k, v in value.items()))
    if depth and isinstance(value, list | tuple):
        return (type(value).__name__, tuple(outline(v, depth - 1) for v in value))
    return type(value).__name__


def shape(recorded: Recorded) -> list[Any]:
    """A request's steps, statements and parameters' shapes, without the values."""
    return [
        ("acquirer", step.provider)
        if isinstance(step, Acquirer)
        else (
            step.end,
            [(r.sql, r.many, outline(r.parameters, 1 + r.many)) for r in step.statements],
        )
        for step in recorded.steps
    ]


def source(index: int, vb: int, va: int, second: list[Ran], first: list[Ran]) -> Returned:
    """Where the number `vb` of statement `index` of `second` came from, `va` in `first`: a
    column of a row an earlier statement returned, the same in both. (On SQLite a posting
    seals inline, so the chain's new link is numbered as its new journal row: both are linked
    to that row's id, as they stay equal on a database whose every posting sealed inline.)"""
    for i in range(index):
        for r, (row_b, row_a) in enumerate(zip(second[i].rows, first[i].rows, strict=False)):
            for c, (x, y) in enumerate(zip(row_b, row_a, strict=False)):
                if type(x) is int and x == vb and y == va:
                    return Returned(i, r, c)
    raise RecordingError(
        f"{' '.join(second[index].sql.split())[:100]}: the number {vb} ({va} in the payment "
        "before) differs per payment, and no earlier statement returned it"
    )


def linked(second: Recorded, first: Recorded) -> list[Any]:
    """The parameters of each statement of `second`, with every number that differs from
    `first`'s (a key the database made during the request) replaced by its `source`."""
    b_all, a_all = second.statements(), first.statements()
    out: list[Any] = []
    for index, (b, a) in enumerate(zip(b_all, a_all, strict=True)):

        def scalar(vb: Any, va: Any, index: int = index) -> Any:
            if type(vb) is int and type(va) is int and vb != va:
                return source(index, vb, va, b_all, a_all)
            return vb

        def level(vb: Any, va: Any, scalar: Callable[[Any, Any], Any] = scalar) -> Any:
            if isinstance(vb, dict):
                return {k: scalar(v, va[k]) for k, v in vb.items()}
            if isinstance(vb, list | tuple):
                return type(vb)(scalar(x, y) for x, y in zip(vb, va, strict=True))
            return scalar(vb, va)

        if b.many:
            rows = [level(x, y) for x, y in zip(b.parameters, a.parameters, strict=True)]
            out.append(type(b.parameters)(rows))
        else:
            out.append(level(b.parameters, a.parameters))
    return out


def tokens(value: Any) -> set[str]:
    """The identifiers written anywhere in `value` (in strings, JSON included)."""
    if isinstance(value, str):
        return set(TOKEN.findall(value))
    if isinstance(value, JSON_WRAPPERS):
        return tokens(value.obj)
    if isinstance(value, dict):
        return set().union(*(tokens(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(tokens(v) for v in value)) if value else set()
    return set()


def request_tokens(recorded: Recorded) -> set[str]:
    return tokens([r.parameters for r in recorded.statements()]) | tokens(recorded.body)


def scalars(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for v in value:
            yield from scalars(v)
    else:
        yield value


def key_lookup(history: list[Recorded], existing: set[str], digest: str) -> dict[str, Any] | None:
    """The gateway's own look-up of the API key (the statement given its digest), to find in
    the yardstick's database the rows `existing` names there: each by its column."""
    if not existing:
        return None
    for recorded in history:
        for ran in recorded.statements():
            if ran.rows and any(value == digest for value in scalars(ran.parameters)):
                columns = {
                    value: c
                    for c, value in enumerate(ran.rows[0])
                    if isinstance(value, str) and value in existing
                }
                if set(columns) == existing:
                    return {
                        "sql": ran.sql,
                        "parameters": encode(ran.parameters),
                        "columns": columns,
                    }
    raise RecordingError(
        f"the requests use {sorted(existing)}, made before them, and no look-up of the API key "
        "returned them"
    )


def steps_json(recorded: Recorded, parameters: list[Any]) -> list[dict[str, Any]]:
    flat = iter(parameters)
    steps: list[dict[str, Any]] = []
    for step in recorded.steps:
        if isinstance(step, Acquirer):
            steps.append({"acquirer": step.provider})
            continue
        statements = [
            {"sql": r.sql, "parameters": encode(next(flat)), "many": r.many}
            for r in step.statements
        ]
        steps.append({"transaction": statements, "end": step.end})
    return steps


def time_acquirer(provider: Provider, order: AuthorizeRequest) -> float:
    """Seconds one `authorize` of `provider` takes for `order` (each call a fresh key), in
    this process: the mean of ACQUIRER_CALLS timed calls."""
    for n in range(10):
        provider.authorize(dataclasses.replace(order, idempotency_key=f"{uuid.uuid4().hex}-{n}"))
    orders = [
        dataclasses.replace(order, idempotency_key=f"{uuid.uuid4().hex}-{n}")
        for n in range(ACQUIRER_CALLS)
    ]
    started = time.perf_counter()
    for each in orders:
        provider.authorize(each)
    return (time.perf_counter() - started) / ACQUIRER_CALLS


def session_settings(gw: Gateway) -> list[str]:
    """What the gateway sets on each SQLite connection it opens, read back from one."""
    if gw.db.dialect != "sqlite":
        return []
    with gw.db.engine.connect() as conn:
        return [
            f"PRAGMA {name}={conn.exec_driver_sql(f'PRAGMA {name}').scalar()}"
            for name in SQLITE_SESSION
        ]


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a recording holds: (statements, transactions) per request, the acquirer's time."""

    create: tuple[int, int]
    confirm: tuple[int, int]
    acquirer_s: float


def gateway(env: Mapping[str, str]) -> tuple[Gateway, FlaskClient]:
    """The gateway of `env` in this process, and a test client of its app."""
    from config import load_settings
    from payments.api.app import create_app
    from payments.gateway import build_gateway

    gw = build_gateway(load_settings(env))
    event.listen(gw.db.engine, "do_connect", keep_rows)
    gw.db.engine.dispose()
    return gw, create_app(gw=gw).test_client()


def prepare(env: Mapping[str, str], key: str) -> None:
    """The gateway's first payment on the database of `env`, to open its ledger accounts as
    it did on the database the recording was made on."""
    gw, client = gateway(env)
    recorder = Recorder(gw)
    try:
        pay(client, recorder, key, "opening")
    finally:
        recorder.close()
        gw.db.dispose()


def record(env: Mapping[str, str], key: str, path: Path) -> Summary:
    """Record, in this process, the gateway of `env` (on a migrated and seeded database of its
    own) creating and confirming a payment with Idempotency-Keys, after one payment to warm
    it; write the recording to `path`. Two payments in a row are recorded, and must run the
    same statements: what differs between them is what a replay makes afresh."""
    from payments.service.access import digest

    gw, client = gateway(env)
    recorder = Recorder(gw)
    try:
        history = [pay(client, recorder, key, "warm-up")]
        first = pay(client, recorder, key, "recording")
        for _ in range(SHAPE_TRIES):
            second = pay(client, recorder, key, "recording")
            if [shape(first.create), shape(first.confirm)] == [
                shape(second.create),
                shape(second.confirm),
            ]:
                break
            history.append(first)
            first = second
        else:
            raise RecordingError("no two payments in a row ran the same statements")
        history.append(first)
        session = session_settings(gw)
    finally:
        recorder.close()
    try:
        if not recorder.called:
            raise RecordingError("the confirm called no acquirer")
        provider, order = recorder.called[-1]
        acquirer_s = time_acquirer(provider, order)
    finally:
        gw.db.dispose()
    create, confirm = second.create, second.confirm
    seen = set().union(*(request_tokens(r) for p in history for r in (p.create, p.confirm)))
    payment_id = json.loads(create.body)["id"]
    made = request_tokens(create) - seen
    unknown = (request_tokens(confirm) & made) - {payment_id}
    if unknown:
        raise RecordingError(f"the confirm uses identifiers its create made: {sorted(unknown)}")
    existing = (request_tokens(create) | request_tokens(confirm)) & seen
    recording = {
        "format": 1,
        "dialect": gw.db.dialect,
        "session": session,
        "acquirer": {"provider": provider.name, "seconds": acquirer_s},
        "lookup": key_lookup([p.create for p in history], existing, digest(key)),
        "payment_id": payment_id,
        "requests": {
            name: {
                "key": recorded.key,
                "reference": recorded.reference,
                "started": encode(recorded.started),
                "steps": steps_json(recorded, linked(recorded, before)),
                "status": recorded.status,
                "body": recorded.body,
            }
            for name, recorded, before in (
                ("create", create, first.create),
                ("confirm", confirm, first.confirm),
            )
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recording, ensure_ascii=False, indent=1), encoding="utf-8")
    return Summary(create.counts(), confirm.counts(), acquirer_s)


# --------------------------------------------------------------------------- replay


@dataclasses.dataclass
class Context:
    """One request's substitutions."""

    now: dt.datetime
    key: str
    reference: str | None
    payment_id: str
    existing: Mapping[str, str]  # recorded id made before the request -> this database's
    fresh: dict[str, str] = dataclasses.field(default_factory=dict)
    results: dict[int, list[Any]] = dataclasses.field(default_factory=dict)


def fresh_like(token: str) -> str:
    """A new identifier of the same shape as `token`."""
    prefix, _, suffix = token.rpartition("_")
    if ID_PATTERN.fullmatch(token):
        return new_id(prefix)
    if all(c in string.hexdigits for c in suffix) and len(suffix) % 2 == 0:
        return f"{prefix}_{secrets.token_hex(len(suffix) // 2)}"
    alphabet = string.ascii_lowercase + string.digits
    return f"{prefix}_{''.join(secrets.choice(alphabet) for _ in suffix)}"


def template(filled: Filled) -> Template:
    """A `Compiler`'s result as a template, a value that does not vary included."""
    varies, value = filled
    if varies:
        fill: Template = value
        return fill
    return lambda _ctx: value


class Compiler:
    """Turns the values of one recorded request into templates filled per request: the ids
    it made afresh, its Idempotency-Key, its reference and its timestamps substituted, in
    whole values and inside strings alike; numbers linked to rows the database returned."""

    def __init__(
        self, payment_id: str, key: str, reference: str | None, started: dt.datetime
    ) -> None:
        self.payment_id = payment_id
        self.key = key
        self.reference = reference
        self.started = started
        exact = [f"(?P<key>{re.escape(key)})"]
        if reference:
            exact.append(f"(?P<reference>{re.escape(reference)})")
        self.pattern = re.compile(
            "|".join([*exact, f"(?P<token>{TOKEN.pattern})", f"(?P<moment>{MOMENT.pattern})"])
        )

    def token(self, recorded: str) -> Template:
        if recorded == self.payment_id:
            return lambda ctx: ctx.payment_id

        def fill(ctx: Context) -> str:
            found = ctx.existing.get(recorded) or ctx.fresh.get(recorded)
            if found is None:
                found = ctx.fresh[recorded] = fresh_like(recorded)
            return found

        return fill

    def moment(self, written: str) -> Template:
        match = MOMENT.fullmatch(written)
        assert match is not None
        date, sep, clock, fraction, zone = match.groups()
        digits = len(fraction or "")
        iso = f"{date}T{clock}" + (f".{fraction.ljust(6, '0')}" if fraction else "")
        recorded = dt.datetime.fromisoformat(iso + ("+00:00" if zone in (None, "Z") else zone))
        offset, tz, form = recorded - self.started, recorded.tzinfo, f"%Y-%m-%d{sep}%H:%M:%S"

        def fill(ctx: Context) -> str:
            at = (ctx.now + offset).astimezone(tz)
            text = at.strftime(form)
            if digits:
                text += "." + f"{at.microsecond:06d}"[:digits]
            return text + (zone or "")

        return fill

    def text(self, value: str) -> Filled:
        parts: list[str | Template] = []
        last = 0
        for match in self.pattern.finditer(value):
            parts.append(value[last : match.start()])
            last = match.end()
            if match.group("key"):
                parts.append(lambda ctx: ctx.key)
            elif self.reference and match.group("reference"):
                parts.append(lambda ctx: ctx.reference)
            elif match.group("token"):
                parts.append(self.token(match.group(0)))
            else:
                parts.append(self.moment(match.group(0)))
        if not last:
            return False, value
        parts.append(value[last:])
        kept = [p for p in parts if p != ""]
        if len(kept) == 1 and not isinstance(kept[0], str):
            return True, kept[0]
        return True, lambda ctx: "".join(p if isinstance(p, str) else p(ctx) for p in kept)

    def value(self, value: Any) -> Filled:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Returned):
            statement, row, column = value.statement, value.row, value.column
            return True, lambda ctx: ctx.results[statement][row][column]
        if isinstance(value, dt.datetime):
            offset = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)) - self.started
            if value.tzinfo is None:
                return True, lambda ctx: (ctx.now + offset).replace(tzinfo=None)
            return True, lambda ctx: ctx.now + offset
        if isinstance(value, JSON_WRAPPERS):
            varies, inner = self.value(value.obj)
            wrapper = type(value)
            return (True, lambda ctx: wrapper(inner(ctx))) if varies else (False, value)
        if isinstance(value, dict):
            items = [(k, self.value(v)) for k, v in value.items()]
            if not any(varies for _, (varies, _) in items):
                return False, value
            fills = [(k, template(f)) for k, f in items]
            return True, lambda ctx: {k: fill(ctx) for k, fill in fills}
        if isinstance(value, list | tuple):
            each = [self.value(v) for v in value]
            if not any(varies for varies, _ in each):
                return False, value
            fills_ = [template(f) for f in each]
            kind = type(value)
            return True, lambda ctx: kind(fill(ctx) for fill in fills_)
        return False, value


@dataclasses.dataclass(frozen=True)
class Statement:
    """A recorded statement, its parameters filled per request."""

    index: int  # in the request, across its transactions
    sql: str
    parameters: Template
    many: bool
    feeds: bool  # its rows are parameters of a later statement


@dataclasses.dataclass(frozen=True)
class Step:
    """A transaction ending in `end` ("commit" or "rollback"), or the acquirer's call."""

    statements: tuple[Statement, ...]  # none: the acquirer's stand-in
    end: str


@dataclasses.dataclass(frozen=True)
class Request:
    """A recorded request, ready to replay: its steps, and its answer filled per request."""

    steps: tuple[Step, ...]
    status: int
    body: Template

    def counts(self) -> tuple[int, int]:
        transactions = [s for s in self.steps if s.end != "acquirer"]
        return sum(len(t.statements) for t in transactions), len(transactions)


def returned_in(value: Any) -> Iterator[Returned]:
    if isinstance(value, Returned):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from returned_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from returned_in(v)


def compile_request(recorded: Mapping[str, Any], payment_id: str) -> Request:
    started = decode(recorded["started"])
    compiler = Compiler(payment_id, recorded["key"], recorded["reference"], started)
    raw = [
        [(s["sql"], decode(s["parameters"]), s["many"]) for s in step["transaction"]]
        if "transaction" in step
        else None
        for step in recorded["steps"]
    ]
    feeding = {
        r.statement
        for step in raw
        if step is not None
        for _sql, parameters, _many in step
        for r in returned_in(parameters)
    }
    steps: list[Step] = []
    index = 0
    for step, spec in zip(raw, recorded["steps"], strict=True):
        if step is None:
            steps.append(Step((), "acquirer"))
            continue
        statements = []
        for sql, parameters, many in step:
            filled = template(compiler.value(parameters))
            statements.append(Statement(index, sql, filled, many, index in feeding))
            index += 1
        steps.append(Step(tuple(statements), spec["end"]))
    return Request(tuple(steps), recorded["status"], template(compiler.text(recorded["body"])))


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


def connect(url: str, session: list[str]) -> Connection:
    """A DB-API connection to `url` (SQLAlchemy's form), set as the gateway sets its own."""
    parsed = make_url(url)
    conn: Connection
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None)
    else:
        conn = psycopg.connect(parsed.set(drivername="postgresql").render_as_string(False))
    for sql in session:
        conn.execute(sql)
    if isinstance(conn, psycopg.Connection):
        conn.commit()
    return conn


def create_app(replay: Replay, url: str) -> Flask:
    """The durable app: each request reads its body (and the Authorization header, never
    verified but by the replayed statements) and replays its request on this process's own
    connection to `url`, opened on first use."""
    app = Flask("durable")
    held: list[Connection] = []

    def answer(run: Callable[[Connection], tuple[int, str]]) -> Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return Response('{"error": "unauthorized"}', 401, mimetype="application/json")
        if not held:
            held.append(connect(url, replay.session))
        try:
            status, body = run(held[0])
        except Exception as exc:
            app.logger.exception("replay failed")
            with contextlib.suppress(Exception):
                held.pop().close()
            return Response(json.dumps({"error": str(exc)}), 500, mimetype="application/json")
        return Response(body, status, mimetype="application/json")

    @app.post("/v1/payments")
    def create() -> Response:
        body = json.loads(request.get_data())
        key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        return answer(lambda conn: replay.create_payment(conn, key, str(body["reference"])))

    @app.post("/v1/payments/<payment_id>/confirm")
    def confirm(payment_id: str) -> Response:
        json.loads(request.get_data())
        key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        return answer(lambda conn: replay.confirm_payment(conn, key, payment_id))

    return app


def check(replay: Replay, conn: Connection) -> None:
    """One payment replayed, before serving: a recording that cannot replay fails here."""
    tag = secrets.token_hex(4)
    status, body = replay.create_payment(conn, f"durable-check-{tag}-create", f"CHECK-{tag}")
    payment_id = json.loads(body)["id"]
    status_2, body_2 = replay.confirm_payment(conn, f"durable-check-{tag}-confirm", payment_id)
    if (status, status_2) != (201, 200) or '"succeeded"' not in body_2:
        raise RecordingError(f"the replayed payment answered {status} then {status_2}")


class DurableServer(YardstickServer):
    """The durable app under gunicorn with `options` (the gateway's `server_options`)."""

    def __init__(self, replay: Replay, url: str, options: dict[str, Any]) -> None:
        self.replay = replay
        super().__init__(url, options)

    def load(self) -> Flask:
        return create_app(self.replay, self.url)


def main() -> None:
    """`python -m bench.durable RECORDING URL BIND WORKERS`: check the recording replays on
    URL's database (migrated and seeded as the gateway's), then serve."""
    from payments.api.server import server_options

    path, url, bind, workers = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    replay = Replay(path)
    conn = connect(url, replay.session)
    try:
        replay.resolve(conn)
        check(replay, conn)
    finally:
        conn.close()
    options = server_options(os.environ)
    # The gateway's hooks check the gateway's settings and keep its metrics: not the app's.
    for hook in ("on_starting", "child_exit"):
        options.pop(hook)
    options.update(bind=bind, workers=workers)
    DurableServer(replay, url, options).run()


if __name__ == "__main__":
    main()
