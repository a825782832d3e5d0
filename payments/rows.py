"""New rows written by one Core INSERT each, outside the ORM's unit of work: for objects the
hot path creates once and does not change again in the same transaction."""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import Insert, Table, inspect
from sqlalchemy import insert as sa_insert
from sqlalchemy.orm import DeclarativeBase, Session


@functools.cache
def _columns(model: type[DeclarativeBase]) -> tuple[tuple[str, str], ...]:
    """(attribute, column name) of each column a mapped class maps."""
    return tuple((attr.key, attr.columns[0].name) for attr in inspect(model).column_attrs)


@functools.cache
def insert_into(model: type[DeclarativeBase]) -> Insert:
    """A Core INSERT into a mapped class's table (not ORM-enabled: no autoflush)."""
    return sa_insert(cast(Table, model.__table__))


def values(obj: DeclarativeBase) -> dict[str, Any]:
    """The column values set on a new mapped object, keyed by column name; a column left unset
    takes its default in the INSERT."""
    state = obj.__dict__
    return {column: state[key] for key, column in _columns(type(obj)) if key in state}


def insert(session: Session, *objects: DeclarativeBase) -> None:
    """INSERT `objects` (new, of one mapped class, with the same columns set) now, in the
    session's transaction. They stay outside the session: later changes to them are not
    written, and a query in this transaction sees the rows, not these objects."""
    if not objects:
        return
    session.execute(insert_into(type(objects[0])), [values(obj) for obj in objects])
