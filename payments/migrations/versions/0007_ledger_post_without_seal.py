"""ledger_post(p_now, p_batch, p_seal): a batch job may leave sealing until it commits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:30:00.000000

`ledger_post` sealed the queue on every call whose caller could take the chain head. A
settlement import posts a file's lines in chunks inside one transaction: each call's seal
scanned the queue's index past every row the import had queued and dequeued before, rows that
stay in the index until the transaction ends, so a million-line file spent most of its time
there. The function gains `p_seal`; the import passes false and seals after it commits, a
bounded batch per transaction. Every other caller passes true, as before.
The SQL is the ledger's own (`ledger/functions.py`).
"""

from __future__ import annotations

from alembic import op

from ledger import functions

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_post(timestamptz, json)")
        op.execute(functions.POST)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_post(timestamptz, json, boolean)")
        op.execute(functions.POST_SEALING)
