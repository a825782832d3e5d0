"""Writing a batch of journal transactions: journal rows (queued for sealing), account totals
and posting rows, in one round trip on PostgreSQL whatever the batch's size.

On PostgreSQL the batch goes, as one JSON document, to the `ledger_post` function (migration
0003): journal rows, queue rows and a seal if the chain head is free (see `ledger.chain`), then
each account in sorted order, created if missing and locked by the update of its totals (so
concurrent postings never deadlock), then the postings. On SQLite, where writers are
serialized, plain statements do the same, on the driver's cursor (`statements.prepared`).

A repeated external id is left alone and answered `None`, for the caller to compare. Totals
are written before the caller checks kinds and limits on what this returns: a refusal raises,
and the caller's transaction rolls back, as for every `LedgerError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import sqlite

from ledger import chain
from ledger.models import ACCOUNTS, JOURNAL, POSTINGS, QUEUE
from statements import driver, prepared

Key = tuple[str, str]  # (account code, currency)


@dataclasses.dataclass(frozen=True)
class JournalRow:
    """One journal transaction a batch writes, as its row's columns."""

    external_id: str
    description: str
    effective_at: dt.datetime
    metadata: dict[str, Any]
    reverses_id: int | None
    content_hash: str

    def columns(self) -> dict[str, Any]:
        """The row's values by column, as they are (`dataclasses.asdict` would deep-copy the
        metadata for nothing)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class AccountRow:
    """One account a batch names: created with `kind` and `floor` if missing."""

    code: str
    currency: str
    kind: str
    floor: int | None


@dataclasses.dataclass(frozen=True)
class PostingRow:
    transaction: int  # index into the batch's journal rows
    account: int  # index into the batch's accounts
    direction: str
    amount_minor: int


@dataclasses.dataclass
class Totals:
    """An account as it stood before the batch."""

    id: int
    kind: str
    floor: int | None
    debits: int
    credits: int


@dataclasses.dataclass(frozen=True)
class Written:
    transaction_ids: list[int | None]  # per journal row; None: its external id existed
    before: dict[Key, Totals]  # the accounts the new transactions moved


# Run on the driver's own cursor (`statements.driver`), so in the driver's parameter style.
POST_CALL = (
    "SELECT transaction_ids, account_ids, kinds, floors, debits, credits"
    " FROM ledger_post(%s, CAST(%s AS json), %s)"
)


def _batch_document(
    journal: list[JournalRow], accounts: list[AccountRow], postings: list[PostingRow]
) -> str:
    """The batch as one JSON document for `ledger_post` (indexes count from 1 there)."""
    return json.dumps(
        {
            "journal": [
                {
                    "external_id": r.external_id,
                    "description": r.description,
                    "effective_at": r.effective_at.isoformat(),
                    "metadata": r.metadata,
                    "reverses_id": r.reverses_id,
                    "content_hash": r.content_hash,
                }
                for r in journal
            ],
            "accounts": [
                {"code": a.code, "currency": a.currency, "kind": a.kind, "floor": a.floor}
                for a in accounts
            ],
            "postings": [
                {
                    "journal": p.transaction + 1,
                    "account": p.account + 1,
                    "direction": p.direction,
                    "amount_minor": p.amount_minor,
                }
                for p in postings
            ],
        },
        ensure_ascii=False,
    )


def _post_postgres(
    conn: Connection,
    journal: list[JournalRow],
    accounts: list[AccountRow],
    postings: list[PostingRow],
    now: dt.datetime,
    *,
    seal: bool,
) -> Written:
    batch = _batch_document(journal, accounts, postings)
    ((transaction_ids, *moved),) = driver.run(conn, POST_CALL, (now, batch, seal)).rows
    before = {}
    if moved[0] is not None:  # else every transaction was posted before
        for account, *found in zip(accounts, *moved, strict=True):
            if found[0] is not None:
                before[(account.code, account.currency)] = Totals(*found)
    return Written(list(transaction_ids), before)


def _create(conn: Connection, accounts: list[AccountRow], now: dt.datetime) -> None:
    """Create `accounts`, none of which exists yet (SQLite holds the write lock)."""
    conn.execute(
        insert(ACCOUNTS),
        [
            {
                "code": a.code,
                "currency": a.currency,
                "kind": a.kind,
                "min_balance_minor": a.floor,
                "debits_minor": 0,
                "credits_minor": 0,
                "created_at": now,
            }
            for a in accounts
        ],
    )


# Statements the SQLite posting runs on the driver's cursor (`statements.prepared`).
_NEW_TRANSACTION = (
    sqlite.insert(JOURNAL)
    .on_conflict_do_nothing(index_elements=["external_id"])
    .returning(JOURNAL.c.id, JOURNAL.c.external_id)
)
_QUEUE_ROW = insert(QUEUE)
_MOVE_TOTALS = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("account_id"))
    .values(
        debits_minor=ACCOUNTS.c.debits_minor + bindparam("debits"),
        credits_minor=ACCOUNTS.c.credits_minor + bindparam("credits"),
    )
)
_NEW_POSTING = insert(POSTINGS)


@functools.cache
def _totals_of(count: int) -> Select[Any]:
    """The totals of `count` accounts, each named by bound `code_i` and `currency_i`."""
    c = ACCOUNTS.c
    return select(
        c.id, c.code, c.currency, c.kind, c.min_balance_minor, c.debits_minor, c.credits_minor
    ).where(
        or_(
            *(
                and_(c.code == bindparam(f"code_{i}"), c.currency == bindparam(f"currency_{i}"))
                for i in range(count)
            )
        )
    )


def _totals(conn: Connection, accounts: list[AccountRow]) -> dict[Key, Totals]:
    named: dict[str, str] = {}
    for i, a in enumerate(accounts):
        named[f"code_{i}"], named[f"currency_{i}"] = a.code, a.currency
    rows = prepared.run(conn, _totals_of(len(accounts)), named).rows
    return {
        (code, currency): Totals(id_, kind, floor, debits, credits)
        for id_, code, currency, kind, floor, debits, credits in rows
    }


def _post_sqlite(
    conn: Connection,
    journal: list[JournalRow],
    accounts: list[AccountRow],
    postings: list[PostingRow],
    now: dt.datetime,
    *,
    seal: bool,
) -> Written:
    inserted = [
        row
        for r in journal
        for row in prepared.run(conn, _NEW_TRANSACTION, {**r.columns(), "created_at": now}).rows
    ]
    new_ids = {external_id: transaction_id for transaction_id, external_id in inserted}
    transaction_ids = [new_ids.get(r.external_id) for r in journal]
    fresh = [p for p in postings if transaction_ids[p.transaction] is not None]
    if not fresh:
        return Written(transaction_ids, {})
    prepared.run_many(conn, _QUEUE_ROW, [{"transaction_id": row[0]} for row in inserted])
    if seal:
        chain.seal_queue(conn)

    added: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for p in fresh:
        added[p.account][0 if p.direction == "debit" else 1] += p.amount_minor
    moved = [accounts[index] for index in sorted(added)]
    before = _totals(conn, moved)
    missing = [a for a in moved if (a.code, a.currency) not in before]
    if missing:
        _create(conn, missing, now)
        before = _totals(conn, moved)

    def account_id(index: int) -> int:
        return before[(accounts[index].code, accounts[index].currency)].id

    prepared.run_many(
        conn,
        _MOVE_TOTALS,
        [
            {"account_id": account_id(index), "debits": debits, "credits": credits}
            for index, (debits, credits) in sorted(added.items())
        ],
    )
    prepared.run_many(
        conn,
        _NEW_POSTING,
        [
            {
                "transaction_id": transaction_ids[p.transaction],
                "account_id": account_id(p.account),
                "direction": p.direction,
                "amount_minor": p.amount_minor,
            }
            for p in fresh
        ],
    )
    return Written(transaction_ids, before)


def post_batch(
    conn: Connection,
    journal: list[JournalRow],
    accounts: list[AccountRow],
    postings: list[PostingRow],
    now: dt.datetime,
    *,
    seal: bool = True,
) -> Written:
    """Write the transactions of `journal` whose external id is new, with their postings, and
    move the totals of their `accounts` (distinct, sorted by code and currency), creating
    missing ones. Returns the new journal ids and each moved account as it was before. The new
    transactions are queued for the hash chain and, if `seal`, chained now when the chain's
    head is free."""
    post = _post_postgres if conn.dialect.name == "postgresql" else _post_sqlite
    return post(conn, journal, accounts, postings, now, seal=seal)
