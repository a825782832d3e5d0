"""Currency exponents and the integer-only amount rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT_MINOR,
    AmountError,
    exponent,
    format_major,
    parse_major,
)


def test_exponents_of_the_gcc_currencies() -> None:
    assert CURRENCY_EXPONENTS == {
        "SAR": 2,
        "AED": 2,
        "QAR": 2,
        "KWD": 3,
        "BHD": 3,
        "OMR": 3,
        "USD": 2,
    }


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(12500, "OMR", "12.500"), (1, "KWD", "0.001"), (100, "SAR", "1.00"), (-2500, "BHD", "-2.500")],
)
def test_format_and_parse(minor: int, currency: str, text: str) -> None:
    assert format_major(minor, currency) == text
    assert parse_major(text, currency) == minor


@pytest.mark.parametrize("text", ["1.0001", "0.0005", "abc", "NaN", "Infinity", ""])
def test_parse_refuses_extra_decimals_and_garbage(text: str) -> None:
    with pytest.raises(AmountError):
        parse_major(text, "OMR")


def test_parse_never_rounds() -> None:
    with pytest.raises(AmountError):
        parse_major("12.345", "SAR")


def test_unknown_currency() -> None:
    with pytest.raises(AmountError):
        exponent("XXX")


@given(
    minor=st.integers(min_value=-MAX_AMOUNT_MINOR, max_value=MAX_AMOUNT_MINOR),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
)
def test_round_trip(minor: int, currency: str) -> None:
    assert parse_major(format_major(minor, currency), currency) == minor
