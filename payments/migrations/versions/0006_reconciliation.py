"""reconciliation: a finance officer's note on a break; finance events and endpoints

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 12:00:00.000000

A break is either a settlement line or a capture or refund that no line explains; a resolution
names exactly one of them, at most once, with who resolved it and why. Events and webhook
endpoints that belong to no agency are the finance keys': `settlement.imported` and
`reconciliation.completed`. Payments and refunds are found by the acquirer's reference when
a settlement file is matched, so that look-up gets an index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_resolutions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("settlement_line_id", sa.Integer(), nullable=True),
        sa.Column("target_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("resolved_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(settlement_line_id IS NULL) <> (target_id IS NULL)", name="ck_resolutions_subject"
        ),
        sa.ForeignKeyConstraint(["settlement_line_id"], ["settlement_lines.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("settlement_line_id", name="uq_resolutions_line"),
        sa.UniqueConstraint("provider", "target_id", name="uq_resolutions_target"),
    )
    for table in ("events", "webhook_endpoints"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("agency_id", existing_type=sa.String(length=64), nullable=True)
    for table in ("payments", "refunds"):
        op.create_index(f"ix_{table}_provider_reference", table, ["provider", "provider_reference"])


_FINANCE_ROWS = (  # what belongs to no agency, dependants first
    "DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM events WHERE agency_id IS "
    "NULL) OR endpoint_id IN (SELECT id FROM webhook_endpoints WHERE agency_id IS NULL)",
    "DELETE FROM webhook_jobs WHERE event_id IN (SELECT id FROM events WHERE agency_id IS NULL) "
    "OR endpoint_id IN (SELECT id FROM webhook_endpoints WHERE agency_id IS NULL)",
    "DELETE FROM webhook_endpoints WHERE agency_id IS NULL",
    "DELETE FROM events WHERE agency_id IS NULL",
)


def downgrade() -> None:
    for table in ("refunds", "payments"):
        op.drop_index(f"ix_{table}_provider_reference", table_name=table)
    for statement in _FINANCE_ROWS:
        op.execute(sa.text(statement))
    for table in ("webhook_endpoints", "events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("agency_id", existing_type=sa.String(length=64), nullable=False)
    op.drop_table("reconciliation_resolutions")
