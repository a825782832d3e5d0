"""Settlement booked per batch, on both databases: a file whose lines do not add up is refused
and leaves nothing behind; suspense fills with what a file cannot explain and empties as each
break is resolved; and, for any generated month, every batch's postings are the sum of its
lines and the acquirer's clearing account drains to zero once everything is settled."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import case, func, select

import ledger
from payments import clock, postings
from payments.api.app import create_app
from payments.errors import ValidationFailed
from payments.gateway import Gateway, build_gateway
from payments.models import SettlementBatch, SettlementLine
from payments.money import format_major
from payments.service import access
from payments.service.audit import audit
from payments.settlement import formats, imports, reports, sandbox_export
from payments.settlement.parsers import ParsedLine
from payments.settlement.sandbox_file import HEADER, SandboxCsvParser
from tests.conftest import PAYMENT, _truncate_postgres, auth, card, count_rows, make_settings

DAY = dt.date(2026, 11, 3)
AGENCIES = (("om-moh", "OMR", "OM", "gateway"), ("kw-moi", "KWD", "KW", "agency"))


def _at(moment: dt.datetime) -> None:
    clock.set_clock(lambda: moment)


def _agencies(gw: Gateway) -> dict[str, str]:
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
    return keys


def _pay(client: FlaskClient, key: str, amount: int, currency: str) -> str:
    body = {**PAYMENT, "amount": amount, "currency": currency}
    created = client.post("/v1/payments", json=body, headers=auth(key))
    assert created.status_code == 201, created.json
    payment = str(created.json["id"])  # type: ignore[index]
    confirmed = client.post(f"/v1/payments/{payment}/confirm", json=card(), headers=auth(key))
    assert confirmed.json is not None and confirmed.json["status"] == "succeeded"
    return payment


def _refund(client: FlaskClient, key: str, payment: str, amount: int) -> None:
    refund = client.post(
        f"/v1/payments/{payment}/refunds", json={"amount": amount}, headers=auth(key)
    )
    assert refund.json is not None and refund.json["status"] == "succeeded", refund.json


def _export(gw: Gateway, day: dt.date) -> list[list[str]]:
    out = io.StringIO()
    sandbox_export.export_day(gw, "sandbox", day, out)
    return [line.split(",") for line in out.getvalue().splitlines()[1:]]


def _file(rows: list[list[str]]) -> bytes:
    return ("\n".join([HEADER, *(",".join(row) for row in rows)]) + "\n").encode()


def _import(gw: Gateway, content: bytes) -> imports.ImportResult:
    return imports.import_file(
        gw, "sandbox", io.BytesIO(content), filename="day.csv", imported_by="cli"
    )


def _balances(gw: Gateway, prefix: str) -> dict[tuple[str, str], int]:
    """Non-zero balances of the accounts whose code (test: prefix dropped) starts so."""
    with gw.db.read() as session:
        book = ledger.trial_balance(session)
    return {
        (account.code, account.currency): account.balance_minor
        for account in book.accounts
        if account.code.removeprefix("test:").startswith(prefix) and account.balance_minor
    }


def _zero(currency: str) -> str:
    return format_major(0, currency)


def _wrong(row: list[str], delta: int) -> list[str]:
    """The line with `delta` more gross (and net), in its currency's decimals."""
    currency = row[3]
    gross = int(row[4].replace(".", "")) + delta
    fee = int(row[5].replace(".", ""))
    return [*row[:4], *(format_major(v, currency) for v in (gross, fee, gross - fee))]


# -- a file that does not add up -----------------------------------------------------------------


@dataclasses.dataclass
class TrustingParser:
    """An acquirer's parser that takes each line's net as the file states it, without holding
    it to gross less fee (here: line 3 states a net one minor unit more than it is)."""

    wrong_line: int

    def parse(self, stream: BinaryIO) -> Iterator[ParsedLine]:
        for line in SandboxCsvParser().parse(stream):
            if line.line_no == self.wrong_line:
                line = dataclasses.replace(line, net_minor=line.net_minor + 1)
            yield line


def test_a_file_whose_batches_do_not_add_up_is_refused_and_nothing_is_kept(
    gw: Gateway, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _agencies(gw)
    _at(dt.datetime.combine(DAY, dt.time(10), tzinfo=dt.UTC))
    for agency, currency, *_ in AGENCIES:
        for amount in (12_500, 7_000):
            _pay(client, keys[agency], amount, currency)
    clock.set_clock(None)
    content = _file(_export(gw, DAY))
    monkeypatch.setitem(formats.FORMATS, "sandbox", lambda _limit: TrustingParser(3))
    before = count_rows(gw)
    with pytest.raises(ValidationFailed) as refused:
        _import(gw, content)
    assert refused.value.code == "settlement_file_unbalanced"
    assert "line 3" in refused.value.message
    assert count_rows(gw) == before
    # The same file, stated as it should be, is booked.
    monkeypatch.setitem(formats.FORMATS, "sandbox", lambda _limit: SandboxCsvParser())
    assert _import(gw, content).settlement.summary["matched"] == 4
    assert audit(gw).ok, audit(gw).problems


# -- suspense ------------------------------------------------------------------------------------


def test_suspense_fills_with_the_breaks_and_empties_as_they_are_resolved(
    gw: Gateway, client: FlaskClient
) -> None:
    keys = _agencies(gw)
    _at(dt.datetime.combine(DAY, dt.time(10), tzinfo=dt.UTC))
    paid = [_pay(client, keys["om-moh"], amount, "OMR") for amount in (12_500, 3_000, 4_000)]
    kwd = _pay(client, keys["kw-moi"], 9_000, "KWD")
    rows = _export(gw, DAY)
    by_amount = {row[4]: row for row in rows}
    short = _wrong(by_amount["12.500"], -500)  # the acquirer paid 12.000 for 12.500
    stated_in_kwd = [*by_amount["3.000"][:3], "KWD", *by_amount["3.000"][4:]]
    unknown = ["2026-11-03", "sbx_ch_nobody", "payment", "OMR", "1.000", "0.000", "1.000"]
    again = by_amount["9.000"][:]
    again[0] = "2026-11-04"  # the KWD payment stated a second time, the next day
    content = _file([short, stated_in_kwd, by_amount["4.000"], by_amount["9.000"], unknown, again])
    _at(dt.datetime.combine(DAY + dt.timedelta(days=5), dt.time(9), tzinfo=dt.UTC))
    result = _import(gw, content)
    assert result.settlement.summary == {
        "matched": 2,
        "matched_within_tolerance": 0,
        "amount_mismatch": 1,
        "currency_mismatch": 1,
        "duplicate": 1,
        "missing_in_gateway": 1,
        "chargeback": 0,
        "chargeback_reversal": 0,
    }
    # Suspense holds the net of every line it could not explain, credited (an asset's
    # balance below zero): money in the bank that nothing explains yet.
    nets: dict[str, int] = {}
    for row in (short, stated_in_kwd, unknown, again):
        nets[row[3]] = nets.get(row[3], 0) + int(row[6].replace(".", ""))
    assert nets == {"OMR": 11_712 + 1_000, "KWD": 2_855 + 8_765}
    assert _balances(gw, "suspense:") == {
        ("test:suspense:sandbox:settlement", currency): -net for currency, net in nets.items()
    }
    # Clearing still holds what no matched line settled: the 12.500 and the 3.000 OMR.
    assert _balances(gw, "acquirer:") == {("test:acquirer:sandbox:clearing", "OMR"): 15_500}
    assert audit(gw).ok, audit(gw).problems

    with gw.db.read() as session:
        lines = {
            line.line_no: line
            for line in session.scalars(
                select(SettlementLine).where(SettlementLine.settlement_id == result.settlement.id)
            )
        }
    for line_no in (2, 3, 6, 7):
        item = reconcile_item(result.settlement.id, line_no)
        reports.resolve(gw, "sandbox", item, "explained", resolved_by="finance@gw")
        assert audit(gw).ok, (line_no, audit(gw).problems)
    assert lines[2].payment_id == paid[0] and lines[5].payment_id == kwd
    assert _balances(gw, "suspense:") == {}
    assert _balances(gw, "acquirer:") == {}  # the mismatched captures left clearing too
    # What the file stated beyond the gateway's amounts is a settlement difference: 0.500 OMR
    # short, the unknown 1.000 OMR and the KWD stated twice (net of fees) paid in; the 3.000
    # OMR stated as KWD paid in its KWD net, and its OMR capture is written off.
    assert _balances(gw, "expense:sandbox:settlement_differences") == {
        ("test:expense:sandbox:settlement_differences", "OMR"): 500 - 1_000 + 3_000,
        ("test:expense:sandbox:settlement_differences", "KWD"): -8_765 - 2_855,
    }
    # A capture whose break released it is settled: its line in a later file is a duplicate.
    later = _file([by_amount["12.500"]])
    assert _import(gw, later).settlement.summary["duplicate"] == 1
    assert audit(gw).ok, audit(gw).problems


def reconcile_item(settlement: str, line_no: int) -> str:
    return f"{settlement}:{line_no}"


# -- any month -----------------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CAPTURE = st.tuples(
    st.sampled_from([0, 1]),  # which agency
    st.integers(1, 2_000_000),  # amount
    st.integers(0, 4),  # day of the month it is captured on
    st.sampled_from(["settled", "over", "missing"]),  # what the acquirer's file does with it
    st.one_of(st.none(), st.integers(1, 100)),  # a refund of this % of it
    st.sampled_from([None, "open", "reversed"]),  # a chargeback later, and whether reversed
)


@given(month=st.lists(CAPTURE, min_size=1, max_size=8))
@PROPERTY
def test_any_month_books_batches_equal_to_their_lines_and_drains_clearing(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest, month: list[Any]
) -> None:
    gw = _fresh_gateway(database_url, tmp_path, request)
    client = create_app(gw=gw).test_client()
    keys = _agencies(gw)
    days = [DAY + dt.timedelta(days=n) for n in range(5)]
    late: list[list[str]] = []
    disputes: list[list[str]] = []
    after = days[-1] + dt.timedelta(days=3)
    try:
        for n, (agency, amount, day, _fate, refund, dispute) in enumerate(month):
            name, currency, *_ = AGENCIES[agency]
            _at(dt.datetime.combine(days[day], dt.time(8, n), tzinfo=dt.UTC))
            payment = _pay(client, keys[name], amount, currency)
            refunded = 0
            if refund is not None:
                refunded = max(1, amount * refund // 100)
                _refund(client, keys[name], payment, refunded)
            if dispute is not None and amount > refunded:
                shown = client.get(f"/v1/payments/{payment}", headers=auth(keys[name])).json
                assert shown is not None
                taken = format_major(amount - refunded, currency)
                line = [after.isoformat(), shown["provider_reference"], "chargeback", currency]
                disputes.append([*line, f"-{taken}", _zero(currency), f"-{taken}"])
                if dispute == "reversed":
                    line[2] = "chargeback_reversal"
                    disputes.append([*line, taken, _zero(currency), taken])
        fates: dict[tuple[dt.date, str, int], list[str]] = {}
        for agency, amount, day, fate, _refund_share, _dispute in month:
            fates.setdefault((days[day], AGENCIES[agency][1], amount), []).append(fate)
        settlements = []
        for n, day in enumerate(days):
            rows = []
            for row in _export(gw, day):
                fate = "settled"
                if row[2] == "payment":
                    fate = fates[(day, row[3], int(row[4].replace(".", "")))].pop(0)
                if fate == "missing":
                    late.append(row)  # settled by the last file, with the next day's date
                    continue
                rows.append(_wrong(row, 1) if fate == "over" else row)
            if n == len(days) - 1:
                rows += [[(day + dt.timedelta(days=1)).isoformat(), *row[1:]] for row in late]
            if rows:
                _at(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(6), tzinfo=dt.UTC))
                settlements.append(_import(gw, _file(rows)).settlement.id)
        _batches_equal_their_lines(gw)
        # Every break is an over-paid line: resolved, each releases its capture.
        with gw.db.read() as session:
            breaks = session.execute(
                select(SettlementLine.settlement_id, SettlementLine.line_no).where(
                    SettlementLine.status != "matched"
                )
            ).all()
        for settlement, line_no in breaks:
            reports.resolve(
                gw, "sandbox", f"{settlement}:{line_no}", "over-paid", resolved_by="finance"
            )
        assert _balances(gw, "acquirer:") == {}
        assert _balances(gw, "suspense:") == {}
        report = audit(gw)
        assert report.ok, report.problems
        # Later the acquirer takes disputed payments back, and pays some of them back.
        if disputes:
            _at(dt.datetime.combine(after, dt.time(6), tzinfo=dt.UTC))
            summary = _import(gw, _file(disputes)).settlement.summary
            assert summary["chargeback"] + summary["chargeback_reversal"] == len(disputes)
            _batches_equal_their_lines(gw)
            assert _balances(gw, "acquirer:") == {}
            assert _balances(gw, "suspense:") == {}
            report = audit(gw)
            assert report.ok, report.problems
    finally:
        clock.set_clock(None)
        gw.db.dispose()


_runs = itertools.count()


def _fresh_gateway(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Gateway:
    if database_url.startswith("sqlite"):
        path = tmp_path / f"month-{next(_runs)}.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        _truncate_postgres(database_url)
        url = database_url
    return build_gateway(make_settings(url, tmp_path))


def _batches_equal_their_lines(gw: Gateway) -> None:
    """Each batch's ledger transaction moves the bank by the sum of its lines' net, clearing by
    the gross of its matched lines, chargebacks and reversals, and suspense by the net of the
    others."""
    with gw.db.read() as session:
        line = SettlementLine
        matched = line.status.in_(("matched", "chargeback", "chargeback_reversal"))
        lines = {
            batch: (int(net), int(gross), int(other))
            for batch, net, gross, other in session.execute(
                select(
                    line.batch_id,
                    func.sum(line.net_minor),
                    func.sum(case((matched, line.gross_minor), else_=0)),
                    func.sum(case((matched, 0), else_=line.net_minor)),
                ).group_by(line.batch_id)
            )
        }
        moved: dict[str, dict[str, int]] = {}
        for batch, code, direction, amount in session.execute(
            select(
                SettlementBatch.id,
                ledger.Account.code,
                ledger.Posting.direction,
                ledger.Posting.amount_minor,
            )
            .join(
                ledger.JournalTransaction,
                ledger.JournalTransaction.external_id == postings.batch_id_of(SettlementBatch.id),
            )
            .join(ledger.Posting, ledger.Posting.transaction_id == ledger.JournalTransaction.id)
            .join(ledger.Account, ledger.Account.id == ledger.Posting.account_id)
        ):
            kind = code.removeprefix("test:").split(":")[0]
            signed = int(amount) if direction == "debit" else -int(amount)
            moved.setdefault(batch, {}).setdefault(kind, 0)
            moved[batch][kind] += signed
    assert None not in lines
    assert set(moved) == set(lines)
    for batch, (net, settled, other) in lines.items():
        assert moved[batch].get("bank", 0) == net, batch
        assert moved[batch].get("acquirer", 0) == -settled, batch
        assert moved[batch].get("suspense", 0) == -other, batch
