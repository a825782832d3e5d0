"""Ledger tables: accounts with running totals, append-only journal transactions and postings,
and the hash chain that seals the journal in commit order."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ledger.types import UTCDateTime

GENESIS_HASH = "0" * 64


class LedgerBase(DeclarativeBase):
    """The ledger's own metadata; it shares no tables with the gateway."""


class Account(LedgerBase):
    """One account in one currency; its totals move in the same transaction as its postings."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("code", "currency", name="uq_ledger_accounts_code_currency"),
        CheckConstraint("debits_minor >= 0 AND credits_minor >= 0", name="ck_ledger_totals"),
        CheckConstraint(
            "kind IN ('asset', 'liability', 'income', 'expense', 'equity')",
            name="ck_ledger_accounts_kind",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    # The lowest balance (on the account's normal side) it may reach; None: no limit.
    min_balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    debits_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class JournalTransaction(LedgerBase):
    """A balanced set of postings; `content_hash` is SHA-256 of its canonical encoding."""

    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(String(500))
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id"), unique=True
    )
    content_hash: Mapped[str] = mapped_column(String(64))


class Posting(LedgerBase):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_ledger_postings_positive"),
        CheckConstraint("direction IN ('debit', 'credit')", name="ck_ledger_postings_direction"),
        Index("ix_ledger_postings_account", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    direction: Mapped[str] = mapped_column(String(6))
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class ChainLink(LedgerBase):
    """The journal in commit order: link `seq` hashes link `seq - 1` with one transaction."""

    __tablename__ = "ledger_chain"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(LedgerBase):
    """The newest link, in one row that every posting locks last, just before it commits."""

    __tablename__ = "ledger_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="ck_ledger_chain_head_single"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
