"""Posting balanced transactions, reading balances and the trial balance, inside the caller's
database transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ledger.models import Account, JournalTransaction, Posting


class Kind(enum.StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    INCOME = "income"
    EXPENSE = "expense"
    EQUITY = "equity"

    @property
    def debit_normal(self) -> bool:
        return self in (Kind.ASSET, Kind.EXPENSE)


class Direction(enum.StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class LedgerError(Exception):
    """A transaction the book refuses; nothing of it is written."""


class UnbalancedTransaction(LedgerError):
    """Debits and credits differ in some currency."""


@dataclasses.dataclass(frozen=True, order=True)
class AccountRef:
    code: str
    currency: str
    kind: Kind


@dataclasses.dataclass(frozen=True)
class Entry:
    account: AccountRef
    direction: Direction
    amount_minor: int


@dataclasses.dataclass(frozen=True)
class TransactionSpec:
    external_id: str
    description: str
    entries: tuple[Entry, ...]
    effective_at: dt.datetime
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AccountBalance:
    code: str
    currency: str
    kind: Kind
    debits_minor: int
    credits_minor: int

    @property
    def balance_minor(self) -> int:
        """The balance on the account's normal side (assets and expenses: debits - credits)."""
        if self.kind.debit_normal:
            return self.debits_minor - self.credits_minor
        return self.credits_minor - self.debits_minor


def _check(spec: TransactionSpec) -> None:
    if not spec.entries:
        raise LedgerError("a transaction needs at least one posting")
    totals: dict[str, int] = defaultdict(int)
    for entry in spec.entries:
        if isinstance(entry.amount_minor, bool) or not isinstance(entry.amount_minor, int):
            raise LedgerError("posting amounts are integers of minor units")
        if entry.amount_minor <= 0:
            raise LedgerError(f"posting to {entry.account.code} must be positive")
        sign = 1 if entry.direction is Direction.DEBIT else -1
        totals[entry.account.currency] += sign * entry.amount_minor
    unbalanced = {ccy: diff for ccy, diff in totals.items() if diff}
    if unbalanced:
        raise UnbalancedTransaction(f"debits and credits differ: {unbalanced}")


def _entry_key(entry: Entry) -> tuple[str, str, str, int]:
    return (entry.account.code, entry.account.currency, entry.direction.value, entry.amount_minor)


def _insert_ignore(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _lock_accounts(
    session: Session, refs: Sequence[AccountRef], now: dt.datetime
) -> dict[tuple[str, str], Account]:
    """Create missing accounts, then lock all in sorted order so postings never deadlock."""
    insert = _insert_ignore(session)
    for ref in refs:
        session.execute(
            insert(Account)
            .values(
                code=ref.code,
                currency=ref.currency,
                kind=ref.kind.value,
                debits_minor=0,
                credits_minor=0,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["code", "currency"])
        )
    accounts: dict[tuple[str, str], Account] = {}
    for ref in refs:  # already sorted: one row lock at a time, always in the same order
        account = session.execute(
            select(Account)
            .where(Account.code == ref.code, Account.currency == ref.currency)
            .with_for_update()
        ).scalar_one()
        if account.kind != ref.kind.value:
            raise LedgerError(f"account {ref.code} is {account.kind}, not {ref.kind.value}")
        accounts[(ref.code, ref.currency)] = account
    return accounts


def post(session: Session, spec: TransactionSpec, now: dt.datetime) -> JournalTransaction:
    """Post a balanced transaction once; the same external id with the same postings is a
    no-op returning the original, with different postings an error."""
    _check(spec)
    existing = session.execute(
        select(JournalTransaction).where(JournalTransaction.external_id == spec.external_id)
    ).scalar_one_or_none()
    if existing is not None:
        recorded = sorted(
            (p.account.code, p.account.currency, p.direction, p.amount_minor)
            for p in existing.postings
        )
        if recorded != sorted(_entry_key(e) for e in spec.entries):
            raise LedgerError(f"{spec.external_id} was already posted with other postings")
        return existing
    refs = sorted({entry.account for entry in spec.entries})
    accounts = _lock_accounts(session, refs, now)
    journal = JournalTransaction(
        external_id=spec.external_id,
        description=spec.description,
        effective_at=spec.effective_at,
        created_at=now,
        extra=dict(spec.metadata),
    )
    session.add(journal)
    session.flush()
    for entry in spec.entries:
        account = accounts[(entry.account.code, entry.account.currency)]
        if entry.direction is Direction.DEBIT:
            account.debits_minor += entry.amount_minor
        else:
            account.credits_minor += entry.amount_minor
        session.add(
            Posting(
                transaction_id=journal.id,
                account_id=account.id,
                direction=entry.direction.value,
                amount_minor=entry.amount_minor,
            )
        )
    session.flush()
    return journal


def _to_balance(account: Account) -> AccountBalance:
    return AccountBalance(
        code=account.code,
        currency=account.currency,
        kind=Kind(account.kind),
        debits_minor=account.debits_minor,
        credits_minor=account.credits_minor,
    )


def account_balance(session: Session, code: str, currency: str) -> AccountBalance | None:
    account = session.execute(
        select(Account).where(Account.code == code, Account.currency == currency)
    ).scalar_one_or_none()
    return None if account is None else _to_balance(account)


def balances(session: Session, code: str) -> list[AccountBalance]:
    """The account `code` in every currency it holds, by currency."""
    rows = session.execute(
        select(Account).where(Account.code == code).order_by(Account.currency)
    ).scalars()
    return [_to_balance(account) for account in rows]


def trial_balance(session: Session) -> tuple[dict[str, tuple[int, int]], list[AccountBalance]]:
    """Per currency (total debits, total credits) from the postings, and every account."""
    rows = session.execute(
        select(
            Account.currency, Posting.direction, func.coalesce(func.sum(Posting.amount_minor), 0)
        )
        .join(Posting, Posting.account_id == Account.id)
        .group_by(Account.currency, Posting.direction)
    ).all()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for currency, direction, amount in rows:
        totals[currency][0 if direction == "debit" else 1] += int(amount)
    accounts = [
        _to_balance(account)
        for account in session.execute(
            select(Account).order_by(Account.code, Account.currency)
        ).scalars()
    ]
    return {ccy: (d, c) for ccy, (d, c) in sorted(totals.items())}, accounts
