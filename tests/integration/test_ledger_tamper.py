"""Tamper evidence: every kind of out-of-band edit to the journal is found and named."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from payments.gateway import Gateway
from tests.integration.ledger_support import gateway_cli, post, spec, tamper, verify

TAMPERING = {
    "posting amount": (
        ["UPDATE ledger_postings SET amount_minor = amount_minor + 1 WHERE id = 3"],
        "content",
        "transaction 2 (t2)",
    ),
    "both legs of a posting": (
        [
            "UPDATE ledger_postings SET amount_minor = 999 WHERE transaction_id = 2",
            "UPDATE ledger_accounts SET debits_minor = 1003 WHERE code = 'cash'",
            "UPDATE ledger_accounts SET credits_minor = 1003 WHERE code = 'owed'",
        ],
        "content",
        "transaction 2 (t2)",
    ),
    "description": (
        ["UPDATE ledger_transactions SET description = 'nothing to see' WHERE id = 1"],
        "content",
        "transaction 1 (t1)",
    ),
    "account totals": (
        ["UPDATE ledger_accounts SET debits_minor = debits_minor + 5 WHERE code = 'cash'"],
        "totals",
        "account cash OMR",
    ),
    "deleted transaction": (
        [
            "DELETE FROM ledger_chain WHERE transaction_id = 2",
            "DELETE FROM ledger_postings WHERE transaction_id = 2",
            "DELETE FROM ledger_transactions WHERE id = 2",
        ],
        "chain",
        "chain link 3",
    ),
    "deleted last transaction": (
        [
            "DELETE FROM ledger_chain WHERE transaction_id = 3",
            "DELETE FROM ledger_postings WHERE transaction_id = 3",
            "DELETE FROM ledger_transactions WHERE id = 3",
        ],
        "chain",
        "chain head",
    ),
    "transaction inserted out of band": (
        [
            "INSERT INTO ledger_transactions (id, external_id, description, effective_at,"
            " created_at, metadata, content_hash) VALUES (99, 'forged', 'forged',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{}', 'x')",
            "INSERT INTO ledger_postings (transaction_id, account_id, direction, amount_minor)"
            " VALUES (99, 1, 'debit', 5), (99, 2, 'credit', 5)",
        ],
        "chain",
        "transaction 99 (forged)",
    ),
    "transaction queued out of band": (
        [
            "INSERT INTO ledger_transactions (id, external_id, description, effective_at,"
            " created_at, metadata, content_hash) VALUES (99, 'forged', 'forged',"
            " '2026-01-01 00:00:00', '2026-01-01 00:00:00', '{}', 'x')",
            "INSERT INTO ledger_postings (transaction_id, account_id, direction, amount_minor)"
            " VALUES (99, 1, 'debit', 5), (99, 2, 'credit', 5)",
            "INSERT INTO ledger_unsealed (transaction_id) VALUES (99)",
        ],
        "chain",
        "transaction 99 (forged)",
    ),
    "rewritten link": (
        ["UPDATE ledger_chain SET hash = '" + "a" * 64 + "' WHERE seq = 2"],
        "chain",
        "chain link 2",
    ),
    "unbalanced posting": (
        ["UPDATE ledger_postings SET direction = 'debit' WHERE id = 2"],
        "content",
        "transaction 1 (t1)",
    ),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_tampering_is_found_and_the_first_broken_row_named(gw: Gateway, kind: str) -> None:
    for index in (1, 2, 3):
        post(gw, spec(f"t{index}", 1000 if index == 2 else index))
    assert verify(gw).ok
    statements, check, where = TAMPERING[kind]
    tamper(gw, *statements)
    report = verify(gw)
    assert not report.ok
    first = report.problems[0]
    assert (first.check, first.where) == (check, where), report.problems


def test_gateway_ledger_verify_exits_1_naming_what_broke(gw: Gateway) -> None:
    post(gw, spec("t1", 10))
    post(gw, spec("t2", 20))
    good = gateway_cli(gw.settings, "ledger", "verify")
    assert good.returncode == 0, good.stderr
    assert "checked 2 transactions, 4 postings, 2 accounts" in good.stdout
    tamper(gw, "UPDATE ledger_postings SET amount_minor = 21 WHERE transaction_id = 2")
    bad = gateway_cli(gw.settings, "ledger", "verify")
    assert bad.returncode == 1
    assert "first broken: content: transaction 2 (t2)" in bad.stderr


def test_the_audit_ties_the_book_to_the_payments(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    from payments.service.audit import audit
    from tests.conftest import PAYMENT, auth, card

    for amount in (12500, 7000):
        created = client.post(
            "/v1/payments", json={**PAYMENT, "amount": amount}, headers=auth(agency_key)
        )
        assert created.json is not None
        client.post(
            f"/v1/payments/{created.json['id']}/confirm", json=card(), headers=auth(agency_key)
        )
    assert audit(gw).ok
    # A payment's captured amount changed behind the gateway's back: the book no longer agrees.
    with gw.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE payments SET amount_captured_minor = 6999 WHERE amount_minor = 7000")
        )
    report = audit(gw)
    assert [(p.check, p.where) for p in report.problems] == [
        ("gateway", "account test:acquirer:sandbox:clearing OMR"),
        ("gateway", "account test:agency:om-moh:payable OMR"),
    ]
