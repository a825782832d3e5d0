"""mada, Saudi Arabia's debit scheme: which cards are mada, read from the BIN list kept as
data (`providers/data/mada_bins.txt`)."""

from __future__ import annotations

import functools
from pathlib import Path

BIN_LIST = Path(__file__).parent / "data" / "mada_bins.txt"
BIN_DIGITS = 6
MAX_BINS = 10_000


@functools.cache
def mada_bins() -> frozenset[str]:
    """The list's BINs, each six digits; a malformed line stops the gateway at first use."""
    found: set[str] = set()
    for line_no, line in enumerate(BIN_LIST.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if len(text) != BIN_DIGITS or not text.isdigit():
            raise ValueError(f"{BIN_LIST}:{line_no}: a BIN is six digits, not {text!r}")
        found.add(text)
    assert 0 < len(found) <= MAX_BINS, "the mada BIN list is empty or absurdly long"
    return frozenset(found)


def is_mada(number: str) -> bool:
    """Whether a card number (digits only) is a mada card."""
    return number[:BIN_DIGITS] in mada_bins()
