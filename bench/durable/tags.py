"""JSON with type tags: the values a recording holds, written and read back as they were."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any

from psycopg.types.json import Json, Jsonb

JSON_WRAPPERS = (Json, Jsonb)


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
