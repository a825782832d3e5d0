"""Posting balanced transactions and their reversals, inside the caller's database transaction.

The batch goes to the store in one call (see `ledger.store`): journal rows first (the unique
external id settles duplicates), queued for sealing, with a try for the chain head that never
waits, and a seal if it got it (see `ledger.chain`); then each account in sorted order (so no
deadlock), locked by the update of its totals, and the postings. Then repeats are compared
with what they repeat, and last kinds and limits are checked; a refusal raises and the
caller rolls back. No lock is shared by all postings, so they commit side by side.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import store
from ledger.encoding import PostingKey, content_hash
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

    def balance(self, debits: int, credits: int) -> int:
        """The balance on the normal side: assets and expenses debits - credits, others the
        reverse."""
        return debits - credits if self.debit_normal else credits - debits


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
    """Refuse a transaction that is empty, has a naive effective time, non-positive or
    non-integer amounts, or does not balance in every currency."""
    if not spec.entries:
        raise LedgerError("a transaction needs at least one posting")
    if not spec.external_id or len(spec.external_id) > 200:
        raise LedgerError("external id must be 1 to 200 characters")
    if spec.effective_at.tzinfo is None:
        raise LedgerError("effective_at must be timezone-aware")
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


@dataclasses.dataclass
class _Pending:
    spec: TransactionSpec
    wanted: list[PostingKey]
    digest: str
    reverses: tuple[int, str] | None
    transaction_id: int | None = None
    replayed: bool = False


def _prepare(spec: TransactionSpec, reverses: tuple[int, str] | None) -> _Pending:
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
    return _Pending(spec, wanted, digest, reverses)


def _compare_repeats(session: Session, batch: list[_Pending]) -> None:
    """A transaction whose external id existed is a repeat: it must carry the same postings,
    and answers with the original."""
    for item in batch:
        if item.transaction_id is not None:
            continue
        existing = session.execute(
            select(JournalTransaction.id, JournalTransaction.content_hash).where(
                JournalTransaction.external_id == item.spec.external_id
            )
        ).one()
        recorded = _recorded_postings(session, existing.id)
        if recorded != item.wanted:
            raise DuplicateMismatch(
                f"{item.spec.external_id} was already posted: {_difference(recorded, item.wanted)}"
            )
        item.transaction_id, item.digest, item.replayed = existing.id, existing.content_hash, True


def _rows(
    batch: list[_Pending],
) -> tuple[list[store.JournalRow], list[store.AccountRow], list[store.PostingRow]]:
    """The batch as rows for the store: its accounts distinct and sorted by code and currency,
    each created (if missing) with the kind and limit of its first reference in that order."""
    refs: dict[tuple[str, str], AccountRef] = {}
    for item in batch:
        for entry in item.spec.entries:
            key = (entry.account.code, entry.account.currency)
            known = refs.setdefault(key, entry.account)
            if known is not entry.account and entry.account < known:
                refs[key] = entry.account
    keys = sorted(refs)
    position = {key: index for index, key in enumerate(keys)}
    journal = [
        store.JournalRow(
            external_id=item.spec.external_id,
            description=item.spec.description,
            effective_at=item.spec.effective_at,
            metadata=item.spec.metadata,
            reverses_id=item.reverses[0] if item.reverses else None,
            content_hash=item.digest,
        )
        for item in batch
    ]
    accounts = [
        store.AccountRow(*key, refs[key].kind.value, refs[key].min_balance_minor) for key in keys
    ]
    postings = [
        store.PostingRow(
            number,
            position[(entry.account.code, entry.account.currency)],
            entry.direction.value,
            entry.amount_minor,
        )
        for number, item in enumerate(batch)
        for entry in item.spec.entries
    ]
    return journal, accounts, postings


def _check_accounts(fresh: list[_Pending], before: dict[tuple[str, str], store.Totals]) -> None:
    """Refuse an account of another kind, and any balance that passes its account's limit
    after some transaction of the batch, not only at the end."""
    named = {
        (e.account.code, e.account.currency, e.account.kind.value)
        for item in fresh
        for e in item.spec.entries
    }
    wrong = sorted(key for key in named if before[key[:2]].kind != key[2])
    if wrong:
        code, currency, kind = wrong[0]
        raise LedgerError(
            f"account {code} {currency} is {before[(code, currency)].kind}, not {kind}"
        )
    # Only accounts with a limit need following transaction by transaction.
    limited = {
        key: [account.debits, account.credits]
        for key, account in before.items()
        if account.floor is not None
    }
    if not limited:
        return
    for item in fresh:
        for entry in item.spec.entries:
            totals = limited.get((entry.account.code, entry.account.currency))
            if totals is not None:
                totals[0 if entry.direction is Direction.DEBIT else 1] += entry.amount_minor
        for entry in item.spec.entries:
            key = (entry.account.code, entry.account.currency)
            if key not in limited:
                continue
            account = before[key]
            balance = Kind(account.kind).balance(*limited[key])
            if account.floor is not None and balance < account.floor:
                raise LimitExceeded(
                    f"account {entry.account.code} {entry.account.currency} would fall "
                    f"to {balance}, below {account.floor} "
                    f"({item.spec.external_id})"
                )


def post_many(
    session: Session,
    specs: Sequence[TransactionSpec],
    now: dt.datetime,
    *,
    reverses: Sequence[tuple[int, str] | None] | None = None,
    seal: bool = True,
) -> list[Posted]:
    """Post balanced transactions in order, all or none (the caller rolls back on error).
    An external id posted before with the same postings is a no-op returning the original;
    with different postings it raises `DuplicateMismatch`. A batch job posting many times in
    one transaction passes `seal=False` and calls `seal` after it commits."""
    if now.tzinfo is None:
        raise LedgerError("times must be timezone-aware")
    links = reverses or [None] * len(specs)
    batch = [_prepare(spec, link) for spec, link in zip(specs, links, strict=True)]
    seen: dict[str, list[PostingKey]] = {}
    for item in batch:
        earlier = seen.setdefault(item.spec.external_id, item.wanted)
        if earlier is not item.wanted:
            raise LedgerError(f"{item.spec.external_id} appears twice in one batch")
    if not batch:
        return []
    written = store.post_batch(session.connection(), *_rows(batch), now, seal=seal)
    for item, transaction_id in zip(batch, written.transaction_ids, strict=True):
        item.transaction_id = transaction_id
    _compare_repeats(session, batch)
    fresh = [item for item in batch if not item.replayed]
    _check_accounts(fresh, written.before)
    return [
        Posted(item.transaction_id or 0, item.spec.external_id, item.digest, item.replayed)
        for item in batch
    ]


def post(
    session: Session,
    spec: TransactionSpec,
    now: dt.datetime,
    *,
    reverses: tuple[int, str] | None = None,
) -> Posted:
    """Post one balanced transaction once (see `post_many`)."""
    return post_many(session, [spec], now, reverses=[reverses])[0]


def _reversal_id(original: JournalTransaction) -> str:
    """`reversal:` + the original's external id, or its journal id when that would be too long
    (a cut-off external id could name another transaction's reversal)."""
    name = f"reversal:{original.external_id}"
    return name if len(name) <= 200 else f"reversal:#{original.id}"


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
        external_id=_reversal_id(original),
        description=description or f"reversal of {original.external_id}",
        entries=entries,
        effective_at=now,
        metadata={"reverses": original.external_id},
    )
    return post(session, spec, now, reverses=(original.id, original.external_id))
