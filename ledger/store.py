"""Writing a batch of postings: journal rows (queued for sealing), account totals and posting
rows, with one statement per step for the whole batch whatever its size.

On PostgreSQL each step is one statement with data-modifying CTEs, columns sent as arrays:
the journal rows, their queue rows and a try for the chain head's lock (see `ledger.chain`);
then the accounts, locked in sorted order, their totals moved and the postings inserted.
That second statement does nothing unless every account exists, so missing accounts are
created (in sorted order) while no account lock is held, and it runs again. On SQLite, where
writers are serialized, plain statements do the same.

Totals are written before the caller checks kinds and limits on what this returns: a refusal
raises, and the caller's transaction rolls back, as for every `LedgerError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, tuple_, update
from sqlalchemy.dialects import sqlite

from ledger.models import ACCOUNTS, JOURNAL, POSTINGS, QUEUE, dialect_insert

Key = tuple[str, str]  # (account code, currency)


@dataclasses.dataclass(frozen=True)
class JournalRow:
    external_id: str
    description: str
    effective_at: dt.datetime
    metadata: dict[str, Any]
    reverses_id: int | None
    content_hash: str


@dataclasses.dataclass(frozen=True)
class AccountChange:
    """One account a batch touches: created with `kind` and `floor` if missing."""

    code: str
    currency: str
    kind: str
    floor: int | None
    debits: int  # added by the batch
    credits: int


@dataclasses.dataclass(frozen=True)
class PostingRow:
    transaction_id: int
    code: str
    currency: str
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


JOURNAL_SQL = text(
    """
    WITH inserted AS (
        INSERT INTO ledger_transactions
            (external_id, description, effective_at, created_at, metadata, reverses_id,
             content_hash)
        SELECT r.external_id, r.description, r.effective_at, :now, r.metadata, r.reverses_id,
               r.content_hash
        FROM unnest(CAST(:external_ids AS text[]), CAST(:descriptions AS text[]),
                    CAST(:effective_ats AS timestamptz[]), CAST(:metadata AS json[]),
                    CAST(:reverses_ids AS integer[]), CAST(:content_hashes AS text[]))
            AS r(external_id, description, effective_at, metadata, reverses_id, content_hash)
        ON CONFLICT (external_id) DO NOTHING
        RETURNING id, external_id
    ), queued AS (
        INSERT INTO ledger_unsealed (transaction_id) SELECT id FROM inserted
    )
    SELECT id, external_id,
           (SELECT true FROM ledger_chain_head AS h WHERE h.id = 1 FOR UPDATE SKIP LOCKED)
               AS holds_head
    FROM inserted
    """
)

# Locks, moves and posts only if every account exists (else returns no rows, locks nothing).
POST_SQL = text(
    """
    WITH changes AS (
        SELECT * FROM unnest(CAST(:codes AS text[]), CAST(:currencies AS text[]),
                             CAST(:debits AS bigint[]), CAST(:credits AS bigint[]))
            AS c(code, currency, debits, credits)
    ), locked AS MATERIALIZED (
        SELECT a.id, c.debits, c.credits
        FROM ledger_accounts AS a JOIN changes AS c USING (code, currency)
        WHERE (SELECT count(*) FROM ledger_accounts JOIN changes USING (code, currency))
              = cardinality(CAST(:codes AS text[]))
        ORDER BY a.code, a.currency
        FOR UPDATE OF a
    ), moved AS (
        UPDATE ledger_accounts AS a
        SET debits_minor = a.debits_minor + l.debits, credits_minor = a.credits_minor + l.credits
        FROM locked AS l WHERE a.id = l.id
        RETURNING a.id, a.code, a.currency, a.kind, a.min_balance_minor,
                  a.debits_minor - l.debits AS debits, a.credits_minor - l.credits AS credits
    ), posted AS (
        INSERT INTO ledger_postings (transaction_id, account_id, direction, amount_minor)
        SELECT p.transaction_id, m.id, p.direction, p.amount_minor
        FROM unnest(CAST(:transaction_ids AS integer[]), CAST(:posting_codes AS text[]),
                    CAST(:posting_currencies AS text[]), CAST(:directions AS text[]),
                    CAST(:amounts AS bigint[]))
            WITH ORDINALITY AS p(transaction_id, code, currency, direction, amount_minor, n)
        JOIN moved AS m USING (code, currency)
        ORDER BY p.n
    )
    SELECT id, code, currency, kind, min_balance_minor, debits, credits FROM moved
    """
)


@dataclasses.dataclass(frozen=True)
class Inserted:
    ids: dict[str, int]  # the new journal rows' ids by external id; the others exist already
    holds_head: bool  # this transaction holds the chain head: it may seal


def insert_journal(conn: Connection, rows: list[JournalRow], now: dt.datetime) -> Inserted:
    """Insert the journal rows whose external id is new and queue them for sealing; if any is
    new, try the chain head's lock without waiting (on SQLite, the write lock is held)."""
    if conn.dialect.name == "postgresql":
        inserted = conn.execute(
            JOURNAL_SQL,
            {
                "now": now,
                "external_ids": [r.external_id for r in rows],
                "descriptions": [r.description for r in rows],
                "effective_ats": [r.effective_at for r in rows],
                "metadata": [json.dumps(r.metadata) for r in rows],
                "reverses_ids": [r.reverses_id for r in rows],
                "content_hashes": [r.content_hash for r in rows],
            },
        ).all()
        return Inserted(
            {external_id: transaction_id for transaction_id, external_id, _ in inserted},
            any(holds_head for _, _, holds_head in inserted),
        )
    inserted = conn.execute(
        sqlite.insert(JOURNAL)
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(JOURNAL.c.id, JOURNAL.c.external_id),
        [{**dataclasses.asdict(r), "created_at": now} for r in rows],
    ).all()
    if inserted:
        conn.execute(insert(QUEUE), [{"transaction_id": row.id} for row in inserted])
    return Inserted(
        {external_id: transaction_id for transaction_id, external_id in inserted}, bool(inserted)
    )


def _create_missing(conn: Connection, accounts: list[AccountChange], now: dt.datetime) -> None:
    """Create the accounts that do not exist yet, in sorted order (as `accounts` is), so that
    two postings creating the same accounts never deadlock."""
    c = ACCOUNTS.c
    keys = [(a.code, a.currency) for a in accounts]
    found = conn.execute(select(c.code, c.currency).where(tuple_(c.code, c.currency).in_(keys)))
    existing = {(code, currency) for code, currency in found}
    missing = [
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
        if (a.code, a.currency) not in existing
    ]
    if missing:  # else another transaction created them since the caller looked
        insert_ = dialect_insert(conn)
        statement = insert_(ACCOUNTS).on_conflict_do_nothing(index_elements=["code", "currency"])
        conn.execute(statement, missing)


def _post_postgres(
    conn: Connection, accounts: list[AccountChange], postings: list[PostingRow]
) -> dict[Key, Totals]:
    rows = conn.execute(
        POST_SQL,
        {
            "codes": [a.code for a in accounts],
            "currencies": [a.currency for a in accounts],
            "debits": [a.debits for a in accounts],
            "credits": [a.credits for a in accounts],
            "transaction_ids": [p.transaction_id for p in postings],
            "posting_codes": [p.code for p in postings],
            "posting_currencies": [p.currency for p in postings],
            "directions": [p.direction for p in postings],
            "amounts": [p.amount_minor for p in postings],
        },
    ).all()
    return {
        (r.code, r.currency): Totals(r.id, r.kind, r.min_balance_minor, r.debits, r.credits)
        for r in rows
    }


def _post_sqlite(
    conn: Connection, accounts: list[AccountChange], postings: list[PostingRow]
) -> dict[Key, Totals]:
    c = ACCOUNTS.c
    wanted = tuple_(c.code, c.currency).in_([(a.code, a.currency) for a in accounts])
    rows = conn.execute(
        select(
            c.id, c.code, c.currency, c.kind, c.min_balance_minor, c.debits_minor, c.credits_minor
        ).where(wanted)
    ).all()
    found = {
        (r.code, r.currency): Totals(
            r.id, r.kind, r.min_balance_minor, r.debits_minor, r.credits_minor
        )
        for r in rows
    }
    if len(found) < len(accounts):
        return found
    conn.execute(
        update(ACCOUNTS)
        .where(c.id == bindparam("account_id"))
        .values(
            debits_minor=c.debits_minor + bindparam("debits"),
            credits_minor=c.credits_minor + bindparam("credits"),
        ),
        [
            {"account_id": found[(a.code, a.currency)].id, "debits": a.debits, "credits": a.credits}
            for a in accounts
        ],
    )
    conn.execute(
        insert(POSTINGS),
        [
            {
                "transaction_id": p.transaction_id,
                "account_id": found[(p.code, p.currency)].id,
                "direction": p.direction,
                "amount_minor": p.amount_minor,
            }
            for p in postings
        ],
    )
    return found


def post_entries(
    conn: Connection, accounts: list[AccountChange], postings: list[PostingRow], now: dt.datetime
) -> dict[Key, Totals]:
    """Move the totals of `accounts` (distinct, sorted by code and currency) and insert the
    postings, creating missing accounts first. Returns each account as it was before."""
    post = _post_postgres if conn.dialect.name == "postgresql" else _post_sqlite
    before = post(conn, accounts, postings)
    if len(before) < len(accounts):
        _create_missing(conn, accounts, now)
        before = post(conn, accounts, postings)
    return before
