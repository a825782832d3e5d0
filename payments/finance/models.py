"""The console's tables: the people who sign in, and the append-only audit log of what they
(and the console's sign-in itself) did."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.types import UTCDateTime
from payments.models import Base

ROLES = ("finance", "admin")
LANGUAGES = ("ar", "en")


class ConsoleUser(Base):
    """A finance officer or administrator. The password is kept only as an argon2 hash, the
    second factor's secret only sealed under the gateway's secret key, and each recovery code
    only as a digest."""

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint("role IN ('finance', 'admin')", name="ck_console_users_role"),
        CheckConstraint("language IN ('ar', 'en')", name="ck_console_users_language"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2))
    totp_secret: Mapped[str | None] = mapped_column(Text)  # sealed; None until enrolled
    totp_last_step: Mapped[int | None] = mapped_column(Integer)  # a code is good once
    recovery_codes: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    # Raised on sign-out, disabling and second-factor reset: every session signed before dies.
    session_epoch: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AuditRecord(Base):
    """One thing someone did in the console, or tried to: who (a user id, or the e-mail typed
    at a failed sign-in), what, on what, from where and when. The database refuses to change
    or remove a row."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_created_at", "created_at"),
        Index("ix_audit_log_actor", "actor"),
        Index("ix_audit_log_action", "action"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
