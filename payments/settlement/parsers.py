"""Settlement-file parsers' common ground: the protocol every acquirer's parser implements,
the normalised line it yields, the refusal of a malformed file, and the bounded reading of a
file's lines. Which parser reads which provider's file is `payments.settlement.formats`."""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import Iterator
from typing import BinaryIO, Protocol

# The largest settlement file accepted: a month of a busy acquirer's lines fits well below it.
MAX_FILE_BYTES = 256 * 1024 * 1024
LINE_TYPES = ("payment", "refund", "chargeback", "chargeback_reversal")
# What a line of each type does to the money: a payment and a chargeback's reversal pay in
# (gross > 0), a refund and a chargeback take out (gross < 0). Only a payment carries a fee.
PAYS_IN = {"payment": True, "refund": False, "chargeback": False, "chargeback_reversal": True}


class MalformedFile(ValueError):
    """A settlement file refused whole: `line_no` is the first bad line (1 is the header)."""

    def __init__(self, line_no: int, reason: str) -> None:
        super().__init__(f"line {line_no}: {reason}")
        self.line_no = line_no
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ParsedLine:
    """One settlement line in the gateway's terms: amounts in minor units, signed as the
    acquirer states them (a refund's gross and net are negative)."""

    line_no: int
    settlement_date: dt.date
    provider_reference: str
    type: str  # one of LINE_TYPES
    currency: str
    gross_minor: int
    fee_minor: int
    net_minor: int

    @functools.cached_property
    def line_digest(self) -> bytes:
        """What makes a line the same line in any file of the acquirer: SHA-256 of its date,
        reference, type, currency and gross amount. Two lines with one digest are one money
        movement stated twice."""
        text = "|".join(
            (
                self.settlement_date.isoformat(),
                self.provider_reference,
                self.type,
                self.currency,
                str(self.gross_minor),
            )
        )
        return hashlib.sha256(text.encode()).digest()

    @property
    def line_key(self) -> str:
        """The line's digest in hex, as stored."""
        return self.line_digest.hex()


def text_lines(stream: BinaryIO, *, max_file_bytes: int, max_line_bytes: int) -> Iterator[str]:
    """A settlement file's lines decoded strictly as UTF-8 (a byte-order mark tolerated on the
    first), the file's size and each line's bounded; `MalformedFile` names the first line that
    breaks a bound."""
    total = 0
    line_no = 0
    while True:  # bounded by max_file_bytes
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            return
        line_no += 1
        total += len(raw)
        if total > max_file_bytes:
            raise MalformedFile(line_no, f"the file is over the limit of {max_file_bytes} bytes")
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            raise MalformedFile(line_no, f"longer than {max_line_bytes} bytes")
        if line_no == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            # A line is whole (a newline byte never sits inside a UTF-8 sequence), so each
            # decodes alone.
            yield raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise MalformedFile(line_no, "not valid UTF-8") from None


class SettlementParser(Protocol):
    """Turns an acquirer's settlement file into normalised lines in one streaming pass,
    raising `MalformedFile` at the first line it refuses."""

    def parse(self, stream: BinaryIO) -> Iterator[ParsedLine]: ...
