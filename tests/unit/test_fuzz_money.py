"""Fuzz tests of `parse_major` on arbitrary text: an amount in minor units or an AmountError."""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

from hypothesis import example, given
from hypothesis import strategies as st

from payments.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR, AmountError, parse_major
from tests.unit.fuzz_support import fuzz

CURRENCIES = sorted(CURRENCY_EXPONENTS)
# A decimal amount as files and forms write it (API.md section 5: `12.500`): ASCII digits,
# an optional sign and fraction, nothing else but surrounding whitespace.
PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")

amount_like = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[+-]?[0-9]{0,16}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,10})?", fullmatch=True),
    st.from_regex(r"[+-]?[0-9]{1,4}(_[0-9]{3}){0,3}(\.[0-9]{1,3})?", fullmatch=True),
    st.from_regex(r"[0-9]{1,20}\.[0-9]{1,40}", fullmatch=True),  # past Decimal's 28 digits
    st.decimals().map(str),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.text(st.sampled_from("0123456789.٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹-"), min_size=1, max_size=10),
    st.sampled_from(["1" * 5000, "1e999999", "-1E+1000000", "1e-999999999", "sNaN", "-Inf"]),
)


@fuzz(400)
@given(text=amount_like, currency=st.sampled_from(CURRENCIES))
@example(text="1e999999", currency="OMR")  # decimal.Overflow
@example(text="1e400000", currency="OMR")  # past the integer digits limit
@example(text="1_000", currency="SAR")
@example(text="\u0661\u0662.\u0665\u0660\u0660", currency="OMR")
@example(text="1.0000000000000000000000000001", currency="OMR")  # rounded to 1.000 by Decimal
def test_any_text_is_an_amount_or_refused(text: str, currency: str) -> None:
    try:
        amount = parse_major(text, currency)
    except AmountError as exc:
        assert str(exc)
        return
    assert isinstance(amount, int)
    assert PLAIN_DECIMAL.fullmatch(text.strip()), f"{text!r} is not a plain decimal amount"
    exp = CURRENCY_EXPONENTS[currency]
    with localcontext() as exact:
        exact.prec = 100
        assert Decimal(text.strip()).scaleb(exp) == amount
    assert abs(amount) <= MAX_AMOUNT_MINOR
    assert parse_major(text, currency) == amount


@fuzz(100)
@given(text=st.text(max_size=10), currency=st.text(max_size=5))
def test_an_unknown_currency_is_refused(text: str, currency: str) -> None:
    if currency in CURRENCY_EXPONENTS:
        return
    try:
        parse_major(text, currency)
    except AmountError:
        return
    raise AssertionError(f"{text!r} parsed in the unknown currency {currency!r}")
