"""The reconciliation report's writers: the files' shapes, one lazy pass, and bounded memory."""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import os
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import hijridate
import openpyxl
import pytest
from openpyxl.cell.cell import Cell

from payments.money import MAX_AMOUNT_MINOR, format_major
from payments.settlement.items import ReconItem, ReconTotals, ReportDetails, ReportHeader
from payments.settlement.report_writers import (
    CSV_COLUMNS,
    ITEM_COLUMNS,
    hijri_text,
    write_csv,
    write_json,
)
from payments.settlement.statuses import STATUSES
from payments.settlement.xlsx_report import write_xlsx

Writer = Callable[..., None]
WRITERS: dict[str, Writer] = {"json": write_json, "csv": write_csv, "xlsx": write_xlsx}

HEADER = ReportHeader(
    provider="sandbox",
    date_from=date(2026, 11, 25),
    date_to=date(2026, 12, 1),
    generated_at=datetime(2026, 12, 9, 6, 30, tzinfo=UTC),
    settlement_lag_days=3,
)
DEC_1 = date(2026, 12, 1)


def matched(n: int = 0, currency: str = "OMR", amount: int = 12500) -> ReconItem:
    return ReconItem(
        status="matched",
        item_id=f"stl_0000000000000001:{n + 1}",
        payment_id=f"pay_{n:08d}",
        refund_id=None,
        provider_reference=f"sbx_{n:08d}",
        currency=currency,
        settled_currency=currency,
        gateway_amount=amount,
        settled_amount=amount,
        fee=250,
        agency="وزارة العمل",
        gateway_date=DEC_1,
        settlement_date=date(2026, 12, 2),
        resolution_note=None,
        resolved_by=None,
    )


def sample_items() -> list[ReconItem]:
    return [
        matched(1),
        matched(2, "SAR", 15000),
        replace(
            matched(3),
            status="amount_mismatch",
            settled_amount=12000,
            resolution_note="Acquirer short-paid; credited on 3 Dec",
            resolved_by="finance@mol.gov.om",
        ),
        replace(
            matched(4),
            status="missing_in_gateway",
            payment_id=None,
            gateway_amount=None,
            agency=None,
            gateway_date=None,
            provider_reference="=HYPERLINK(1)",
        ),
        replace(
            matched(5),
            status="missing_in_settlement",
            item_id="rfd_00000005",
            refund_id="rfd_00000005",
            gateway_amount=-2500,
            settled_amount=None,
            settled_currency=None,
            fee=None,
            settlement_date=None,
        ),
        replace(
            matched(6, "SAR", 9900),
            status="pending_settlement",
            item_id="pay_00000006",
            settled_amount=None,
            settled_currency=None,
            fee=None,
            settlement_date=None,
        ),
    ]


def counted(
    items: list[ReconItem],
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """What the engine counts with SQL before streaming."""
    totals = ReconTotals({}, {})
    for item in items:
        totals.add(item)
    return totals.summary(), totals.totals_by_currency()


def write(kind: str, items: list[ReconItem]) -> bytes:
    out = io.BytesIO()
    summary, totals = counted(items)
    WRITERS[kind](HEADER, summary, totals, iter(items), out)
    return out.getvalue()


class OnePass:
    """An iterable that refuses a second pass and records how far it has been read."""

    def __init__(self, items: Iterator[ReconItem]) -> None:
        self._items = items
        self.iterated = False
        self.pulled = 0

    def __iter__(self) -> Iterator[ReconItem]:
        if self.iterated:
            raise AssertionError("the items were iterated twice")
        self.iterated = True
        for item in self._items:
            self.pulled += 1
            yield item


class WatchedSink(io.RawIOBase):
    """Discards what is written, recording the size and how many items had been read by then."""

    def __init__(self, source: OnePass | None = None) -> None:
        self.source = source
        self.size = 0
        self.pulled_at_writes: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        size = len(memoryview(data))  # type: ignore[arg-type]
        self.size += size
        if self.source is not None:
            self.pulled_at_writes.append(self.source.pulled)
        return size


def many_matched(count: int) -> Iterator[ReconItem]:
    return (matched(n) for n in range(count))


def many_counts(count: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    return {"matched": count}, {
        "OMR": {
            "count": count,
            "gateway_amount": 12500 * count,
            "settled_amount": 12500 * count,
            "fee": 250 * count,
        }
    }


# JSON


def test_json_has_the_apis_shape_with_minor_units() -> None:
    report = json.loads(write("json", sample_items()))

    assert list(report) == ["summary", "totals", "items"]
    assert report["summary"] == {
        "matched": 2,
        "matched_within_tolerance": 0,
        "amount_mismatch": 1,
        "currency_mismatch": 0,
        "duplicate": 0,
        "missing_in_gateway": 1,
        "chargeback": 0,
        "chargeback_reversal": 0,
        "missing_in_settlement": 1,
        "pending_settlement": 1,
    }
    assert report["totals"] == {
        "OMR": {
            "count": 4,
            "gateway_amount": 12500 + 12500 - 2500,
            "settled_amount": 12500 + 12000 + 12500,
            "fee": 750,
        },
        "SAR": {"count": 2, "gateway_amount": 24900, "settled_amount": 15000, "fee": 250},
    }
    first, _, mismatch, missing, refund, _ = report["items"]
    assert first == {
        "id": "stl_0000000000000001:2",
        "status": "matched",
        "payment_id": "pay_00000001",
        "refund_id": None,
        "provider_reference": "sbx_00000001",
        "currency": "OMR",
        "settled_currency": "OMR",
        "gateway_amount": 12500,
        "settled_amount": 12500,
        "fee": 250,
        "agency": "وزارة العمل",
        "gateway_date": "2026-12-01",
        "settlement_date": "2026-12-02",
        "resolution": None,
        "drift": None,
        "settled_with": [],
    }
    assert mismatch["resolution"] == {
        "note": "Acquirer short-paid; credited on 3 Dec",
        "by": "finance@mol.gov.om",
    }
    assert missing["gateway_amount"] is None
    assert missing["gateway_date"] is None
    assert refund["gateway_amount"] == -2500
    assert refund["refund_id"] == "rfd_00000005"


def test_json_with_no_items_is_still_a_report() -> None:
    report = json.loads(write("json", []))

    assert report == {"summary": dict.fromkeys(STATUSES, 0), "totals": {}, "items": []}


# One lazy pass


@pytest.mark.parametrize("kind", ["json", "csv", "xlsx"])
def test_items_are_read_once(kind: str) -> None:
    count = 50
    source = OnePass(many_matched(count))

    WRITERS[kind](HEADER, *many_counts(count), source, io.BytesIO())

    assert source.pulled == count
    with pytest.raises(AssertionError, match="twice"):
        iter(source).__next__()


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_rows_are_written_while_items_are_still_being_read(kind: str) -> None:
    count = 5000
    source = OnePass(many_matched(count))
    sink = WatchedSink(source)

    WRITERS[kind](HEADER, *many_counts(count), source, sink)

    assert source.pulled == count
    assert any(0 < pulled < count // 2 for pulled in sink.pulled_at_writes)


# CSV


def test_csv_is_utf8_with_a_bom_and_major_units() -> None:
    data = write("csv", sample_items())

    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + len(sample_items())
    by_column = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in rows[1:]]
    omr, sar, mismatch, missing, refund, _ = by_column
    assert (omr["gateway_amount"], omr["settled_amount"], omr["fee"]) == (
        "12.500",
        "12.500",
        "0.250",
    )
    assert sar["settled_amount"] == "150.00"
    assert omr["agency"] == "وزارة العمل"
    assert omr["gateway_date"] == "2026-12-01"
    assert mismatch["resolution_note"] == "Acquirer short-paid; credited on 3 Dec"
    assert mismatch["resolved_by"] == "finance@mol.gov.om"
    assert missing["gateway_amount"] == ""
    assert missing["payment_id"] == ""
    # Text from an acquirer's file never runs as a spreadsheet formula.
    assert missing["provider_reference"] == "'=HYPERLINK(1)"
    assert refund["gateway_amount"] == "-2.500"


# XLSX


def load(data: bytes) -> openpyxl.Workbook:
    # The data-only load also checks the file is a well-formed workbook.
    return openpyxl.load_workbook(io.BytesIO(data))


def test_hijri_date_is_umm_al_qura() -> None:
    hijri = hijridate.Gregorian(2026, 12, 1).to_hijri()

    assert (hijri.year, hijri.month, hijri.day) == (1448, 6, 21)
    assert hijri_text(DEC_1) == "1448-06-21 هـ"
    assert hijri_text(date(1900, 1, 1)) is None


def test_xlsx_has_a_summary_and_bilingual_items() -> None:
    workbook = load(write("xlsx", sample_items()))

    assert workbook.sheetnames == ["Summary", "Items"]
    items = workbook["Items"]
    titles = [cell.value for cell in items[1]]
    assert titles == [title for title, _ in ITEM_COLUMNS]
    assert titles[0] == "البند / Item"
    assert titles[2] == "رمز الحالة / Status"
    for title in titles:
        assert isinstance(title, str)
        arabic, english = title.split(" / ")
        assert any("\u0600" <= char <= "\u06ff" for char in arabic)
        assert english.isascii()
    assert items.freeze_panes == "A2"
    assert items.auto_filter.ref == f"A1:U{1 + len(sample_items())}"
    assert items.sheet_view.rightToLeft

    omr, sar, _, missing, refund, _ = items.iter_rows(min_row=2)
    assert omr[1].value == "مطابقة"
    assert omr[2].value == "matched"
    gateway, settled, fee = omr[8:11]
    assert (gateway.value, settled.value, fee.value) == (12.5, 12.5, 0.25)
    assert all(cell.data_type == "n" for cell in (gateway, settled, fee))
    assert gateway.number_format == "#,##0.000"
    assert sar[9].value == 150
    assert sar[9].number_format == "#,##0.00"
    assert refund[8].value == -2.5
    assert missing[8].value is None
    assert missing[5].value == "=HYPERLINK(1)"
    assert missing[5].data_type == "s"

    gregorian, hijri = omr[12:14]
    assert isinstance(gregorian, Cell)
    assert gregorian.is_date
    assert gregorian.value == datetime(2026, 12, 1)
    assert gregorian.number_format == "yyyy-mm-dd"
    assert hijri.value == "1448-06-21 هـ"
    assert missing[12].value is None
    assert missing[13].value is None


def test_xlsx_summary_has_header_counts_and_totals() -> None:
    summary = load(write("xlsx", sample_items()))["Summary"]
    rows = [[cell.value for cell in row] for row in summary.iter_rows()]
    by_label = {row[0]: row[1:] for row in rows if row and row[0]}

    assert by_label["مزود الخدمة / Provider"][0] == "sandbox"
    assert by_label["من / From"][:2] == [datetime(2026, 11, 25), "1448-06-15 هـ"]
    assert by_label["أُنشئ في (UTC) / Generated at (UTC)"][0] == datetime(2026, 12, 9, 6, 30)
    assert by_label["مهلة التسوية بالأيام / Settlement lag (days)"][0] == 3
    assert by_label["مطابقة"][:2] == ["matched", 2]
    assert by_label["مكررة"][:2] == ["duplicate", 0]
    assert by_label["OMR"][:5] == ["ريال عماني", 4, 22.5, 37, 0.75]
    assert by_label["SAR"][:5] == ["ريال سعودي", 2, 249, 150, 2.5]
    omr_row = next(row for row in summary.iter_rows() if row[0].value == "OMR")
    assert omr_row[3].number_format == "#,##0.000"


def test_xlsx_amounts_read_back_as_the_exact_amount() -> None:
    largest = MAX_AMOUNT_MINOR - 1
    items = [replace(matched(1), gateway_amount=largest, settled_amount=largest, fee=1)]

    row = next(load(write("xlsx", items))["Items"].iter_rows(min_row=2))

    assert row[8].value == float(Decimal(format_major(largest, "OMR")))
    assert f"{row[8].value:.3f}" == "999999999.999"
    assert f"{row[10].value:.3f}" == "0.001"


def test_xlsx_escapes_what_a_cell_cannot_hold_in_every_text_cell() -> None:
    """A note stored before notes were checked, or any text holding a control character, still
    makes a workbook: the character is written as its escape, the rest of the text as it is."""
    odd = "\x07bell \x1b[1m\x0bvt\x0c\ufffe"
    escaped = "\\u0007bell \\u001b[1m\\u000bvt\\u000c\\ufffe"
    items = [
        replace(
            matched(1),
            status="amount_mismatch",
            item_id=f"stl_0000000000000001:{odd}",
            provider_reference=f"sbx{odd}",
            agency=f"وزارة{odd}",
            resolution_note=f"=Short-paid{odd}",
            resolved_by=f"fatma{odd}",
        )
    ]
    header = replace(HEADER, provider=f"sandbox{odd}")
    summary, totals = counted(items)
    out = io.BytesIO()
    write_xlsx(
        header,
        summary,
        totals,
        iter(items),
        out,
        details=ReportDetails(agencies={f"وزارة{odd}": totals}, ledger={}, ledger_agrees=True),
    )
    workbook = load(out.getvalue())

    row = next(workbook["Items"].iter_rows(min_row=2))
    assert row[0].value == f"stl_0000000000000001:{escaped}"
    assert row[5].value == f"sbx{escaped}"
    assert row[11].value == f"وزارة{escaped}"
    assert (row[16].value, row[16].data_type) == (f"=Short-paid{escaped}", "s")
    assert row[17].value == f"fatma{escaped}"
    summary_cells = [cell.value for line in workbook["Summary"].iter_rows() for cell in line]
    assert f"sandbox{escaped}" in summary_cells
    assert f"وزارة{escaped}" in summary_cells


def test_xlsx_keeps_line_breaks_tabs_and_error_like_text() -> None:
    note = "تم التحويل على دفعتين\nTRF-0001\tTRF-0002"
    items = [
        replace(matched(1), status="amount_mismatch", resolution_note=note, resolved_by="fatma"),
        replace(matched(2), status="amount_mismatch", resolution_note="#N/A", resolved_by="#REF!"),
    ]

    broken, error_like = load(write("xlsx", items))["Items"].iter_rows(min_row=2)

    assert broken[16].value == note
    assert broken[16].alignment.wrap_text  # the line break shows in the cell
    assert [(cell.value, cell.data_type) for cell in error_like[16:18]] == [
        ("#N/A", "s"),
        ("#REF!", "s"),
    ]


# Totals


def test_totals_check_passes_when_matched_and_breaks_add_up() -> None:
    items = sample_items()
    summary, totals = counted(items)
    tally = ReconTotals(summary, totals)
    for item in items:
        tally.add(item)

    tally.check()

    assert tally.by_agency_currency[(None, "OMR")].settled_amount == 12500


def test_totals_check_fails_when_an_item_is_missing() -> None:
    items = sample_items()
    tally = ReconTotals(*counted(items))
    for item in items[1:]:
        tally.add(item)

    with pytest.raises(AssertionError, match="summary"):
        tally.check()


def test_totals_check_fails_when_the_file_total_differs() -> None:
    items = sample_items()
    summary, totals = counted(items)
    totals["OMR"]["settled_amount"] += 1
    tally = ReconTotals(summary, totals)
    for item in items:
        tally.add(item)

    with pytest.raises(AssertionError, match=r"OMR: .* settlement file totals 37001"):
        tally.check()


def test_totals_check_fails_when_the_gateway_total_differs() -> None:
    items = sample_items()
    summary, totals = counted(items)
    totals["SAR"]["gateway_amount"] = 0
    tally = ReconTotals(summary, totals)
    for item in items:
        tally.add(item)

    with pytest.raises(AssertionError, match=r"SAR: .* captures and refunds total 0"):
        tally.check()


@pytest.mark.parametrize("kind", ["json", "csv", "xlsx"])
def test_writer_refuses_items_that_contradict_the_summary(kind: str) -> None:
    summary, totals = counted(sample_items())

    open_before = _open_files()

    with pytest.raises(AssertionError):
        WRITERS[kind](HEADER, summary, totals, iter(sample_items()[:-1]), io.BytesIO())

    gc.collect()  # a failed workbook's sheets are temporary files, gone with their objects
    assert _open_files() == open_before


def _open_files() -> set[str]:
    """The temporary files this process's descriptors hold open (deleted ones included); other
    descriptors come and go with whatever else the process runs (sockets, pipes, pools)."""
    fds = Path("/proc/self/fd")
    found = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(tempfile.gettempdir()):
                found.add(target)
    return found


def test_writer_refuses_an_unknown_status_or_total() -> None:
    with pytest.raises(ValueError, match="unknown statuses"):
        write_json(HEADER, {"lost": 1}, {}, iter([]), io.BytesIO())
    with pytest.raises(ValueError, match="totals need exactly"):
        write_json(HEADER, {}, {"OMR": {"count": 0}}, iter([]), io.BytesIO())


# Items and header


def test_item_refuses_inconsistent_fields() -> None:
    with pytest.raises(ValueError, match="unknown"):
        replace(matched(), status="lost")
    with pytest.raises(ValueError, match="matched"):
        replace(matched(), settled_amount=1)
    with pytest.raises(ValueError, match="resolution"):
        replace(matched(), resolution_note="ok")
    with pytest.raises(ValueError, match="no settled amount"):
        replace(matched(), status="pending_settlement")


def test_header_needs_utc() -> None:
    with pytest.raises(ValueError, match="UTC"):
        replace(HEADER, generated_at=datetime(2026, 12, 9))


# Memory


def peak_bytes(kind: str, count: int) -> tuple[int, int]:
    """Peak traced memory while writing `count` items from a generator, and the file's size."""
    sink = WatchedSink()
    tracemalloc.start()
    try:
        WRITERS[kind](HEADER, *many_counts(count), many_matched(count), sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, sink.size


# Tracing every allocation makes writing several times slower, so these runs are sized to keep
# the tests quick; holding the items would show: 40,000 of them take over 10 MB.
@pytest.mark.parametrize("kind", ["json", "csv"])
def test_memory_stays_small_for_many_items(kind: str) -> None:
    peak, size = peak_bytes(kind, 40_000)

    assert size > 4 * 2**20
    assert peak < 2 * 2**20


def test_xlsx_memory_does_not_grow_with_the_items() -> None:
    small_peak, small_size = peak_bytes("xlsx", 200)
    peak, size = peak_bytes("xlsx", 1_000)

    assert size > 2 * small_size
    assert peak < small_peak + 2**20
    assert peak < 10 * 2**20


def test_holding_the_items_would_fail_the_memory_check() -> None:
    tracemalloc.start()
    try:
        held = list(many_matched(40_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(held) == 40_000
    assert peak > 10 * 2**20
