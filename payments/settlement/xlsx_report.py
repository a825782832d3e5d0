"""The reconciliation report as an XLSX workbook: a `Summary` sheet and an `Items` sheet, right
to left, with Arabic and English titles.

It is written by xlsxwriter in its constant-memory mode: each row goes to a temporary file as
soon as the next one starts, so memory does not grow with the items, and the workbook is
zipped from those files at the end. Every text is written as a string (never a formula or an
error value, whatever it starts with), every amount as the exact decimal number of major units
with the currency's decimals as its format, every date as a date.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import BinaryIO

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from payments.money import CURRENCY_NAMES_AR, exponent
from payments.settlement.items import (
    ReconItem,
    ReconTotals,
    ReportDetails,
    ReportHeader,
)
from payments.settlement.report_writers import (
    ITEM_COLUMNS,
    LEDGER_TITLES,
    STATUS_LABELS,
    hijri_text,
    number_format,
    tallied,
    unwritable,
    validated,
    writable,
)
from payments.settlement.statuses import STATUSES

Cell = str | int | Decimal | date | datetime | None
_DATE_FORMAT = "yyyy-mm-dd"
COPY_BYTES = 1024 * 1024
_LINE = "\n"


class _Styles:
    """The workbook's few formats, made once: xlsxwriter keeps one per distinct look."""

    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self._workbook = workbook
        self.title = workbook.add_format({"bold": True, "text_wrap": True, "valign": "top"})
        self.wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
        self.date = workbook.add_format({"num_format": _DATE_FORMAT})
        self.moment = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._amounts: dict[str, Format] = {}

    def amount(self, currency: str) -> Format:
        found = self._amounts.get(currency)
        if found is None:
            found = self._amounts[currency] = self._workbook.add_format(
                {"num_format": number_format(currency)}
            )
        return found


class _Amount:
    """An amount cell: minor units of a currency."""

    __slots__ = ("currency", "minor")

    def __init__(self, minor: int, currency: str) -> None:
        self.minor = minor
        self.currency = currency


class _Title(str):
    """A title cell: bold and wrapped."""

    __slots__ = ()


class _Wrapped(str):
    """A text cell whose line breaks show."""

    __slots__ = ()


class _Rows:
    """Appends rows to a sheet, each cell written by what it is."""

    def __init__(self, sheet: Worksheet, styles: _Styles) -> None:
        self._sheet = sheet
        self._styles = styles
        self.row = 0

    def append(self, cells: Sequence[Cell | _Amount]) -> None:
        sheet, styles, row = self._sheet, self._styles, self.row
        # One look for a character no cell can hold across the row's texts, not one per cell.
        dirty = unwritable(_LINE.join(value for value in cells if isinstance(value, str)))
        for col, value in enumerate(cells):
            if value is None:
                continue
            if isinstance(value, _Amount):
                # The exact amount as a Decimal: xlsxwriter formats the number it is given
                # (`{:.16G}`), so the file holds the digits as written (`12.500`), never a
                # float's; Excel reads them into the double nearest them, as if typed by hand.
                exact = Decimal(value.minor).scaleb(-exponent(value.currency))
                sheet.write_number(row, col, exact, styles.amount(value.currency))
            elif isinstance(value, str):
                text = writable(value) if dirty else value
                style = (
                    styles.title
                    if isinstance(value, _Title)
                    else styles.wrap
                    if isinstance(value, _Wrapped) and "\n" in text
                    else None
                )
                sheet.write_string(row, col, text, style)
            elif isinstance(value, datetime):
                sheet.write_datetime(row, col, value, styles.moment)
            elif isinstance(value, date):
                sheet.write_datetime(
                    row, col, datetime(value.year, value.month, value.day), styles.date
                )
            else:
                sheet.write_number(row, col, value)
        self.row += 1


def _amount(minor: int | None, currency: str) -> _Amount | None:
    return None if minor is None else _Amount(minor, currency)


def write_xlsx(
    header: ReportHeader,
    summary: Mapping[str, int],
    totals_by_currency: Mapping[str, Mapping[str, int]],
    items: Iterable[ReconItem],
    out: BinaryIO,
    *,
    details: ReportDetails | None = None,
) -> None:
    """Write the workbook to `out`: the summary first, then the items as they stream."""
    counts, totals = validated(summary, totals_by_currency)
    # Built in a file of its own and copied to `out` once whole: a report that fails halfway
    # (items that contradict the summary) is still closed, which removes its sheets'
    # temporary files, and nothing of it reaches `out`.
    with tempfile.TemporaryFile() as built:
        workbook = xlsxwriter.Workbook(
            built,
            {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False},
        )
        try:
            _write_workbook(workbook, header, counts, totals, items, details)
        except BaseException:
            with contextlib.suppress(Exception):
                workbook.close()
            raise
        workbook.close()
        built.seek(0)
        shutil.copyfileobj(built, out, COPY_BYTES)


def _write_workbook(  # noqa: PLR0917 - one private call site
    workbook: xlsxwriter.Workbook,
    header: ReportHeader,
    counts: Mapping[str, int],
    totals: Mapping[str, Mapping[str, int]],
    items: Iterable[ReconItem],
    details: ReportDetails | None,
) -> None:
    tally = ReconTotals(counts, totals, details.agencies if details is not None else None)
    styles = _Styles(workbook)
    _summary_sheet(workbook, styles, header, counts, totals, details)
    sheet = workbook.add_worksheet("Items")
    sheet.right_to_left()
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, sum(counts.values()), len(ITEM_COLUMNS) - 1)
    for col, (_, width) in enumerate(ITEM_COLUMNS):
        sheet.set_column(col, col, width)
    rows = _Rows(sheet, styles)
    rows.append([_Title(title) for title, _ in ITEM_COLUMNS])
    for item in tallied(items, tally):
        settled_in = item.settled_currency or item.currency
        rows.append(
            [
                item.item_id,
                STATUS_LABELS[item.status][0],
                item.status,
                item.payment_id,
                item.refund_id,
                item.provider_reference,
                item.currency,
                item.settled_currency,
                _amount(item.gateway_amount, item.currency),
                _amount(item.settled_amount, settled_in),
                _amount(item.fee, settled_in),
                item.agency,
                item.gateway_date,
                hijri_text(item.gateway_date) if item.gateway_date else None,
                item.settlement_date,
                hijri_text(item.settlement_date) if item.settlement_date else None,
                _Wrapped(item.resolution_note) if item.resolution_note is not None else None,
                item.resolved_by,
                _amount(item.drift_amount, item.currency),
                item.drift_days,
                " ".join(item.settled_with) or None,
            ]
        )


def _summary_sheet(  # noqa: PLR0917 - one private call site
    workbook: xlsxwriter.Workbook,
    styles: _Styles,
    header: ReportHeader,
    counts: Mapping[str, int],
    totals: Mapping[str, Mapping[str, int]],
    details: ReportDetails | None,
) -> None:
    sheet = workbook.add_worksheet("Summary")
    sheet.right_to_left()
    for col, width in enumerate((34, 26, 12, 18, 18, 14)):
        sheet.set_column(col, col, width)
    rows = _Rows(sheet, styles)
    rows.append([_Title("تقرير التسوية / Reconciliation report")])
    rows.append(["مزود الخدمة / Provider", header.provider])
    for label, day in (("من / From", header.date_from), ("إلى / To", header.date_to)):
        rows.append([label, day, hijri_text(day)])
    generated = header.generated_at.astimezone(UTC).replace(tzinfo=None)
    rows.append(["أُنشئ في (UTC) / Generated at (UTC)", generated])
    rows.append(["مهلة التسوية بالأيام / Settlement lag (days)", header.settlement_lag_days])
    rows.append([])
    titles = ("الحالة / Status (Arabic)", "رمز الحالة / Status", "العدد / Count")
    rows.append([_Title(title) for title in titles])
    for status in STATUSES:
        rows.append([STATUS_LABELS[status][0], status, counts[status]])
    rows.append([])
    rows.append(
        [
            _Title(title)
            for title in (
                "العملة / Currency",
                "اسم العملة / Currency name",
                "العدد / Count",
                "مبلغ البوابة / Gateway amount",
                "المبلغ المسوّى / Settled amount",
                "الرسوم / Fees",
            )
        ]
    )
    for currency, fields in totals.items():
        rows.append(
            [
                currency,
                CURRENCY_NAMES_AR.get(currency),
                fields["count"],
                _Amount(fields["gateway_amount"], currency),
                _Amount(fields["settled_amount"], currency),
                _Amount(fields["fee"], currency),
            ]
        )
    if details is not None:
        _details(rows, details)


def _details(rows: _Rows, details: ReportDetails) -> None:
    """The Summary sheet's totals per agency and the ledger's side of the match."""
    rows.append([])
    rows.append(
        [
            _Title(title)
            for title in (
                "الجهة / Agency",
                "العملة / Currency",
                "العدد / Count",
                "مبلغ البوابة / Gateway amount",
                "المبلغ المسوّى / Settled amount",
                "الرسوم / Fees",
            )
        ]
    )
    for agency, by_currency in details.agencies.items():
        for currency, fields in by_currency.items():
            rows.append(
                [
                    agency or "—",
                    currency,
                    fields["count"],
                    _Amount(fields["gateway_amount"], currency),
                    _Amount(fields["settled_amount"], currency),
                    _Amount(fields["fee"], currency),
                ]
            )
    rows.append([])
    agrees = "متطابق / Agrees" if details.ledger_agrees else "غير متطابق / DISAGREES"
    rows.append([_Title("دفتر الأستاذ / Ledger"), agrees])
    rows.append([_Title("العملة / Currency"), *(_Title(title) for _, title in LEDGER_TITLES)])
    for currency, fields in details.ledger.items():
        rows.append([currency, *(_Amount(fields[key], currency) for key, _ in LEDGER_TITLES)])
