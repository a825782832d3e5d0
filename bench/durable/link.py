"""What differs between two recorded payments, and where each request's values came from."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bench.durable.errors import RecordingError
from bench.durable.patterns import TOKEN
from bench.durable.recorder import Acquirer, Ran, Recorded
from bench.durable.tags import JSON_WRAPPERS, Returned, encode


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
