"""checkout: each attempt's channel and acquirer page, and acquirers' notifications kept raw

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:40:00.000000

An attempt made on the hosted page (`channel = 'page'`, the payer present) may be declined and
followed by another card, and may send the payer to the acquirer's page (`redirect_url`);
one made server-to-server (`'api'`) is MOTO and final. Incoming acquirer notifications are
stored as they arrived, once per acquirer and event id, before they trigger a status query.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("channel", sa.String(length=4), nullable=False, server_default="api")
        )
        batch_op.add_column(sa.Column("redirect_url", sa.String(length=2048), nullable=True))
        batch_op.create_check_constraint("ck_attempts_channel", "channel IN ('api', 'page')")

    op.create_table(
        "provider_notifications",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "event_id", name="uq_provider_notifications_event"),
    )


def downgrade() -> None:
    op.drop_table("provider_notifications")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_constraint("ck_attempts_channel", type_="check")
        batch_op.drop_column("redirect_url")
        batch_op.drop_column("channel")
