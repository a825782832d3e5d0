"""The settlement rules beyond one line per capture, on both databases: a chargeback line opens
its payment's dispute (ledger, event, report) and its reversal closes it; a line within the
acquirer's configured tolerance settles its capture and books its drift as a difference, and
one outside stays a break; a capture paid in several lines of one file is settled by them
together, each item naming the others."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from config.settings import Settings
from config.tolerance import Tolerance
from payments import clock
from payments.api.app import create_app
from payments.errors import ValidationFailed
from payments.gateway import Gateway, build_gateway
from payments.models import SettlementLine
from payments.service.audit import audit
from payments.settlement import reports
from payments.settlement.reconcile import Period
from tests.conftest import auth
from tests.integration.test_settlement_batches import (
    DAY,
    _agencies,
    _at,
    _balances,
    _export,
    _file,
    _import,
    _pay,
    _wrong,
)


def _report(gw: Gateway, to: dt.date) -> dict[str, Any]:
    out = io.BytesIO()
    span = Period(
        provider="sandbox",
        date_from=DAY.replace(day=1),
        date_to=to,
        as_of=clock.now(),
        lag_days=gw.settings.settlement_lag_days,
    )
    reports.write_report(gw, span, "json", out)
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def _line(day: dt.date, reference: str, kind: str, amount: str) -> list[str]:
    return [day.isoformat(), reference, kind, "OMR", amount, "0.000", amount]


def _lines(gw: Gateway, settlement_id: str, *columns: Any) -> list[tuple[Any, ...]]:
    """The columns of the file's stored lines, in file order."""
    with gw.db.read() as session:
        rows = session.execute(
            select(*columns)
            .where(SettlementLine.settlement_id == settlement_id)
            .order_by(SettlementLine.line_no)
        )
        return [tuple(row) for row in rows]


def _statuses(gw: Gateway, settlement_id: str) -> list[str]:
    return [status for (status,) in _lines(gw, settlement_id, SettlementLine.status)]


def _events(client: FlaskClient, key: str, kind: str) -> list[dict[str, Any]]:
    listed = client.get(f"/v1/events?type={kind}", headers=auth(key))
    assert listed.status_code == 200, listed.json
    return list(listed.json["data"])  # type: ignore[index]


def test_a_chargeback_and_its_reversal_move_the_ledger_tell_the_agency_and_show_on_the_report(
    gw: Gateway, client: FlaskClient
) -> None:
    keys = _agencies(gw)
    key = keys["om-moh"]
    _at(dt.datetime.combine(DAY, dt.time(10), tzinfo=dt.UTC))
    disputed = _pay(client, key, 12_500, "OMR")
    spare = _pay(client, key, 4_000, "OMR")
    rows = _export(gw, DAY)
    reference = {row[4]: row[1] for row in rows}
    _at(dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(9), tzinfo=dt.UTC))
    assert _import(gw, _file(rows)).settlement.summary["matched"] == 2
    payable = _balances(gw, "agency:om-moh")
    bank = _balances(gw, "bank:sandbox")

    # The acquirer takes the payment back, states it again the next day, and claims a
    # chargeback larger than what another payment captured.
    later = DAY + dt.timedelta(days=10)
    _at(dt.datetime.combine(later, dt.time(9), tzinfo=dt.UTC))
    charged = _import(
        gw,
        _file(
            [
                _line(later, reference["12.500"], "chargeback", "-12.500"),
                _line(later + dt.timedelta(days=1), reference["12.500"], "chargeback", "-12.500"),
                _line(later, reference["4.000"], "chargeback", "-4.001"),
                _line(later, reference["4.000"], "chargeback_reversal", "4.000"),
            ]
        ),
    )
    assert _statuses(gw, charged.settlement.id) == [
        "chargeback",
        "duplicate",
        "amount_mismatch",
        "missing_in_gateway",
    ]
    shown = client.get(f"/v1/payments/{disputed}", headers=auth(key)).json
    assert shown is not None
    assert shown["status"] == "succeeded"
    assert shown["dispute"] == {"status": "open", "amount": 12_500}
    assert client.get(f"/v1/payments/{spare}", headers=auth(key)).json["dispute"] is None  # type: ignore[index]
    told = _events(client, key, "payment.disputed")
    assert [event["data"]["id"] for event in told] == [disputed]
    assert told[0]["data"]["dispute"] == {"status": "open", "amount": 12_500}
    # The agency bears the chargeback: its payable falls by it; clearing still drains.
    after = _balances(gw, "agency:om-moh")
    assert {code: after.get(code, 0) - payable[code] for code in payable} == {
        ("test:agency:om-moh:payable", "OMR"): -12_500
    }
    assert not _balances(gw, "acquirer:sandbox"), _balances(gw, "acquirer:sandbox")
    assert audit(gw).ok, audit(gw).problems
    # Refunding the disputed payment would return the money a second time.
    refused = client.post(
        f"/v1/payments/{disputed}/refunds", json={"amount": 100}, headers=auth(key)
    )
    assert refused.status_code == 409
    assert refused.json is not None and refused.json["error"]["code"] == "payment_disputed"

    # The acquirer pays the chargeback back.
    reversed_on = later + dt.timedelta(days=5)
    _at(dt.datetime.combine(reversed_on, dt.time(9), tzinfo=dt.UTC))
    paid_back = _import(
        gw, _file([_line(reversed_on, reference["12.500"], "chargeback_reversal", "12.500")])
    )
    assert _statuses(gw, paid_back.settlement.id) == ["chargeback_reversal"]
    shown = client.get(f"/v1/payments/{disputed}", headers=auth(key)).json
    assert shown is not None and shown["dispute"] == {"status": "reversed", "amount": 12_500}
    assert [e["data"]["id"] for e in _events(client, key, "payment.dispute_reversed")] == [disputed]
    assert _balances(gw, "agency:om-moh") == payable
    # The bank gave up 12.500 for the chargeback and got it back. What the acquirer took or
    # paid beyond that waits in suspense: the chargeback stated twice, the 4.001 claimed for
    # a capture of 4.000, and the reversal of a payment never disputed.
    bank_now = _balances(gw, "bank:sandbox")
    assert bank_now[("test:bank:sandbox:settlement", "OMR")] == (
        bank[("test:bank:sandbox:settlement", "OMR")] - 12_500 - 4_001 + 4_000
    )
    assert _balances(gw, "suspense:sandbox") == {
        ("test:suspense:sandbox:settlement", "OMR"): 12_500 + 4_001 - 4_000
    }
    assert not _balances(gw, "acquirer:sandbox")
    assert audit(gw).ok, audit(gw).problems

    report = _report(gw, reversed_on)
    summary = report["summary"]
    assert (summary["chargeback"], summary["chargeback_reversal"]) == (1, 1)
    assert (summary["matched"], summary["duplicate"], summary["amount_mismatch"]) == (2, 1, 1)
    assert summary["missing_in_gateway"] == 1
    by_status = {item["status"]: item for item in report["items"]}
    assert by_status["chargeback"]["payment_id"] == disputed
    # A chargeback is news for the agency, not a break for finance to resolve.
    with pytest.raises(ValidationFailed, match="a chargeback line is not a break"):
        reports.resolve(gw, "sandbox", by_status["chargeback"]["id"], "seen", resolved_by="fatma")
    assert by_status["chargeback"]["gateway_amount"] == -12_500
    assert by_status["chargeback_reversal"]["settled_amount"] == 12_500


def test_lines_within_the_acquirers_tolerance_settle_and_lines_beyond_it_stay_breaks(
    settings: Settings,
) -> None:
    tolerant = dataclasses.replace(
        settings, settlement_tolerances={"sandbox": Tolerance(amount=5, days=1)}
    )
    gw = build_gateway(tolerant)
    try:
        client = create_app(gw=gw).test_client()
        keys = _agencies(gw)
        _at(dt.datetime.combine(DAY, dt.time(10), tzinfo=dt.UTC))
        for amount in (12_500, 3_000, 4_000, 5_000, 6_000):
            _pay(client, keys["om-moh"], amount, "OMR")
        by_amount = {row[4]: row for row in _export(gw, DAY)}
        late = by_amount["5.000"][:]
        late[0] = (DAY + dt.timedelta(days=3)).isoformat()  # due by day + 2: a day late
        too_late = by_amount["6.000"][:]
        too_late[0] = (DAY + dt.timedelta(days=4)).isoformat()  # two days late
        rows = [
            by_amount["12.500"],
            _wrong(by_amount["3.000"], 3),  # 3.003 for 3.000: within 5 minor units
            _wrong(by_amount["4.000"], 10),  # 4.010 for 4.000: beyond them
            late,
            too_late,
        ]
        _at(dt.datetime.combine(DAY + dt.timedelta(days=5), dt.time(9), tzinfo=dt.UTC))
        imported = _import(gw, _file(rows))
        assert _statuses(gw, imported.settlement.id) == [
            "matched",
            "matched_within_tolerance",
            "amount_mismatch",
            "matched_within_tolerance",
            "missing_in_gateway",
        ]
        drift = _lines(
            gw, imported.settlement.id, SettlementLine.drift_minor, SettlementLine.drift_days
        )
        assert drift == [
            (None, None),
            (3, 0),
            (None, None),
            (0, 1),
            (None, None),
        ]
        # The 3 paid beyond the capture is a settlement difference (an expense's credit);
        # clearing keeps what is not settled: the mismatched 4.000 and the 6.000 too far off.
        assert _balances(gw, "expense:sandbox:settlement_differences") == {
            ("test:expense:sandbox:settlement_differences", "OMR"): -3
        }
        assert _balances(gw, "acquirer:sandbox") == {
            ("test:acquirer:sandbox:clearing", "OMR"): 4_000 + 6_000
        }
        assert audit(gw).ok, audit(gw).problems
        report = _report(gw, DAY + dt.timedelta(days=5))
        summary = report["summary"]
        assert summary["matched_within_tolerance"] == 2
        assert summary["missing_in_settlement"] == 1  # the 6.000 capture no line settles
        tolerated = [i for i in report["items"] if i["status"] == "matched_within_tolerance"]
        assert [(i["gateway_amount"], i["settled_amount"]) for i in tolerated] == [
            (3_000, 3_003),
            (5_000, 5_000),
        ]
        shown = [{"amount": 3, "days": 0}, {"amount": 0, "days": 1}]
        assert [i["drift"] for i in tolerated] == shown
        with pytest.raises(ValidationFailed, match="not a break"):
            reports.resolve(gw, "sandbox", tolerated[0]["id"], "fine", resolved_by="fatma")
    finally:
        gw.db.dispose()
        clock.set_clock(None)


def test_one_capture_settled_across_several_lines_is_matched_and_each_item_names_the_others(
    gw: Gateway, client: FlaskClient
) -> None:
    keys = _agencies(gw)
    _at(dt.datetime.combine(DAY, dt.time(10), tzinfo=dt.UTC))
    _pay(client, keys["om-moh"], 12_500, "OMR")
    _pay(client, keys["om-moh"], 4_000, "OMR")
    by_amount = {row[4]: row for row in _export(gw, DAY)}
    whole, other = by_amount["12.500"], by_amount["4.000"]
    # The acquirer pays the 12.500 capture in two parts; the 4.000 in two that do not add up.
    parts = [
        [*whole[:4], "7.500", "0.213", "7.287"],
        [*whole[:4], "5.000", "0.175", "4.825"],
        [*other[:4], "3.000", "0.000", "3.000"],
        [*other[:4], "0.500", "0.000", "0.500"],
    ]
    _at(dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(9), tzinfo=dt.UTC))
    imported = _import(gw, _file(parts))
    assert _statuses(gw, imported.settlement.id) == [
        "matched",
        "matched",
        "amount_mismatch",
        "amount_mismatch",
    ]
    counted = _lines(gw, imported.settlement.id, SettlementLine.parts)
    assert counted == [(2,), (2,), (None,), (None,)]
    # The whole capture left clearing; the 4.000 stays, its parts in suspense.
    assert _balances(gw, "acquirer:sandbox") == {("test:acquirer:sandbox:clearing", "OMR"): 4_000}
    assert audit(gw).ok, audit(gw).problems
    report = _report(gw, DAY + dt.timedelta(days=1))
    items = {item["id"]: item for item in report["items"]}
    first, second = (f"{imported.settlement.id}:{n}" for n in (2, 3))
    assert items[first]["settled_with"] == [second]
    assert items[second]["settled_with"] == [first]
    assert (items[first]["gateway_amount"], items[second]["gateway_amount"]) == (7_500, 5_000)
    assert report["totals"]["OMR"]["gateway_amount"] == 12_500 + 4_000
    # The report pairs the 4.000 with its first mismatched part only; the other claims it too.
    assert [items[f"{imported.settlement.id}:{n}"]["status"] for n in (4, 5)] == [
        "amount_mismatch",
        "duplicate",
    ]
