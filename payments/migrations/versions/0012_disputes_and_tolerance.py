"""chargebacks, their reversals and settlement tolerance

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 00:00:00.000000

A settlement file may carry `chargeback` and `chargeback_reversal` lines; a payment keeps the
dispute they open or reverse. A line may match its capture or refund within the acquirer's
configured tolerance: it keeps its drift (amount, days), and its batch books the drift as a
settlement difference. Several lines of one file may settle one capture or refund together:
each keeps how many they are. A batch's chargebacks and reversals are legs of their own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_TYPES = "type IN ('payment', 'refund')"
NEW_TYPES = "type IN ('payment', 'refund', 'chargeback', 'chargeback_reversal')"
OLD_STATUSES = (
    "status IN ('matched', 'amount_mismatch', 'currency_mismatch', 'duplicate', "
    "'missing_in_gateway')"
)
NEW_STATUSES = (
    "status IN ('matched', 'matched_within_tolerance', 'amount_mismatch', "
    "'currency_mismatch', 'duplicate', 'missing_in_gateway', 'chargeback', "
    "'chargeback_reversal')"
)
OLD_ADDS_UP = (
    "net_minor = captured_minor - refunded_minor - fees_minor + suspense_in_minor"
    " - suspense_out_minor"
)
NEW_ADDS_UP = (
    "net_minor = captured_minor - refunded_minor - chargebacks_minor + reversals_minor"
    " - fees_minor + differences_minor + suspense_in_minor - suspense_out_minor"
)
OLD_UNSIGNED = (
    "captured_minor >= 0 AND refunded_minor >= 0 AND fees_minor >= 0"
    " AND suspense_in_minor >= 0 AND suspense_out_minor >= 0"
)
NEW_UNSIGNED = OLD_UNSIGNED + " AND chargebacks_minor >= 0 AND reversals_minor >= 0"
DISPUTE = (
    "(dispute_status IS NULL AND dispute_amount_minor IS NULL) OR "
    "(dispute_status IN ('open', 'reversed') AND dispute_amount_minor > 0)"
)


def upgrade() -> None:
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_constraint("ck_settlement_lines_type", type_="check")
        batch_op.drop_constraint("ck_settlement_lines_status", type_="check")
        batch_op.alter_column("type", existing_type=sa.String(length=8), type_=sa.String(length=20))
        batch_op.alter_column(
            "status", existing_type=sa.String(length=20), type_=sa.String(length=24)
        )
        batch_op.add_column(sa.Column("drift_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("drift_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("parts", sa.Integer(), nullable=True))
        batch_op.create_check_constraint("ck_settlement_lines_type", NEW_TYPES)
        batch_op.create_check_constraint("ck_settlement_lines_status", NEW_STATUSES)
    with op.batch_alter_table("settlement_batches", schema=None) as batch_op:
        batch_op.drop_constraint("ck_settlement_batches_adds_up", type_="check")
        batch_op.drop_constraint("ck_settlement_batches_unsigned", type_="check")
        for name in ("chargebacks_minor", "reversals_minor", "differences_minor"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            )
        batch_op.create_check_constraint("ck_settlement_batches_adds_up", NEW_ADDS_UP)
        batch_op.create_check_constraint("ck_settlement_batches_unsigned", NEW_UNSIGNED)
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispute_status", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("dispute_amount_minor", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint("ck_payments_dispute", DISPUTE)


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint("ck_payments_dispute", type_="check")
        batch_op.drop_column("dispute_amount_minor")
        batch_op.drop_column("dispute_status")
    with op.batch_alter_table("settlement_batches", schema=None) as batch_op:
        batch_op.drop_constraint("ck_settlement_batches_adds_up", type_="check")
        batch_op.drop_constraint("ck_settlement_batches_unsigned", type_="check")
        for name in ("differences_minor", "reversals_minor", "chargebacks_minor"):
            batch_op.drop_column(name)
        batch_op.create_check_constraint("ck_settlement_batches_adds_up", OLD_ADDS_UP)
        batch_op.create_check_constraint("ck_settlement_batches_unsigned", OLD_UNSIGNED)
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_constraint("ck_settlement_lines_type", type_="check")
        batch_op.drop_constraint("ck_settlement_lines_status", type_="check")
        batch_op.drop_column("parts")
        batch_op.drop_column("drift_days")
        batch_op.drop_column("drift_minor")
        batch_op.alter_column(
            "status", existing_type=sa.String(length=24), type_=sa.String(length=20)
        )
        batch_op.alter_column("type", existing_type=sa.String(length=20), type_=sa.String(length=8))
        batch_op.create_check_constraint("ck_settlement_lines_type", OLD_TYPES)
        batch_op.create_check_constraint("ck_settlement_lines_status", OLD_STATUSES)
