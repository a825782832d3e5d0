"""Amounts as the national schemes write them on the wire: decimal major units with exactly the
currency's exponent (`1.250` KWD is 1250 minor units). Only scheme adapters and their
simulators use this, at their edge; everything else in the gateway speaks integer minor units.

`providers` may not import `payments`, so the exponents of the schemes' currencies are repeated
here; a unit test keeps them equal to `payments.money.CURRENCY_EXPONENTS`.
"""

from __future__ import annotations

import decimal
import re
from types import MappingProxyType

SCHEME_CURRENCY_EXPONENTS = MappingProxyType({"KWD": 3, "BHD": 3, "OMR": 3, "SAR": 2})
MAX_AMOUNT_MINOR = 10**12
# Enough whole digits for any amount up to MAX_AMOUNT_MINOR in any exponent, and a bound on
# what is handed to Decimal at all.
_WHOLE_DIGITS_MAX = 16
_FRACTION_DIGITS_MAX = 16
_AMOUNT_RE = re.compile(
    rf"([0-9]{{1,{_WHOLE_DIGITS_MAX}}})(?:\.([0-9]{{1,{_FRACTION_DIGITS_MAX}}}))?", re.ASCII
)
# Any rounding at all is an error, never a silent change of the amount.
_EXACT = decimal.Context(
    prec=40, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation]
)


class SchemeAmountError(ValueError):
    """An amount a scheme wrote (or was to be sent) that cannot be taken exactly. The message
    never repeats the text."""


def exponent(currency: str) -> int:
    try:
        return SCHEME_CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise SchemeAmountError("not a currency of a national scheme") from None


def format_amount(amount_minor: int, currency: str) -> str:
    """Minor units as the scheme writes them: 1250 KWD -> `1.250`; negative for a refund's line
    in a settlement file (-1250 -> `-1.250`)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise SchemeAmountError("an amount is an integer of minor units")
    if abs(amount_minor) > MAX_AMOUNT_MINOR:
        raise SchemeAmountError("the amount is over the gateway's maximum")
    exp = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exp)
    return f"{sign}{whole}.{fraction:0{exp}d}" if exp else f"{sign}{whole}"


def parse_amount(text: str, currency: str) -> int:
    """A positive amount the scheme wrote, in minor units. Refuses a sign, exponents, spaces,
    non-ASCII digits, zero, amounts past MAX_AMOUNT_MINOR and more decimals than the currency
    has, even zeros (`1.2500` for KWD): the scheme writes its currency's exponent, so anything
    else is not an answer to read. Fewer decimals are exact and taken (`1.25` is 1250)."""
    exp = exponent(currency)
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise SchemeAmountError("not a decimal amount")
    fraction = match.group(2) or ""
    if len(fraction) > exp:
        raise SchemeAmountError(f"more than {exp} decimals for {currency}")
    # Both parts are bounded above, so the context's 40 digits hold the value exactly; the
    # traps make any rounding an error rather than a different amount.
    scaled = _EXACT.scaleb(_EXACT.create_decimal(text), exp)
    minor = int(scaled)
    if scaled != minor:  # cannot happen with at most `exp` decimals; checked, never assumed
        raise SchemeAmountError("not a whole number of minor units")
    if not 0 < minor <= MAX_AMOUNT_MINOR:
        raise SchemeAmountError("the amount is zero or over the gateway's maximum")
    return minor
