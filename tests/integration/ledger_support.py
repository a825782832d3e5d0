"""Helpers for ledger tests: short specs, posting in one transaction, raw SQL for tampering,
the `gateway` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

import ledger
from config import Settings
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


def gateway_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `gateway` command against the test's database and var directory."""
    env = {
        **os.environ,
        "GATEWAY_ENV": "test",
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_VAR_DIR": str(settings.var_dir),
        "GATEWAY_SANDBOX_DATABASE": str(settings.sandbox_database),
        "GATEWAY_SECRET_KEY": settings.secret_key,
        "GATEWAY_ENCRYPTION_KEY": settings.encryption_key,
    }
    gateway = Path(sys.executable).parent / "gateway"
    return subprocess.run(
        [str(gateway), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
