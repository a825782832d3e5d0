"""The sandbox acquirer's settlement file (API.md section 5): its CSV columns, and the parser
that reads it into normalised lines, refusing the whole file at its first bad line.

The file is UTF-8 (a byte-order mark is tolerated) with the header
`settlement_date,provider_reference,type,currency,gross,fee,net`, one line per capture,
refund, chargeback or chargeback reversal. Amounts are decimal major units written with
exactly the currency's exponent (`12.500` for OMR). A payment line has gross > 0,
0 <= fee <= gross and net = gross - fee. A refund or chargeback line has gross < 0, a
chargeback reversal gross > 0, and each of them fee = 0 and net = gross: the sandbox charges
nothing for them, and a batch's legs carry fees of payments only. Two lines with
the same line key (`ParsedLine.line_key`: date, reference, type, currency and gross) are one
movement stated twice, and the file is refused. Blank lines are tolerated at the end only.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterator
from typing import BinaryIO

from payments.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from payments.settlement.parsers import (
    LINE_TYPES,
    MAX_FILE_BYTES,
    PAYS_IN,
    MalformedFile,
    ParsedLine,
    text_lines,
)

COLUMNS = ("settlement_date", "provider_reference", "type", "currency", "gross", "fee", "net")
HEADER = ",".join(COLUMNS)
# No honest line of seven short columns comes near this; it bounds what one read may hold.
MAX_LINE_BYTES = 4096
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
AMOUNT_RE = re.compile(r"-?[0-9]{1,13}(?:\.([0-9]+))?")


class SandboxCsvParser:
    """A `SettlementParser` for the sandbox's CSV."""

    def __init__(self, *, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.max_file_bytes = max_file_bytes

    def parse(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        lines = self._text_lines(stream)
        # The header is checked as the line it is, not as a CSV row: a row may run on over
        # several lines, and `"a,b"` is one column whose text joins to the same as two.
        header = next(lines, None)
        if header is None:
            raise MalformedFile(1, f"the file is empty; the header must be {HEADER!r}")
        if header.removesuffix("\n").removesuffix("\r") != HEADER:
            raise MalformedFile(1, f"the header must be exactly {HEADER!r}")
        reader = csv.reader(lines, strict=True)
        # A line's digest, its first half (two different lines share one with odds of 2^-128
        # per pair) -> the line that stated it first: about 120 bytes a line, where the hex
        # key would take 190.
        seen: dict[bytes, int] = {}
        blank_since: int | None = None
        while True:  # bounded: every row consumes input, and the input is bounded
            # The line the row starts on (the header is line 1): a quoted field may run on
            # over several lines, and `reader.line_num` counts to the last of them.
            line_no = reader.line_num + 2
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise MalformedFile(line_no, f"not valid CSV ({exc})") from None
            if not row or row == [""]:
                blank_since = blank_since or line_no
                continue
            if blank_since is not None:
                raise MalformedFile(blank_since, "blank line before the end of the file")
            line = _line(line_no, row)
            first = seen.setdefault(line.line_digest[:16], line_no)
            if first != line_no:
                raise MalformedFile(line_no, f"duplicates line {first}")
            yield line

    def _text_lines(self, stream: BinaryIO) -> Iterator[str]:
        return text_lines(stream, max_file_bytes=self.max_file_bytes, max_line_bytes=MAX_LINE_BYTES)


def _line(line_no: int, row: list[str]) -> ParsedLine:
    if len(row) != len(COLUMNS):
        raise MalformedFile(line_no, f"{len(row)} columns, expected {len(COLUMNS)}")
    date_text, reference, kind, currency, gross_text, fee_text, net_text = row
    if DATE_RE.fullmatch(date_text) is None:
        raise MalformedFile(line_no, f"settlement_date {date_text!r} is not YYYY-MM-DD")
    try:
        date = dt.date.fromisoformat(date_text)
    except ValueError:
        raise MalformedFile(line_no, f"settlement_date {date_text!r} is not a date") from None
    if (
        not 1 <= len(reference) <= 255
        or not reference.isprintable()
        or reference != reference.strip()
    ):
        raise MalformedFile(
            line_no, "provider_reference must be 1 to 255 printable characters, unpadded"
        )
    if kind not in LINE_TYPES:
        raise MalformedFile(line_no, f"type {kind!r} is not one of {', '.join(LINE_TYPES)}")
    if currency not in CURRENCY_EXPONENTS:
        raise MalformedFile(line_no, f"currency {currency!r} is not supported")
    gross = _amount(line_no, "gross", gross_text, currency)
    fee = _amount(line_no, "fee", fee_text, currency)
    net = _amount(line_no, "net", net_text, currency)
    if fee < 0:
        raise MalformedFile(line_no, f"fee {fee_text!r} is negative")
    if kind == "payment":
        if gross <= 0:
            raise MalformedFile(line_no, f"a payment's gross {gross_text!r} must be positive")
        if fee > gross:
            raise MalformedFile(line_no, f"fee {fee_text!r} is more than gross {gross_text!r}")
        if net != gross - fee:
            raise MalformedFile(line_no, f"net {net_text!r} is not gross - fee")
    else:
        pays_in = PAYS_IN[kind]
        if (gross > 0) != pays_in or gross == 0:
            sign = "positive" if pays_in else "negative"
            raise MalformedFile(line_no, f"a {kind}'s gross {gross_text!r} must be {sign}")
        if fee != 0:
            raise MalformedFile(line_no, f"a {kind} carries no fee, not {fee_text!r}")
        if net != gross:
            raise MalformedFile(line_no, f"a {kind}'s net {net_text!r} must equal its gross")
    return ParsedLine(line_no, date, reference, kind, currency, gross, fee, net)


def _amount(line_no: int, column: str, text: str, currency: str) -> int:
    exp = CURRENCY_EXPONENTS[currency]
    match = AMOUNT_RE.fullmatch(text)
    if match is None:
        raise MalformedFile(line_no, f"{column} {text!r} is not a decimal amount")
    decimals = len(match.group(1) or "")
    if decimals > exp:
        raise MalformedFile(line_no, f"{column} {text!r} has more decimals than {currency}'s {exp}")
    if decimals != exp or (exp and match.group(1) is None):
        raise MalformedFile(
            line_no, f"{column} {text!r} must have exactly {exp} decimals for {currency}"
        )
    # The text is now a sign, at most 13 digits and exactly `exp` decimals: its digits without
    # the point are the minor units.
    amount = int(text.replace(".", "", 1))
    if abs(amount) > MAX_AMOUNT_MINOR:
        raise MalformedFile(line_no, f"{column} {text!r} is over the gateway's maximum")
    return amount
