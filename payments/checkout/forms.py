"""The card form: what the payer typed, checked field by field, turned into a `Card`.

Only the month, the year and the name are ever shown back to the payer; the card number and
the security code live in this request alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from providers import Card
from providers.cards import expired, luhn_ok

FIELDS = ("number", "exp_month", "exp_year", "cvc", "name")
KEPT_FIELDS = ("exp_month", "exp_year", "name")
# Where each problem is shown; `expiry` is the month and year together.
ERROR_ORDER = ("number", "exp_month", "exp_year", "expiry", "cvc", "name")
MAX_RAW_CHARS = 64  # longer than any real value: anything past it is not a card field
MAX_NAME_CHARS = 100
MAX_YEARS_AHEAD = 30
# Payers on Arabic keyboards type Arabic-Indic or Eastern Arabic-Indic digits.
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_SEPARATORS = str.maketrans("", "", " -\u00a0\u2009\u202f\t")


@dataclasses.dataclass(frozen=True)
class CardForm:
    """The outcome of reading the form: a card, or the problems to show beside the fields."""

    values: dict[str, str]  # the kept fields as typed, to fill the form again
    errors: dict[str, str]  # field (or `expiry`) -> problem: missing | not_digits | invalid | past
    card: Card | None

    @property
    def ok(self) -> bool:
        return self.card is not None


def _digits(raw: str) -> str:
    return raw.translate(_DIGITS).translate(_SEPARATORS)


def _small_int(raw: str, max_digits: int) -> int | None:
    cleaned = _digits(raw)
    if not cleaned.isascii() or not cleaned.isdigit() or len(cleaned) > max_digits:
        return None
    return int(cleaned)


def _year(raw: str, today: dt.date) -> int | None:
    value = _small_int(raw, 4)
    if value is None:
        return None
    if len(_digits(raw)) <= 2:  # "29" on the card means 2029
        value += today.year // 100 * 100
    if not 2000 <= value <= today.year + MAX_YEARS_AHEAD:
        return None
    return value


def read(form: Mapping[str, str], today: dt.date) -> CardForm:
    """Check every field of the card form as of `today`."""
    raw = {name: (form.get(name) or "").strip() for name in FIELDS}
    # A value longer than any real one is refused whole, never cut to fit: a cut would drop
    # what was typed past the limit and read the rest as a card the payer did not type.
    too_long = {name for name in FIELDS if len(raw[name]) > MAX_RAW_CHARS}
    errors: dict[str, str] = {}

    number = _digits(raw["number"])
    if not number:
        errors["number"] = "missing"
    elif not (number.isascii() and number.isdigit()):
        errors["number"] = "not_digits"
    elif "number" in too_long or not luhn_ok(number):
        errors["number"] = "invalid"

    month = _small_int(raw["exp_month"], 2)
    if not raw["exp_month"]:
        errors["exp_month"] = "missing"
    elif "exp_month" in too_long or month is None or not 1 <= month <= 12:
        errors["exp_month"] = "invalid"

    year = _year(raw["exp_year"], today)
    if not raw["exp_year"]:
        errors["exp_year"] = "missing"
    elif "exp_year" in too_long or year is None:
        errors["exp_year"] = "invalid"

    date_ok = not errors.keys() & {"exp_month", "exp_year"}
    if date_ok and month is not None and year is not None and expired(month, year, today):
        errors["expiry"] = "past"

    cvc = _digits(raw["cvc"])
    if not cvc:
        errors["cvc"] = "missing"
    elif "cvc" in too_long or not (cvc.isascii() and cvc.isdigit() and 3 <= len(cvc) <= 4):
        errors["cvc"] = "invalid"

    name = " ".join((form.get("name") or "").split())
    if not name:
        errors["name"] = "missing"
    elif len(name) > MAX_NAME_CHARS or not name.isprintable():
        errors["name"] = "invalid"

    kept = {field: raw[field][:MAX_RAW_CHARS] for field in KEPT_FIELDS}
    kept["name"] = name[:MAX_NAME_CHARS]
    ordered = {field: errors[field] for field in ERROR_ORDER if field in errors}
    if ordered:
        return CardForm(kept, ordered, None)
    assert month is not None and year is not None
    card = Card(number=number, exp_month=month, exp_year=year, cvc=cvc, name=name)
    return CardForm(kept, {}, card)


def field_of(param: str | None) -> str | None:
    """The form field behind a service error's `param` (`payment_method.card.exp_year`)."""
    if not param:
        return None
    last = param.rsplit(".", 1)[-1]
    return last if last in FIELDS else None
