"""The reconciliation report as the files finance officers download: JSON and CSV, and what
the XLSX workbook (`payments.settlement.xlsx_report`) shares with them.

Each writer takes the summary and totals counted beforehand and a single pass over the items,
and streams them out without holding them: the items may be a generator over millions of rows.
While streaming, every writer tallies the items and checks (`ReconTotals.check`) that they add
up to the summary and totals it already wrote; if they do not, it raises `AssertionError` rather
than finish a report that contradicts itself.

Amounts: JSON keeps integers of minor units, as the API's JSON does everywhere; CSV writes
decimal strings of major units with the currency's exponent (`12.500` OMR, `150.00` SAR), as
the acquirers' settlement files do; XLSX writes numbers in major units with a number format of
the currency's decimals.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from functools import lru_cache
from typing import BinaryIO

import hijridate

from payments.money import exponent, format_major
from payments.settlement.items import (
    TOTAL_FIELDS,
    ReconItem,
    ReconTotals,
    ReportDetails,
    ReportHeader,
)
from payments.settlement.statuses import STATUSES, ItemStatus

# The item's columns in CSV (and the JSON item's keys, where the resolution is one object).
CSV_COLUMNS = (
    "id",
    "status",
    "payment_id",
    "refund_id",
    "provider_reference",
    "currency",
    "settled_currency",
    "gateway_amount",
    "settled_amount",
    "fee",
    "agency",
    "gateway_date",
    "settlement_date",
    "resolution_note",
    "resolved_by",
    "drift_amount",
    "drift_days",
    "settled_with",
)

STATUS_LABELS: dict[str, tuple[str, str]] = {
    ItemStatus.MATCHED: ("مطابقة", "Matched"),
    ItemStatus.MATCHED_WITHIN_TOLERANCE: ("مطابقة ضمن حد التفاوت", "Matched within tolerance"),
    ItemStatus.AMOUNT_MISMATCH: ("اختلاف في المبلغ", "Amount mismatch"),
    ItemStatus.CURRENCY_MISMATCH: ("اختلاف في العملة", "Currency mismatch"),
    ItemStatus.DUPLICATE: ("مكررة", "Duplicate"),
    ItemStatus.MISSING_IN_GATEWAY: ("غير موجودة في البوابة", "Missing in gateway"),
    ItemStatus.CHARGEBACK: ("استرداد مُعترض عليه", "Chargeback"),
    ItemStatus.CHARGEBACK_REVERSAL: ("إلغاء الاسترداد المُعترض عليه", "Chargeback reversal"),
    ItemStatus.MISSING_IN_SETTLEMENT: ("غير موجودة في التسوية", "Missing in settlement"),
    ItemStatus.PENDING_SETTLEMENT: ("بانتظار التسوية", "Pending settlement"),
}

_CHUNK_BYTES = 64 * 1024
# A spreadsheet runs a cell starting with one of these as a formula; text that comes from an
# acquirer's file or a finance officer must never do that.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What no XLSX cell can hold: the C0 controls XML 1.0 lacks (tab, line feed and carriage return
# are allowed), the non-characters U+FFFE and U+FFFF, and lone surrogates, which UTF-8 cannot
# encode. New notes refuse them, but rows stored before that, or
# text from anywhere else, must not stop a provider's workbook from being written.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class _Chunked:
    """Collects small writes and passes them on in chunks, so a socket is not written per row."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self._parts.append(data)
        self._size += len(data)
        if self._size >= _CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._out.write(b"".join(self._parts))
            self._parts.clear()
            self._size = 0


def validated(
    summary: Mapping[str, int], totals_by_currency: Mapping[str, Mapping[str, int]]
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The summary with every status in order, and the totals in currency order."""
    unknown = set(summary) - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown statuses in the summary: {sorted(unknown)}")
    totals: dict[str, dict[str, int]] = {}
    for currency in sorted(totals_by_currency):
        exponent(currency)  # refuses a currency the gateway does not know
        fields = totals_by_currency[currency]
        if set(fields) != set(TOTAL_FIELDS):
            raise ValueError(f"{currency} totals need exactly {TOTAL_FIELDS}, got {sorted(fields)}")
        totals[currency] = {key: fields[key] for key in TOTAL_FIELDS}
    return {status: summary.get(status, 0) for status in STATUSES}, totals


def tallied(items: Iterable[ReconItem], totals: ReconTotals) -> Iterator[ReconItem]:
    """Pass the items through once, then check they added up before the writer finishes."""
    for item in items:
        totals.add(item)
        yield item
    totals.check()


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def item_json(item: ReconItem) -> dict[str, object]:
    """One item as the API's JSON shows it; amounts stay integers of minor units."""
    resolution = (
        {"note": item.resolution_note, "by": item.resolved_by}
        if item.resolution_note is not None
        else None
    )
    return {
        "id": item.item_id,
        "status": item.status,
        "payment_id": item.payment_id,
        "refund_id": item.refund_id,
        "provider_reference": item.provider_reference,
        "currency": item.currency,
        "settled_currency": item.settled_currency,
        "gateway_amount": item.gateway_amount,
        "settled_amount": item.settled_amount,
        "fee": item.fee,
        "drift": (
            {"amount": item.drift_amount or 0, "days": item.drift_days or 0}
            if item.status == ItemStatus.MATCHED_WITHIN_TOLERANCE
            else None
        ),
        "settled_with": list(item.settled_with),
        "agency": item.agency,
        "gateway_date": _iso(item.gateway_date),
        "settlement_date": _iso(item.settlement_date),
        "resolution": resolution,
    }


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_json(
    header: ReportHeader,
    summary: Mapping[str, int],
    totals_by_currency: Mapping[str, Mapping[str, int]],
    items: Iterable[ReconItem],
    out: BinaryIO,
    *,
    details: ReportDetails | None = None,
) -> None:
    """Write `{"summary": {status: count}, "totals": {currency: {...}}, "items": [...]}`, with
    `period`, `agencies`, `ledger` and `ledger_agrees` before the items when `details` is given."""
    counts, totals = validated(summary, totals_by_currency)
    tally = ReconTotals(counts, totals, details.agencies if details is not None else None)
    sink = _Chunked(out)
    sink.write(f'{{"summary":{_dumps(counts)},"totals":{_dumps(totals)},')
    if details is not None:
        period = {
            "provider": header.provider,
            "from": header.date_from.isoformat(),
            "to": header.date_to.isoformat(),
            "generated_at": header.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "settlement_lag_days": header.settlement_lag_days,
        }
        sink.write(
            f'"period":{_dumps(period)},"agencies":{_dumps(details.agencies)},'
            f'"ledger":{_dumps(details.ledger)},'
            f'"ledger_agrees":{_dumps(details.ledger_agrees)},'
        )
    sink.write('"items":[')
    separator = ""
    for item in tallied(items, tally):
        sink.write(separator + _dumps(item_json(item)))
        separator = ","
    sink.write("]}\n")
    sink.flush()


def _text_cell(text: str | None) -> str:
    if text is None:
        return ""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _major_text(amount_minor: int | None, currency: str) -> str:
    return "" if amount_minor is None else format_major(amount_minor, currency)


def write_csv(
    header: ReportHeader,
    summary: Mapping[str, int],
    totals_by_currency: Mapping[str, Mapping[str, int]],
    items: Iterable[ReconItem],
    out: BinaryIO,
    *,
    details: ReportDetails | None = None,
) -> None:
    """Write UTF-8 CSV with a byte-order mark (so Excel reads the Arabic), one row per item.

    Amounts are decimal major units; text a spreadsheet would take for a formula is prefixed
    with an apostrophe.
    """
    del header
    counts, totals = validated(summary, totals_by_currency)
    tally = ReconTotals(counts, totals, details.agencies if details is not None else None)
    sink = _Chunked(out)
    sink.write("\ufeff")
    writer = csv.writer(sink, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in tallied(items, tally):
        writer.writerow(
            (
                _text_cell(item.item_id),
                item.status,
                _text_cell(item.payment_id),
                _text_cell(item.refund_id),
                _text_cell(item.provider_reference),
                item.currency,
                item.settled_currency or "",
                _major_text(item.gateway_amount, item.currency),
                _major_text(item.settled_amount, item.settled_currency or item.currency),
                _major_text(item.fee, item.settled_currency or item.currency),
                _text_cell(item.agency),
                _iso(item.gateway_date) or "",
                _iso(item.settlement_date) or "",
                _text_cell(item.resolution_note),
                _text_cell(item.resolved_by),
                _major_text(item.drift_amount, item.currency),
                "" if item.drift_days is None else str(item.drift_days),
                _text_cell(" ".join(item.settled_with)),
            )
        )
    sink.flush()


# (Arabic / English title, column width) of the Items sheet, in order.
ITEM_COLUMNS: tuple[tuple[str, float], ...] = (
    ("البند / Item", 30),
    ("الحالة / Status (Arabic)", 22),
    ("رمز الحالة / Status", 22),
    ("معرّف الدفعة / Payment ID", 26),
    ("معرّف الاسترداد / Refund ID", 26),
    ("مرجع المزوّد / Provider reference", 30),
    ("العملة / Currency", 10),
    ("عملة التسوية / Settled currency", 10),
    ("مبلغ البوابة / Gateway amount", 16),
    ("المبلغ المسوّى / Settled amount", 16),
    ("الرسوم / Fee", 12),
    ("الجهة / Agency", 24),
    ("تاريخ البوابة (ميلادي) / Gateway date", 14),
    ("تاريخ البوابة (هجري) / Gateway date (Hijri)", 16),
    ("تاريخ التسوية (ميلادي) / Settlement date", 14),
    ("تاريخ التسوية (هجري) / Settlement date (Hijri)", 16),
    ("ملاحظة المعالجة / Resolution note", 40),
    ("عولجت بواسطة / Resolved by", 20),
    ("فرق المبلغ / Drift amount", 12),
    ("فرق الأيام / Drift days", 10),
    ("يسوّي مع / Settled with", 30),
)


@lru_cache(maxsize=4096)
def hijri_text(day: date) -> str | None:
    """The Umm al-Qura date, `1448-06-21 هـ`; None outside the calendar's table (1924-2077)."""
    try:
        hijri = hijridate.Gregorian(day.year, day.month, day.day).to_hijri()
    except OverflowError:
        return None
    return f"{hijri.year:04d}-{hijri.month:02d}-{hijri.day:02d} هـ"


def number_format(currency: str) -> str:
    """`#,##0.000` for a three-decimal currency, `#,##0.00` for two, `#,##0` for none."""
    decimals = exponent(currency)
    return "#,##0." + "0" * decimals if decimals else "#,##0"


LEDGER_TITLES = (
    ("captured", "مبالغ التحصيل في البوابة / Captured (gateway)"),
    ("captured_posted", "التحصيل المقيد في الدفتر / Captured (ledger)"),
    ("refunded", "المبالغ المستردة في البوابة / Refunded (gateway)"),
    ("refunded_posted", "الاسترداد المقيد في الدفتر / Refunded (ledger)"),
    ("settled", "المسوّى المطابق / Settled, matched lines"),
    ("settled_posted", "التسوية المقيدة في الدفتر / Settled (ledger)"),
)


def unwritable(text: str) -> bool:
    """Whether `text` holds a character no XLSX cell can hold."""
    return _UNWRITABLE.search(text) is not None


def writable(text: str) -> str:
    """`text` with every character no XLSX cell can hold written as JSON would escape it
    (`\\u001b`)."""
    if _UNWRITABLE.search(text) is None:
        return text
    return _UNWRITABLE.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"
