"""When to try a failed delivery again: the retry schedule with jitter, and `Retry-After`."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from collections.abc import Sequence

JITTER = 0.2  # each delay is stretched by up to 20 %, never shortened
MAX_RETRY_AFTER_S = 24 * 3600.0


def retry_delay_s(schedule_s: Sequence[float], attempts_made: int) -> float | None:
    """Seconds to wait after the `attempts_made`-th failed attempt, or None when none is left."""
    if attempts_made < 1 or attempts_made > len(schedule_s):
        return None
    return schedule_s[attempts_made - 1] * (1 + random.uniform(0, JITTER))


def retry_after_s(value: str | None, now: dt.datetime) -> float | None:
    """The receiver's `Retry-After`, as seconds from `now` (delta-seconds or an HTTP date),
    capped at a day; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text[:9]), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def next_attempt_at(
    schedule_s: Sequence[float], attempts_made: int, now: dt.datetime, retry_after: float | None
) -> dt.datetime | None:
    """When to try again after a failure: the schedule's delay, or later if the receiver asked."""
    delay = retry_delay_s(schedule_s, attempts_made)
    if delay is None:
        return None
    if retry_after is not None:
        delay = max(delay, retry_after)
    # whole milliseconds, as the clock keeps them, rounded up: never earlier than promised
    return now + dt.timedelta(milliseconds=math.ceil(delay * 1000))
