"""settlement batches: one ledger transaction per file, currency, agency, mode and value date

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:45:00.000000

A settlement file is booked as accountants book it: one journal transaction per batch, equal
to what the acquirer paid into the bank for it, with the file's lines as its detail rows. Each
line names its batch; a batch's own figures must add up to its bank credit. Lines imported
before this revision keep the transaction each of them was posted with, and name no batch.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ADDS_UP = (
    "net_minor = captured_minor - refunded_minor - fees_minor + suspense_in_minor"
    " - suspense_out_minor"
)


def upgrade() -> None:
    op.create_table(
        "settlement_batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("settlement_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("value_date", sa.Date(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("fees_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_bearer", sa.String(length=8), nullable=True),
        sa.Column("suspense_in_minor", sa.BigInteger(), nullable=False),
        sa.Column("suspense_out_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(ADDS_UP, name="ck_settlement_batches_adds_up"),
        sa.CheckConstraint(
            "captured_minor >= 0 AND refunded_minor >= 0 AND fees_minor >= 0"
            " AND suspense_in_minor >= 0 AND suspense_out_minor >= 0",
            name="ck_settlement_batches_unsigned",
        ),
        sa.CheckConstraint(
            "fee_bearer IN ('agency', 'gateway')", name="ck_settlement_batches_fee_bearer"
        ),
        sa.ForeignKeyConstraint(["settlement_id"], ["settlements.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("settlement_batches", schema=None) as batch_op:
        batch_op.create_index("ix_settlement_batches_settlement", ["settlement_id"])
        batch_op.create_index("ix_settlement_batches_date", ["provider", "value_date"])
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            "fk_settlement_lines_batch", "settlement_batches", ["batch_id"], ["id"]
        )
        batch_op.create_index("ix_settlement_lines_batch", ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_settlement_lines_batch")
        batch_op.drop_constraint("fk_settlement_lines_batch", type_="foreignkey")
        batch_op.drop_column("batch_id")
    op.drop_table("settlement_batches")
