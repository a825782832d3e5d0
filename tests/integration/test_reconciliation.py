"""The reconciliation report on both databases: a scripted month of sandbox payments and refunds
across agencies and currencies, settled by files edited into every kind of break, reported as
JSON, CSV and XLSX through the finance endpoint; its totals adding up and agreeing with the
ledger; every capture, refund and settlement line in exactly one item; the settlement lag;
resolving breaks; refused parameters; and the `gateway reconcile` and `breaks resolve` commands.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hijridate
import openpyxl
import pytest
from flask.testing import FlaskClient
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from werkzeug.test import TestResponse

from payments import clock
from payments.gateway import Gateway
from payments.models import Event, ReconciliationResolution, SettlementLine
from payments.money import parse_major
from payments.service.audit import audit
from payments.settlement.report_writers import CSV_COLUMNS, ITEM_COLUMNS, hijri_text
from payments.settlement.reports import MAX_PERIOD_DAYS
from payments.settlement.sandbox_file import HEADER
from payments.settlement.statuses import STATUSES
from payments.webhooks.models import DeliveryJob
from tests.conftest import auth, count_rows
from tests.integration.ledger_support import gateway_cli
from tests.integration.test_settlement_import import (
    DAYS,
    Month,
    _at,
    _export,
    _import,
    _month,
    _pay,
    _reference,
)

# The report's moment: the third day's captures are inside the two-day lag, the others past it.
NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
NOVEMBER = ("2026-11-01", "2026-11-30")
ITEM_KEYS = {
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
    "resolution",
    "drift",
    "settled_with",
}
RESOLUTIONS = "/v1/reports/reconciliation/resolutions"


@pytest.fixture(autouse=True)
def _system_clock_after() -> Iterator[None]:
    yield
    clock.set_clock(None)


def _now(moment: dt.datetime) -> None:
    clock.set_clock(lambda: moment)


@dataclasses.dataclass
class Scripted:
    """The scripted month, the settlement files that settle part of it, and what the report
    must say of each item."""

    month: Month
    files: dict[str, str]  # "A", "B", "C" -> settlement id
    contents: list[str]  # the three files as imported
    expected: dict[str, str]  # item id -> status
    mismatch_line: str  # the amount_mismatch line's item id
    currency_line: str  # the currency_mismatch line's item id
    matched_line: str  # the first day's first OMR capture, matched
    unknown_line: str  # the line for a reference the gateway does not know
    missing: str  # the payment no line settles, past the lag

    @property
    def captures_and_refunds(self) -> list[str]:
        ids = [pid for paid in self.month.payments.values() for pid in paid]
        return ids + [rid for refunded in self.month.refunds.values() for rid in refunded]


def _rows(content: str) -> list[list[str]]:
    return [line.split(",") for line in content.splitlines()[1:]]


def _file(rows: list[list[str]]) -> str:
    return "\n".join([HEADER, *(",".join(row) for row in rows)]) + "\n"


def _scripted(gw: Gateway, client: FlaskClient) -> Scripted:
    """The month of test_settlement_import, settled by three files, reported on at `NOW`:

    - A (3 Nov): a matched line per capture but one with a wrong amount, one whose OMR is
      stated as KWD, and a line for a reference the gateway does not know;
    - B (18 Nov): a KWD capture settled again (imported as a duplicate), and a second wrong
      amount for the mismatched capture (a duplicate in the report: the first line pairs);
    - C (17 Nov): the day's captures and its full and partial refunds, less one SAR capture;
    - the 28 Nov captures and refund are in no file: inside the lag.
    """
    month = _month(gw, client)
    _now(NOW)
    first, second, third = (month.payments[day.isoformat()] for day in DAYS)
    a_rows = _rows(_export(gw, DAYS[0]))
    by_reference = {row[1]: row for row in a_rows}
    assert [by_reference[_reference(gw, pid)] for pid in first] == a_rows
    a_rows[1][4:7] = ["1.050", "0.000", "1.050"]  # 1.005 OMR settled as 1.050
    a_rows[2][3] = "KWD"  # 999.999 OMR settled as KWD
    a_rows.append(["2026-11-03", "sbx_unknown_ref", "payment", "SAR", "10.00", "0.00", "10.00"])
    kwd = a_rows[3]
    b_rows = [
        ["2026-11-18", kwd[1], "payment", *kwd[3:]],
        ["2026-11-18", a_rows[1][1], "payment", "OMR", "1.000", "0.000", "1.000"],
    ]
    missing = second[7]
    c_rows = [row for row in _rows(_export(gw, DAYS[1])) if row[1] != _reference(gw, missing)]
    assert len(c_rows) == 8 + 2  # the day's captures less one, and two refunds
    contents = [_file(a_rows), _file(b_rows), _file(c_rows)]
    files = {
        name: _import(gw, content, name=f"{name}.csv").settlement.id
        for name, content in zip("ABC", contents, strict=True)
    }
    a, b, c = (f"{files[name]}:{{}}" for name in "ABC")
    expected = {a.format(n): "matched" for n in range(2, 11)}
    expected |= {
        a.format(3): "amount_mismatch",
        a.format(4): "currency_mismatch",
        a.format(11): "missing_in_gateway",
        b.format(2): "duplicate",
        b.format(3): "duplicate",
    }
    expected |= {c.format(n): "matched" for n in range(2, 12)}
    expected[missing] = "missing_in_settlement"
    expected |= dict.fromkeys([*third, *month.refunds[DAYS[2].isoformat()]], "pending_settlement")
    return Scripted(
        month=month,
        files=files,
        contents=contents,
        expected=expected,
        mismatch_line=a.format(3),
        currency_line=a.format(4),
        matched_line=a.format(2),
        unknown_line=a.format(11),
        missing=missing,
    )


def _report(
    client: FlaskClient, key: str, fmt: str = "json", period: tuple[str, str] = NOVEMBER
) -> TestResponse:
    return client.get(
        "/v1/reports/reconciliation",
        query_string={"provider": "sandbox", "from": period[0], "to": period[1], "format": fmt},
        headers=auth(key),
    )


def _json(client: FlaskClient, key: str, period: tuple[str, str] = NOVEMBER) -> dict[str, Any]:
    response = _report(client, key, "json", period)
    assert response.status_code == 200, response.json
    assert response.json is not None
    return dict(response.json)


def _csv(client: FlaskClient, key: str) -> list[dict[str, str]]:
    response = _report(client, key, "csv")
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/csv"
    assert response.data.startswith(b"\xef\xbb\xbf")
    reader = csv.reader(io.StringIO(response.data.decode("utf-8-sig"), newline=""))
    header = next(reader)
    assert header == [*CSV_COLUMNS]
    assert ",".join(header) == (
        "id,status,payment_id,refund_id,provider_reference,currency,settled_currency,"
        "gateway_amount,settled_amount,fee,agency,gateway_date,settlement_date,"
        "resolution_note,resolved_by,drift_amount,drift_days,settled_with"
    )
    return [dict(zip(header, row, strict=True)) for row in reader]


def _xlsx(client: FlaskClient, key: str) -> openpyxl.Workbook:
    response = _report(client, key, "xlsx")
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return openpyxl.load_workbook(io.BytesIO(response.data))


def _item_rows(ws: Worksheet) -> dict[str, tuple[Any, ...]]:
    """The Items sheet's rows by item id (column A)."""
    rows = list(ws.iter_rows(min_row=2))
    return {str(row[0].value): tuple(row) for row in rows}


def _resolve(client: FlaskClient, key: str, item: str, note: str = "explained") -> TestResponse:
    return client.post(
        RESOLUTIONS, json={"provider": "sandbox", "item": item, "note": note}, headers=auth(key)
    )


def _is_error(response: TestResponse, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.json)
    body = response.json
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert {"type", "code", "message"} <= set(body["error"]), body


# -- 1. every status, in every format ------------------------------------------------------------


def test_each_item_has_its_status_in_json(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    report = _json(client, finance_key)
    items = report["items"]
    assert all(set(item) == ITEM_KEYS for item in items)
    assert {item["id"]: item["status"] for item in items} == script.expected
    assert len(items) == len(script.expected)
    assert report["summary"] == dict(Counter(script.expected.values())) | {
        status: 0 for status in STATUSES if status not in script.expected.values()
    }
    assert list(report["summary"]) == list(STATUSES)
    assert report["period"] == {
        "provider": "sandbox",
        "from": NOVEMBER[0],
        "to": NOVEMBER[1],
        "generated_at": "2026-11-29T12:00:00Z",
        "settlement_lag_days": 2,
    }
    by_id = {item["id"]: item for item in items}
    matched = by_id[script.matched_line]
    assert matched["payment_id"] == script.month.payments[DAYS[0].isoformat()][0]
    assert (matched["currency"], matched["gateway_amount"], matched["settled_amount"]) == (
        "OMR",
        12_500,
        12_500,
    )
    assert matched["fee"] == 288  # 1.5% half up + 0.100
    assert (matched["agency"], matched["gateway_date"], matched["settlement_date"]) == (
        "om-moh",
        "2026-11-03",
        "2026-11-03",
    )
    assert matched["refund_id"] is None and matched["resolution"] is None
    mismatch = by_id[script.mismatch_line]
    assert (mismatch["gateway_amount"], mismatch["settled_amount"]) == (1_005, 1_050)
    other_currency = by_id[script.currency_line]
    assert (other_currency["currency"], other_currency["settled_currency"]) == ("OMR", "KWD")
    assert other_currency["gateway_amount"] == 999_999
    unknown = by_id[script.unknown_line]
    assert unknown["payment_id"] is None and unknown["gateway_amount"] is None
    assert (unknown["provider_reference"], unknown["agency"]) == ("sbx_unknown_ref", None)
    duplicates = [item for item in items if item["status"] == "duplicate"]
    assert all(item["gateway_amount"] is None for item in duplicates)
    assert all(item["payment_id"] is not None for item in duplicates)
    refunds = {item["refund_id"]: item for item in items if item["refund_id"]}
    full, partial = script.month.refunds[DAYS[1].isoformat()]
    assert refunds[full]["status"] == "matched"
    assert (refunds[full]["gateway_amount"], refunds[full]["settled_amount"]) == (-12_500, -12_500)
    assert (refunds[partial]["currency"], refunds[partial]["gateway_amount"]) == ("KWD", -500)
    assert refunds[partial]["status"] == "matched" and refunds[partial]["fee"] == 0
    missing = by_id[script.missing]
    assert (missing["currency"], missing["gateway_amount"], missing["settled_amount"]) == (
        "SAR",
        1_005,
        None,
    )
    assert (missing["settled_currency"], missing["settlement_date"]) == (None, None)
    assert missing["gateway_date"] == "2026-11-17"


def test_each_item_has_its_status_in_csv(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    rows = _csv(client, finance_key)
    assert {row["id"]: row["status"] for row in rows} == script.expected
    assert len(rows) == len(script.expected)
    by_id = {row["id"]: row for row in rows}
    matched = by_id[script.matched_line]
    assert (matched["gateway_amount"], matched["settled_amount"], matched["fee"]) == (
        "12.500",
        "12.500",
        "0.288",
    )
    assert (matched["gateway_date"], matched["settlement_date"]) == ("2026-11-03", "2026-11-03")
    assert (matched["resolution_note"], matched["resolved_by"]) == ("", "")
    unknown = by_id[script.unknown_line]
    assert (unknown["gateway_amount"], unknown["settled_amount"], unknown["payment_id"]) == (
        "",
        "10.00",
        "",
    )
    assert by_id[script.missing]["gateway_amount"] == "10.05"  # SAR: two decimals
    other_currency = by_id[script.currency_line]
    assert (other_currency["currency"], other_currency["settled_currency"]) == ("OMR", "KWD")
    full = script.month.refunds[DAYS[1].isoformat()][0]
    refund = next(row for row in rows if row["refund_id"] == full)
    assert (refund["gateway_amount"], refund["settled_amount"]) == ("-12.500", "-12.500")


def test_each_item_has_its_status_in_xlsx(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    book = _xlsx(client, finance_key)
    assert book.sheetnames == ["Summary", "Items"]
    ws = book["Items"]
    titles = [cell.value for cell in ws[1]]
    assert titles == [title for title, _ in ITEM_COLUMNS]
    assert titles[2] == "رمز الحالة / Status"
    assert titles[8] == "مبلغ البوابة / Gateway amount"
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:U{1 + len(script.expected)}"
    rows = _item_rows(ws)
    assert {item: row[2].value for item, row in rows.items()} == script.expected
    matched = rows[script.matched_line]
    assert matched[1].value == "مطابقة"
    assert [cell.value for cell in matched[8:11]] == [12.5, 12.5, 0.288]
    assert [cell.number_format for cell in matched[8:11]] == ["#,##0.000"] * 3
    assert matched[12].value == dt.datetime(2026, 11, 3)
    assert matched[12].number_format == "yyyy-mm-dd"
    # 3 Nov 2026 is 23 Jumada al-Awwal 1448 in the Umm al-Qura calendar.
    hijri = hijridate.Gregorian(2026, 11, 3).to_hijri()
    assert (hijri.year, hijri.month, hijri.day) == (1448, 5, 23)
    assert matched[13].value == "1448-05-23 هـ" == hijri_text(dt.date(2026, 11, 3))
    assert matched[15].value == hijri_text(dt.date(2026, 11, 3))
    missing = rows[script.missing]
    assert (missing[8].value, missing[8].number_format) == (10.05, "#,##0.00")
    assert missing[9].value is None and missing[14].value is None and missing[15].value is None
    assert missing[13].value == hijri_text(dt.date(2026, 11, 17)) == "1448-06-07 هـ"
    full = script.month.refunds[DAYS[1].isoformat()][0]
    refund = next(row for row in rows.values() if row[4].value == full)
    assert (refund[8].value, refund[8].number_format) == (-12.5, "#,##0.000")
    summary = book["Summary"]
    counts = {row[1]: row[2] for row in summary.iter_rows(values_only=True) if row[1] in STATUSES}
    assert counts == {status: list(script.expected.values()).count(status) for status in STATUSES}


# -- 2. the totals add up ------------------------------------------------------------------------


def _sum_items(items: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """Agency ("" for none) -> currency -> totals, counted from the items the way the report
    counts: the gateway's side in its currency, the settled side in the line's."""
    sums: dict[str, dict[str, dict[str, int]]] = {}

    def add(agency: str, currency: str, field: str, value: int | None) -> None:
        fields = sums.setdefault(agency, {}).setdefault(
            currency, dict.fromkeys(("count", "gateway_amount", "settled_amount", "fee"), 0)
        )
        fields[field] += value or 0

    for item in items:
        agency = item["agency"] or ""
        settled_currency = item["settled_currency"] or item["currency"]
        add(agency, item["currency"], "count", 1)
        add(agency, item["currency"], "gateway_amount", item["gateway_amount"])
        add(agency, settled_currency, "settled_amount", item["settled_amount"])
        add(agency, settled_currency, "fee", item["fee"])
    return sums


def test_the_totals_add_up_and_agree_with_the_ledger(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    report = _json(client, finance_key)
    items = report["items"]
    by_agency = _sum_items(items)
    assert report["agencies"] == by_agency
    by_currency: dict[str, dict[str, int]] = {}
    for currencies in by_agency.values():
        for currency, fields in currencies.items():
            total = by_currency.setdefault(currency, dict.fromkeys(fields, 0))
            for field, value in fields.items():
                total[field] += value
    assert report["totals"] == by_currency
    assert set(report["totals"]) == {"OMR", "KWD", "SAR"}
    assert report["summary"] == {
        status: sum(1 for item in items if item["status"] == status) for status in STATUSES
    }
    assert sum(report["summary"].values()) == len(items)
    # The settled side is exactly the files' lines, all dated in November.
    gross: Counter[str] = Counter()
    fees: Counter[str] = Counter()
    for content in script.contents:
        for row in _rows(content):
            assert NOVEMBER[0] <= row[0] <= NOVEMBER[1]
            gross[row[3]] += parse_major(row[4], row[3])
            fees[row[3]] += parse_major(row[5], row[3])
    for currency, fields in report["totals"].items():
        assert fields["settled_amount"] == gross[currency], currency
        assert fields["fee"] == fees[currency], currency
    assert report["ledger_agrees"] is True
    for currency, side in report["ledger"].items():
        assert side["captured"] == side["captured_posted"], currency
        assert side["refunded"] == side["refunded_posted"], currency
        assert side["settled"] == side["settled_posted"], currency
    matched_gross: Counter[str] = Counter()
    for item in items:
        if item["status"] == "matched":
            matched_gross[item["currency"]] += item["settled_amount"]
    assert {c: side["settled"] for c, side in report["ledger"].items()} == dict(matched_gross)
    assert report["ledger"]["OMR"]["captured"] == 12_500 + 12_501 + 12_502 + 3 * (1_005 + 999_999)
    assert report["ledger"]["OMR"]["refunded"] == 12_500
    assert report["ledger"]["KWD"]["refunded"] == 500
    assert report["ledger"]["SAR"]["refunded"] == 1


# -- 3. everything in exactly one item -----------------------------------------------------------


def _gateway_targets(items: list[dict[str, Any]]) -> Counter[str]:
    """The captures and refunds the items hold the gateway's side of."""
    return Counter(
        item["refund_id"] or item["payment_id"]
        for item in items
        if item["gateway_amount"] is not None
    )


def test_every_capture_refund_and_line_is_in_exactly_one_item(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    # A December line settling a November capture, and one for December alone.
    third = script.month.payments[DAYS[2].isoformat()]
    december = _rows(_export(gw, DAYS[2]))[:1]
    december[0][0] = "2026-12-01"
    december.append(
        ["2026-12-01", "sbx_december_only", "payment", "OMR", "2.000", "0.000", "2.000"]
    )
    later = _import(gw, _file(december), name="D.csv").settlement.id
    items = _json(client, finance_key)["items"]
    targets = _gateway_targets(items)
    assert targets == Counter(script.captures_and_refunds)
    assert all(count == 1 for count in targets.values())
    lines = Counter(item["id"] for item in items if item["id"].startswith("stl_"))
    expected_lines = [
        f"{script.files[name]}:{n}"
        for name, content in zip("ABC", script.contents, strict=True)
        for n in range(2, 2 + len(_rows(content)))
    ]
    assert lines == Counter([*expected_lines, f"{later}:2"])
    settled_late = next(item for item in items if item["id"] == f"{later}:2")
    assert (settled_late["status"], settled_late["payment_id"]) == ("matched", third[0])
    assert (settled_late["gateway_date"], settled_late["settlement_date"]) == (
        "2026-11-28",
        "2026-12-01",
    )
    assert f"{later}:3" not in lines  # dated in December, and nothing of November's


# -- 4. the settlement lag -----------------------------------------------------------------------


def _status_of(client: FlaskClient, key: str, payment: str) -> str:
    items = _json(client, key)["items"]
    found = [str(item["status"]) for item in items if item["payment_id"] == payment]
    assert len(found) == 1, items
    return found[0]


def test_an_unsettled_capture_is_pending_within_the_lag_and_missing_after(
    gw: Gateway, client: FlaskClient, finance_key: str, agency_key: str
) -> None:
    _at(DAYS[2], 11)  # 28 Nov, 11:00
    payment = _pay(client, agency_key, 12_500, "OMR")
    # With the two-day lag it is due in the file of 30 Nov, so missing from that day on.
    for moment, status in (
        (dt.datetime(2026, 11, 28, 23, 59, 59, tzinfo=dt.UTC), "pending_settlement"),
        (dt.datetime(2026, 11, 29, 23, 59, 59, tzinfo=dt.UTC), "pending_settlement"),
        (dt.datetime(2026, 11, 30, 0, tzinfo=dt.UTC), "missing_in_settlement"),
    ):
        _now(moment)
        assert _status_of(client, finance_key, payment) == status, moment
    # With no lag it is due in the file of its own day: missing the same day.
    _now(dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC))
    gw.settings = dataclasses.replace(gw.settings, settlement_lag_days=0)
    assert _status_of(client, finance_key, payment) == "missing_in_settlement"
    gw.settings = dataclasses.replace(gw.settings, settlement_lag_days=1)
    assert _status_of(client, finance_key, payment) == "pending_settlement"
    gw.settings = dataclasses.replace(gw.settings, settlement_lag_days=5)
    _now(dt.datetime(2026, 12, 2, 23, 59, 59, tzinfo=dt.UTC))
    assert _status_of(client, finance_key, payment) == "pending_settlement"
    _now(dt.datetime(2026, 12, 3, 0, tzinfo=dt.UTC))
    assert _status_of(client, finance_key, payment) == "missing_in_settlement"
    assert _json(client, finance_key)["period"]["settlement_lag_days"] == 5


# -- 5. resolving breaks -------------------------------------------------------------------------


def test_a_resolution_shows_on_the_report_and_changes_nothing_else(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    before = count_rows(gw)
    missing = _resolve(client, finance_key, script.missing, "Acquirer settles it on 2 Dec")
    assert missing.status_code == 201, missing.json
    body = missing.json
    assert body is not None
    assert set(body) == {
        "object",
        "provider",
        "item",
        "status",
        "note",
        "resolved_by",
        "created_at",
    }
    assert body["object"] == "reconciliation_resolution"
    assert (body["provider"], body["item"], body["status"]) == (
        "sandbox",
        script.missing,
        "missing_in_settlement",
    )
    assert body["note"] == "Acquirer settles it on 2 Dec"
    assert body["created_at"] == "2026-11-29T12:00:00.000Z"
    who = body["resolved_by"]
    assert who
    line = _resolve(client, finance_key, script.mismatch_line, "  Short-paid; credited later  ")
    assert line.status_code == 201, line.json
    assert line.json is not None
    assert (line.json["item"], line.json["status"]) == (script.mismatch_line, "amount_mismatch")
    assert line.json["note"] == "Short-paid; credited later"
    after = count_rows(gw)
    assert after.pop("reconciliation_resolutions") == before.pop("reconciliation_resolutions") + 2
    # The line's money leaves suspense in one ledger transaction; the capture no line settled
    # moves nothing.
    assert after.pop("ledger_transactions") == before.pop("ledger_transactions") + 1
    ledger_rows = ("ledger_postings", "ledger_accounts", "ledger_chain", "ledger_unsealed")
    for table in ledger_rows:
        after.pop(table, None), before.pop(table, None)
    assert after == before
    assert audit(gw).ok, audit(gw).problems

    notes = {
        script.missing: "Acquirer settles it on 2 Dec",
        script.mismatch_line: "Short-paid; credited later",
    }
    items = _json(client, finance_key)["items"]
    assert {item["id"]: item["status"] for item in items} == script.expected
    assert {item["id"]: item["resolution"] for item in items if item["resolution"]} == {
        item: {"note": note, "by": who} for item, note in notes.items()
    }
    rows = {row["id"]: row for row in _csv(client, finance_key)}
    for item, note in notes.items():
        assert (rows[item]["status"], rows[item]["resolution_note"]) == (
            script.expected[item],
            note,
        )
        assert rows[item]["resolved_by"] == who
    assert sum(1 for row in rows.values() if row["resolution_note"]) == 2
    sheet = _item_rows(_xlsx(client, finance_key)["Items"])
    for item, note in notes.items():
        assert [cell.value for cell in sheet[item][16:18]] == [note, who]
        assert sheet[item][2].value == script.expected[item]


def test_a_break_is_resolved_once_and_only_a_break(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    assert _resolve(client, finance_key, script.unknown_line).status_code == 201
    settled_payment = script.month.payments[DAYS[0].isoformat()][0]
    before = count_rows(gw)
    again = _resolve(client, finance_key, script.unknown_line, "once more")
    _is_error(again, 409)
    assert again.json is not None and again.json["error"]["code"] == "already_resolved"
    for matched in (script.matched_line, settled_payment):
        _is_error(_resolve(client, finance_key, matched), 422)
    for unknown in (
        f"{script.files['A']}:99",
        "stl_nosuchfile:2",
        "pay_nosuchpayment",
        "nothing",
    ):
        _is_error(_resolve(client, finance_key, unknown), 404)
    assert count_rows(gw) == before
    items = {item["id"]: item for item in _json(client, finance_key)["items"]}
    assert items[script.unknown_line]["resolution"]["note"] == "explained"


# A note with each kind of control character: C0, DEL, C1, and one at the end, where stripping
# the note's blanks would drop it unseen.
CONTROL_NOTES = [
    "short-paid\x07",
    "\x1b[31mshort-paid\x1b[0m",
    "page\x0cbreak",
    "vertical\x0btab",
    "deleted\x7f",
    "next line\x85",
    "credited later\x1f",
]


def test_a_note_with_a_control_character_is_refused_and_nothing_kept(
    gw: Gateway, client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    item = f"{_settled_pair(gw, client, agency_key)}:3"
    before = count_rows(gw)
    for note in CONTROL_NOTES:
        refused = _resolve(client, finance_key, item, note)
        _is_error(refused, 422)
        assert refused.json is not None
        error = refused.json["error"]
        assert (error["type"], error.get("param")) == ("invalid_request", "note"), (note, error)
        assert "control character" in error["message"]
    assert count_rows(gw) == before
    assert {i["id"]: i for i in _json(client, finance_key)["items"]}[item]["resolution"] is None

    # Text in any script, with line breaks (CR LF kept as LF) and tabs, is a note.
    resolved = _resolve(client, finance_key, item, "حُوِّل الفرق في ٣ ديسمبر\r\nTRF-1\tTRF-2")
    assert resolved.status_code == 201, resolved.json
    kept = "حُوِّل الفرق في ٣ ديسمبر\nTRF-1\tTRF-2"
    assert resolved.json is not None and resolved.json["note"] == kept
    items = {i["id"]: i for i in _json(client, finance_key)["items"]}
    assert items[item]["resolution"]["note"] == kept
    assert {row["id"]: row for row in _csv(client, finance_key)}[item]["resolution_note"] == kept
    cell = _item_rows(_xlsx(client, finance_key)["Items"])[item][16]
    assert (cell.value, cell.alignment.wrap_text) == (kept, True)


def test_a_note_stored_with_control_characters_still_makes_a_workbook(
    gw: Gateway, client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    """A note kept before notes were checked, as such a row is in the database: the XLSX report
    still opens, showing each character a cell cannot hold as its escape."""
    settlement = _settled_pair(gw, client, agency_key)
    note, by = "short-paid\x07 \x1b[1mTRF\x0b-9\ufffe", "ops\x01"
    with gw.db.transaction() as session:
        line = session.execute(
            select(SettlementLine.id).where(
                SettlementLine.settlement_id == settlement, SettlementLine.line_no == 3
            )
        ).scalar_one()
        session.add(
            ReconciliationResolution(
                provider="sandbox",
                settlement_line_id=line,
                status="amount_mismatch",
                note=note,
                resolved_by=by,
                created_at=clock.now(),
            )
        )
    row = _item_rows(_xlsx(client, finance_key)["Items"])[f"{settlement}:3"]
    assert [cell.value for cell in row[16:18]] == [
        "short-paid\\u0007 \\u001b[1mTRF\\u000b-9\\ufffe",
        "ops\\u0001",
    ]
    assert row[2].value == "amount_mismatch"
    items = {i["id"]: i for i in _json(client, finance_key)["items"]}
    assert items[f"{settlement}:3"]["resolution"] == {"note": note, "by": by}


def test_agency_keys_may_neither_read_nor_resolve(
    gw: Gateway, client: FlaskClient, finance_key: str, agency_key: str
) -> None:
    _at(DAYS[0], 10)
    payment = _pay(client, agency_key, 12_500, "OMR")
    _now(NOW)
    before = count_rows(gw)
    for fmt in ("json", "csv", "xlsx"):
        _is_error(_report(client, agency_key, fmt), 403)
    _is_error(_resolve(client, agency_key, payment), 403)
    assert count_rows(gw) == before
    assert _resolve(client, finance_key, payment).status_code == 201


# -- 6. refused parameters -----------------------------------------------------------------------

BAD_QUERIES: list[tuple[dict[str, str], int]] = [
    ({"provider": "sandbox", "to": "2026-11-30"}, 422),  # no `from`
    ({"provider": "sandbox", "from": "2026-11-01"}, 422),  # no `to`
    ({"from": "2026-11-01", "to": "2026-11-30"}, 422),  # no provider
    ({"provider": "sandbox", "from": "2026-11-30", "to": "2026-11-01"}, 422),  # backwards
    ({"provider": "sandbox", "from": "2026-08-01", "to": "2026-11-09"}, 422),  # 101 days
    ({"provider": "nosuch", "from": "2026-11-01", "to": "2026-11-30"}, 422),
    ({"provider": "sandbox", "from": "2026-11-01", "to": "2026-11-30", "format": "pdf"}, 422),
    ({"provider": "sandbox", "from": "2026-02-30", "to": "2026-03-01"}, 422),  # no such day
    ({"provider": "sandbox", "from": "01/11/2026", "to": "2026-11-30"}, 422),
]


def test_bad_parameters_are_refused_with_an_error(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    for query, status in BAD_QUERIES:
        response = client.get(
            "/v1/reports/reconciliation", query_string=query, headers=auth(finance_key)
        )
        assert response.status_code == status, (query, response.status_code, response.data)
        _is_error(response, status)
        assert response.mimetype == "application/json"
    # The longest period is 100 days, both ends counted.
    longest = ("2026-08-01", "2026-11-08")
    days = (dt.date.fromisoformat(longest[1]) - dt.date.fromisoformat(longest[0])).days + 1
    assert days == MAX_PERIOD_DAYS
    assert _json(client, finance_key, longest)["items"] == []


# -- 7. the gateway command ----------------------------------------------------------------------


def _settled_pair(gw: Gateway, client: FlaskClient, key: str) -> str:
    """Two payments on 3 Nov, settled by a file that matches one and short-pays the other;
    return the file's id."""
    _at(DAYS[0], 10)
    _pay(client, key, 12_500, "OMR")
    _pay(client, key, 3_000, "OMR")
    _now(NOW)
    rows = _rows(_export(gw, DAYS[0]))
    rows[1][4:7] = ["2.900", "0.000", "2.900"]
    return _import(gw, _file(rows)).settlement.id


def test_the_reconcile_command_writes_the_report(
    gw: Gateway, client: FlaskClient, agency_key: str, tmp_path: Path
) -> None:
    settlement = _settled_pair(gw, client, agency_key)
    command = ("reconcile", "--provider", "sandbox", "--from", NOVEMBER[0], "--to", NOVEMBER[1])
    workbook = tmp_path / "november.xlsx"
    made = gateway_cli(gw.settings, *command, "--format", "xlsx", "-o", str(workbook))
    assert made.returncode == 0, made.stderr
    stated = f"wrote {workbook}: matched 1, matched_within_tolerance 0, amount_mismatch 1,"
    assert stated in made.stdout
    assert "ledger agrees" in made.stdout
    assert not (tmp_path / "november.xlsx.partial").exists()
    book = openpyxl.load_workbook(workbook)
    assert book.sheetnames == ["Summary", "Items"]
    rows = _item_rows(book["Items"])
    assert {item: row[2].value for item, row in rows.items()} == {
        f"{settlement}:2": "matched",
        f"{settlement}:3": "amount_mismatch",
    }
    assert (rows[f"{settlement}:3"][8].value, rows[f"{settlement}:3"][9].value) == (3.0, 2.9)
    table = tmp_path / "november.csv"
    made = gateway_cli(gw.settings, *command, "--format", "csv", "-o", str(table))
    assert made.returncode == 0, made.stderr
    output = made.stdout + made.stderr
    for mark in ("reconciling", "\r", "#", "█", "%", "eta"):
        assert mark not in output, (mark, output)
    assert made.stdout.count("\n") == 1
    text = table.read_bytes().decode("utf-8")
    assert text.startswith("\ufeffid,status,")
    assert len(text.splitlines()) == 3


def test_the_breaks_resolve_command(
    gw: Gateway, client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    settlement = _settled_pair(gw, client, agency_key)
    resolve = ("breaks", "resolve", "--provider", "sandbox", "--note", "short-paid", "--by")
    done = gateway_cli(gw.settings, *resolve, "fatma@mof", f"{settlement}:3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"resolved {settlement}:3 (amount_mismatch) by fatma@mof"
    unknown = gateway_cli(gw.settings, *resolve, "fatma@mof", f"{settlement}:9")
    assert unknown.returncode != 0
    assert f"no settlement line '{settlement}:9'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    items = {item["id"]: item for item in _json(client, finance_key)["items"]}
    assert items[f"{settlement}:3"]["resolution"] == {"note": "short-paid", "by": "fatma@mof"}
    assert items[f"{settlement}:3"]["status"] == "amount_mismatch"


def test_the_breaks_resolve_command_refuses_a_control_character(
    gw: Gateway, client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    item = f"{_settled_pair(gw, client, agency_key)}:3"
    before = count_rows(gw)
    for option, text in (("--note", "short-paid\x1b[0m"), ("--by", "fatma\x07@mof")):
        given = {"--note": "short-paid", "--by": "fatma@mof", option: text}
        options = [part for pair in given.items() for part in pair]
        refused = gateway_cli(
            gw.settings, "breaks", "resolve", "--provider", "sandbox", *options, item
        )
        assert refused.returncode != 0, refused.stdout
        assert "control character" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert count_rows(gw) == before
    resolve = ("breaks", "resolve", "--provider", "sandbox", "--by", "fatma@mof", "--note")
    done = gateway_cli(gw.settings, *resolve, "short-paid\ncredited on 3 Dec", item)
    assert done.returncode == 0, done.stderr
    items = {i["id"]: i for i in _json(client, finance_key)["items"]}
    assert items[item]["resolution"] == {"note": "short-paid\ncredited on 3 Dec", "by": "fatma@mof"}


def test_a_resolution_records_the_reports_status_and_refuses_what_is_not_yet_due(
    gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    script = _scripted(gw, client)
    second_wrong_amount = f"{script.files['B']}:3"  # imported as amount_mismatch
    assert script.expected[second_wrong_amount] == "duplicate"
    resolved = _resolve(client, finance_key, second_wrong_amount, "second statement ignored")
    assert resolved.status_code == 201, resolved.json
    assert resolved.json is not None and resolved.json["status"] == "duplicate"
    pending = script.month.payments[DAYS[2].isoformat()][0]
    assert script.expected[pending] == "pending_settlement"
    before = count_rows(gw)
    refused = _resolve(client, finance_key, pending, "too early")
    _is_error(refused, 422)
    assert refused.json is not None and "settlement lag" in refused.json["error"]["message"]
    assert count_rows(gw) == before


# -- 8. events for finance systems ---------------------------------------------------------------


def _finance_events(gw: Gateway, endpoint: str) -> list[dict[str, Any]]:
    """The events owed to `endpoint`, oldest first, as their bodies."""
    with gw.db.read() as session:
        bodies = session.execute(
            select(Event.body)
            .join(DeliveryJob, DeliveryJob.event_id == Event.id)
            .where(DeliveryJob.endpoint_id == endpoint)
            .order_by(Event.created_at, Event.id)
        ).scalars()
        return [json.loads(body) for body in bodies]


def test_finance_endpoints_hear_of_imports_and_reconciliations(
    gw: Gateway, client: FlaskClient, finance_key: str, agency_key: str, tmp_path: Path
) -> None:
    hook = {"url": "http://93.184.215.14/hooks", "events": ["*"]}
    finance = client.post("/v1/webhook-endpoints", json=hook, headers=auth(finance_key)).json
    agency = client.post("/v1/webhook-endpoints", json=hook, headers=auth(agency_key)).json
    assert finance is not None and agency is not None
    assert "id" in finance and "id" in agency, (finance, agency)
    settlement = _settled_pair(gw, client, agency_key)

    imported = _finance_events(gw, finance["id"])
    assert [event["type"] for event in imported] == ["settlement.imported"]
    data = imported[0]["data"]
    assert (data["object"], data["id"], data["provider"], data["lines"]) == (
        "settlement",
        settlement,
        "sandbox",
        2,
    )
    assert finance["livemode"] is True and data["livemode"] is False  # finance hears both modes
    assert data["summary"]["matched"] == 1 and data["summary"]["amount_mismatch"] == 1
    assert data["created_at"].endswith("Z")
    agency_types = {event["type"] for event in _finance_events(gw, agency["id"])}
    assert agency_types == {"payment.succeeded"}

    clock.set_clock(None)
    made = gateway_cli(
        gw.settings,
        "reconcile",
        *("--provider", "sandbox", "--from", NOVEMBER[0], "--to", NOVEMBER[1]),
        *("--format", "json", "-o", str(tmp_path / "november.json")),
    )
    assert made.returncode == 0, made.stderr
    events = _finance_events(gw, finance["id"])
    assert [event["type"] for event in events] == [
        "settlement.imported",
        "reconciliation.completed",
    ]
    done = events[1]["data"]
    report = json.loads((tmp_path / "november.json").read_text(encoding="utf-8"))
    assert done["object"] == "reconciliation" and done["id"].startswith("rcn_")
    assert done["livemode"] is False
    assert (done["provider"], done["from"], done["to"]) == ("sandbox", *NOVEMBER)
    assert done["summary"] == report["summary"]
    assert done["totals"] == report["totals"]
    assert (done["breaks"], done["ledger_agrees"]) == (1, True)
    assert "items" not in done
    with gw.db.read() as session:
        owners = session.execute(
            select(Event.agency_id, Event.livemode).where(
                Event.type.in_(("settlement.imported", "reconciliation.completed"))
            )
        ).all()
    assert owners == [(None, False), (None, False)]
    assert {event["type"] for event in _finance_events(gw, agency["id"])} == agency_types
