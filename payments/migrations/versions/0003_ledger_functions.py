"""ledger: posting and sealing as PostgreSQL functions, one round trip each

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 17:30:00.000000

`ledger_post` writes a batch of journal transactions in one call: the journal rows (a repeated
external id is left alone and answered NULL), their queue rows, a seal if the chain head is free
(`FOR UPDATE SKIP LOCKED`), then each account in the caller's sorted order, created if missing
and locked by the UPDATE that moves its totals, and last the postings. Every table access is by
a unique key or an insert, so no plan depends on the tables' statistics. It returns the new
journal ids and each account as it stood before, for the caller's kind and limit checks.

`ledger_seal` appends the queued transactions to the hash chain; its caller holds the head.
It too reaches rows only through keys, and computes the links in a loop. Neither function lets the
planner compile to machine code (`jit = off`): on these small statements that costs far more
than it saves. SQLite has neither: the ledger runs the same steps as plain statements there.
The SQL is the ledger's own (`ledger/functions.py`).
"""

from __future__ import annotations

from alembic import op

from ledger import functions

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(functions.SEAL)
        op.execute(functions.POST_SEALING)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_post")
        op.execute("DROP FUNCTION IF EXISTS ledger_seal")
