"""idempotency lease: a key whose request died in flight is taken over after its lease

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 16:00:00.000000

A started key holds a lease (`locked_until`, with a random `lease_token` naming its holder).
Work done under the key records, in its own transaction, the payment or refund it committed
(`recovery_object`), so that a retry taking the key over after the lease answers that object
as it now stands instead of doing the work again. Keys started before this revision have no
lease: their lease is read as ending one lease after `created_at`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lease_token", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("recovery_object", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("recovery_object")
        batch_op.drop_column("lease_token")
        batch_op.drop_column("locked_until")
