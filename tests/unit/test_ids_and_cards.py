"""Identifiers sort by creation; card checks keep only what may be kept."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from payments.ids import _encode, new_id
from providers import Card
from providers.cards import brand, expired, fingerprint, luhn_ok


def test_ids_are_prefixed_url_safe_and_sorted() -> None:
    ids = [new_id("pay") for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"pay_[0-9a-z]{26}", i) for i in ids)


def test_an_id_spells_its_time_and_randomness_in_crockford_base32() -> None:
    crockford = "0123456789abcdefghjkmnpqrstvwxyz"

    def digits(value: int, count: int) -> str:
        return "".join(crockford[(value >> (5 * i)) & 31] for i in reversed(range(count)))

    for millis, rand in [(0, 0), (1, 0), (0, 1), (2**50 - 1, 2**80 - 1), (1764900000000, 2**79)]:
        assert _encode(millis << 80 | rand) == digits(millis, 10) + digits(rand, 16)
    spelled = new_id("pay").removeprefix("pay_")[:10]
    millis = sum(crockford.index(c) << (5 * i) for i, c in enumerate(reversed(spelled)))
    assert abs(millis - dt.datetime.now(dt.UTC).timestamp() * 1000) < 5000


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("4242424242424242", True),
        ("5555555555554444", True),
        ("4000000000000002", True),
        ("4242424242424241", False),
        ("42424242", False),
        ("4242x24242424242", False),
    ],
)
def test_luhn(number: str, ok: bool) -> None:
    assert luhn_ok(number) is ok


def test_brands() -> None:
    assert brand("4242424242424242") == "visa"
    assert brand("5555555555554444") == "mastercard"
    assert brand("378282246310005") == "amex"
    assert brand("9999999999999995") == "unknown"


def test_expiry_is_by_month() -> None:
    today = dt.date(2026, 11, 28)
    assert not expired(11, 2026, today)
    assert expired(10, 2026, today)
    assert expired(12, 2025, today)


def test_card_repr_hides_number_and_code() -> None:
    text = repr(Card(number="4242424242424242", exp_month=1, exp_year=2030, cvc="987"))
    assert "4242424242424242" not in text
    assert "987" not in text


def test_fingerprint_is_keyed() -> None:
    number = "4242424242424242"
    assert fingerprint(number, b"a") == fingerprint(number, b"a")
    assert fingerprint(number, b"a") != fingerprint(number, b"b")
    assert number not in fingerprint(number, b"a")
