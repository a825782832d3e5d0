"""Posting balanced transactions and their reversals, inside the caller's database transaction.

The order of work keeps concurrent postings safe and fast: the journal row first (its unique
external id settles duplicates), then each account's totals in sorted order (row locks always
taken in one order, so no deadlock), then the postings, and last the chain head, so the one
lock that every posting shares is held only for the final statements before commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ledger.encoding import PostingKey, content_hash, link_hash
from ledger.models import GENESIS_HASH, Account, ChainHead, ChainLink, JournalTransaction, Posting


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

    @property
    def opposite(self) -> Direction:
        return Direction.CREDIT if self is Direction.DEBIT else Direction.DEBIT


class LedgerError(Exception):
    """A transaction the book refuses; the caller's transaction must roll back."""


class UnbalancedTransaction(LedgerError):
    """Debits and credits differ in some currency."""


class LimitExceeded(LedgerError):
    """An account would pass the limit set on it."""


class DuplicateMismatch(LedgerError):
    """The external id was posted before with other postings."""


@dataclasses.dataclass(frozen=True, order=True)
class AccountRef:
    code: str
    currency: str
    kind: Kind
    # Lowest balance on the normal side, set when the account is first created.
    min_balance_minor: int | None = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Entry:
    account: AccountRef
    direction: Direction
    amount_minor: int

    @property
    def key(self) -> PostingKey:
        return (self.account.code, self.account.currency, self.direction.value, self.amount_minor)


@dataclasses.dataclass(frozen=True)
class TransactionSpec:
    external_id: str
    description: str
    entries: tuple[Entry, ...]
    effective_at: dt.datetime
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Posted:
    """What `post` did: the journal row, and whether it already existed (an idempotent repeat)."""

    transaction_id: int
    external_id: str
    content_hash: str
    replayed: bool


def check(spec: TransactionSpec) -> None:
    """Refuse a transaction that is empty, has non-positive or non-integer amounts, or does
    not balance in every currency."""
    if not spec.entries:
        raise LedgerError("a transaction needs at least one posting")
    if not spec.external_id or len(spec.external_id) > 200:
        raise LedgerError("external id must be 1 to 200 characters")
    totals: dict[str, int] = defaultdict(int)
    for entry in spec.entries:
        if isinstance(entry.amount_minor, bool) or not isinstance(entry.amount_minor, int):
            raise LedgerError("posting amounts are integers of minor units")
        if entry.amount_minor <= 0:
            raise LedgerError(f"posting to {entry.account.code} must be positive")
        sign = 1 if entry.direction is Direction.DEBIT else -1
        totals[entry.account.currency] += sign * entry.amount_minor
    unbalanced = {ccy: diff for ccy, diff in sorted(totals.items()) if diff}
    if unbalanced:
        raise UnbalancedTransaction(f"debits and credits differ: {unbalanced}")


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _recorded_postings(session: Session, transaction_id: int) -> list[PostingKey]:
    rows = session.execute(
        select(Account.code, Account.currency, Posting.direction, Posting.amount_minor)
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.transaction_id == transaction_id)
    ).all()
    return sorted((code, ccy, direction, int(amount)) for code, ccy, direction, amount in rows)


def _difference(recorded: list[PostingKey], wanted: list[PostingKey]) -> str:
    if len(recorded) != len(wanted):
        return f"it had {len(recorded)} postings, not {len(wanted)}"
    names = ("account", "currency", "direction", "amount")
    for old, new in zip(recorded, wanted, strict=True):
        for name, a, b in zip(names, old, new, strict=True):
            if a != b:
                return f"posting {old[0]} {old[1]}: {name} was {a!r}, not {b!r}"
    return "the postings differ"


def _apply_to_accounts(
    session: Session, entries: Sequence[Entry], now: dt.datetime
) -> dict[tuple[str, str], int]:
    """Add each entry to its account's totals, one account at a time in sorted order."""
    moves: dict[AccountRef, list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        moves[entry.account][0 if entry.direction is Direction.DEBIT else 1] += entry.amount_minor
    ids: dict[tuple[str, str], int] = {}
    for ref in sorted(moves):
        debit, credit = moves[ref]
        statement = (
            update(Account)
            .where(Account.code == ref.code, Account.currency == ref.currency)
            .values(
                debits_minor=Account.debits_minor + debit,
                credits_minor=Account.credits_minor + credit,
            )
            .returning(
                Account.id,
                Account.kind,
                Account.debits_minor,
                Account.credits_minor,
                Account.min_balance_minor,
            )
        )
        row = session.execute(statement).first()
        if row is None:
            session.execute(
                _insert(session)(Account)
                .values(
                    code=ref.code,
                    currency=ref.currency,
                    kind=ref.kind.value,
                    min_balance_minor=ref.min_balance_minor,
                    debits_minor=0,
                    credits_minor=0,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["code", "currency"])
            )
            row = session.execute(statement).one()
        account_id, kind, debits, credits, floor = row
        if kind != ref.kind.value:
            raise LedgerError(f"account {ref.code} {ref.currency} is {kind}, not {ref.kind.value}")
        balance = debits - credits if Kind(kind).debit_normal else credits - debits
        if floor is not None and balance < floor:
            raise LimitExceeded(
                f"account {ref.code} {ref.currency} would fall to {balance}, below {floor}"
            )
        ids[(ref.code, ref.currency)] = account_id
    return ids


def _seal(session: Session, transaction_id: int, digest: str) -> None:
    """Append the transaction to the hash chain: the last lock taken before commit."""
    head = session.execute(
        select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1).with_for_update()
    ).first()
    if head is None:
        session.execute(
            _insert(session)(ChainHead)
            .values(id=1, seq=0, hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        head = session.execute(
            select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1).with_for_update()
        ).one()
    seq, previous = head
    link = link_hash(previous, digest)
    session.execute(update(ChainHead).where(ChainHead.id == 1).values(seq=seq + 1, hash=link))
    session.execute(insert(ChainLink).values(seq=seq + 1, transaction_id=transaction_id, hash=link))


def post(
    session: Session,
    spec: TransactionSpec,
    now: dt.datetime,
    *,
    reverses: tuple[int, str] | None = None,
) -> Posted:
    """Post a balanced transaction once. The same external id with the same postings is a
    no-op returning the original; with different postings it raises `DuplicateMismatch`."""
    check(spec)
    wanted = sorted(entry.key for entry in spec.entries)
    digest = content_hash(
        external_id=spec.external_id,
        description=spec.description,
        effective_at=spec.effective_at,
        metadata=spec.metadata,
        reverses=reverses[1] if reverses else None,
        postings=wanted,
    )
    inserted = session.execute(
        _insert(session)(JournalTransaction)
        .values(
            external_id=spec.external_id,
            description=spec.description,
            effective_at=spec.effective_at,
            created_at=now,
            extra=spec.metadata,
            reverses_id=reverses[0] if reverses else None,
            content_hash=digest,
        )
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(JournalTransaction.id)
    ).scalar()
    if inserted is None:
        existing = session.execute(
            select(JournalTransaction.id, JournalTransaction.content_hash).where(
                JournalTransaction.external_id == spec.external_id
            )
        ).one()
        recorded = _recorded_postings(session, existing.id)
        if recorded != wanted:
            raise DuplicateMismatch(
                f"{spec.external_id} was already posted: {_difference(recorded, wanted)}"
            )
        return Posted(existing.id, spec.external_id, existing.content_hash, replayed=True)
    account_ids = _apply_to_accounts(session, spec.entries, now)
    session.execute(
        insert(Posting),
        [
            {
                "transaction_id": inserted,
                "account_id": account_ids[(e.account.code, e.account.currency)],
                "direction": e.direction.value,
                "amount_minor": e.amount_minor,
            }
            for e in spec.entries
        ],
    )
    _seal(session, inserted, digest)
    return Posted(inserted, spec.external_id, digest, replayed=False)


def reverse(
    session: Session, transaction_id: int, now: dt.datetime, *, description: str | None = None
) -> Posted:
    """Post the mirror image of a transaction, linked to it; a transaction is reversed once."""
    original = session.execute(
        select(JournalTransaction).where(JournalTransaction.id == transaction_id)
    ).scalar_one_or_none()
    if original is None:
        raise LedgerError(f"no journal transaction {transaction_id}")
    if original.reverses_id is not None:
        raise LedgerError(f"transaction {transaction_id} is itself a reversal")
    rows = session.execute(
        select(
            Account.code, Account.currency, Account.kind, Posting.direction, Posting.amount_minor
        )
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.transaction_id == transaction_id)
        .order_by(Posting.id)
    ).all()
    entries = tuple(
        Entry(AccountRef(code, ccy, Kind(kind)), Direction(direction).opposite, int(amount))
        for code, ccy, kind, direction, amount in rows
    )
    spec = TransactionSpec(
        external_id=f"reversal:{original.external_id}"[:200],
        description=description or f"reversal of {original.external_id}",
        entries=entries,
        effective_at=now,
        metadata={"reverses": original.external_id},
    )
    return post(session, spec, now, reverses=(original.id, original.external_id))
