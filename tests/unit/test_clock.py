"""`clock.rfc3339`: every datetime becomes an RFC 3339 UTC timestamp with a `Z`."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from payments import clock

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_none_stays_none() -> None:
    assert clock.rfc3339(None) is None


def test_normal_years_keep_the_existing_format() -> None:
    value = dt.datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=dt.UTC)
    assert clock.rfc3339(value) == "2026-03-04T05:06:07.891Z"


def test_naive_times_are_taken_as_utc() -> None:
    assert clock.rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"


def test_offsets_are_converted_to_utc() -> None:
    muscat = dt.timezone(dt.timedelta(hours=4))
    value = dt.datetime(2026, 1, 1, 2, 30, 0, 5000, tzinfo=muscat)
    assert clock.rfc3339(value) == "2025-12-31T22:30:00.005Z"


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (1, "0001-02-03T04:05:06.007Z"),
        (5, "0005-02-03T04:05:06.007Z"),
        (99, "0099-02-03T04:05:06.007Z"),
        (999, "0999-02-03T04:05:06.007Z"),
        (1000, "1000-02-03T04:05:06.007Z"),
        (9999, "9999-02-03T04:05:06.007Z"),
    ],
)
def test_years_are_always_four_digits(year: int, expected: str) -> None:
    value = dt.datetime(year, 2, 3, 4, 5, 6, 7999, tzinfo=dt.UTC)
    text = clock.rfc3339(value)
    assert text == expected
    assert text is not None and RFC3339.match(text)


def test_the_result_parses_back_to_the_same_millisecond() -> None:
    value = dt.datetime(42, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    text = clock.rfc3339(value)
    assert text is not None
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed == value.replace(microsecond=999000)
