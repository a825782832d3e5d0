"""The audit log: what was done in the console, by whom, from where and when; written in the
transaction of the change it records, read newest first a page at a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments import clock
from payments.finance.models import AuditRecord
from payments.gateway import Gateway
from payments.ids import new_id

PAGE_SIZE = 50
ACTIONS = (
    "sign_in",
    "sign_in_failed",
    "second_factor_failed",
    "second_factor_enrolled",
    "sign_out",
    "settlement_imported",
    "break_resolved",
    "report_downloaded",
    "user_created",
    "user_disabled",
    "second_factor_reset",
    "agency_created",
    "key_created",
    "key_revoked",
)


def record(
    session: Session,
    actor: str,
    action: str,
    *,
    target: str | None = None,
    address: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Write one record in the session's transaction."""
    assert action in ACTIONS, action
    session.add(
        AuditRecord(
            id=new_id("aud"),
            actor=actor[:254],
            action=action,
            target=target[:200] if target else None,
            address=address[:64] if address else None,
            details=details,
            created_at=clock.now(),
        )
    )


def write(gw: Gateway, actor: str, action: str, **fields: Any) -> None:
    """Write one record in a transaction of its own (a sign-in, a download)."""
    with gw.db.transaction() as session:
        record(session, actor, action, **fields)


@dataclasses.dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None


def records(
    gw: Gateway, wanted: AuditFilter, *, before: str | None = None
) -> tuple[list[AuditRecord], bool]:
    """A page of records, newest first, older than the record `before`; and whether more
    follow."""
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(PAGE_SIZE + 1)
    if wanted.actor:
        query = query.where(AuditRecord.actor == wanted.actor)
    if wanted.action:
        query = query.where(AuditRecord.action == wanted.action)
    if wanted.since:
        query = query.where(AuditRecord.created_at >= _midnight(wanted.since))
    if wanted.until:
        query = query.where(AuditRecord.created_at < _midnight(wanted.until + dt.timedelta(1)))
    if before:
        query = query.where(AuditRecord.id < before)
    with gw.db.read() as session:
        found = list(session.scalars(query))
    return found[:PAGE_SIZE], len(found) > PAGE_SIZE


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
