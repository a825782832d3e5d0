"""Fuzz tests of the hosted page's card form: any typed input gives errors or a valid card."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import example, given
from hypothesis import strategies as st

from payments.checkout.forms import (
    ERROR_ORDER,
    FIELDS,
    KEPT_FIELDS,
    MAX_NAME_CHARS,
    MAX_RAW_CHARS,
    MAX_YEARS_AHEAD,
    CardForm,
    read,
)
from tests.unit.fuzz_support import fuzz

ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"
EASTERN_ARABIC_INDIC = "۰۱۲۳۴۵۶۷۸۹"
ERROR_WORDS = {"missing", "not_digits", "invalid", "past"}
# Separators a payer may type between groups of digits.
SEPARATORS = [" ", "-", "\u00a0", "\u2009", "\u202f"]

todays = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2090, 12, 31))


def luhn_check_digit(payload: str) -> str:
    """The digit that makes `payload + digit` pass the Luhn check (computed from scratch)."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = int(char)
        if position % 2 == 0:  # doubled: it becomes every second digit from the right
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str(-total % 10)


def luhn_valid(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == number[-1]


def assert_well_formed(form: CardForm, today: dt.date) -> None:
    """What any answer must be: errors from the documented set, or a card that is valid."""
    assert set(form.errors) <= set(ERROR_ORDER)
    assert list(form.errors) == [field for field in ERROR_ORDER if field in form.errors]
    assert set(form.errors.values()) <= ERROR_WORDS
    assert set(form.values) == set(KEPT_FIELDS)
    assert all(isinstance(value, str) for value in form.values.values())
    assert all(len(form.values[field]) <= MAX_RAW_CHARS for field in ("exp_month", "exp_year"))
    assert len(form.values["name"]) <= MAX_NAME_CHARS
    assert form.ok == (not form.errors) == (form.card is not None)
    card = form.card
    if card is None:
        return
    assert card.number.isascii() and card.number.isdigit() and 12 <= len(card.number) <= 19
    assert luhn_valid(card.number)
    assert 1 <= card.exp_month <= 12
    assert (card.exp_year, card.exp_month) >= (today.year, today.month)
    assert card.exp_year <= today.year + MAX_YEARS_AHEAD
    assert card.cvc.isascii() and card.cvc.isdigit() and 3 <= len(card.cvc) <= 4
    assert card.name and card.name.isprintable() and len(card.name) <= MAX_NAME_CHARS
    assert card.name == card.name.strip()


# ---- arbitrary input ------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(categories=["Nd", "No", "Zs", "Cc", "Cf"]), max_size=30),
    st.text(st.sampled_from(f"0123456789{ARABIC_INDIC}{EASTERN_ARABIC_INDIC} -\t\n"), max_size=40),
    st.text(max_size=5).map(lambda text: text * 20_000),  # huge: up to 100,000 characters
    st.sampled_from(["", " ", "\x00", "\u0664\u0662" * 8, "²³", "12\u0663", "\uff11\uff12", "-1"]),
)
forms = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), odd_text)


@fuzz(300)
@given(form=forms, today=todays)
@example(form={}, today=dt.date(2026, 5, 1))
@example(form=dict.fromkeys(FIELDS, "\x00" * 100_000), today=dt.date(2026, 5, 1))
def test_any_form_gives_errors_or_a_valid_card(form: dict[str, str], today: dt.date) -> None:
    answer = read(form, today)
    assert_well_formed(answer, today)
    assert read(dict(form), today) == answer, "the form is not read deterministically"


# ---- valid cards ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TypedCard:
    """A valid card as the payer meant it, and the form as they typed it."""

    number: str
    month: int
    year: int
    cvc: str
    name: str
    form: dict[str, str]


def _digits_as_typed(draw: st.DrawFn, digits: str) -> str:
    """The digits in ASCII or either Arabic-Indic script, perhaps padded with whitespace."""
    script = draw(st.sampled_from(["0123456789", ARABIC_INDIC, EASTERN_ARABIC_INDIC]))
    typed = digits.translate(str.maketrans("0123456789", script))
    return draw(st.sampled_from(["", " ", "\t"])) + typed + draw(st.sampled_from(["", " "]))


def _grouped(draw: st.DrawFn, number: str) -> str:
    """The card number as typed: groups of four (or none), with one kind of separator."""
    if draw(st.booleans()):
        return number
    separator = draw(st.sampled_from(SEPARATORS))
    return separator.join(number[i : i + 4] for i in range(0, len(number), 4))


names = st.text(st.characters(categories=["L"]), min_size=1, max_size=20).flatmap(
    lambda first: st.text(st.characters(categories=["L"]), max_size=20).map(
        lambda last: f"{first} {last}".strip()
    )
)


def numbers(*, valid: bool) -> st.SearchStrategy[str]:
    """Card numbers of 12 to 19 digits that pass (or fail) the Luhn check."""

    def finish(payload: str, wrong: int) -> str:
        check = int(luhn_check_digit(payload))
        return payload + str(check if valid else (check + wrong) % 10)

    payloads = st.text(st.sampled_from("0123456789"), min_size=11, max_size=18)
    return st.builds(finish, payloads, st.integers(1, 9))


@st.composite
def typed_cards(draw: st.DrawFn, today: dt.date, number: str) -> TypedCard:
    first = (today.year, today.month)
    months_ahead = draw(st.integers(0, MAX_YEARS_AHEAD * 12 - 1))
    year, month_index = divmod(first[0] * 12 + first[1] - 1 + months_ahead, 12)
    month = month_index + 1
    cvc = draw(st.text(st.sampled_from("0123456789"), min_size=3, max_size=4))
    name = draw(names)
    two_digit_year = year // 100 == today.year // 100 and draw(st.booleans())
    year_text = f"{year % 100:02d}" if two_digit_year else str(year)
    month_text = f"{month:02d}" if draw(st.booleans()) else str(month)
    form = {
        "number": _digits_as_typed(draw, _grouped(draw, number)),
        "exp_month": _digits_as_typed(draw, month_text),
        "exp_year": _digits_as_typed(draw, year_text),
        "cvc": _digits_as_typed(draw, cvc),
        "name": draw(st.sampled_from(["", " "])) + name,
    }
    return TypedCard(number, month, year, cvc, name, form)


@fuzz(200)
@given(today=todays, data=st.data())
def test_a_valid_card_is_always_accepted(today: dt.date, data: st.DataObject) -> None:
    number = data.draw(numbers(valid=True), label="number")
    typed = data.draw(typed_cards(today, number), label="card")
    answer = read(typed.form, today)
    assert answer.errors == {}
    assert answer.card is not None
    assert answer.card.number == typed.number
    assert (answer.card.exp_month, answer.card.exp_year) == (typed.month, typed.year)
    assert answer.card.cvc == typed.cvc and answer.card.name == typed.name
    assert_well_formed(answer, today)


@fuzz(150)
@given(today=todays, data=st.data())
def test_a_luhn_invalid_number_is_never_accepted(today: dt.date, data: st.DataObject) -> None:
    number = data.draw(numbers(valid=False), label="number")
    assert not luhn_valid(number)
    typed = data.draw(typed_cards(today, number), label="card")
    answer = read(typed.form, today)
    assert not answer.ok
    assert answer.errors == {"number": "invalid"}


@fuzz(100)
@given(
    today=todays,
    data=st.data(),
    digits=st.text(st.sampled_from("0123456789"), min_size=1, max_size=40),
)
def test_a_number_of_the_wrong_length_is_never_accepted(
    today: dt.date, data: st.DataObject, digits: str
) -> None:
    number = digits if not 12 <= len(digits) <= 19 else digits * 2
    typed = data.draw(typed_cards(today, number), label="card")
    assert read(typed.form, today).errors == {"number": "invalid"}


@fuzz(200)
@given(
    today=todays,
    data=st.data(),
    field=st.sampled_from(["number", "exp_month", "exp_year", "cvc"]),
    padding=st.builds(
        lambda char, count: char * count, st.sampled_from([*SEPARATORS, "\t"]), st.integers(0, 120)
    ),
    junk=st.sampled_from(["x", "?", "/", "0", "٩", "12"]),
)
@example(
    today=dt.date(2026, 5, 1),
    data=None,  # replaced below: the sandbox card, with junk past the 64th character
    field="number",
    padding=" " * 60,
    junk="x",
)
def test_what_is_typed_past_the_field_limit_still_counts(
    today: dt.date, data: st.DataObject | None, field: str, padding: str, junk: str
) -> None:
    """A field is read whole: junk typed after a valid value, however far after it, changes
    the card or refuses the form; it is never cut off and ignored."""
    if data is None:
        typed = TypedCard(
            "4242424242424242",
            12,
            2030,
            "123",
            "A B",
            {
                "number": "4242 4242 4242 4242",
                "exp_month": "12",
                "exp_year": "2030",
                "cvc": "123",
                "name": "A B",
            },
        )
    else:
        typed = data.draw(typed_cards(today, data.draw(numbers(valid=True))), label="card")
    form = dict(typed.form)
    form[field] = form[field].rstrip() + padding + junk
    answer = read(form, today)
    if answer.card is None:
        assert field in answer.errors or "expiry" in answer.errors
        return
    stated = (answer.card.number, answer.card.exp_month, answer.card.exp_year, answer.card.cvc)
    meant = (typed.number, typed.month, typed.year, typed.cvc)
    assert stated != meant, f"{junk!r} typed after {len(padding)} separators was ignored"
