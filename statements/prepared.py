"""Core statements compiled once per dialect and run on the driver's own cursor
(`statements.driver`), for the hot path: each run converts its values with the column types' own
converters and skips SQLAlchemy's per-statement compilation-cache, execution-context and
result machinery."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Delete, Dialect, Insert, Select, Update
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import cloned_traverse

from statements import driver

Convert = Callable[[Any], Any] | None
Statement = Insert | Update | Delete | Select[*tuple[Any, ...]]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A statement as its dialect's driver takes it."""

    text: str
    names: tuple[str, ...]  # its parameters, in their order when the style is positional
    positional: bool
    bound: dict[str, Any]  # values the statement itself binds (literals), by name
    converts: tuple[Convert, ...]  # per name: the value's type's converter for the driver
    results: tuple[Convert, ...]  # per selected column: the driver's value to Python's

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        given = {**self.bound, **values}
        converted = [
            given[name] if convert is None else convert(given[name])
            for name, convert in zip(self.names, self.converts, strict=True)
        ]
        return (
            tuple(converted) if self.positional else dict(zip(self.names, converted, strict=True))
        )

    def row(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            value if convert is None or value is None else convert(value)
            for value, convert in zip(row, self.results, strict=True)
        )


@functools.lru_cache(maxsize=1024)
def prepare(statement: Statement, dialect: Dialect, keys: tuple[str, ...] = ()) -> Prepared:
    """`statement` compiled for `dialect`; for an INSERT or UPDATE, setting the columns `keys`.
    A statement the driver cannot take as it is (a column left to a Python-side default,
    parameters expanded at execution) is refused with ValueError."""
    # Compiled from a copy: a statement derived from one already compiled (`insert(t).returning(
    # ...)` from a cached `insert(t)`) may carry its base's remembered RETURNING columns, which
    # a clone does not.
    fresh = cloned_traverse(statement, {}, {})
    compiled = fresh.compile(dialect=dialect, column_keys=list(keys) or None)
    assert isinstance(compiled, SQLCompiler)
    if compiled.insert_prefetch or compiled.update_prefetch:
        missing = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        raise ValueError(f"columns left to Python-side defaults: {missing}")
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError("parameters expanded at execution cannot be prepared")
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(binds)
    bound = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
    converts = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    # A write's RETURNING columns, as the compiler wrote them.
    returned = (
        list(fresh.selected_columns)
        if isinstance(fresh, Select)
        else list(compiled.effective_returning or ())
    )
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned
    )
    return Prepared(compiled.string, names, compiled.positional, bound, converts, results)


def run(conn: Connection, statement: Statement, values: Mapping[str, Any]) -> driver.Ran:
    """Run `statement` with `values` (by column key or bound name) in `conn`'s transaction;
    the rows it returns (a SELECT's, or a write's RETURNING) come back as Python's values."""
    keys = () if isinstance(statement, Select) else tuple(values)
    prepared = prepare(statement, conn.dialect, keys)
    ran = driver.run(conn, prepared.text, prepared.parameters(values))
    if prepared.results:
        return driver.Ran([prepared.row(row) for row in ran.rows], ran.rowcount)
    return ran


def run_many(
    conn: Connection, statement: Insert | Update | Delete, values: Sequence[Mapping[str, Any]]
) -> int:
    """Run the write `statement` once for each of `values` (each with the same keys, by column
    key or bound name) as one statement (`driver.run_many`). Returns the rows written."""
    if not values:
        return 0
    prepared = prepare(statement, conn.dialect, tuple(values[0]))
    if prepared.results:
        raise ValueError("a statement that returns rows cannot be run for many values")
    return driver.run_many(conn, prepared.text, [prepared.parameters(v) for v in values])
