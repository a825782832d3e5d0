"""Settlement import on both databases: a month of sandbox payments and refunds across agencies
and currencies, exported as the sandbox's settlement files, edited into every kind of break,
imported, matched and posted; malformed files refused whole; payouts; the audit after it all;
two imports racing; and the finance endpoint."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

import ledger
from payments import clock, postings
from payments.errors import Conflict, ValidationFailed
from payments.gateway import Gateway
from payments.models import Payment, Refund, SettlementBatch, SettlementLine
from payments.service import access
from payments.service.audit import audit
from payments.settlement import imports, sandbox_export
from payments.settlement.payouts import NewPayout, create_payout
from payments.settlement.sandbox_file import HEADER
from tests.conftest import PAYMENT, auth, card, count_rows
from tests.integration.ledger_support import gateway_cli

DAYS = (dt.date(2026, 11, 3), dt.date(2026, 11, 17), dt.date(2026, 11, 28))
AGENCIES = (  # id, currency, state, fee bearer
    ("om-moh", "OMR", "OM", "gateway"),
    ("kw-moi", "KWD", "KW", "agency"),
    ("sa-mof", "SAR", "SA", "agency"),
)


@dataclasses.dataclass
class Month:
    keys: dict[str, str]  # agency -> test key
    payments: dict[str, list[str]]  # day -> payment ids captured that day
    refunds: dict[str, list[str]]  # day -> refund ids succeeded that day


def _at(day: dt.date, hour: int) -> None:
    moment = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
    clock.set_clock(lambda: moment)


def _pay(client: FlaskClient, key: str, amount: int, currency: str) -> str:
    created = client.post(
        "/v1/payments", json={**PAYMENT, "amount": amount, "currency": currency}, headers=auth(key)
    )
    assert created.status_code == 201, created.json
    payment = created.json["id"]  # type: ignore[index]
    confirmed = client.post(f"/v1/payments/{payment}/confirm", json=card(), headers=auth(key))
    assert confirmed.json is not None and confirmed.json["status"] == "succeeded"
    return str(payment)


def _refund(client: FlaskClient, key: str, payment: str, amount: int | None = None) -> str:
    body = {"amount": amount} if amount else {}
    refund = client.post(f"/v1/payments/{payment}/refunds", json=body, headers=auth(key))
    assert refund.json is not None and refund.json["status"] == "succeeded", refund.json
    return str(refund.json["id"])


def _month(gw: Gateway, client: FlaskClient) -> Month:
    keys = {}
    for agency, currency, state, bearer in AGENCIES:
        access.create_agency(
            gw,
            agency,
            name=agency,
            name_ar="جهة",
            state=state,
            currencies=[currency],
            fee_bearer=bearer,
        )
        keys[agency] = access.create_key(gw, agency_id=agency, role="agency")[1]
    month = Month(keys, {}, {})
    for n, day in enumerate(DAYS):
        _at(day, 9 + n)
        paid = month.payments.setdefault(day.isoformat(), [])
        for agency, currency, _state, _bearer in AGENCIES:
            for amount in (12_500 + n, 1_005, 999_999):
                paid.append(_pay(client, keys[agency], amount, currency))
    # Refunds come later: a full one and a partial one on the second day, one on the third.
    _at(DAYS[1], 15)
    first = month.payments[DAYS[0].isoformat()]
    month.refunds[DAYS[1].isoformat()] = [
        _refund(client, keys["om-moh"], first[0]),
        _refund(client, keys["kw-moi"], first[3], 500),
    ]
    _at(DAYS[2], 16)
    month.refunds[DAYS[2].isoformat()] = [_refund(client, keys["sa-mof"], first[7], 1)]
    clock.set_clock(None)
    return month


def _export(gw: Gateway, day: dt.date) -> str:
    out = io.StringIO()
    sandbox_export.export_day(gw, "sandbox", day, out)
    return out.getvalue()


def _import(gw: Gateway, content: str | bytes, name: str = "f.csv") -> imports.ImportResult:
    data = content.encode() if isinstance(content, str) else content
    return imports.import_file(gw, "sandbox", io.BytesIO(data), filename=name, imported_by="cli")


def _reference(gw: Gateway, payment: str) -> str:
    with gw.db.read() as session:
        found = session.get(Payment, payment)
        assert found is not None and found.provider_reference is not None
        return found.provider_reference


def _line_statuses(gw: Gateway, settlement: str) -> dict[int, str]:
    with gw.db.read() as session:
        rows = session.execute(
            select(SettlementLine.line_no, SettlementLine.status).where(
                SettlementLine.settlement_id == settlement
            )
        ).all()
    return {line_no: status for line_no, status in rows}


def _batches(gw: Gateway, settlement: str) -> dict[tuple[str, str, str], int]:
    """(currency, agency, value date) -> lines, for each batch of the file, after checking
    that each batch has its one ledger transaction."""
    with gw.db.read() as session:
        rows = session.execute(
            select(
                SettlementBatch.currency,
                SettlementBatch.agency_id,
                SettlementBatch.value_date,
                SettlementBatch.line_count,
                ledger.JournalTransaction.id,
            )
            .outerjoin(
                ledger.JournalTransaction,
                ledger.JournalTransaction.external_id == postings.batch_id_of(SettlementBatch.id),
            )
            .where(SettlementBatch.settlement_id == settlement)
        ).all()
    assert all(transaction is not None for *_, transaction in rows)
    return {
        (currency, agency or "", day.isoformat()): count for currency, agency, day, count, _ in rows
    }


def test_each_line_lands_in_its_status(gw: Gateway, client: FlaskClient) -> None:
    month = _month(gw, client)
    lines = _export(gw, DAYS[0]).splitlines()
    assert lines[0] == HEADER
    assert len(lines) == 1 + 9
    omr = next(line for line in lines if ",OMR," in line and ",12.500," in line)
    assert omr.endswith(",payment,OMR,12.500,0.288,12.212")  # 1.5% half up + 0.100
    fields = [line.split(",") for line in lines[1:]]
    # line 2: a wrong amount (still well-formed: net = gross - fee)
    fields[0][4:7] = ["13.500", "0.000", "13.500"]
    # line 3: OMR stated as KWD (both three decimals)
    fields[1][3] = "KWD"
    # the last payment line is left out: nothing settles it
    missing = fields.pop()
    edited = [HEADER, *(",".join(f) for f in fields)]
    edited.append(f"2026-11-04,{fields[2][1]},payment,{','.join(fields[2][3:])}")  # duplicate
    edited.append("2026-11-04,sbx_unknown_ref,payment,OMR,1.000,0.000,1.000")
    result = _import(gw, "\n".join(edited) + "\n")
    assert result.created
    statuses = _line_statuses(gw, result.settlement.id)
    assert statuses[2] == "amount_mismatch"
    assert statuses[3] == "currency_mismatch"
    assert statuses[4] == "matched"
    assert statuses[len(edited) - 1] == "duplicate"
    assert statuses[len(edited)] == "missing_in_gateway"
    assert result.settlement.summary == {
        "matched": 6,
        "matched_within_tolerance": 0,
        "amount_mismatch": 1,
        "currency_mismatch": 1,
        "duplicate": 1,
        "missing_in_gateway": 1,
        "chargeback": 0,
        "chargeback_reversal": 0,
    }
    assert result.settlement.line_count == 10
    with gw.db.read() as session:
        unsettled = session.scalar(
            select(func.count())
            .select_from(SettlementLine)
            .where(SettlementLine.provider_reference == missing[1])
        )
    assert unsettled == 0
    # One transaction per currency, agency and value date, not one per line: on the 3rd, each
    # agency's lines (the OMR payment stated in KWD makes a KWD batch of its own, and SAR's
    # last line is left out); on the 4th, the duplicate and the reference nobody knows.
    assert _batches(gw, result.settlement.id) == {
        ("KWD", "kw-moi", "2026-11-03"): 3,
        ("KWD", "om-moh", "2026-11-03"): 1,
        ("OMR", "om-moh", "2026-11-03"): 2,
        ("SAR", "sa-mof", "2026-11-03"): 2,
        ("OMR", "om-moh", "2026-11-04"): 1,
        ("OMR", "", "2026-11-04"): 1,
    }
    assert audit(gw).ok, audit(gw).problems
    # The corrected lines in a later file settle what the first one could not.
    later = _import(gw, _export(gw, DAYS[0]))
    assert later.settlement.summary["matched"] == 3
    assert later.settlement.summary["duplicate"] == 6  # stated in the first file already
    assert month.refunds


def test_reimport_answers_the_first_and_changes_nothing(gw: Gateway, client: FlaskClient) -> None:
    _month(gw, client)
    content = _export(gw, DAYS[1])
    first = _import(gw, content)
    before = count_rows(gw)
    again = _import(gw, content, name="again.csv")
    assert not again.created
    assert again.settlement.id == first.settlement.id
    assert count_rows(gw) == before


GOOD = "2026-11-03,sbx_ref_1,payment,OMR,12.500,0.288,12.212"
MALFORMED: list[tuple[bytes, int, str]] = [
    (b"", 1, "empty"),
    (b"date,ref,type,currency,gross,fee,net\n" + GOOD.encode(), 1, "header"),
    (f"{HEADER}\n2026-11-03,r,payment,OMR,12.5000,0.288,12.212".encode(), 2, "more decimals"),
    (f"{HEADER}\n{GOOD}\n2026-11-03,r,payment,OMR,12.50,0.288,12.212".encode(), 3, "exactly 3"),
    (f"{HEADER}\n{GOOD}\n{GOOD}".encode(), 3, "duplicates line"),
    (f"{HEADER}\n2026-11-03,r,payment,OMR,-1.000,0.000,-1.000".encode(), 2, "positive"),
    (f"{HEADER}\n2026-11-03,r,refund,OMR,1.000,0.000,1.000".encode(), 2, "negative"),
    (f"{HEADER}\n2026-11-03,r,refund,OMR,-1.000,0.100,-1.100".encode(), 2, "no fee"),
    (f"{HEADER}\n2026-11-03,r,payment,OMR,1.000,-0.100,1.100".encode(), 2, "negative"),
    (f"{HEADER}\n2026-11-03,r,payment,OMR,1.000,0.100,0.800".encode(), 2, "gross - fee"),
    (f"{HEADER}\n2026-11-03,r,payment,XXX,1.000,0.100,0.900".encode(), 2, "currency"),
    (f"{HEADER}\n2026-13-03,r,payment,OMR,1.000,0.100,0.900".encode(), 2, "not a date"),
    (f"{HEADER}\n03/11/2026,r,payment,OMR,1.000,0.100,0.900".encode(), 2, "YYYY-MM-DD"),
    (f"{HEADER}\n2026-11-03,r,charge,OMR,1.000,0.100,0.900".encode(), 2, "type"),
    (f"{HEADER}\n2026-11-03,,payment,OMR,1.000,0.100,0.900".encode(), 2, "provider_reference"),
    (f"{HEADER}\n2026-11-03,r\x07,payment,OMR,1.000,0.100,0.900".encode(), 2, "printable"),
    (f"{HEADER}\n2026-11-03,r,payment,OMR,1.000,0.100".encode(), 2, "6 columns"),
    (f"{HEADER}\n{GOOD}\n\n{GOOD}x".encode(), 3, "blank line"),
    (f"{HEADER}\n{GOOD}\n".encode() + b"2026-11-03,r\xff,payment,OMR,1.000,0.1,0.9", 3, "UTF-8"),
    (f"{HEADER}\n2026-11-03,r,payment,OMR,1e3,0.100,0.900".encode(), 2, "decimal amount"),
]


@pytest.mark.parametrize(("content", "line_no", "why"), MALFORMED)
def test_a_malformed_file_is_refused_whole(
    gw: Gateway, client: FlaskClient, agency_key: str, content: bytes, line_no: int, why: str
) -> None:
    _at(DAYS[0], 10)
    _pay(client, agency_key, 12_500, "OMR")
    clock.set_clock(None)
    good = _export(gw, DAYS[0]).encode()
    # A good file's lines before the bad one are not kept either.
    content = good + content.partition(b"\n")[2] if content.startswith(HEADER.encode()) else content
    if content.startswith(good):
        line_no += good.count(b"\n") - 1
    before = count_rows(gw)
    with pytest.raises(ValidationFailed) as refused:
        _import(gw, content)
    assert refused.value.code == "settlement_file_invalid"
    assert refused.value.param == "file"
    assert f"line {line_no}: " in refused.value.message
    assert why in refused.value.message
    assert count_rows(gw) == before


def test_bom_and_trailing_blank_lines_are_tolerated(gw: Gateway, client: FlaskClient) -> None:
    _month(gw, client)
    result = _import(gw, b"\xef\xbb\xbf" + _export(gw, DAYS[0]).encode() + b"\n\n")
    assert result.settlement.summary["matched"] == 9


def test_a_reference_with_backslashes_is_stored_and_matched_as_written(
    gw: Gateway, client: FlaskClient
) -> None:
    """COPY's text format escapes a backslash; the staged line must still be the file's."""
    month = _month(gw, client)
    paid = month.payments[DAYS[0].isoformat()][0]
    odd = "sbx\\ch\\t\\n\\\\1"  # the characters `sbx\ch\t\n\\1`, backslashes and all
    with gw.db.transaction() as session:
        found = session.get(Payment, paid)
        assert found is not None and found.provider_reference is not None
        found.provider_reference = odd
    kept = [
        line for line in _export(gw, DAYS[0]).splitlines() if f",{odd}," in line or "gross" in line
    ]
    assert len(kept) == 2, kept
    unknown = f"{DAYS[0].isoformat()},x\\ty\\,payment,OMR,1.000,0.000,1.000"
    result = _import(gw, "\n".join([*kept, unknown]) + "\n")
    assert _line_statuses(gw, result.settlement.id) == {2: "matched", 3: "missing_in_gateway"}
    with gw.db.read() as session:
        stored = session.scalars(
            select(SettlementLine.provider_reference)
            .where(SettlementLine.settlement_id == result.settlement.id)
            .order_by(SettlementLine.line_no)
        ).all()
    assert stored == [odd, "x\\ty\\"]


def test_a_file_over_the_limit_is_refused(gw: Gateway) -> None:
    gw.settings = dataclasses.replace(gw.settings, max_settlement_file_bytes=100)
    before = count_rows(gw)
    with pytest.raises(ValidationFailed, match="over the limit of 100 bytes"):
        _import(gw, f"{HEADER}\n{GOOD}\n{GOOD}x\n")
    assert count_rows(gw) == before


def _trial(gw: Gateway) -> dict[tuple[str, str], int]:
    with gw.db.read() as session:
        book = ledger.trial_balance(session)
    assert book.balanced
    return {(a.code, a.currency): a.balance_minor for a in book.accounts}


def test_a_settled_and_paid_out_month_leaves_every_clearing_account_at_zero(
    gw: Gateway, client: FlaskClient
) -> None:
    _month(gw, client)
    for day in DAYS:
        summary = _import(gw, _export(gw, day)).settlement.summary
        assert set(summary) == set(imports.STATUSES)
        assert sum(summary.values()) == summary["matched"]
    balances = _trial(gw)
    # KWD and SAR agencies bear their fees; the OMR agency's fees are the gateway's expense.
    assert balances[("test:expense:sandbox:fees", "OMR")] > 0
    assert ("test:expense:sandbox:fees", "KWD") not in balances
    payables = {
        key: amount for key, amount in balances.items() if key[0].endswith(":payable") and amount
    }
    assert len(payables) == 3
    for (code, currency), amount in payables.items():
        agency = code.split(":")[2]
        new = NewPayout(agency, currency, amount, f"TRX-{agency}", livemode=False)
        assert create_payout(gw, new).created
        assert not create_payout(gw, new).created  # the same reference: the first payout
        with pytest.raises(Conflict, match="more than"):
            create_payout(gw, dataclasses.replace(new, reference="TRX-2", amount_minor=1))
    balances = _trial(gw)
    for (code, _currency), amount in balances.items():
        if code.endswith(":clearing") or code.endswith(":payable"):
            assert amount == 0, code
    report = audit(gw)
    assert report.ok, report.problems


def test_two_files_racing_do_not_settle_a_payment_twice(
    gw: Gateway, client: FlaskClient, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises every write transaction already")
    _month(gw, client)
    content = _export(gw, DAYS[0])
    files = [content, content + "2026-11-03,sbx_other,payment,OMR,1.000,0.000,1.000\n"]
    results: list[imports.ImportResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(files))

    def run(data: str) -> None:
        start.wait()
        try:
            results.append(_import(gw, data))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(data,)) for data in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(results) == 2
    with gw.db.read() as session:
        matched = session.execute(
            select(SettlementLine.payment_id, func.count())
            .where(SettlementLine.status == "matched")
            .group_by(SettlementLine.payment_id)
        ).all()
        captured = session.scalar(select(func.sum(SettlementBatch.captured_minor)))
        gross = session.scalar(
            select(func.sum(SettlementLine.gross_minor)).where(SettlementLine.status == "matched")
        )
    assert len(matched) == 9
    assert all(count == 1 for _payment, count in matched)
    assert captured == gross  # each payment settled once, by whichever file came first
    assert audit(gw).ok


def _upload(client: FlaskClient, key: str, content: bytes, **form: Any) -> Any:
    data = {"provider": "sandbox", "file": (io.BytesIO(content), "day.csv"), **form}
    return client.post(
        "/v1/settlements", data=data, headers=auth(key), content_type="multipart/form-data"
    )


def test_the_settlements_endpoint(gw: Gateway, client: FlaskClient, finance_key: str) -> None:
    month = _month(gw, client)
    content = _export(gw, DAYS[0]).encode()
    agency = _upload(client, month.keys["om-moh"], content)
    assert agency.status_code == 403
    assert agency.json["error"]["type"] == "permission"
    created = _upload(client, finance_key, content)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["object"] == "settlement" and body["id"].startswith("stl_")
    assert body["provider"] == "sandbox" and body["lines"] == 9
    assert body["summary"]["matched"] == 9
    assert body["created_at"].endswith("Z")
    again = _upload(client, finance_key, content)
    assert again.status_code == 200 and again.json["id"] == body["id"]
    before = count_rows(gw)
    bad = _upload(client, finance_key, content + b"2026-11-03,r,payment,OMR,1.0000,0,1\n")
    assert bad.status_code == 422
    error = bad.json["error"]
    assert error["code"] == "settlement_file_invalid" and error["param"] == "file"
    assert "line 11: gross '1.0000' has more decimals than OMR's 3" in error["message"]
    assert count_rows(gw) == before
    unknown_field = _upload(client, finance_key, content, extra="x")
    assert unknown_field.status_code == 422
    listed = client.get("/v1/settlements", headers=auth(finance_key))
    assert listed.status_code == 200 and listed.json is not None
    assert [s["id"] for s in listed.json["data"]] == [body["id"]]
    one = client.get(f"/v1/settlements/{body['id']}", headers=auth(finance_key))
    assert one.status_code == 200 and one.json == body
    assert client.get("/v1/settlements/stl_x", headers=auth(finance_key)).status_code == 404
    assert client.get("/v1/settlements", headers=auth(month.keys["om-moh"])).status_code == 403
    with gw.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 3


def test_the_gateway_command(gw: Gateway, client: FlaskClient, tmp_path: Path) -> None:
    created = gateway_cli(
        gw.settings,
        *("agencies", "create", "bh-moi", "--name", "MOI", "--name-ar", "وزارة"),
        *("--state", "BH", "--currency", "BHD", "--fee-bearer", "agency"),
    )
    assert created.returncode == 0, created.stderr
    key = access.create_key(gw, agency_id="bh-moi", role="agency")[1]
    _at(DAYS[0], 10)
    _pay(client, key, 7_250, "BHD")
    clock.set_clock(None)
    day_file = tmp_path / "day.csv"
    exported = gateway_cli(
        gw.settings, "settlements", "export-sandbox", "--date", "2026-11-03", "-o", str(day_file)
    )
    assert exported.returncode == 0, exported.stderr
    assert day_file.read_text().splitlines()[1].endswith(",payment,BHD,7.250,0.209,7.041")
    imported = gateway_cli(
        gw.settings, "settlements", "import", str(day_file), "--provider", "sandbox"
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported stl_" in imported.stdout and "1 lines (matched 1," in imported.stdout
    bad_file = tmp_path / "bad.csv"
    bad_file.write_text(f"{HEADER}\n2026-11-03,r,payment,BHD,1.0,0.000,1.0\n")
    bad = gateway_cli(gw.settings, "settlements", "import", str(bad_file), "--provider", "sandbox")
    assert bad.returncode == 1
    assert "line 2: gross '1.0' must have exactly 3 decimals for BHD" in bad.stderr
    # 7.250 less the 0.209 fee the agency bears
    payout = ("payouts", "create", "--agency", "bh-moi", "--currency", "BHD")
    too_much = gateway_cli(gw.settings, *payout, "--amount", "7042", "--reference", "T-1")
    assert too_much.returncode == 1 and "more than bh-moi is owed (7041)" in too_much.stderr
    paid = gateway_cli(gw.settings, *payout, "--amount", "7041", "--reference", "T-1")
    assert paid.returncode == 0 and "recorded payout po_" in paid.stdout
    again = gateway_cli(gw.settings, *payout, "--amount", "7041", "--reference", "T-1")
    assert again.returncode == 0 and "already recorded as payout po_" in again.stdout
    verified = gateway_cli(gw.settings, "ledger", "verify")
    assert verified.returncode == 0, verified.stderr


class _Body(io.RawIOBase):
    """An upload of `size` bytes that counts what the gateway read of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.taken = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the body by seeking
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[
            whence
        ] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.size - self.position))
        buffer[:n] = b"x" * n
        self.position += n
        self.taken += n
        return n


def _big_upload(client: FlaskClient, key: str, body: _Body) -> Any:
    return client.post(
        "/v1/settlements",
        input_stream=body,
        content_type="multipart/form-data; boundary=b0undary",
        headers=auth(key, **{"Idempotency-Key": "upload-1"}),
    )


def test_a_key_that_may_not_import_is_refused_before_its_upload_is_read(
    gw: Gateway, client: FlaskClient, agency_key: str
) -> None:
    before = count_rows(gw)
    body = _Body(200 * 1024 * 1024)
    refused = _big_upload(client, agency_key, body)
    assert refused.status_code == 403 and refused.json["error"]["type"] == "permission"
    assert body.taken == 0
    assert count_rows(gw) == before  # no idempotency key claimed either


def test_a_limited_finance_key_is_refused_before_its_upload_is_read(
    database_url: str, tmp_path: Path
) -> None:
    from payments.api.app import create_app
    from payments.gateway import build_gateway
    from tests.conftest import make_settings

    limited = build_gateway(make_settings(database_url, tmp_path, rate_limit="1/minute"))
    try:
        key = access.create_key(limited, agency_id=None, role="finance")[1]
        client = create_app(gw=limited).test_client()
        assert client.get("/v1/settlements", headers=auth(key)).status_code == 200
        body = _Body(200 * 1024 * 1024)
        assert _big_upload(client, key, body).status_code == 429
        assert body.taken == 0
    finally:
        limited.db.dispose()
