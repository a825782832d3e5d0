"""The national schemes' daily settlement files (KNET, BENEFIT, OmanNet): each one's CSV layout,
and the one parser that reads any of them into normalised lines, refusing the whole file at
its first bad line.

The layouts are those `providers.tranportal_simulator` and `providers.omannet_simulator`
document and write: UTF-8 (a byte-order mark is tolerated), a header line of the scheme's own
column names, then one line per capture and per refund, each on one physical line (no field
of these files needs quoting, so a row that runs on over several lines is refused). Every
layout has a date, a transaction id, a type word, a currency and three amounts; its other
columns (track ids, auth codes, receipt numbers...) are checked for shape and otherwise
ignored.

- The transaction id is the line's `provider_reference`: it is what the scheme's adapter
  reports as `ProviderResult.reference` and `RefundResult.reference` (KNET's and BENEFIT's
  `tranid`, OmanNet's `vpc_TransactionNo`), so it is what the gateway kept on the payment
  or refund. A capture and each of its refunds have ids of their own, so an id twice in one
  file is refused, as is a line stated twice.
- The date is written in the scheme's own format, zero-padded (`DD/MM/YYYY` for BENEFIT).
- The currency is the scheme's one currency; amounts are decimal major units with exactly
  the currency's exponent, as the scheme writes them (`1.250`, `-0.500`; no `+`, no leading
  zeros, no `-0.000`).
- A payment has amount > 0, 0 <= fee <= amount and net = amount - fee. A refund has
  amount < 0, a fee of zero and net = amount: the ledger's `settlement_refund` rule has no
  fee leg to carry one.
- Blank lines are tolerated at the end only.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import BinaryIO

from config import BENEFIT, KNET, OMANNET
from payments.money import CURRENCY_EXPONENTS, AmountError, parse_major
from payments.settlement.parsers import MAX_FILE_BYTES, MalformedFile, ParsedLine, text_lines
from providers.omannet import CURRENCY as OMANNET_CURRENCY
from providers.omannet import MERCH_TXN_REF_RE, TRANSACTION_NO_RE
from providers.tranportal import REFERENCE_RE, TRACK_ID_RE, TranportalScheme
from providers.tranportal import SCHEMES as TRANPORTAL_SCHEMES

# No honest line of a dozen short columns comes near this; it bounds what one read may hold.
MAX_LINE_BYTES = 4096
# strptime is handed nothing longer: every layout's date or time is shorter than this.
MAX_TIME_CHARS = 32
SHOWN_CHARS = 40  # of a bad value, in the refusal's message


class Role(enum.Enum):
    """What a column means to the gateway."""

    DATE = "date"  # the settlement date, in the layout's `date_format`
    REFERENCE = "reference"  # the scheme's transaction id: the line's provider reference
    TYPE = "type"  # the layout's word for a payment or a refund
    CURRENCY = "currency"
    GROSS = "gross"
    FEE = "fee"
    NET = "net"
    TEXT = "text"  # anything else the scheme states: its shape checked, its value unused
    TIME = "time"  # a UTC time of day, in the column's `time_format`, unused


# Columns a layout states that the gateway checks but does not use; any number of each.
_EXTRA_ROLES = (Role.TEXT, Role.TIME)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a layout: its name in the header, and what it means to the gateway."""

    name: str
    role: Role
    # REFERENCE and TEXT: what the scheme writes there, and how to say so when it does not.
    pattern: re.Pattern[str] | None = None
    shape: str = ""
    optional: bool = False  # TEXT only: the column may be empty (a refund's auth code)
    time_format: str = ""  # TIME only


@dataclasses.dataclass(frozen=True)
class SchemeLayout:
    """One scheme's settlement file: its columns in order, and the words and formats it
    writes in them."""

    provider: str  # the gateway's provider name, under which the parser is registered
    currency: str  # the only currency the scheme settles
    date_format: str  # strftime/strptime format of the DATE column
    payment_word: str  # the TYPE column's word for a capture
    refund_word: str  # ... and for a refund
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        roles = [column.role for column in self.columns]
        for role in Role:
            if role not in _EXTRA_ROLES:
                assert roles.count(role) == 1, f"{self.provider}: one {role.value} column"
        for column in self.columns:
            needs_pattern = column.role in (Role.REFERENCE, Role.TEXT)
            assert (column.pattern is not None) == needs_pattern, column.name
            assert bool(column.time_format) == (column.role is Role.TIME), column.name
        assert self.currency in CURRENCY_EXPONENTS, f"{self.provider}: an unknown currency"
        assert self.payment_word != self.refund_word, f"{self.provider}: two type words"

    @property
    def header(self) -> str:
        return ",".join(column.name for column in self.columns)

    def index(self, role: Role) -> int:
        return next(i for i, column in enumerate(self.columns) if column.role is role)


def _text(name: str, pattern: str, shape: str, *, optional: bool = False) -> Column:
    return Column(name, Role.TEXT, re.compile(pattern, re.ASCII), shape, optional=optional)


_TRACK_ID_SHAPE = "1 to 80 of A-Z a-z 0-9 _ . : -"
_REFERENCE_SHAPE = "1 to 64 of A-Z a-z 0-9 _ -"


def tranportal_layout(scheme: TranportalScheme) -> SchemeLayout:
    """A tranportal scheme's file, from the layout its definition states (the columns in the
    order date, transaction id, track id, payment id, auth code, type, currency, amount,
    fee, net)."""
    layout = scheme.settlement
    date, tran_id, track_id, payment_id, auth, kind, currency, gross, fee, net = layout.columns
    return SchemeLayout(
        provider=scheme.name,
        currency=scheme.currency,
        date_format=layout.date_format,
        payment_word=layout.purchase_type,
        refund_word=layout.refund_type,
        columns=(
            Column(date, Role.DATE),
            Column(tran_id, Role.REFERENCE, REFERENCE_RE, _REFERENCE_SHAPE),
            Column(track_id, Role.TEXT, TRACK_ID_RE, _TRACK_ID_SHAPE),
            Column(payment_id, Role.TEXT, REFERENCE_RE, _REFERENCE_SHAPE),
            # Empty on a refund: the scheme authorises purchases only.
            _text(auth, r"[A-Za-z0-9]{1,16}", "1 to 16 letters or digits", optional=True),
            Column(kind, Role.TYPE),
            Column(currency, Role.CURRENCY),
            Column(gross, Role.GROSS),
            Column(fee, Role.FEE),
            Column(net, Role.NET),
        ),
    )


# The bank's layout as `providers.omannet_simulator` documents it (a unit test keeps the two
# equal); its patterns are the adapter's for the same fields.
OMANNET_LAYOUT = SchemeLayout(
    provider=OMANNET,
    currency=OMANNET_CURRENCY,
    date_format="%Y-%m-%d",
    payment_word="PURCHASE",
    refund_word="REFUND",
    columns=(
        Column("SETTLEMENT_DATE", Role.DATE),
        _text("MERCHANT_ID", r"[A-Za-z0-9]{1,16}", "1 to 16 letters or digits"),
        Column("MERCHANT_TXN_REF", Role.TEXT, MERCH_TXN_REF_RE, "1 to 40 of A-Z a-z 0-9 _ . -"),
        Column("TRANSACTION_NO", Role.REFERENCE, TRANSACTION_NO_RE, "1 to 19 digits"),
        _text("RECEIPT_NO", r"[A-Za-z0-9]{1,12}", "1 to 12 letters or digits"),
        Column("TRANSACTION_TIME", Role.TIME, time_format="%Y-%m-%dT%H:%M:%SZ"),
        Column("TYPE", Role.TYPE),
        Column("CURRENCY", Role.CURRENCY),
        Column("AMOUNT", Role.GROSS),
        Column("FEE", Role.FEE),
        Column("NET", Role.NET),
    ),
)

LAYOUTS: Mapping[str, SchemeLayout] = MappingProxyType(
    {
        KNET: tranportal_layout(TRANPORTAL_SCHEMES[KNET]),
        BENEFIT: tranportal_layout(TRANPORTAL_SCHEMES[BENEFIT]),
        OMANNET: OMANNET_LAYOUT,
    }
)


def parser_factory(layout: SchemeLayout) -> Callable[[int], SchemeFileParser]:
    """The registry's factory of the layout's parser, built with the file-size limit."""
    return lambda limit: SchemeFileParser(layout, max_file_bytes=limit)


class SchemeFileParser:
    """A `SettlementParser` for one scheme's layout."""

    def __init__(self, layout: SchemeLayout, *, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.layout = layout
        self.max_file_bytes = max_file_bytes
        exp = CURRENCY_EXPONENTS[layout.currency]
        fraction = rf"\.[0-9]{{{exp}}}" if exp else ""
        # How the scheme writes an amount and nothing else: no `+`, no leading zeros, exactly
        # the currency's decimals. Bounded digits, so nothing long reaches the conversion.
        self._unsigned = re.compile(rf"(?:0|[1-9][0-9]{{0,15}}){fraction}", re.ASCII)
        self._at = {role: layout.index(role) for role in Role if role not in _EXTRA_ROLES}

    def parse(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        layout = self.layout
        lines = enumerate(self._text_lines(stream), start=1)
        first = next(lines, None)
        if first is None:
            raise MalformedFile(1, f"the file is empty; the header must be {layout.header!r}")
        if _unterminated(first[1]) != layout.header:
            raise MalformedFile(1, f"the header must be exactly {layout.header!r}")
        # reference -> (the line that stated it first, that line's key)
        seen: dict[str, tuple[int, str]] = {}
        blank_since: int | None = None
        for line_no, raw in lines:  # bounded: the reader bounds the file
            text = _unterminated(raw)
            if not text:
                blank_since = blank_since or line_no
                continue
            if blank_since is not None:
                raise MalformedFile(blank_since, "blank line before the end of the file")
            try:
                row = next(csv.reader([text], strict=True))
            except csv.Error as exc:
                raise MalformedFile(line_no, f"not valid CSV ({exc})") from None
            line = self._line(line_no, row)
            earlier = seen.setdefault(line.provider_reference, (line_no, line.line_key))
            if earlier[0] != line_no:
                if earlier[1] == line.line_key:
                    raise MalformedFile(line_no, f"duplicates line {earlier[0]}")
                name = layout.columns[self._at[Role.REFERENCE]].name
                raise MalformedFile(
                    line_no,
                    f"{name} {_shown(line.provider_reference)} is on line {earlier[0]} already",
                )
            yield line

    def _text_lines(self, stream: BinaryIO) -> Iterator[str]:
        return text_lines(stream, max_file_bytes=self.max_file_bytes, max_line_bytes=MAX_LINE_BYTES)

    def _line(self, line_no: int, row: list[str]) -> ParsedLine:
        layout = self.layout
        columns = layout.columns
        if len(row) != len(columns):
            raise MalformedFile(line_no, f"{len(row)} columns, expected {len(columns)}")
        for column, value in zip(columns, row, strict=True):
            _check_shape(line_no, column, value)
        at = self._at
        date = self._date(line_no, row[at[Role.DATE]])
        reference = row[at[Role.REFERENCE]]
        word = row[at[Role.TYPE]]
        if word == layout.payment_word:
            kind = "payment"
        elif word == layout.refund_word:
            kind = "refund"
        else:
            raise MalformedFile(
                line_no,
                f"{columns[at[Role.TYPE]].name} {_shown(word)} is not one of"
                f" {layout.payment_word}, {layout.refund_word}",
            )
        currency = row[at[Role.CURRENCY]]
        if currency != layout.currency:
            raise MalformedFile(
                line_no,
                f"{columns[at[Role.CURRENCY]].name} {_shown(currency)} is not {layout.currency},"
                f" the only currency {layout.provider} settles",
            )
        refund = kind == "refund"
        # A refund states its amount and net negative, its fee unsigned; a payment states all
        # three unsigned. A sign where none belongs is refused, not read as its value.
        gross = self._amount(line_no, Role.GROSS, row, negative=refund)
        fee = self._amount(line_no, Role.FEE, row, negative=False)
        net = self._amount(line_no, Role.NET, row, negative=refund)
        gross_text, fee_text, net_text = (row[at[r]] for r in (Role.GROSS, Role.FEE, Role.NET))
        names = {role: columns[at[role]].name for role in (Role.GROSS, Role.FEE, Role.NET)}
        if not refund:
            if gross == 0:
                raise MalformedFile(line_no, f"a payment's {names[Role.GROSS]} is zero")
            if fee > gross:
                raise MalformedFile(
                    line_no,
                    f"{names[Role.FEE]} {_shown(fee_text)} is more than"
                    f" {names[Role.GROSS]} {_shown(gross_text)}",
                )
            if net != gross - fee:
                raise MalformedFile(
                    line_no,
                    f"{names[Role.NET]} {_shown(net_text)} is not"
                    f" {names[Role.GROSS]} - {names[Role.FEE]}",
                )
        else:
            if fee != 0:
                raise MalformedFile(line_no, f"a refund carries no fee, not {_shown(fee_text)}")
            if net != gross:
                raise MalformedFile(
                    line_no,
                    f"a refund's {names[Role.NET]} {_shown(net_text)} must equal"
                    f" its {names[Role.GROSS]} {_shown(gross_text)}",
                )
        return ParsedLine(line_no, date, reference, kind, currency, gross, fee, net)

    def _date(self, line_no: int, text: str) -> dt.date:
        name = self.layout.columns[self._at[Role.DATE]].name
        moment = _strict_time(text, self.layout.date_format)
        if moment is None:
            shape = _format_shape(self.layout.date_format)
            raise MalformedFile(line_no, f"{name} {_shown(text)} is not a date written {shape}")
        return moment.date()

    def _amount(self, line_no: int, role: Role, row: list[str], *, negative: bool) -> int:
        """The column's amount in minor units, signed as `negative` says it must be."""
        name = self.layout.columns[self._at[role]].name
        text = row[self._at[role]]
        currency = self.layout.currency
        exp = CURRENCY_EXPONENTS[currency]
        digits = text.removeprefix("-") if negative else text
        if negative and digits == text:
            raise MalformedFile(line_no, f"a refund's {name} {_shown(text)} must be negative")
        if self._unsigned.fullmatch(digits) is None:
            if not negative and text.startswith("-"):
                raise MalformedFile(line_no, f"{name} {_shown(text)} must not be negative")
            raise MalformedFile(
                line_no,
                f"{name} {_shown(text)} is not an amount written with exactly {exp} decimals,"
                f" as {currency}'s are",
            )
        try:
            amount = parse_major(digits, currency)
        except AmountError as exc:
            raise MalformedFile(line_no, f"{name}: {exc}") from None
        if negative and amount == 0:
            raise MalformedFile(line_no, f"a refund's {name} {_shown(text)} must be negative")
        return -amount if negative else amount


def _check_shape(line_no: int, column: Column, value: str) -> None:
    """Refuse a transaction id, a TEXT column or a TIME column the scheme would not write."""
    if column.pattern is not None:  # REFERENCE and TEXT columns have one
        if column.optional and value == "":
            return
        if column.pattern.fullmatch(value) is None:
            blank = "empty or " if column.optional else ""
            raise MalformedFile(
                line_no, f"{column.name} {_shown(value)} is not {blank}{column.shape}"
            )
    elif column.role is Role.TIME and _strict_time(value, column.time_format) is None:
        shape = _format_shape(column.time_format)
        raise MalformedFile(line_no, f"{column.name} {_shown(value)} is not a time written {shape}")


def _strict_time(text: str, time_format: str) -> dt.datetime | None:
    """`text` read with `time_format`, or None unless it is exactly how that format writes
    the time: strptime alone takes unpadded fields (`1/2/2026`) and non-ASCII digits."""
    if len(text) > MAX_TIME_CHARS or not text.isascii():
        return None
    try:
        moment = dt.datetime.strptime(text, time_format)
    except ValueError:
        return None
    return moment if moment.strftime(time_format) == text else None


def _format_shape(time_format: str) -> str:
    """A strftime format as a person reads it: `%d/%m/%Y` -> `DD/MM/YYYY`."""
    for code, shape in (("%Y", "YYYY"), ("%m", "MM"), ("%d", "DD"), ("%H", "HH")):
        time_format = time_format.replace(code, shape)
    return time_format.replace("%M", "MM").replace("%S", "SS")


def _shown(text: str) -> str:
    """A value for a message: quoted, and cut short, since a column may run to kilobytes."""
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def _unterminated(line: str) -> str:
    return line.removesuffix("\n").removesuffix("\r")
