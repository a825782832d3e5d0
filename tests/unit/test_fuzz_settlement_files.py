"""Fuzz tests of the sandbox settlement-file parser: round trips, mutated files, arbitrary bytes."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import io
import itertools
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from payments.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from payments.settlement.formats import parser_for
from payments.settlement.parsers import MalformedFile, ParsedLine
from payments.settlement.sandbox_file import COLUMNS, HEADER
from tests.unit.fuzz_support import fuzz

CURRENCIES = sorted(CURRENCY_EXPONENTS)
BOM = codecs.BOM_UTF8
Outcome = list[ParsedLine] | tuple[int, str]


# ---- reading a file -------------------------------------------------------------------------


def parse(data: bytes, *, limit: int | None = None) -> list[ParsedLine]:
    """The file's lines, through the registry as the import finds the sandbox's parser."""
    parser = parser_for("sandbox", **({} if limit is None else {"max_file_bytes": limit}))
    assert parser is not None
    return list(parser.parse(io.BytesIO(data)))


def outcome(data: bytes) -> Outcome:
    """The parsed lines, or the refusal's line and reason; any other exception propagates."""
    try:
        return parse(data)
    except MalformedFile as exc:
        return (exc.line_no, exc.reason)


def physical_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def major(minor: int, currency: str) -> str:
    """Minor units as the file writes them, computed apart from `payments.money`."""
    return f"{Decimal(minor).scaleb(-CURRENCY_EXPONENTS[currency]):f}"


def assert_amount_text(text: str, amount: int, currency: str) -> None:
    exp = CURRENCY_EXPONENTS[currency]
    digits = text.removeprefix("-")
    whole, point, frac = digits.partition(".")
    assert point == "." and len(frac) == exp, text
    assert whole.isascii() and whole.isdigit() and frac.isascii() and frac.isdigit(), text
    assert Decimal(text).scaleb(exp) == amount, text


def assert_accepted_file_is_valid(lines: list[ParsedLine], data: bytes) -> None:
    """What any accepted file must be, checked against its bytes: exactly the header on line 1,
    and every line a well-formed, distinct payment or refund in the currency's decimals."""
    text_lines = data.removeprefix(BOM).split(b"\n")
    assert text_lines[0].removesuffix(b"\r") == HEADER.encode(), text_lines[0]
    keys: set[str] = set()
    previous = 1
    for line in lines:
        assert previous < line.line_no <= physical_lines(data)
        previous = line.line_no
        raw = text_lines[line.line_no - 1].decode().removesuffix("\r")
        fields = next(csv.reader([raw]))
        assert len(fields) == len(COLUMNS), raw
        assert fields[0] == line.settlement_date.isoformat()
        assert fields[1] == line.provider_reference
        assert fields[2] == line.type and fields[3] == line.currency
        reference = line.provider_reference
        assert 1 <= len(reference) <= 255 and reference.isprintable()
        assert reference == reference.strip()
        assert line.currency in CURRENCY_EXPONENTS
        for text, amount in zip(
            fields[4:], (line.gross_minor, line.fee_minor, line.net_minor), strict=True
        ):
            assert_amount_text(text, amount, line.currency)
        if line.type == "payment":
            assert 0 < line.gross_minor <= MAX_AMOUNT_MINOR
            assert 0 <= line.fee_minor <= line.gross_minor
            assert line.net_minor == line.gross_minor - line.fee_minor
        else:
            assert line.type == "refund"
            assert -MAX_AMOUNT_MINOR <= line.gross_minor < 0
            assert line.fee_minor == 0 and line.net_minor == line.gross_minor
        assert line.line_key not in keys, f"line {line.line_no} is a duplicate"
        keys.add(line.line_key)


def assert_parses_or_refuses(data: bytes) -> Outcome:
    """The file is parsed into valid lines or refused at a line within it, with a reason, the
    same way every time."""
    first = outcome(data)
    assert outcome(data) == first, "the parse is not deterministic"
    if isinstance(first, tuple):
        line_no, reason = first
        assert 1 <= line_no <= max(1, physical_lines(data)), (line_no, reason)
        assert isinstance(reason, str) and reason.strip()
    else:
        assert_accepted_file_is_valid(first, data)
    return first


# ---- well-formed files ----------------------------------------------------------------------

# Printable, so a reference never needs a line break; commas and quotes make the CSV quote it.
REFERENCE_CHARS = st.characters(categories=["L", "N", "P", "S"], include_characters=" ,\"'")
references = st.text(REFERENCE_CHARS, min_size=1, max_size=255).map(str.strip).filter(bool)


@dataclasses.dataclass(frozen=True)
class Line:
    """One valid settlement line as the acquirer states it."""

    date: dt.date
    reference: str
    type: str
    currency: str
    gross: int
    fee: int

    @property
    def net(self) -> int:
        return self.gross - self.fee

    @property
    def key(self) -> tuple[object, ...]:
        return (self.date, self.reference, self.type, self.currency, self.gross)

    def row(self) -> list[str]:
        amounts = (self.gross, self.fee, self.net)
        texts = [major(amount, self.currency) for amount in amounts]
        return [self.date.isoformat(), self.reference, self.type, self.currency, *texts]

    def parsed(self, line_no: int) -> ParsedLine:
        return ParsedLine(
            line_no,
            self.date,
            self.reference,
            self.type,
            self.currency,
            self.gross,
            self.fee,
            self.net,
        )


@st.composite
def valid_lines(draw: st.DrawFn) -> Line:
    currency = draw(st.sampled_from(CURRENCIES))
    kind = draw(st.sampled_from(["payment", "refund"]))
    amounts = st.one_of(st.integers(1, 100_000), st.integers(1, MAX_AMOUNT_MINOR))
    if kind == "payment":
        gross = draw(amounts)
        fee = draw(st.integers(0, gross))
    else:
        gross, fee = -draw(amounts), 0
    return Line(draw(st.dates()), draw(references), kind, currency, gross, fee)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the bytes of a well-formed file may differ without changing its lines."""

    bom: bool
    crlf: bool
    final_newline: bool
    trailing_blank_lines: int


layouts = st.builds(
    Layout,
    bom=st.booleans(),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    trailing_blank_lines=st.integers(0, 2),
)


def render(rows: list[list[str]], layout: Layout) -> bytes:
    eol = "\r\n" if layout.crlf else "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=eol)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    text = out.getvalue()
    if layout.final_newline:
        text += eol * layout.trailing_blank_lines
    else:
        text = text.removesuffix(eol)
    return (BOM if layout.bom else b"") + text.encode()


line_lists = st.lists(valid_lines(), max_size=12, unique_by=lambda line: line.key)


@st.composite
def valid_files(draw: st.DrawFn) -> tuple[list[Line], bytes]:
    lines = draw(line_lists)
    return lines, render([line.row() for line in lines], draw(layouts))


@fuzz(150)
@given(lines=line_lists, layout=layouts)
def test_a_well_formed_file_parses_to_exactly_its_lines(lines: list[Line], layout: Layout) -> None:
    data = render([line.row() for line in lines], layout)
    assert parse(data) == [line.parsed(n) for n, line in enumerate(lines, start=2)]


@fuzz(60)
@given(file=valid_files())
def test_the_size_limit_is_exact(file: tuple[list[Line], bytes]) -> None:
    _, data = file
    assert len(parse(data, limit=len(data))) == len(file[0])
    with pytest.raises(MalformedFile) as refused:
        parse(data, limit=len(data) - 1)
    assert "limit" in refused.value.reason
    assert 1 <= refused.value.line_no <= physical_lines(data)


# ---- one bad line in a good file: refused at exactly that line ------------------------------


def _set(index: int, value: Callable[[str], str]) -> Callable[[list[str]], list[str]]:
    def corrupt(row: list[str]) -> list[str]:
        return [value(field) if n == index else field for n, field in enumerate(row)]

    return corrupt


def _flip_sign(text: str) -> str:
    return text[1:] if text.startswith("-") else "-" + text


# Each turns a valid row into one the file format refuses, whatever the row was.
CORRUPTIONS: dict[str, Callable[[list[str]], list[str]]] = {
    "unknown currency": _set(3, lambda _: "XXX"),
    "lower-case currency": _set(3, str.lower),
    "unknown type": _set(2, lambda _: "charge"),
    "impossible date": _set(0, lambda _: "2026-02-30"),
    "date with a time": _set(0, lambda text: text + "T00:00:00"),
    "extra decimal": _set(4, lambda text: text + "0"),
    "missing decimals": _set(4, lambda text: text.partition(".")[0]),
    "exponent notation": _set(5, lambda _: "1e3"),
    "gross sign flipped": _set(4, _flip_sign),
    "padded reference": _set(1, lambda text: " " + text),
    "empty reference": _set(1, lambda _: ""),
    "control character in the reference": _set(1, lambda text: text + "\x07"),
    "line break in the reference": _set(1, lambda text: text[:1] + "\n" + text[1:]),
    "quote in the date": _set(0, lambda text: '"' + text),
    "column dropped": lambda row: row[:-1],
    "column duplicated": lambda row: [*row, row[-1]],
}


@st.composite
def corrupted_files(draw: st.DrawFn) -> tuple[bytes, int]:
    """A well-formed file with one line made bad, and that line's number."""
    lines = draw(line_lists.filter(bool), label="lines")
    corruption = draw(
        st.sampled_from(
            [*CORRUPTIONS, "net off by one", "not UTF-8", "unclosed quote", "duplicate"]
        ),
        label="corruption",
    )
    index = draw(st.integers(0, len(lines) - 1), label="bad line index")
    rows = [line.row() for line in lines]
    bad = lines[index]
    if corruption == "net off by one":
        rows[index][6] = major(bad.net + 1, bad.currency)
    elif corruption == "duplicate":
        if index == 0:
            rows.insert(0, rows[0])  # the second of two equal lines is the bad one
            index = 1
        else:
            rows[index] = rows[draw(st.integers(0, index - 1), label="copied line")]
    elif corruption in CORRUPTIONS:
        rows[index] = CORRUPTIONS[corruption](rows[index])
    content = render(rows, draw(layouts, label="layout"))
    if corruption == "not UTF-8":
        split = content.split(b"\n")
        line = split[index + 1]
        at = draw(st.integers(0, len(line)), label="at")
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"]))
        split[index + 1] = line[:at] + junk + line[at:]
        content = b"\n".join(split)
    elif corruption == "unclosed quote":  # the row runs on to a later line, or to the end
        split = content.split(b"\n")
        split[index + 1] = b'"' + split[index + 1]
        content = b"\n".join(split)
    return content, index + 2


@fuzz(150)
@given(file=corrupted_files())
def test_the_first_bad_line_is_named(file: tuple[bytes, int]) -> None:
    content, line_no = file
    with pytest.raises(MalformedFile) as refused:
        parse(content)
    assert refused.value.line_no == line_no, refused.value
    assert refused.value.reason.strip()


def _not_the_header(data: bytes) -> bool:
    return not data.removeprefix(BOM).startswith(HEADER.encode()[:10])


# Bytes that cannot start with the header: CSV's quotes and line breaks in plenty, so that a
# first row may run over several lines.
headless_files = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b'"', b"\n", b"\r\n", b",", b"x", b"\xff", BOM]), max_size=40).map(
        b"".join
    ),
).filter(_not_the_header)


@fuzz(200)
@given(data=headless_files)
@example(data=b'"\n\n"\n')
@example(data=b'"settlement_date\n,provider_reference",type,currency,gross,fee,net\n')
def test_a_file_without_the_header_is_refused_at_line_1(data: bytes) -> None:
    with pytest.raises(MalformedFile) as refused:
        parse(data)
    assert refused.value.line_no == 1, refused.value


@st.composite
def header_lines(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """A header row as CSV would write it: the column names, perhaps grouped several to a
    (quoted) field, perhaps all quoted, perhaps with one name changed."""
    cuts = sorted(draw(st.sets(st.integers(1, len(COLUMNS) - 1))))
    bounds = [0, *cuts, len(COLUMNS)]
    fields = [",".join(COLUMNS[a:b]) for a, b in itertools.pairwise(bounds)]
    change = draw(st.sampled_from(["none", "upper", "space", "empty field"]))
    at = draw(st.integers(0, len(fields) - 1))
    if change == "upper":
        fields[at] = fields[at].upper()
    elif change == "space":
        fields[at] = fields[at] + " "
    elif change == "empty field":
        fields.insert(at, "")
    quote_all = draw(st.booleans())
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerow(fields)
    return fields, out.getvalue().encode()


@fuzz(100)
@given(header=header_lines(), file=valid_files())
@example(
    header=(
        ["settlement_date,provider_reference", "type", "currency", "gross", "fee", "net"],
        b'"settlement_date,provider_reference",type,currency,gross,fee,net\r\n',
    ),
    file=([], HEADER.encode() + b"\n"),
)
def test_only_the_exact_header_is_accepted(
    header: tuple[list[str], bytes], file: tuple[list[Line], bytes]
) -> None:
    """Line 1 is exactly the header: not a CSV row whose fields join to the same text, nor
    the same names quoted."""
    _, header_line = header
    lines, content = file
    body = content.removeprefix(BOM).partition(b"\n")[2]
    result = outcome(header_line + body)
    if header_line.removesuffix(b"\r\n") == HEADER.encode():
        assert result == [line.parsed(n) for n, line in enumerate(lines, start=2)]
    else:
        assert isinstance(result, tuple) and result[0] == 1, (header_line, result)


# ---- mutated and arbitrary files ------------------------------------------------------------

ODD_BYTES = [
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xc0\xaf",  # an overlong slash
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\x00",
    b"\r",
    b"\n",
    b'"',
    b",",
    BOM,
    "\u00a0".encode(),
    "\u2028".encode(),
    "٣".encode(),
]
FIELD_VALUES = st.one_of(
    st.sampled_from(
        [
            b"",
            b" ",
            b"-1.000",
            b"1.0000",
            b"0.00",
            b"-0.000",
            b"1e3",
            b"NaN",
            b"Infinity",
            b"1_000.00",
            b"99999999999999.999",
            b"2026-02-30",
            b"2026-13-01",
            b"0000-01-01",
            b"99999-01-01",
            b"2026-1-01",
            "\u0662\u0660\u0662\u0666-\u0661\u0661-\u0660\u0663".encode(),
            "\u0661.\u0660\u0660\u0660".encode(),
            b"payment",
            b"refund",
            b"OMR",
            b"omr",
            b"XXX",
            b'"quoted"',
            b'"unterminated',
        ]
    ),
    st.binary(max_size=12),
    st.text(max_size=12).map(str.encode),
)
MUTATIONS = (
    "flip a bit",
    "delete bytes",
    "insert bytes",
    "insert odd bytes",
    "truncate",
    "drop a column",
    "duplicate a column",
    "duplicate a line",
    "swap two lines",
    "insert a blank line",
    "replace a field",
    "extra decimal",
    "negate a field",
    "line endings",
    "toggle the BOM",
)


@st.composite
def mutation_of(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(MUTATIONS), label="mutation")
    at = draw(st.integers(0, len(data)), label="at")
    if kind == "flip a bit" and data:
        at = min(at, len(data) - 1)
        bit = draw(st.integers(0, 7))
        return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]
    if kind == "delete bytes":
        return data[:at] + data[at + draw(st.integers(1, 8)) :]
    if kind == "insert bytes":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if kind == "insert odd bytes":
        return data[:at] + draw(st.sampled_from(ODD_BYTES)) + data[at:]
    if kind == "truncate":
        return data[:at]
    if kind == "line endings":
        eol = draw(st.sampled_from([b"\r\n", b"\r", b"\n\n", b"\n"]))
        return data.replace(b"\r\n", b"\n").replace(b"\n", eol)
    if kind == "toggle the BOM":
        return data.removeprefix(BOM) if data.startswith(BOM) else BOM + data
    lines = data.split(b"\n")
    n = draw(st.integers(0, len(lines) - 1), label="line")
    fields = lines[n].split(b",")
    f = draw(st.integers(0, len(fields) - 1), label="field")
    if kind == "drop a column":
        del fields[f]
    elif kind == "duplicate a column":
        fields.insert(f, fields[f])
    elif kind == "replace a field":
        fields[f] = draw(FIELD_VALUES)
    elif kind == "extra decimal":
        fields[f] += draw(st.sampled_from([b"0", b"5", b".0"]))
    elif kind == "negate a field":
        fields[f] = fields[f][1:] if fields[f].startswith(b"-") else b"-" + fields[f]
    elif kind == "duplicate a line":
        lines.insert(draw(st.integers(0, len(lines))), lines[n])
    elif kind == "swap two lines":
        m = draw(st.integers(0, len(lines) - 1))
        lines[n], lines[m] = lines[m], lines[n]
    elif kind == "insert a blank line":
        lines.insert(n, b"")
    if kind not in ("duplicate a line", "swap two lines", "insert a blank line"):
        lines[n] = b",".join(fields)
    return b"\n".join(lines)


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    _, data = draw(valid_files())
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        data = draw(mutation_of(data))
    return data


@fuzz(400)
@given(data=mutated_files())
@example(data=b"")
@example(data=BOM)
@example(data=b"\n")
@example(data=b"\r\n\r\n")
@example(data=HEADER.encode())
@example(data=BOM + HEADER.encode() + b"\r\n")
@example(data=b'"' + HEADER.encode() + b"\n" + b"x" * 5000)
@example(data=HEADER.encode() + b"\n" + b"," * 5000 + b"\n")
@example(data=HEADER.encode() + b'\n"' + b"x\n" * 100)
def test_a_mutated_file_is_parsed_or_refused_at_one_of_its_lines(data: bytes) -> None:
    assert_parses_or_refuses(data)


@fuzz(200)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=400).map(lambda tail: HEADER.encode() + b"\n" + tail),
        st.text(max_size=200).map(lambda tail: (HEADER + "\n" + tail).encode()),
    )
)
def test_arbitrary_bytes_are_parsed_or_refused_at_one_of_their_lines(data: bytes) -> None:
    assert_parses_or_refuses(data)


def test_a_good_file_survives_the_checks() -> None:
    """The oracle above accepts what the parser accepts of a known-good file."""
    content = (
        f'{HEADER}\r\n2026-11-03,"r,1",payment,OMR,12.500,0.288,12.212\r\n'
        "2026-11-03,r2,refund,SAR,-1.00,0.00,-1.00\r\n"
    ).encode()
    lines = assert_parses_or_refuses(BOM + content)
    assert isinstance(lines, list) and [line.provider_reference for line in lines] == ["r,1", "r2"]
