"""Mapped objects written by Core statements on the driver's cursor (`statements.prepared`)
instead of the ORM's unit of work: a new object by one INSERT, the column changes of a loaded
one by one UPDATE. Every object written stays the session's, as the unit of work leaves it, so a
later change to it is written too."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Column, Insert, Table, Update, bindparam, inspect
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlalchemy.orm import (
    DeclarativeBase,
    InstanceState,
    Session,
    make_transient,
    make_transient_to_detached,
)
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import StaleDataError

from statements import prepared

Loaded = TypeVar("Loaded", bound=DeclarativeBase)

KEY = "row_key"  # the bound name of the primary key in `update_of`: no column is called so


@functools.cache
def _columns(model: type[DeclarativeBase]) -> dict[str, str]:
    """Column name by attribute name of each column a mapped class maps."""
    return {attr.key: attr.columns[0].name for attr in inspect(model).column_attrs}


@functools.cache
def _position(model: type[DeclarativeBase]) -> int:
    """The place of a class's table in the order the schema's foreign keys give (parents
    first), which is the order the unit of work writes tables in."""
    table = cast(Table, model.__table__)
    return [t.name for t in table.metadata.sorted_tables].index(table.name)


@functools.cache
def columns_of(model: type[DeclarativeBase]) -> tuple[Column[Any], ...]:
    """The columns a mapped class maps, in its attributes' order: what `loaded` takes a row of."""
    table = cast(Table, model.__table__)
    return tuple(table.c[column] for column in _columns(model).values())


def loaded(session: Session, model: type[Loaded], row: Sequence[Any]) -> Loaded:
    """The persistent object of `model` for `row`, its `columns_of` as read in the session's
    transaction: the one the session holds already for that primary key, as the ORM's own
    load gives it (a loaded object is not overwritten), or a new one attached to the session
    with those values as loaded, unchanged."""
    mapper = inspect(model)
    values = dict(zip(_columns(model), row, strict=True))
    key = mapper.identity_key_from_primary_key(tuple(values[k] for k in _keys(model)))
    held = session.identity_map.get(key)
    if held is not None:
        return cast(Loaded, held)
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    session.add(obj)
    return cast(Loaded, obj)


@functools.cache
def _keys(model: type[DeclarativeBase]) -> tuple[str, ...]:
    """The attribute names of a mapped class's primary key columns, in the key's order."""
    mapper = inspect(model)
    return tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)


@functools.cache
def _null_unless_set(model: type[DeclarativeBase]) -> tuple[str, ...]:
    """The attributes whose column an INSERT that does not set them leaves NULL (no default
    of either side): what an inserted object holds for them without asking the database."""
    table = cast(Table, model.__table__)
    return tuple(
        key
        for key, column in _columns(model).items()
        if table.c[column].default is None and table.c[column].server_default is None
    )


@functools.cache
def insert_into(model: type[DeclarativeBase]) -> Insert:
    """A Core INSERT into a mapped class's table (not ORM-enabled: no autoflush)."""
    return sa_insert(cast(Table, model.__table__))


@functools.cache
def update_of(model: type[DeclarativeBase]) -> Update:
    """A Core UPDATE of one row of a mapped class's table, by its single-column primary key
    bound as `KEY`; the columns it sets are those given with the key."""
    table = cast(Table, model.__table__)
    (key,) = table.primary_key.columns
    return sa_update(table).where(key == bindparam(KEY))


def values(obj: DeclarativeBase) -> dict[str, Any]:
    """The column values set on a new mapped object, keyed by column name; a column left unset
    takes its default in the INSERT."""
    state = obj.__dict__
    return {column: state[key] for key, column in _columns(type(obj)).items() if key in state}


def insert(session: Session, *objects: DeclarativeBase) -> None:
    """INSERT `objects` (new, of one mapped class, every column with a Python-side default
    set) now, in the session's transaction, after writing the session's pending changes. Each
    is then the session's, as if loaded: a later change to it is written by the next
    `write_changes` or flush."""
    write_changes(session)
    if not objects:
        return
    statement = insert_into(type(objects[0]))
    conn = session.connection()
    for obj in objects:
        prepared.run(conn, statement, values(obj))
    unset = _null_unless_set(type(objects[0]))
    for obj in objects:
        state = obj.__dict__
        state.update((key, None) for key in unset if key not in state)  # as the row holds it
        make_transient_to_detached(obj)
        session.add(obj)


def append(session: Session, model: type[DeclarativeBase], *rows: Mapping[str, Any]) -> None:
    """INSERT rows of `model` given as values by attribute name (every column with a
    Python-side default set), after writing the session's pending changes: for rows nothing
    changes once written (events, delivery jobs), so no object is made that a later change
    could be lost on."""
    write_changes(session)
    if not rows:
        return
    statement, columns = insert_into(model), _columns(model)
    conn = session.connection()
    for row in rows:
        prepared.run(conn, statement, {columns[key]: value for key, value in row.items()})


def _changes(state: InstanceState[Any]) -> dict[str, Any] | None:
    """The changed columns of a loaded object (column name to new value), or None if it has
    changes that are not plain columns (which only the unit of work writes)."""
    columns = _columns(cast(type[DeclarativeBase], state.class_))
    changed: dict[str, Any] = {}
    for key, old in state.committed_state.items():
        column = columns.get(key)
        if column is None:
            return None
        new = state.dict[key]
        if old is NO_VALUE or old != new:
            changed[column] = new
    return changed


def write_changes(session: Session) -> None:
    """Write the session's pending changes now. The column changes of loaded objects go as one
    UPDATE each by primary key (tables in the unit of work's order, rows by key), and the
    objects are left with nothing pending. With new or deleted objects pending, or a change
    that is not a plain column, the unit of work writes everything instead (`Session.flush`):
    statements run on the driver's cursor, as these are, do not flush the session first."""
    if session.new or session.deleted:
        session.flush()
        return
    states = sorted(
        (inspect(obj) for obj in session.dirty),
        key=lambda s: (_position(s.class_), s.identity),
    )
    writes = []
    for state in states:
        changed = _changes(state)
        if changed is None or len(state.mapper.primary_key) != 1:
            session.flush()
            return
        writes.append((state, changed))
    for state, changed in writes:
        if changed:
            (key,) = state.identity
            done = prepared.run(
                session.connection(), update_of(state.class_), {**changed, KEY: key}
            )
            if done.rowcount != 1:
                raise StaleDataError(f"{state.class_.__name__} {key!r} was not updated")
        _written(session, state.obj())


def _written(session: Session, obj: object) -> None:
    """Leave a loaded object that was just written as the unit of work leaves one: in the
    session, its values as the database now holds them, nothing pending."""
    make_transient(obj)  # out of the session, its identity dropped
    make_transient_to_detached(obj)  # its identity again, its values the loaded ones
    session.add(obj)
