"""Currencies the gateway accepts, their minor-unit exponents and amount rules."""

from __future__ import annotations

import re

CURRENCY_EXPONENTS: dict[str, int] = {
    "SAR": 2,
    "AED": 2,
    "QAR": 2,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "USD": 2,
}
# Each currency's name in Arabic, for the pages and reports that show it in words.
CURRENCY_NAMES_AR = {
    "SAR": "ريال سعودي",
    "AED": "درهم إماراتي",
    "KWD": "دينار كويتي",
    "QAR": "ريال قطري",
    "BHD": "دينار بحريني",
    "OMR": "ريال عماني",
    "USD": "دولار أمريكي",
}
MAX_AMOUNT_MINOR = 10**12
# A decimal amount as files and forms write it: ASCII digits, an optional sign and fraction.
_DECIMAL_RE = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")


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
    """Parse a decimal string of major units into minor units, refusing extra decimals, any
    other notation (exponents, `_`, non-ASCII digits) and amounts past MAX_AMOUNT_MINOR.
    Integer arithmetic throughout: `Decimal` would round past 28 digits and overflow on
    exponents, and `int` refuses numbers of over 4300 digits."""
    exp = exponent(currency)
    match = _DECIMAL_RE.fullmatch(text.strip())
    if match is None:
        raise AmountError(f"{text!r} is not a decimal amount")
    sign, whole, frac = match.group(1), match.group(2), match.group(3) or ""
    if len(frac.rstrip("0")) > exp:
        raise AmountError(f"{text!r} has more than {exp} decimals for {currency}")
    whole = whole.lstrip("0") or "0"
    if len(whole) > len(str(MAX_AMOUNT_MINOR)):  # bounds the int() below
        raise AmountError(f"{text!r} is over the gateway's maximum amount")
    minor = int(whole + frac[:exp].ljust(exp, "0"))  # the digits past `exp` are zeros
    if minor > MAX_AMOUNT_MINOR:
        raise AmountError(f"{text!r} is over the gateway's maximum amount")
    return -minor if sign == "-" else minor
