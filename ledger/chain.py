"""Sealing: appending queued, committed journal transactions to the hash chain.

A posting never waits for the chain. It stores its content hash and queues itself in
`ledger_unsealed` in its own transaction; whoever holds the chain head's row lock is the one
sealer. A seal appends, in one transaction, a link for each queued transaction it can see (by
id within the seal), moves the head to the last link and empties those queue rows, so a
transaction is sealed exactly once and the chain never forks.

On PostgreSQL, `ledger_post` tries the head with SKIP LOCKED after inserting a posting's journal
rows (see `ledger.store`). If it gets it, the posting seals in its next statement, whose
snapshot is taken after the lock, so it sees everything the previous sealer committed;
if not, its rows stay queued for the next sealer or the worker's `seal`, which waits for the
head. On SQLite writers are serialized anyway, and a posting seals inline.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import Connection, bindparam, delete, insert, select, text, update
from sqlalchemy.orm import Session

from ledger.encoding import link_hash
from ledger.models import GENESIS_HASH, HEAD, JOURNAL, LINKS, QUEUE, dialect_insert
from statements import prepared

# Queued transactions sealed at most per seal (the worker calls `seal` until done); the
# posting-time seal in `ledger_post` uses the same figure.
SEAL_LIMIT = 1000


# On PostgreSQL the seal is one call of `ledger_seal` (created by migration 0003): the queued
# transactions in id order (any already chained are only dequeued), their links computed as
# `link_hash` computes them, appended, dequeued, and the head moved. Returns the count.
SEAL_SQL = text("SELECT ledger_seal(CAST(:limit AS integer))")


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A chain head as recorded outside the database (published, or kept by someone else):
    `verify` checks that the chain still holds `hash` at link `seq`. Anyone able to bypass the
    append-only guard could rebuild the whole chain consistently; not the copies held elsewhere.
    """

    seq: int
    hash: str


def head(session: Session) -> Anchor:
    """The newest link of the chain (link 0 is the genesis hash)."""
    row = session.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1)).first()
    return Anchor(int(row.seq), str(row.hash)) if row else Anchor(0, GENESIS_HASH)


# Statements the seal runs on the driver's cursor (`statements.prepared`).
_HEAD = select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == 1).with_for_update()
_QUEUED = (
    select(QUEUE.c.transaction_id, JOURNAL.c.content_hash, LINKS.c.seq)
    .join(JOURNAL, JOURNAL.c.id == QUEUE.c.transaction_id)
    .outerjoin(LINKS, LINKS.c.transaction_id == QUEUE.c.transaction_id)
    .order_by(QUEUE.c.transaction_id)
    .limit(bindparam("limit"))
)
# The queue rows up to the last one a seal took: every queue row has its journal row, so these
# are exactly the rows `_QUEUED` returned.
_DEQUEUE = delete(QUEUE).where(QUEUE.c.transaction_id <= bindparam("last"))
_NEW_LINK = insert(LINKS)
_MOVE_HEAD = update(HEAD).where(HEAD.c.id == 1)


def _lock_head(conn: Connection) -> tuple[int, str]:
    """Wait for the head's row lock (on SQLite the write lock is held already); a database
    without a head row gets the genesis head."""
    found = prepared.run(conn, _HEAD, {}).rows
    if not found:
        conn.execute(
            dialect_insert(conn)(HEAD)
            .values(id=1, seq=0, hash=GENESIS_HASH)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        found = prepared.run(conn, _HEAD, {}).rows
    ((seq, link),) = found
    return int(seq), str(link)


def _seal_portable(conn: Connection, head: tuple[int, str], limit: int) -> int:
    """The same seal as `SEAL_SQL`, with the links computed here."""
    taken = prepared.run(conn, _QUEUED, {"limit": limit}).rows
    if not taken:
        return 0
    seq, link = head
    links = []
    for transaction_id, digest, chained in taken:
        if chained is None:
            seq, link = seq + 1, link_hash(link, digest)
            links.append({"seq": seq, "transaction_id": transaction_id, "hash": link})
    prepared.run(conn, _DEQUEUE, {"last": taken[-1][0]})
    if links:
        prepared.run_many(conn, _NEW_LINK, links)
        prepared.run(conn, _MOVE_HEAD, {"seq": seq, "hash": link})
    return len(links)


def seal_queue(conn: Connection, limit: int = SEAL_LIMIT) -> int:
    """Seal up to `limit` queued transactions that are committed or the caller's own; the
    caller holds the head (PostgreSQL) or the write lock (SQLite). Returns how many."""
    if conn.dialect.name != "postgresql":
        return _seal_portable(conn, _lock_head(conn), limit)
    return int(conn.execute(SEAL_SQL, {"limit": limit}).scalar_one())


def seal(session: Session, *, limit: int = SEAL_LIMIT) -> int:
    """Seal up to `limit` queued transactions, waiting for the head if another sealer holds
    it (the worker's duty: postings that found the head taken leave their rows queued)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        _lock_head(conn)
    return seal_queue(conn, limit)
