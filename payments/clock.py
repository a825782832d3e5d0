"""The one clock the gateway reads, so tests can move time instead of sleeping."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

UTC = dt.UTC

_now: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC)  # noqa: E731


def now() -> dt.datetime:
    """The current UTC time, with microseconds dropped so it survives every database."""
    current = _now()
    return current.replace(microsecond=(current.microsecond // 1000) * 1000)


def set_clock(source: Callable[[], dt.datetime] | None) -> None:
    """Replace the clock (tests); `None` restores the system clock."""
    global _now
    _now = source if source is not None else (lambda: dt.datetime.now(UTC))


def rfc3339(value: dt.datetime | None) -> str | None:
    """RFC 3339 UTC with a `Z`, milliseconds kept."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    # Formatted field by field: `strftime("%Y")` does not zero-pad years below 1000
    # on every platform, which would give an invalid RFC 3339 timestamp.
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
        f".{value.microsecond // 1000:03d}Z"
    )
