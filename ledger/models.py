"""Ledger tables: accounts with running totals, journal transactions and their postings."""

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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ledger.types import UTCDateTime


class LedgerBase(DeclarativeBase):
    """The ledger's own metadata; it shares no tables with the gateway."""


class Account(LedgerBase):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("code", "currency", name="uq_ledger_accounts_code_currency"),
        CheckConstraint("debits_minor >= 0 AND credits_minor >= 0", name="ck_ledger_totals"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    debits_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class JournalTransaction(LedgerBase):
    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(String(500))
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)

    postings: Mapped[list[Posting]] = relationship(
        back_populates="transaction", order_by="Posting.id"
    )


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

    transaction: Mapped[JournalTransaction] = relationship(back_populates="postings")
    account: Mapped[Account] = relationship()
