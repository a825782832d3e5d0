"""Currencies the gateway accepts, their minor-unit exponents and amount rules."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

CURRENCY_EXPONENTS: dict[str, int] = {
    "SAR": 2,
    "AED": 2,
    "QAR": 2,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "USD": 2,
}
MAX_AMOUNT_MINOR = 10**12


class AmountError(ValueError):
    """An amount or currency that the gateway refuses."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise AmountError(f"unsupported currency {currency!r}") from None


def format_major(amount_minor: int, currency: str) -> str:
    """Format minor units as a decimal string of major units: 12500 OMR -> '12.500'."""
    exp = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


def parse_major(text: str, currency: str) -> int:
    """Parse a decimal string of major units into minor units, refusing extra decimals."""
    exp = exponent(currency)
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise AmountError(f"{text!r} is not a decimal amount") from None
    if not value.is_finite():
        raise AmountError(f"{text!r} is not a finite amount")
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise AmountError(f"{text!r} has more than {exp} decimals for {currency}")
    return int(scaled)
