"""Ledger tables: accounts with running totals, append-only journal transactions and postings,
the hash chain that seals the journal, and the queue of transactions waiting to be sealed."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql, sqlite
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
    """The sealed journal: link `seq` hashes link `seq - 1` with one transaction's content hash.
    Links follow the order of sealing: by id within one seal, so roughly commit order."""

    __tablename__ = "ledger_chain"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(LedgerBase):
    """The newest link, in one row: whoever holds its row lock is the one sealer."""

    __tablename__ = "ledger_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="ck_ledger_chain_head_single"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Unsealed(LedgerBase):
    """A posted transaction waiting for its chain link: a queue, not part of the record, so its
    rows are deleted as they are sealed. Posting adds the row in the posting's own transaction."""

    __tablename__ = "ledger_unsealed"

    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id"), primary_key=True, autoincrement=False
    )


# Core handles for the hot paths (posting and sealing), which skip the ORM's bookkeeping.
ACCOUNTS = cast(Table, Account.__table__)
JOURNAL = cast(Table, JournalTransaction.__table__)
POSTINGS = cast(Table, Posting.__table__)
LINKS = cast(Table, ChainLink.__table__)
HEAD = cast(Table, ChainHead.__table__)
QUEUE = cast(Table, Unsealed.__table__)


def dialect_insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT for the connection's database."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
