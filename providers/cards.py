"""Card number checks and the summary that may be kept: brand, last four, expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from providers.mada import is_mada

BRANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("amex", ("34", "37")),
    ("visa", ("4",)),
    ("mastercard", ("51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27")),
)


def digits_only(number: str) -> str:
    return number.replace(" ", "").replace("-", "")


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def brand(number: str) -> str:
    if is_mada(number):  # mada cards are co-badged: their own scheme's name comes first
        return "mada"
    for name, prefixes in BRANDS:
        if number.startswith(prefixes):
            return name
    return "unknown"


def expired(exp_month: int, exp_year: int, today: dt.date) -> bool:
    return (exp_year, exp_month) < (today.year, today.month)


def fingerprint(number: str, key: bytes) -> str:
    """A keyed digest that recognises the same card again without keeping its number."""
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:32]
