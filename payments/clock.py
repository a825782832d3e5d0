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
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
