"""Helpers for ledger tests: short specs, posting in one transaction, raw SQL for tampering."""

from __future__ import annotations

from sqlalchemy import text

import ledger
from ledger import AccountRef, Direction, Entry, Kind, TransactionSpec
from payments import clock
from payments.gateway import Gateway

CASH = AccountRef("cash", "OMR", Kind.ASSET)
OWED = AccountRef("owed", "OMR", Kind.LIABILITY)
APPEND_ONLY = ("ledger_transactions", "ledger_postings", "ledger_chain")


def spec(
    external_id: str,
    amount: int,
    *,
    debit: AccountRef = CASH,
    credit: AccountRef = OWED,
    credit_amount: int | None = None,
) -> TransactionSpec:
    return TransactionSpec(
        external_id=external_id,
        description=f"test {external_id}",
        entries=(
            Entry(debit, Direction.DEBIT, amount),
            Entry(credit, Direction.CREDIT, amount if credit_amount is None else credit_amount),
        ),
        effective_at=clock.now(),
    )


def post(gw: Gateway, transaction: TransactionSpec) -> ledger.Posted:
    with gw.db.transaction() as session:
        return ledger.post(session, transaction, clock.now())


def verify(gw: Gateway) -> ledger.Report:
    with gw.db.read() as session:
        return ledger.verify(session)


def tamper(gw: Gateway, *statements: str) -> None:
    """Run SQL the way someone with database access would, past the append-only guard."""
    with gw.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for table in APPEND_ONLY:
                for action in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{action}"))
        for statement in statements:
            conn.execute(text(statement))
