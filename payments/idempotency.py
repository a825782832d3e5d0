"""Idempotency keys: the first request under a key runs, repeats replay its response.

The key row is inserted and committed before the work starts, so a concurrent repeat fails
on the unique constraint and answers 409 instead of doing the work twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from payments import clock
from payments.errors import Conflict, ValidationFailed
from payments.gateway import Gateway
from payments.models import IdempotencyRecord

MAX_KEY_LENGTH = 255
STARTED = "started"
FINISHED = "finished"


@dataclasses.dataclass(frozen=True)
class Replay:
    status: int
    body: str


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(32 <= ord(ch) < 127 for ch in key):
        message = "Idempotency-Key must be 1 to 255 printable ASCII characters"
        raise ValidationFailed(
            message,
            code="idempotency_key_invalid",
            param="Idempotency-Key",
            details={"Idempotency-Key": [message]},
        )
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def begin(gw: Gateway, api_key_id: str, key: str, digest: str) -> Replay | None:
    """Claim the key for this request, or say what a repeat must answer."""
    for _ in range(2):
        try:
            with gw.db.transaction() as session:
                session.add(
                    IdempotencyRecord(
                        api_key_id=api_key_id,
                        key=key,
                        request_hash=digest,
                        state=STARTED,
                        created_at=clock.now(),
                    )
                )
            return None
        except IntegrityError:
            pass
        with gw.db.transaction() as session:
            record = session.execute(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key
                )
            ).scalar_one_or_none()
            if record is None:
                continue  # the first request gave the key up meanwhile: claim it again
            expired = record.created_at < clock.now() - dt.timedelta(
                seconds=gw.settings.idempotency_ttl_s
            )
            if expired:
                session.delete(record)
                continue
            if record.request_hash != digest:
                message = "this Idempotency-Key was used with a different request"
                raise ValidationFailed(
                    message,
                    code="idempotency_key_reused",
                    param="Idempotency-Key",
                    details={"Idempotency-Key": [message]},
                )
            if record.state == STARTED or record.response_status is None:
                raise Conflict(
                    "a request with this Idempotency-Key is still in flight",
                    code="idempotency_key_in_use",
                )
            return Replay(status=record.response_status, body=record.response_body or "")
    raise Conflict(
        "a request with this Idempotency-Key is still in flight", code="idempotency_key_in_use"
    )


def finish(gw: Gateway, api_key_id: str, key: str, status: int, body: str) -> None:
    with gw.db.transaction() as session:
        record = session.execute(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
            .with_for_update()
        ).scalar_one_or_none()
        if record is not None:
            record.state = FINISHED
            record.response_status = status
            record.response_body = body


def release(gw: Gateway, api_key_id: str, key: str) -> None:
    """Forget a key whose request changed nothing (invalid) or may be retried (5xx)."""
    with gw.db.transaction() as session:
        session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.api_key_id == api_key_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.state == STARTED,
            )
        )
