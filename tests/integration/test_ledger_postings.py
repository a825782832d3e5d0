"""The ledger: balanced transactions only, idempotent external ids, and the gateway's postings."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

import ledger
from ledger import AccountRef, Direction, Entry, Kind, LedgerError, TransactionSpec
from payments import clock
from payments.gateway import Gateway
from tests.conftest import PAYMENT, auth, card
from tests.integration.ledger_support import OWED
from tests.integration.ledger_support import spec as make_spec


def test_unbalanced_and_non_positive_transactions_leave_no_trace(gw: Gateway) -> None:
    for spec in (make_spec("t1", 100, credit_amount=99), make_spec("t2", 0), make_spec("t3", -5)):
        with pytest.raises(LedgerError), gw.db.transaction() as session:
            ledger.post(session, spec, clock.now())
    with gw.db.read() as session:
        assert (
            session.execute(select(func.count()).select_from(ledger.JournalTransaction)).scalar()
            == 0
        )
        assert session.execute(select(func.count()).select_from(ledger.Account)).scalar() == 0


def test_same_external_id_is_a_no_op_and_different_postings_are_refused(gw: Gateway) -> None:
    with gw.db.transaction() as session:
        first = ledger.post(session, make_spec("pay-1", 500), clock.now())
    with gw.db.transaction() as session:
        again = ledger.post(session, make_spec("pay-1", 500), clock.now())
    assert again.replayed and again.transaction_id == first.transaction_id
    with (
        pytest.raises(
            LedgerError, match="already posted: posting cash OMR: amount was 500, not 501"
        ),
        gw.db.transaction() as session,
    ):
        ledger.post(session, make_spec("pay-1", 501), clock.now())
    with gw.db.read() as session:
        cash = ledger.account_balance(session, "cash", "OMR")
        owed = ledger.account_balance(session, "owed", "OMR")
    assert cash is not None and cash.balance_minor == 500
    assert owed is not None and owed.balance_minor == 500


def test_an_account_keeps_its_kind(gw: Gateway) -> None:
    with gw.db.transaction() as session:
        ledger.post(session, make_spec("a", 1), clock.now())
    wrong = TransactionSpec(
        external_id="b",
        description="test",
        entries=(
            Entry(AccountRef("cash", "OMR", Kind.LIABILITY), Direction.DEBIT, 1),
            Entry(OWED, Direction.CREDIT, 1),
        ),
        effective_at=clock.now(),
    )
    with pytest.raises(LedgerError, match="is asset"), gw.db.transaction() as session:
        ledger.post(session, wrong, clock.now())


def test_captures_and_refunds_post_the_chart_of_accounts(
    client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    captured = 0
    refunded = 0
    for amount, refund in ((12500, 2500), (7000, None), (3000, 3000)):
        payment = client.post(
            "/v1/payments", json={**PAYMENT, "amount": amount}, headers=auth(agency_key)
        ).json
        assert payment is not None
        client.post(f"/v1/payments/{payment['id']}/confirm", json=card(), headers=auth(agency_key))
        captured += amount
        if refund:
            response = client.post(
                f"/v1/payments/{payment['id']}/refunds",
                json={"amount": refund},
                headers=auth(agency_key),
            )
            assert response.status_code == 201
            refunded += refund
    declined = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert declined is not None
    client.post(
        f"/v1/payments/{declined['id']}/confirm",
        json=card("4000000000000002"),
        headers=auth(agency_key),
    )
    trial = client.get("/v1/ledger/trial-balance", headers=auth(finance_key)).json
    assert trial is not None
    assert trial["currencies"] == {
        "OMR": {"debits": captured + refunded, "credits": captured + refunded}
    }
    balances = {row["account"]: row["balance"] for row in trial["accounts"]}
    assert balances == {
        "test:acquirer:sandbox:clearing": captured - refunded,
        "test:agency:om-moh:payable": captured - refunded,
    }
    forbidden = client.get("/v1/ledger/trial-balance", headers=auth(agency_key))
    assert forbidden.status_code == 403
    assert forbidden.json is not None and forbidden.json["error"]["type"] == "permission"
