"""settlements: imported acquirer files and their lines, payouts, and who bears the fees

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000

A settlement file is kept once per acquirer and SHA-256 digest; each of its lines once per
acquirer and line key, with the payment or refund it matched at import. A payout records what
the treasury paid an agency. An agency's `fee_bearer` says whether acquirer fees come out of
what it is owed (`agency`) or are the gateway's expense (`gateway`, the default when null).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee_bearer", sa.String(length=8), nullable=True))
        batch_op.create_check_constraint(
            "ck_agencies_fee_bearer", "fee_bearer IN ('agency', 'gateway')"
        )

    op.create_table(
        "settlements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("imported_by", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "digest", name="uq_settlements_digest"),
    )
    op.create_table(
        "settlement_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("settlement_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("line_key", sa.String(length=64), nullable=False),
        sa.Column("settlement_date", sa.Date(), nullable=False),
        sa.Column("provider_reference", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gross_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("agency_id", sa.String(length=64), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("fee_bearer", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("type IN ('payment', 'refund')", name="ck_settlement_lines_type"),
        sa.CheckConstraint(
            "status IN ('matched', 'amount_mismatch', 'currency_mismatch', 'duplicate', "
            "'missing_in_gateway')",
            name="ck_settlement_lines_status",
        ),
        sa.CheckConstraint(
            "fee_bearer IN ('agency', 'gateway')", name="ck_settlement_lines_fee_bearer"
        ),
        sa.ForeignKeyConstraint(["settlement_id"], ["settlements.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "line_key", name="uq_settlement_lines_key"),
    )
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.create_index("ix_settlement_lines_reference", ["provider_reference"])
        batch_op.create_index("ix_settlement_lines_date", ["settlement_date"])
        batch_op.create_index("ix_settlement_lines_payment", ["payment_id"])
        batch_op.create_index("ix_settlement_lines_refund", ["refund_id"])
        batch_op.create_index(batch_op.f("ix_settlement_lines_settlement_id"), ["settlement_id"])

    op.create_table(
        "payouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("agency_id", sa.String(length=64), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_payouts_amount_positive"),
        sa.ForeignKeyConstraint(["agency_id"], ["agencies.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency_id", "reference", name="uq_payouts_reference"),
    )


def downgrade() -> None:
    op.drop_table("payouts")
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_lines_settlement_id"))
        batch_op.drop_index("ix_settlement_lines_refund")
        batch_op.drop_index("ix_settlement_lines_payment")
        batch_op.drop_index("ix_settlement_lines_date")
        batch_op.drop_index("ix_settlement_lines_reference")
    op.drop_table("settlement_lines")
    op.drop_table("settlements")
    with op.batch_alter_table("agencies", schema=None) as batch_op:
        batch_op.drop_constraint("ck_agencies_fee_bearer", type_="check")
        batch_op.drop_column("fee_bearer")
