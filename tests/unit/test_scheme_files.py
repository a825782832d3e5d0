"""The national schemes' settlement-file parsers (KNET, BENEFIT, OmanNet): files as the
simulators write them read into normalised lines, and every kind of bad line refusing the whole
file with its line number and the reason."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from collections.abc import Callable

import pytest

from config import BENEFIT, KNET, OMANNET
from payments.settlement.formats import parser_for
from payments.settlement.parsers import MalformedFile, ParsedLine
from payments.settlement.scheme_files import LAYOUTS, MAX_LINE_BYTES, Role, SchemeLayout
from providers import omannet_simulator
from providers.tranportal import SCHEMES as TRANPORTAL_SCHEMES

DAY = dt.date(2026, 12, 7)
# One payment with a fee, one without, and a partial refund of the first, in each layout.
GOOD: dict[str, str] = {
    KNET: (
        "POST_DATE,TRAN_ID,TRACK_ID,PAYMENT_ID,AUTH_CODE,TYPE,CURRENCY,AMOUNT,FEE,NET\n"
        "2026-12-07,7462834168792084,att_01a,824665377774831575,823774,PURCHASE,KWD,"
        "12.500,0.250,12.250\n"
        "2026-12-07,1162834168792011,att_01b,824665377774831111,111111,PURCHASE,KWD,"
        "0.013,0.000,0.013\n"
        "2026-12-07,9388246638413358,re_01a,294766424511426876,,REFUND,KWD,-0.500,0.000,-0.500\n"
    ),
    BENEFIT: (
        "SETTLEMENT_DATE,TRANSACTION_ID,MERCHANT_TRACK_ID,PAYMENT_ID,APPROVAL_CODE,"
        "TRANSACTION_TYPE,CURRENCY,GROSS_AMOUNT,COMMISSION,NET_AMOUNT\n"
        "07/12/2026,6556198421966172,att_01a,845859906039171796,526625,SALE,BHD,"
        "12.500,0.250,12.250\n"
        "07/12/2026,1156198421966111,att_01b,845859906039171111,111111,SALE,BHD,"
        "0.013,0.000,0.013\n"
        "07/12/2026,8240364202262238,re_01a,915787669551933053,,CREDIT,BHD,-0.500,0.000,-0.500\n"
    ),
    OMANNET: (
        "SETTLEMENT_DATE,MERCHANT_ID,MERCHANT_TXN_REF,TRANSACTION_NO,RECEIPT_NO,"
        "TRANSACTION_TIME,TYPE,CURRENCY,AMOUNT,FEE,NET\n"
        "2026-12-07,OMANNETSIM,att_01a,3000000001,125400786952,2026-12-07T11:12:19Z,"
        "PURCHASE,OMR,12.500,0.125,12.375\n"
        "2026-12-07,OMANNETSIM,att_01b,3000000002,125400786111,2026-12-07T11:13:00Z,"
        "PURCHASE,OMR,0.013,0.013,0.000\n"
        "2026-12-07,OMANNETSIM,re_01a,3000000003,493506771598,2026-12-07T23:59:59Z,"
        "REFUND,OMR,-0.500,0.000,-0.500\n"
    ),
}
EXPECTED: dict[str, list[ParsedLine]] = {
    KNET: [
        ParsedLine(2, DAY, "7462834168792084", "payment", "KWD", 12_500, 250, 12_250),
        ParsedLine(3, DAY, "1162834168792011", "payment", "KWD", 13, 0, 13),
        ParsedLine(4, DAY, "9388246638413358", "refund", "KWD", -500, 0, -500),
    ],
    BENEFIT: [
        ParsedLine(2, DAY, "6556198421966172", "payment", "BHD", 12_500, 250, 12_250),
        ParsedLine(3, DAY, "1156198421966111", "payment", "BHD", 13, 0, 13),
        ParsedLine(4, DAY, "8240364202262238", "refund", "BHD", -500, 0, -500),
    ],
    OMANNET: [
        ParsedLine(2, DAY, "3000000001", "payment", "OMR", 12_500, 125, 12_375),
        ParsedLine(3, DAY, "3000000002", "payment", "OMR", 13, 13, 0),
        ParsedLine(4, DAY, "3000000003", "refund", "OMR", -500, 0, -500),
    ],
}
PROVIDERS = (KNET, BENEFIT, OMANNET)
OTHER_CURRENCY = {KNET: "BHD", BENEFIT: "OMR", OMANNET: "KWD"}


def parse(provider: str, data: bytes | str, *, limit: int | None = None) -> list[ParsedLine]:
    """The file's lines, through the registry as an import finds the scheme's parser."""
    parser = parser_for(provider, **({} if limit is None else {"max_file_bytes": limit}))
    assert parser is not None
    raw = data.encode() if isinstance(data, str) else data
    return list(parser.parse(io.BytesIO(raw)))


def refused(provider: str, data: bytes | str, *, limit: int | None = None) -> MalformedFile:
    with pytest.raises(MalformedFile) as caught:
        parse(provider, data, limit=limit)
    return caught.value


def rows(provider: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(GOOD[provider])))


def written(table: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(table)
    return out.getvalue()


def with_value(provider: str, line_no: int, role: Role, value: str) -> str:
    """The good file with one column of one line (1 is the header) changed."""
    table = rows(provider)
    table[line_no - 1][LAYOUTS[provider].index(role)] = value
    return written(table)


def date_text(layout: SchemeLayout, year: str, month: str, day: str) -> str:
    """A date as the layout's format would place these parts, padded or not."""
    return layout.date_format.replace("%Y", year).replace("%m", month).replace("%d", day)


# ---- the layouts -----------------------------------------------------------------------------


def test_the_layouts_are_the_simulators() -> None:
    """Each parser's header is the one its scheme's simulator writes."""
    for name in (KNET, BENEFIT):
        assert LAYOUTS[name].header == ",".join(TRANPORTAL_SCHEMES[name].settlement.columns)
        assert LAYOUTS[name].currency == TRANPORTAL_SCHEMES[name].currency
    assert LAYOUTS[OMANNET].header == ",".join(omannet_simulator.COLUMNS)
    assert set(LAYOUTS) == set(PROVIDERS)


# ---- good files ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_good_file(provider: str) -> None:
    assert parse(provider, GOOD[provider]) == EXPECTED[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_header_alone_is_a_day_without_lines(provider: str) -> None:
    assert parse(provider, LAYOUTS[provider].header + "\n") == []
    assert parse(provider, LAYOUTS[provider].header) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bom_crlf_line_ends_blank_lines_at_the_end_and_no_last_newline(provider: str) -> None:
    text = GOOD[provider]
    assert parse(provider, codecs.BOM_UTF8 + text.encode()) == EXPECTED[provider]
    assert parse(provider, text.replace("\n", "\r\n")) == EXPECTED[provider]
    assert parse(provider, text + "\n\r\n\n") == EXPECTED[provider]
    assert parse(provider, text.removesuffix("\n")) == EXPECTED[provider]


def test_the_registry_builds_each_parser_with_the_file_limit() -> None:
    for provider in PROVIDERS:
        size = len(GOOD[provider].encode())
        assert parse(provider, GOOD[provider], limit=size) == EXPECTED[provider]
        assert refused(provider, GOOD[provider], limit=size - 1).line_no == 4


# ---- the file refused whole, at its first bad line --------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_empty_file_or_a_wrong_header(provider: str) -> None:
    header = LAYOUTS[provider].header
    assert "the file is empty" in refused(provider, b"").reason
    body = GOOD[provider].split("\n", 1)[1]
    wrong = {
        "lower case": header.lower(),
        "padded": header + " ",
        "a column short": header.rsplit(",", 1)[0],
        "another scheme's": LAYOUTS[KNET if provider != KNET else BENEFIT].header,
        "the sandbox's": "settlement_date,provider_reference,type,currency,gross,fee,net",
        "quoted": '"' + header.replace(",", '","') + '"',
    }
    for case, line in wrong.items():
        error = refused(provider, line + "\n" + body)
        assert error.line_no == 1, case
        assert error.reason == f"the header must be exactly {header!r}", case


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_wrong_column_count(provider: str) -> None:
    table = rows(provider)
    count = len(table[0])
    table[2].append("x")
    error = refused(provider, written(table))
    assert (error.line_no, error.reason) == (3, f"{count + 1} columns, expected {count}")
    table[2] = table[2][:-2]
    error = refused(provider, written(table))
    assert (error.line_no, error.reason) == (3, f"{count - 1} columns, expected {count}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_dates(provider: str) -> None:
    layout = LAYOUTS[provider]
    name = layout.columns[layout.index(Role.DATE)].name
    shape = "DD/MM/YYYY" if provider == BENEFIT else "YYYY-MM-DD"
    other = "2026-12-07" if provider == BENEFIT else "07/12/2026"
    for bad in (
        date_text(layout, "2026", "12", "7"),  # unpadded
        date_text(layout, "2026", "02", "30"),  # no such day
        date_text(layout, "2026", "13", "01"),  # no such month
        date_text(layout, "\u0662\u0660\u0662\u0666", "12", "07"),  # Arabic-Indic digits
        other,  # another scheme's format
        date_text(layout, "2026", "12", "07") + " ",
        "",
    ):
        error = refused(provider, with_value(provider, 3, Role.DATE, bad))
        assert error.line_no == 3, bad
        assert error.reason == f"{name} {bad!r} is not a date written {shape}", bad


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_transaction_ids(provider: str) -> None:
    name = LAYOUTS[provider].columns[LAYOUTS[provider].index(Role.REFERENCE)].name
    bad_ids = ["", " 1234", "12 34", "12/34", "x" * 65, "\u0661\u0662\u0663"]
    if provider == OMANNET:
        bad_ids.append("TXN1234")  # the bank's transaction numbers are digits
    for bad in bad_ids:
        error = refused(provider, with_value(provider, 2, Role.REFERENCE, bad))
        assert error.line_no == 2, bad
        assert error.reason.startswith(f"{name} "), error.reason
        assert " is not 1 to " in error.reason, error.reason


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_type_words(provider: str) -> None:
    layout = LAYOUTS[provider]
    name = layout.columns[layout.index(Role.TYPE)].name
    words = f"{layout.payment_word}, {layout.refund_word}"
    other = "SALE" if provider != BENEFIT else "PURCHASE"  # another scheme's word
    for bad in (layout.payment_word.lower(), other, "payment", "CHARGEBACK", ""):
        error = refused(provider, with_value(provider, 3, Role.TYPE, bad))
        assert (error.line_no, error.reason) == (3, f"{name} {bad!r} is not one of {words}")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_only_the_schemes_currency(provider: str) -> None:
    layout = LAYOUTS[provider]
    name = layout.columns[layout.index(Role.CURRENCY)].name
    for bad in (OTHER_CURRENCY[provider], layout.currency.lower(), "XXX", ""):
        error = refused(provider, with_value(provider, 4, Role.CURRENCY, bad))
        assert error.line_no == 4
        assert error.reason == (
            f"{name} {bad!r} is not {layout.currency}, the only currency {provider} settles"
        )


# A payment's amount, and what the scheme would never write for it: each refused as not an
# amount with exactly three decimals.
BAD_AMOUNTS = (
    "12.5",  # too few decimals
    "12.50",
    "12",
    "12.5000",  # too many, even zeros
    "12.5001",  # never rounded
    "+12.500",
    "012.500",  # leading zero
    "12,500",
    " 12.500",
    "12.500 ",
    "1.25e1",
    "\u0661\u0662.\u0665\u0660\u0660",  # Arabic-Indic digits
    "12.5OO",
    ".500",
    "12.",
    "NaN",
    "Infinity",
    "",
)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("bad", BAD_AMOUNTS)
def test_amounts_must_be_written_with_exactly_the_currencys_decimals(
    provider: str, bad: str
) -> None:
    layout = LAYOUTS[provider]
    name = layout.columns[layout.index(Role.GROSS)].name
    error = refused(provider, with_value(provider, 2, Role.GROSS, bad))
    assert error.line_no == 2
    assert error.reason == (
        f"{name} {bad!r} is not an amount written with exactly 3 decimals,"
        f" as {layout.currency}'s are"
    )


def _line(provider: str, line_no: int, gross: str, fee: str, net: str) -> str:
    table = rows(provider)
    layout = LAYOUTS[provider]
    for role, value in ((Role.GROSS, gross), (Role.FEE, fee), (Role.NET, net)):
        table[line_no - 1][layout.index(role)] = value
    return written(table)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_payments_amounts(provider: str) -> None:
    layout = LAYOUTS[provider]
    gross, fee, net = (
        layout.columns[layout.index(r)].name for r in (Role.GROSS, Role.FEE, Role.NET)
    )
    cases = {
        ("-12.500", "0.000", "-12.500"): f"{gross} '-12.500' must not be negative",
        ("0.000", "0.000", "0.000"): f"a payment's {gross} is zero",
        ("12.500", "-0.250", "12.750"): f"{fee} '-0.250' must not be negative",
        ("12.500", "12.501", "0.000"): f"{fee} '12.501' is more than {gross} '12.500'",
        ("12.500", "0.250", "12.500"): f"{net} '12.500' is not {gross} - {fee}",
        ("12.500", "0.250", "12.249"): f"{net} '12.249' is not {gross} - {fee}",
        ("12.500", "12.600", "-0.100"): f"{net} '-0.100' must not be negative",
        ("1000000000.001", "0.000", "1000000000.001"): f"{gross}: '1000000000.001' is over",
    }
    for (g, f, n), reason in cases.items():
        error = refused(provider, _line(provider, 2, g, f, n))
        assert error.line_no == 2, (g, f, n)
        assert error.reason.startswith(reason), (error.reason, reason)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refunds_amounts(provider: str) -> None:
    layout = LAYOUTS[provider]
    gross, fee, net = (
        layout.columns[layout.index(r)].name for r in (Role.GROSS, Role.FEE, Role.NET)
    )
    cases = {
        ("0.500", "0.000", "0.500"): f"a refund's {gross} '0.500' must be negative",
        ("-0.000", "0.000", "-0.000"): f"a refund's {gross} '-0.000' must be negative",
        ("-0.500", "0.010", "-0.510"): "a refund carries no fee, not '0.010'",
        ("-0.500", "-0.010", "-0.490"): f"{fee} '-0.010' must not be negative",
        ("-0.500", "0.000", "-0.400"): f"a refund's {net} '-0.400' must equal its {gross}",
        ("-0.500", "0.000", "0.500"): f"a refund's {net} '0.500' must be negative",
        ("--0.500", "0.000", "-0.500"): f"{gross} '--0.500' is not an amount",
    }
    for (g, f, n), reason in cases.items():
        error = refused(provider, _line(provider, 4, g, f, n))
        assert error.line_no == 4, (g, f, n)
        assert error.reason.startswith(reason), (error.reason, reason)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_line_stated_twice_or_a_transaction_id_used_twice(provider: str) -> None:
    table = rows(provider)
    error = refused(provider, written([*table, table[1]]))
    assert (error.line_no, error.reason) == (5, "duplicates line 2")
    layout = LAYOUTS[provider]
    name = layout.columns[layout.index(Role.REFERENCE)].name
    reference = table[1][layout.index(Role.REFERENCE)]
    # The refund under the purchase's transaction id: a capture and its refund have ids of
    # their own, so the same id twice is one transaction stated twice, whatever its amounts.
    table[3][layout.index(Role.REFERENCE)] = reference
    error = refused(provider, written(table))
    assert (error.line_no, error.reason) == (4, f"{name} {reference!r} is on line 2 already")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_text_that_is_not_utf8_or_not_one_line_of_csv(provider: str) -> None:
    raw = GOOD[provider].encode()
    lines = raw.split(b"\n")
    lines[2] = lines[2].replace(b"att_01b", b"att_\xff1b")
    error = refused(provider, b"\n".join(lines))
    assert (error.line_no, error.reason) == (3, "not valid UTF-8")
    error = refused(provider, codecs.BOM_UTF8 + codecs.BOM_UTF8 + raw)
    assert error.line_no == 1  # one byte-order mark is tolerated, not two
    table = GOOD[provider].split("\n")
    table[2] = table[2].replace(",", ',"', 1)  # a quote left open runs on past the line
    error = refused(provider, "\n".join(table))
    assert error.line_no == 3 and error.reason.startswith("not valid CSV"), error.reason
    table = GOOD[provider].split("\n")
    table[2] = table[2].replace(",", "\r,", 1)
    error = refused(provider, "\n".join(table))
    assert error.line_no == 3 and error.reason.startswith("not valid CSV"), error.reason


@pytest.mark.parametrize("provider", PROVIDERS)
def test_blank_lines_only_at_the_end(provider: str) -> None:
    table = GOOD[provider].split("\n")
    table.insert(2, "")
    error = refused(provider, "\n".join(table))
    assert (error.line_no, error.reason) == (3, "blank line before the end of the file")
    table[2] = "\r"
    error = refused(provider, "\n".join(table))
    assert (error.line_no, error.reason) == (3, "blank line before the end of the file")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_size_limits(provider: str) -> None:
    table = rows(provider)
    table[2][LAYOUTS[provider].index(Role.TYPE)] = "X" * MAX_LINE_BYTES
    error = refused(provider, written(table))
    assert (error.line_no, error.reason) == (3, f"longer than {MAX_LINE_BYTES} bytes")
    header = len(GOOD[provider].split("\n", 1)[0]) + 1
    error = refused(provider, GOOD[provider], limit=header + 10)
    assert error.line_no == 2
    assert error.reason == f"the file is over the limit of {header + 10} bytes"


def test_the_other_columns_are_checked_for_shape() -> None:
    cases: list[tuple[str, Callable[[list[list[str]]], None], str]] = [
        (KNET, lambda t: t[1].__setitem__(4, "82 37"), "AUTH_CODE '82 37' is not empty or"),
        (KNET, lambda t: t[1].__setitem__(2, ""), "TRACK_ID '' is not 1 to 80 of"),
        (BENEFIT, lambda t: t[1].__setitem__(3, "x/y"), "PAYMENT_ID 'x/y' is not 1 to 64 of"),
        (OMANNET, lambda t: t[1].__setitem__(1, ""), "MERCHANT_ID '' is not 1 to 16"),
        (OMANNET, lambda t: t[1].__setitem__(4, "1" * 13), "RECEIPT_NO '1111111111111' is"),
        (
            OMANNET,
            lambda t: t[1].__setitem__(5, "2026-12-07 11:12:19"),
            "TRANSACTION_TIME '2026-12-07 11:12:19' is not a time written YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            OMANNET,
            lambda t: t[1].__setitem__(5, "2026-12-07T24:00:00Z"),
            "TRANSACTION_TIME '2026-12-07T24:00:00Z' is not a time",
        ),
    ]
    for provider, spoil, reason in cases:
        table = rows(provider)
        spoil(table)
        error = refused(provider, written(table))
        assert error.line_no == 2, reason
        assert error.reason.startswith(reason), (error.reason, reason)


def test_a_long_bad_value_is_cut_short_in_the_message() -> None:
    error = refused(KNET, with_value(KNET, 2, Role.TYPE, "Z" * 500))
    assert error.line_no == 2 and len(error.reason) < 200 and "ZZZ..." in error.reason


def test_the_first_bad_line_is_named_even_after_good_ones() -> None:
    table = rows(KNET)
    good_lines = [table[1][:] for _ in range(50)]
    for n, line in enumerate(good_lines):
        line[1] = f"{1_000_000 + n}"
    bad = good_lines[40]
    bad[7:10] = ["1.000", "0.000", "0.999"]
    error = refused(KNET, written([table[0], *good_lines]))
    assert error.line_no == 42 and error.reason == "NET '0.999' is not AMOUNT - FEE"
