"""The console's settlement and reconciliation pages on both databases: a sandbox settlement file
with one tampered amount imported through the page, its lines and break, the break resolved
with a note, the report downloaded as CSV and XLSX equal to the API's, the same file again,
malformed files refused whole, CSRF, bad periods and unknown imports; each action in the audit
log."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from payments import clock
from payments.api.app import create_app
from payments.finance.models import AuditRecord
from payments.finance.settlement_desk import SettlementDesk
from payments.gateway import Gateway, build_gateway
from payments.models import ReconciliationResolution, Settlement
from payments.settlement import sandbox_export
from payments.settlement.desk import GatewaySettlementDesk
from payments.settlement.sandbox_file import HEADER
from tests.conftest import PAYMENT, auth, card, count_rows, make_settings
from tests.integration.finance_support import csrf, signed_in_client

DAY = dt.date(2026, 11, 3)
# The pages' moment: a week after the captures, so an unsettled one would be past the lag.
NOW = dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)
PERIOD = {"provider": "sandbox", "from": "2026-11-01", "to": "2026-11-30"}
AMOUNTS = (12_500, 1_005, 7_000)  # OMR, minor units
_SETTLEMENT_PATH = re.compile(r"/finance/settlements/(stl_[0-9a-z]{26})\?notice=(\w+)$")


@pytest.fixture(autouse=True)
def _system_clock_after() -> Iterator[None]:
    yield
    clock.set_clock(None)


def _now(moment: dt.datetime) -> None:
    clock.set_clock(lambda: moment)


def _captured(client: FlaskClient, key: str) -> list[str]:
    """Three sandbox payments captured on DAY, through the API."""
    _now(dt.datetime.combine(DAY, dt.time(9), tzinfo=dt.UTC))
    paid = []
    for amount in AMOUNTS:
        created = client.post("/v1/payments", json={**PAYMENT, "amount": amount}, headers=auth(key))
        assert created.status_code == 201, created.json
        payment = str(created.json["id"])  # type: ignore[index]
        confirmed = client.post(f"/v1/payments/{payment}/confirm", json=card(), headers=auth(key))
        assert confirmed.json is not None and confirmed.json["status"] == "succeeded"
        paid.append(payment)
    return paid


def _tampered_file(gw: Gateway) -> bytes:
    """The sandbox's settlement file of DAY, its first line's amount changed: line 2 (after
    the header) becomes an amount mismatch."""
    out = io.StringIO()
    assert sandbox_export.export_day(gw, "sandbox", DAY, out) == len(AMOUNTS)
    lines = out.getvalue().splitlines()
    assert lines[0] == HEADER
    first = lines[1].split(",")
    assert first[4] == "12.500"
    first[4:7] = ["13.500", "0.000", "13.500"]
    lines[1] = ",".join(first)
    return ("\n".join(lines) + "\n").encode()


def _upload(console: FlaskClient, content: bytes, *, token: str | None = None) -> TestResponse:
    data: dict[str, Any] = {"provider": "sandbox", "file": (io.BytesIO(content), "day.csv")}
    if token is not None:
        data["csrf_token"] = token
    return console.post("/finance/settlements", data=data, content_type="multipart/form-data")


def _in_english(console: FlaskClient) -> FlaskClient:
    answer = console.post(
        "/finance/language",
        data={
            "lang": "en",
            "back": "/finance/settlements",
            "csrf_token": csrf(console, "/finance/settlements"),
        },
    )
    assert answer.status_code == 303
    return console


def _text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def _audit(gw: Gateway, action: str) -> list[AuditRecord]:
    with gw.db.read() as session:
        return list(
            session.scalars(
                select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id)
            )
        )


def _count(gw: Gateway, model: Any) -> int:
    with gw.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _api_report(client: FlaskClient, key: str, fmt: str) -> TestResponse:
    response = client.get(
        "/v1/reports/reconciliation", query_string={**PERIOD, "format": fmt}, headers=auth(key)
    )
    assert response.status_code == 200, response.data[:300]
    return response


def _download(console: FlaskClient, fmt: str) -> TestResponse:
    response = console.get("/finance/reconciliation/report", query_string={**PERIOD, "format": fmt})
    assert response.status_code == 200, response.data[:300]
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert f"reconciliation-sandbox-2026-11-01-2026-11-30.{fmt}" in disposition
    return response


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _sheets(data: bytes) -> dict[str, list[tuple[Any, ...]]]:
    book = openpyxl.load_workbook(io.BytesIO(data))
    return {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}


def test_the_console_keeps_the_desks_protocol(gw: Gateway) -> None:
    desk: SettlementDesk = GatewaySettlementDesk(gw)  # mypy checks the protocol here
    assert "sandbox" in desk.providers()
    assert "sandbox" in desk.importable_providers()
    assert set(desk.report_formats) >= {"csv", "xlsx"}


def test_import_see_resolve_and_download(
    gw: Gateway, app: Flask, client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    payments = _captured(client, agency_key)
    content = _tampered_file(gw)
    _now(NOW)
    console = _in_english(signed_in_client(app, gw))

    listing = console.get("/finance/settlements")
    assert listing.status_code == 200
    page = _text(listing)
    assert 'enctype="multipart/form-data"' in page
    assert '<option value="sandbox"' in page
    assert "No file has been imported yet." in page

    # Import through the page.
    imported = _upload(console, content, token=csrf(console, "/finance/settlements"))
    assert imported.status_code == 303, _text(imported)
    found = _SETTLEMENT_PATH.search(imported.headers["Location"])
    assert found is not None and found.group(2) == "imported"
    settlement = found.group(1)
    item = f"{settlement}:2"

    one = console.get(f"/finance/settlements/{settlement}?notice=imported")
    assert one.status_code == 200
    page = _text(one)
    assert "The file was imported: 3 lines." in page
    assert settlement in page
    assert page.count('class="settlement-break"') == 1
    row = page[page.index('id="line-2"') :].split("</tr>")[0]
    assert "Amount mismatch" in row and "13.500 OMR" in row
    assert page.count("status--ok") >= 2  # the two matched lines (and the summary's row)
    assert "7.000 OMR" in page and "1.005 OMR" in page
    breaks_only = _text(console.get(f"/finance/settlements/{settlement}?breaks=1"))
    assert 'id="line-2"' in breaks_only and 'id="line-3"' not in breaks_only
    assert settlement in _text(console.get("/finance/settlements"))

    [record] = _audit(gw, "settlement_imported")
    assert record.target == settlement
    assert record.details is not None and record.details["lines"] == 3
    assert record.address

    # The same file again: the first import, and nothing new.
    again = _upload(console, content, token=csrf(console, "/finance/settlements"))
    assert again.status_code == 303
    found = _SETTLEMENT_PATH.search(again.headers["Location"])
    assert found is not None and found.groups() == (settlement, "seen")
    seen = _text(console.get(again.headers["Location"]))
    assert "This file was imported before" in seen
    assert _count(gw, Settlement) == 1
    assert len(_audit(gw, "settlement_imported")) == 1

    # The reconciliation page: summary, totals per currency, the break with its form.
    recon = console.get("/finance/reconciliation", query_string=PERIOD)
    assert recon.status_code == 200
    page = _text(recon)
    assert item in page
    assert 'name="item" value="' + item + '"' in page
    assert "Amount mismatch" in page
    assert "20.505 OMR" in page  # the gateway's captures; the file says 21.505
    assert "21.505 OMR" in page
    assert page.count('action="/finance/reconciliation/resolve"') == 1

    # A note that is empty or holds a control character is refused; nothing is kept.
    resolve_token = csrf(console, "/finance/reconciliation?" + _query(PERIOD))
    form = {**PERIOD, "item": item, "csrf_token": resolve_token}
    empty = console.post("/finance/reconciliation/resolve", data={**form, "note": "  \n "})
    assert empty.status_code == 422
    assert "Write a note saying why the break is resolved." in _text(empty)
    control = console.post("/finance/reconciliation/resolve", data={**form, "note": "ok\x07"})
    assert control.status_code == 422
    refused = _text(control)
    assert "The note may hold text, line breaks and tabs only" in refused
    assert "U+0007" in refused
    assert 'aria-invalid="true"' in refused
    unknown = console.post(
        "/finance/reconciliation/resolve",
        data={**form, "item": f"{settlement}:99", "note": "x"},
    )
    assert unknown.status_code == 404
    assert _count(gw, ReconciliationResolution) == 0
    assert _audit(gw, "break_resolved") == []

    note = "المصرف أكد المبلغ\nBank confirmed 13.500 OMR"
    resolved = console.post("/finance/reconciliation/resolve", data={**form, "note": note})
    assert resolved.status_code == 303, _text(resolved)
    location = resolved.headers["Location"]
    assert location.startswith("/finance/reconciliation?")
    for key, value in PERIOD.items():
        assert f"{key}={value}" in location
    after = _text(console.get(location))
    assert "The break is marked resolved:" in after
    assert "Bank confirmed 13.500 OMR" in after
    assert 'name="item" value="' + item + '"' not in after  # no second form for it
    [record] = _audit(gw, "break_resolved")
    assert record.target == item
    assert record.details is not None and record.details["provider"] == "sandbox"
    twice = console.post(
        "/finance/reconciliation/resolve",
        data={**form, "note": "again", "csrf_token": resolve_token},
    )
    assert twice.status_code == 409
    assert "This break was resolved already." in _text(twice)

    # The downloads are the API's report.
    page_csv = _download(console, "csv")
    api_csv = _api_report(client, finance_key, "csv")
    assert page_csv.mimetype == "text/csv"
    assert page_csv.data == api_csv.data
    rows = _csv_rows(page_csv.data)
    assert rows == _csv_rows(api_csv.data)
    header = rows[0]
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert by_id[item]["status"] == "amount_mismatch"
    assert by_id[item]["settled_amount"] == "13.500"
    assert by_id[item]["resolution_note"] == note
    assert by_id[item]["payment_id"] == payments[0]
    assert sum(1 for row in by_id.values() if row["status"] == "matched") == 2

    page_xlsx = _download(console, "xlsx")
    api_xlsx = _api_report(client, finance_key, "xlsx")
    assert page_xlsx.mimetype == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    sheets = _sheets(page_xlsx.data)
    assert sheets == _sheets(api_xlsx.data)
    assert {"Summary", "Items"} <= set(sheets)
    items = {str(row[0]): row for row in sheets["Items"][1:]}
    assert item in items and note in items[item]

    downloads = _audit(gw, "report_downloaded")
    assert [r.details for r in downloads] == [
        {**{"provider": "sandbox", "from": "2026-11-01", "to": "2026-11-30"}, "format": fmt}
        for fmt in ("csv", "xlsx")
    ]
    assert all(r.target == "sandbox" and r.address for r in downloads)
    user_id = record.actor
    assert all(r.actor == user_id for r in [*downloads, *_audit(gw, "settlement_imported")])
    with gw.db.read() as session:
        stored = session.get(Settlement, settlement)
        assert stored is not None and stored.imported_by == user_id
        resolution = session.scalars(select(ReconciliationResolution)).one()
        assert resolution.resolved_by == user_id


def _query(values: dict[str, str]) -> str:
    return "&".join(f"{key}={value}" for key, value in values.items())


def test_a_malformed_file_is_refused_whole(
    gw: Gateway, app: Flask, client: FlaskClient, agency_key: str
) -> None:
    _captured(client, agency_key)
    good = _tampered_file(gw)
    _now(NOW)
    console = _in_english(signed_in_client(app, gw))
    before = count_rows(gw)
    bad = _upload(
        console,
        good + b"2026-11-03,ref,payment,OMR,1.0000,0,1\n",
        token=csrf(console, "/finance/settlements"),
    )
    assert bad.status_code == 422
    page = _text(bad)
    assert "The file was refused whole and nothing was imported:" in page
    assert "line 5: gross '1.0000' has more decimals than OMR's 3" in page
    assert 'class="error-summary"' in page
    # Bigger than the 64 KiB of other forms: still read, and refused for what it says.
    junk = HEADER.encode() + b"\n" + b"2026-11-03,r,payment,OMR,1.0000,0,1\n" * 3000
    assert len(junk) > 100 * 1024
    big = _upload(console, junk, token=csrf(console, "/finance/settlements"))
    assert big.status_code == 422
    assert "line 2: gross '1.0000'" in _text(big)
    no_file = console.post(
        "/finance/settlements",
        data={"provider": "sandbox", "csrf_token": csrf(console, "/finance/settlements")},
        content_type="multipart/form-data",
    )
    assert no_file.status_code == 422
    assert "Choose a file to import." in _text(no_file)
    unknown = console.post(
        "/finance/settlements",
        data={
            "provider": "nowhere",
            "file": (io.BytesIO(good), "day.csv"),
            "csrf_token": csrf(console, "/finance/settlements"),
        },
        content_type="multipart/form-data",
    )
    assert unknown.status_code == 422
    assert "Choose a known acquirer." in _text(unknown)
    assert count_rows(gw) == before
    assert _audit(gw, "settlement_imported") == []


def test_a_post_without_the_csrf_token_is_refused(
    gw: Gateway, app: Flask, client: FlaskClient, agency_key: str
) -> None:
    _captured(client, agency_key)
    content = _tampered_file(gw)
    _now(NOW)
    console = signed_in_client(app, gw)
    before = count_rows(gw)
    assert _upload(console, content).status_code == 400
    assert _upload(console, content, token="not-the-token").status_code == 400
    resolve = console.post(
        "/finance/reconciliation/resolve", data={**PERIOD, "item": "pay_x", "note": "x"}
    )
    assert resolve.status_code == 400
    assert count_rows(gw) == before


def test_unknown_imports_and_bad_periods(gw: Gateway, app: Flask) -> None:
    _now(NOW)
    console = _in_english(signed_in_client(app, gw))
    for path in (
        "/finance/settlements/stl_nope",
        "/finance/settlements/stl_" + "0" * 26,
        "/finance/settlements/stl_" + "0" * 26 + "?after=x",
    ):
        missing = console.get(path)
        assert missing.status_code == 404, path
        assert "There is no such page." in _text(missing)
    assert console.get("/finance/settlements?after=../x").status_code == 422

    first = console.get("/finance/reconciliation")
    assert first.status_code == 200
    page = _text(first)
    assert 'value="2026-11-01"' in page and 'value="2026-11-10"' in page
    cases = [
        ({**PERIOD, "from": "2026-13-01"}, "Write both dates as YYYY-MM-DD."),
        ({**PERIOD, "to": "30/11/2026"}, "Write both dates as YYYY-MM-DD."),
        ({**PERIOD, "from": "2026-12-01"}, "The start date is after the end date."),
        ({**PERIOD, "from": "2026-01-01"}, "A report covers at most 100 days; ask for several."),
        ({**PERIOD, "provider": "nowhere"}, "Choose a known acquirer."),
    ]
    for query, message in cases:
        for path, extra in (
            ("/finance/reconciliation", {}),
            ("/finance/reconciliation/report", {"format": "csv"}),
        ):
            refused = console.get(path, query_string={**query, **extra})
            assert refused.status_code == 422, (path, query)
            assert message in _text(refused), (path, query)
    # 100 days is the most: 2026-08-23 to 2026-11-30 is 100 days.
    longest = console.get("/finance/reconciliation", query_string={**PERIOD, "from": "2026-08-23"})
    assert longest.status_code == 200
    wrong_format = console.get(
        "/finance/reconciliation/report", query_string={**PERIOD, "format": "pdf"}
    )
    assert wrong_format.status_code == 422
    assert "Choose CSV or XLSX." in _text(wrong_format)
    assert _audit(gw, "report_downloaded") == []


def test_the_pages_are_for_signed_in_staff_in_arabic_first(gw: Gateway, app: Flask) -> None:
    anonymous = app.test_client()
    for path in ("/finance/settlements", "/finance/reconciliation"):
        answer = anonymous.get(path)
        assert answer.status_code == 302
        assert "/finance/sign-in" in answer.headers["Location"]
    console = signed_in_client(app, gw)
    page = _text(console.get("/finance/settlements"))
    assert 'dir="rtl"' in page
    assert "استيراد ملف تسوية" in page
    assert '<label for="file">ملف التسوية</label>' in page
    recon = _text(console.get("/finance/reconciliation"))
    assert '<label for="from">من تاريخ</label>' in recon


def test_a_file_over_the_limit_is_refused(database_url: str, tmp_path: Path) -> None:
    gw = build_gateway(make_settings(database_url, tmp_path, max_settlement_file_bytes=4096))
    try:
        app = create_app(gw=gw)
        _now(NOW)
        console = _in_english(signed_in_client(app, gw))
        before = count_rows(gw)
        row = b"2026-11-03,ref,payment,OMR,1.000,0.000,1.000\n"
        over_file = HEADER.encode() + b"\n" + row * 200  # over the file's limit
        refused = _upload(console, over_file, token=csrf(console, "/finance/settlements"))
        assert refused.status_code == 422
        assert "over the limit of 4096 bytes" in _text(refused)
        over_request = HEADER.encode() + b"\n" + row * 2000  # over the request's limit too
        too_large = _upload(console, over_request, token=csrf(console, "/finance/settlements"))
        assert too_large.status_code == 413
        assert "What was sent is over the limit" in _text(too_large)
        assert count_rows(gw) == before
    finally:
        gw.db.dispose()
