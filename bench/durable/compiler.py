"""Compiling a recorded request into statements and an answer filled afresh per request."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bench.durable.patterns import MOMENT, TOKEN
from bench.durable.tags import JSON_WRAPPERS, Returned, decode
from payments.ids import ID_PATTERN, new_id

Template = Callable[["Context"], Any]
Filled = tuple[bool, Any]  # (differs per request, its template if so, else the value)


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
