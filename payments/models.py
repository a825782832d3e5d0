"""The gateway's tables: agencies, API keys, payments, attempts, refunds, events, idempotency,
settlements and their lines, and payouts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ledger.types import UTCDateTime


class Base(DeclarativeBase):
    """The gateway's metadata (the ledger keeps its own)."""


class Agency(Base):
    __tablename__ = "agencies"
    __table_args__ = (
        CheckConstraint("fee_bearer IN ('agency', 'gateway')", name="ck_agencies_fee_bearer"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_ar: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(2))
    currencies: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    # Who bears the acquirer's fee on a settled payment: `gateway` (an expense) or `agency`
    # (taken from what it is owed); None means `gateway`.
    fee_bearer: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('agency', 'finance')", name="ck_api_keys_role"),
        CheckConstraint("mode IN ('test', 'live')", name="ck_api_keys_mode"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(4))
    prefix: Mapped[str] = mapped_column(String(20))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_payments_amount_positive"),
        CheckConstraint(
            "amount_captured_minor >= 0 AND amount_captured_minor <= amount_minor",
            name="ck_payments_captured",
        ),
        CheckConstraint(
            "amount_refunded_minor >= 0 AND amount_refunded_minor <= amount_captured_minor",
            name="ck_payments_refunded",
        ),
        Index("ix_payments_scope", "agency_id", "livemode", "id"),
        Index("ix_payments_reference", "agency_id", "reference"),
        Index("ix_payments_expiry", "status", "expires_at"),
        Index("ix_payments_provider_reference", "provider", "provider_reference"),
        CheckConstraint(
            "(dispute_status IS NULL AND dispute_amount_minor IS NULL) OR "
            "(dispute_status IN ('open', 'reversed') AND dispute_amount_minor > 0)",
            name="ck_payments_dispute",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    livemode: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount_captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    reference: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255))
    service_code: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(2))
    capture_method: Mapped[str] = mapped_column(String(10))
    return_url: Mapped[str] = mapped_column(String(2048))
    next_url: Mapped[str] = mapped_column(String(2048))
    extra: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    payer: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
    payment_method: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    card_fingerprint: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str | None] = mapped_column(String(40))
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # A chargeback the acquirer's settlement file stated: `open`, or `reversed` once paid back.
    dispute_status: Mapped[str | None] = mapped_column(String(8))
    dispute_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Attempt(Base):
    """One try at one acquirer; `pending_action` is set while its outcome is not yet known."""

    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_due", "pending_action", "next_check_at"),
        CheckConstraint("channel IN ('api', 'page')", name="ck_attempts_channel"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    # `page`: the payer is on the hosted page (3-D Secure, declines may be retried);
    # `api`: server-to-server confirm, a MOTO payment whose decline is final.
    channel: Mapped[str] = mapped_column(String(4), server_default="api")
    status: Mapped[str] = mapped_column(String(20))
    pending_action: Mapped[str | None] = mapped_column(String(12))
    action_key: Mapped[str | None] = mapped_column(String(80))
    action_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[str | None] = mapped_column(String(40))
    decline_code: Mapped[str | None] = mapped_column(String(40))
    # The acquirer's page the payer was sent to (3-D Secure), while the outcome waits on it.
    redirect_url: Mapped[str | None] = mapped_column(String(2048))
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProviderNotification(Base):
    """An acquirer's notification as it arrived, kept once it verified; only ever a hint."""

    __tablename__ = "provider_notifications"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_provider_notifications_event"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_refunds_amount_positive"),
        Index("ix_refunds_scope", "agency_id", "livemode", "id"),
        Index("ix_refunds_due", "status", "next_check_at"),
        Index("ix_refunds_provider_reference", "provider", "provider_reference"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    livemode: Mapped[bool] = mapped_column(Boolean)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(40))
    provider_reference: Mapped[str | None] = mapped_column(String(255))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Event(Base):
    """The outbox: one row per status change, its body the exact bytes a webhook will carry."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_scope", "agency_id", "livemode", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # None: a finance event (a settlement file, a reconciliation run), for finance endpoints.
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    livemode: Mapped[bool] = mapped_column(Boolean)
    type: Mapped[str] = mapped_column(String(40), index=True)
    object_id: Mapped[str] = mapped_column(String(40), index=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key", name="uq_idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    api_key_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    # HMAC-SHA256 of the request under the fingerprint key `request_key` names
    # (payments/idempotency.py); None where a fingerprint was dropped as unsafe to keep.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    request_key: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(10))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    # The holder's lease: after it, a retry may take the key over (payments/idempotency.py).
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_token: Mapped[str | None] = mapped_column(String(32))
    # The payment or refund the holder's work committed, for a retry that takes the key over.
    recovery_object: Mapped[str | None] = mapped_column(String(40))


class Settlement(Base):
    """One imported acquirer settlement file, kept once per acquirer and file digest."""

    __tablename__ = "settlements"
    __table_args__ = (UniqueConstraint("provider", "digest", name="uq_settlements_digest"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the file's bytes
    filename: Mapped[str] = mapped_column(String(255))
    line_count: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, int]] = mapped_column(JSON)
    imported_by: Mapped[str] = mapped_column(String(40))  # an API key id, or "cli"
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SettlementBatch(Base):
    """The lines of one settlement file in one currency, for one agency (none: lines the gateway
    cannot explain), in one mode, of one value date: booked as one ledger transaction that
    equals what the acquirer paid into the bank for them."""

    __tablename__ = "settlement_batches"
    __table_args__ = (
        CheckConstraint(
            "net_minor = captured_minor - refunded_minor - chargebacks_minor + reversals_minor"
            " - fees_minor + differences_minor + suspense_in_minor - suspense_out_minor",
            name="ck_settlement_batches_adds_up",
        ),
        CheckConstraint(
            "captured_minor >= 0 AND refunded_minor >= 0 AND fees_minor >= 0"
            " AND suspense_in_minor >= 0 AND suspense_out_minor >= 0"
            " AND chargebacks_minor >= 0 AND reversals_minor >= 0",
            name="ck_settlement_batches_unsigned",
        ),
        CheckConstraint(
            "fee_bearer IN ('agency', 'gateway')", name="ck_settlement_batches_fee_bearer"
        ),
        Index("ix_settlement_batches_settlement", "settlement_id"),
        Index("ix_settlement_batches_date", "provider", "value_date"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlements.id"))
    provider: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    agency_id: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool] = mapped_column(Boolean)
    value_date: Mapped[dt.date] = mapped_column(Date)
    line_count: Mapped[int] = mapped_column(Integer)
    # Gross of the matched payment lines, out of clearing; of the matched refund lines, back in.
    captured_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger)
    fees_minor: Mapped[int] = mapped_column(BigInteger)  # of the matched payment lines
    # Chargebacks taken back and reversals paid back, unsigned; the drift of lines matched
    # within tolerance, signed as paid (positive: the acquirer paid more than the gateway made).
    chargebacks_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    reversals_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    differences_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")
    fee_bearer: Mapped[str | None] = mapped_column(String(8))
    # Net of the lines nothing explains, into suspense (positive) or out of it (negative).
    suspense_in_minor: Mapped[int] = mapped_column(BigInteger)
    suspense_out_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)  # the bank credit (negative: a debit)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SettlementLine(Base):
    """One line of a settlement file, normalised, with what it matched at import."""

    __tablename__ = "settlement_lines"
    __table_args__ = (
        UniqueConstraint("provider", "line_key", name="uq_settlement_lines_key"),
        CheckConstraint(
            "type IN ('payment', 'refund', 'chargeback', 'chargeback_reversal')",
            name="ck_settlement_lines_type",
        ),
        CheckConstraint(
            "status IN ('matched', 'matched_within_tolerance', 'amount_mismatch', "
            "'currency_mismatch', 'duplicate', 'missing_in_gateway', 'chargeback', "
            "'chargeback_reversal')",
            name="ck_settlement_lines_status",
        ),
        CheckConstraint(
            "fee_bearer IN ('agency', 'gateway')", name="ck_settlement_lines_fee_bearer"
        ),
        Index("ix_settlement_lines_reference", "provider_reference"),
        Index("ix_settlement_lines_date", "settlement_date"),
        Index("ix_settlement_lines_payment", "payment_id"),
        Index("ix_settlement_lines_refund", "refund_id"),
        Index("ix_settlement_lines_batch", "batch_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    settlement_id: Mapped[str] = mapped_column(ForeignKey("settlements.id"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    line_no: Mapped[int] = mapped_column(Integer)
    line_key: Mapped[str] = mapped_column(String(64))
    settlement_date: Mapped[dt.date] = mapped_column(Date)
    provider_reference: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    # Signed as in the file: a refund's gross and net are negative.
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    payment_id: Mapped[str | None] = mapped_column(String(40))
    refund_id: Mapped[str | None] = mapped_column(String(40))
    agency_id: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool | None] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(24))
    # A line matched within tolerance: its gross less the gateway's amount, and the days its
    # date lies outside the days it was due (negative: early).
    drift_minor: Mapped[int | None] = mapped_column(BigInteger)
    drift_days: Mapped[int | None] = mapped_column(Integer)
    # How many lines of its file settle its capture or refund together (None: it alone does).
    parts: Mapped[int | None] = mapped_column(Integer)
    # Who bore the fee of a matched payment line when it was posted (the agency's setting
    # may change later; the audit follows what was posted).
    fee_bearer: Mapped[str | None] = mapped_column(String(8))
    # The batch whose transaction books this line (None: imported before batches, posted alone).
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("settlement_batches.id", name="fk_settlement_lines_batch")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ReconciliationResolution(Base):
    """A finance officer's note that one reconciliation break is explained and needs no more work.

    The break is a settlement line (`settlement_line_id`) or a capture or refund no line
    explains (`target_id`, a payment or refund id); exactly one of the two is set.
    """

    __tablename__ = "reconciliation_resolutions"
    __table_args__ = (
        UniqueConstraint("settlement_line_id", name="uq_resolutions_line"),
        UniqueConstraint("provider", "target_id", name="uq_resolutions_target"),
        CheckConstraint(
            "(settlement_line_id IS NULL) <> (target_id IS NULL)", name="ck_resolutions_subject"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(40))
    settlement_line_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_lines.id"))
    target_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24))  # the break's status when it was resolved
    note: Mapped[str] = mapped_column(String(1000))
    resolved_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Payout(Base):
    """Money the treasury paid an agency out of an acquirer's settlement account."""

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("agency_id", "reference", name="uq_payouts_reference"),
        CheckConstraint("amount_minor > 0", name="ck_payouts_amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"))
    livemode: Mapped[bool] = mapped_column(Boolean)
    provider: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
