"""The webhook tables: endpoints, one delivery job per event and endpoint, and the delivery log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ledger.types import UTCDateTime
from payments.models import Base


class WebhookEndpoint(Base):
    """Where an agency hears about its events. Secrets are stored sealed (AES-GCM), never plain.

    A deleted endpoint keeps its row (and so its delivery log) with `deleted_at` set.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint("status IN ('enabled', 'disabled')", name="ck_webhook_endpoints_status"),
        Index("ix_webhook_endpoints_scope", "agency_id", "livemode", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # None: a finance key's endpoint, which receives finance events only.
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    livemode: Mapped[bool] = mapped_column(Boolean)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10))
    # Why it was disabled: `gone` (a 410), `failing` (5 days without success) or `agency`.
    disabled_reason: Mapped[str | None] = mapped_column(String(10))
    secret_sealed: Mapped[str] = mapped_column(Text)
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Optional Ed25519 (`v1a`) signing: the private key sealed, the public key shown.
    signing_key_sealed: Mapped[str | None] = mapped_column(Text)
    previous_signing_key_sealed: Mapped[str | None] = mapped_column(Text)
    public_key: Mapped[str | None] = mapped_column(String(80))
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class DeliveryJob(Base):
    """One event owed to one endpoint: its status, retry schedule and the lease of the worker
    sending it. While leased, `next_attempt_at` is the lease's end, so a job whose worker died
    becomes due again by itself."""

    __tablename__ = "webhook_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'cancelled')",
            name="ck_webhook_jobs_status",
        ),
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_jobs_event_endpoint"),
        Index("ix_webhook_jobs_due", "status", "next_attempt_at"),
        Index("ix_webhook_jobs_endpoint", "endpoint_id", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease: Mapped[str | None] = mapped_column(String(40))
    requeued: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Delivery(Base):
    """The delivery log: one row per attempt, whatever its result."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("webhook_jobs.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    redelivery: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(24))
    error_message: Mapped[str | None] = mapped_column(String(500))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
