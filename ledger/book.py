"""Posting balanced transactions and their reversals, inside the caller's database transaction.

The order of work keeps concurrent postings safe and fast: the journal rows first (the unique
external id settles duplicates), then the accounts, locked by one statement in sorted order
(so no deadlock), then their new totals and the postings, and last the chain head, so the one
lock that every posting shares is held only for the final statements before commit. Batches
take the same path, with one statement per step for the whole batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
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


# The hot path speaks SQLAlchemy Core on the session's connection: no ORM bookkeeping.
ACCOUNTS = cast(Table, Account.__table__)
JOURNAL = cast(Table, JournalTransaction.__table__)
POSTINGS = cast(Table, Posting.__table__)
LINKS = cast(Table, ChainLink.__table__)
HEAD = cast(Table, ChainHead.__table__)
# On PostgreSQL one statement moves the head and appends the link, computing the same
# SHA-256 as `link_hash`, so the shared lock is held for one round trip before commit.
SEAL_ONE_SQL = text(
    "WITH head AS (UPDATE ledger_chain_head SET seq = seq + 1,"
    " hash = encode(sha256(convert_to(hash || :digest, 'UTF8')), 'hex')"
    " WHERE id = 1 RETURNING seq, hash)"
    " INSERT INTO ledger_chain (seq, transaction_id, hash)"
    " SELECT seq, :transaction_id, hash FROM head"
)


SET_TOTALS_SQL = text(
    "UPDATE ledger_accounts AS a SET debits_minor = v.debits, credits_minor = v.credits"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:debits AS bigint[]),"
    " CAST(:credits AS bigint[])) AS v(id, debits, credits) WHERE a.id = v.id"
)


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


@dataclasses.dataclass
class _Pending:
    spec: TransactionSpec
    wanted: list[PostingKey]
    digest: str
    reverses: tuple[int, str] | None
    transaction_id: int | None = None
    replayed: bool = False


@dataclasses.dataclass
class _Totals:
    id: int
    kind: Kind
    floor: int | None
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        if self.kind.debit_normal:
            return self.debits - self.credits
        return self.credits - self.debits


def _unnest_insert(table: Table, rows: list[dict[str, Any]]) -> Any:
    """One PostgreSQL INSERT for many rows, each column sent as one array parameter: the
    statement stays the same size whatever the number of rows."""
    names = list(rows[0])
    arrays = [
        bindparam(name, [row[name] for row in rows], type_=ARRAY(table.c[name].type))
        for name in names
    ]
    return postgresql.insert(table).from_select(
        names, select(*(func.unnest(array) for array in arrays))
    )


def _write_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with one statement (executemany where arrays are not available)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_unnest_insert(table, rows))
    else:
        conn.execute(insert(table), rows)


def _set_totals(conn: Connection, totals: list[_Totals]) -> None:
    """Write new totals of accounts this transaction holds locked."""
    if conn.dialect.name != "postgresql":
        conn.execute(
            update(ACCOUNTS)
            .where(ACCOUNTS.c.id == bindparam("account_id"))
            .values(debits_minor=bindparam("debits"), credits_minor=bindparam("credits")),
            [{"account_id": a.id, "debits": a.debits, "credits": a.credits} for a in totals],
        )
        return
    conn.execute(
        SET_TOTALS_SQL,
        {
            "ids": [a.id for a in totals],
            "debits": [a.debits for a in totals],
            "credits": [a.credits for a in totals],
        },
    )


def _keys_filter(conn: Connection, keys: list[tuple[str, str]]) -> ColumnElement[bool]:
    """`(code, currency) IN keys`: on PostgreSQL as two array parameters, whatever the
    number of keys, so a batch's statement stays small and its plan cached."""
    pair = tuple_(ACCOUNTS.c.code, ACCOUNTS.c.currency)
    if conn.dialect.name != "postgresql":
        return pair.in_(keys)
    codes = bindparam("codes", [k[0] for k in keys], type_=ARRAY(String))
    currencies = bindparam("currencies", [k[1] for k in keys], type_=ARRAY(String))
    return pair.in_(select(func.unnest(codes), func.unnest(currencies)))


def _lock_accounts(
    conn: Connection, insert_: Any, refs: set[AccountRef], now: dt.datetime
) -> dict[tuple[str, str], _Totals]:
    """Lock every account of the postings with one statement that takes the row locks in
    sorted order, so concurrent postings never deadlock. Missing accounts are first created,
    in sorted order and before any account lock is held, for the same reason."""
    keys = sorted({(ref.code, ref.currency) for ref in refs})
    c = ACCOUNTS.c
    wanted = _keys_filter(conn, keys)
    rows = conn.execute(select(c.code, c.currency).where(wanted)).all()
    existing = {(code, currency) for code, currency in rows}
    for ref in sorted(ref for ref in refs if (ref.code, ref.currency) not in existing):
        conn.execute(
            insert_(ACCOUNTS)
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
    lock = (
        select(
            c.id, c.code, c.currency, c.kind, c.min_balance_minor, c.debits_minor, c.credits_minor
        )
        .where(wanted)
        .order_by(c.code, c.currency)
        .with_for_update()
    )
    found = {(row.code, row.currency): row for row in conn.execute(lock)}
    totals: dict[tuple[str, str], _Totals] = {}
    for ref in refs:
        row = found[(ref.code, ref.currency)]
        if row.kind != ref.kind.value:
            raise LedgerError(
                f"account {ref.code} {ref.currency} is {row.kind}, not {ref.kind.value}"
            )
        totals[(ref.code, ref.currency)] = _Totals(
            row.id, Kind(row.kind), row.min_balance_minor, row.debits_minor, row.credits_minor
        )
    return totals


def _seal(conn: Connection, insert_: Any, pending: list[_Pending]) -> None:
    """Append transactions to the hash chain in order: the last lock taken before commit."""
    if len(pending) == 1 and conn.dialect.name == "postgresql":
        sealed = conn.execute(
            SEAL_ONE_SQL,
            {"digest": pending[0].digest, "transaction_id": pending[0].transaction_id},
        )
        if sealed.rowcount == 1:
            return  # else the head row is missing: the general path below creates it
    head_query = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1).with_for_update()
    head = conn.execute(head_query).first()
    if head is None:
        conn.execute(
            insert_(HEAD)
            .values(id=1, seq=0, hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        head = conn.execute(head_query).one()
    seq, link = head
    links = []
    for item in pending:
        seq, link = seq + 1, link_hash(link, item.digest)
        links.append({"seq": seq, "transaction_id": item.transaction_id, "hash": link})
    conn.execute(update(HEAD).where(HEAD.c.id == 1).values(seq=seq, hash=link))
    _write_rows(conn, LINKS, links)


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


def _claim_external_ids(
    session: Session, insert_: Any, batch: list[_Pending], now: dt.datetime
) -> None:
    """Insert the journal rows; a row whose external id exists already is a repeat, which
    must carry the same postings."""
    rows = (
        session.connection()
        .execute(
            insert_(JOURNAL)
            .on_conflict_do_nothing(index_elements=["external_id"])
            .returning(JOURNAL.c.id, JOURNAL.c.external_id),
            [
                {
                    "external_id": item.spec.external_id,
                    "description": item.spec.description,
                    "effective_at": item.spec.effective_at,
                    "created_at": now,
                    "metadata": item.spec.metadata,
                    "reverses_id": item.reverses[0] if item.reverses else None,
                    "content_hash": item.digest,
                }
                for item in batch
            ],
        )
        .all()
    )
    inserted = {external_id: transaction_id for transaction_id, external_id in rows}
    for item in batch:
        item.transaction_id = inserted.get(item.spec.external_id)
        if item.transaction_id is not None:
            continue
        existing = session.execute(
            select(JOURNAL.c.id, JOURNAL.c.content_hash).where(
                JOURNAL.c.external_id == item.spec.external_id
            )
        ).one()
        recorded = _recorded_postings(session, existing.id)
        if recorded != item.wanted:
            raise DuplicateMismatch(
                f"{item.spec.external_id} was already posted: {_difference(recorded, item.wanted)}"
            )
        item.transaction_id, item.digest, item.replayed = existing.id, existing.content_hash, True


def post_many(
    session: Session,
    specs: Sequence[TransactionSpec],
    now: dt.datetime,
    *,
    reverses: Sequence[tuple[int, str] | None] | None = None,
) -> list[Posted]:
    """Post balanced transactions in order, all or none (the caller rolls back on error).
    An external id posted before with the same postings is a no-op returning the original;
    with different postings it raises `DuplicateMismatch`."""
    links = reverses or [None] * len(specs)
    batch = [_prepare(spec, link) for spec, link in zip(specs, links, strict=True)]
    seen: dict[str, list[PostingKey]] = {}
    for item in batch:
        earlier = seen.setdefault(item.spec.external_id, item.wanted)
        if earlier is not item.wanted:
            raise LedgerError(f"{item.spec.external_id} appears twice in one batch")
    insert_ = _insert(session)
    if batch:
        _claim_external_ids(session, insert_, batch, now)
    fresh = [item for item in batch if not item.replayed]
    if fresh:
        conn = session.connection()
        totals = _lock_accounts(
            conn, insert_, {entry.account for item in fresh for entry in item.spec.entries}, now
        )
        for item in fresh:  # limits hold after every transaction, not only at the end
            for entry in item.spec.entries:
                account = totals[(entry.account.code, entry.account.currency)]
                if entry.direction is Direction.DEBIT:
                    account.debits += entry.amount_minor
                else:
                    account.credits += entry.amount_minor
            for entry in item.spec.entries:
                account = totals[(entry.account.code, entry.account.currency)]
                if account.floor is not None and account.balance < account.floor:
                    raise LimitExceeded(
                        f"account {entry.account.code} {entry.account.currency} would fall "
                        f"to {account.balance}, below {account.floor} "
                        f"({item.spec.external_id})"
                    )
        _set_totals(conn, [account for _, account in sorted(totals.items())])
        _write_rows(
            conn,
            POSTINGS,
            [
                {
                    "transaction_id": item.transaction_id,
                    "account_id": totals[(e.account.code, e.account.currency)].id,
                    "direction": e.direction.value,
                    "amount_minor": e.amount_minor,
                }
                for item in fresh
                for e in item.spec.entries
            ],
        )
        _seal(conn, insert_, fresh)
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
