"""Idempotency keys: the first request under a key runs, repeats replay its response.

The key row is inserted and committed before the work starts, so a concurrent repeat fails
on the unique constraint and answers 409 instead of doing the work twice. The row holds a
lease (`locked_until`) with a token naming its holder. A request that dies in flight (the
process killed) leaves its key started; a repeat after the lease takes the key over with a new
token. Work done under a key records, in the same transaction as the work, the payment or
refund it committed (`committed`), and only while its holder still holds the key, so a dead
holder's work is never done twice: the request that takes over asks `recovered()` and answers
that object as it now stands; with nothing recorded, nothing was committed, and it runs the
request afresh.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import hashlib
import json
import secrets
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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


@dataclasses.dataclass(frozen=True)
class Claim:
    """This request holds the key: `token` proves it; `recovered` is what a dead holder's
    work committed, if the request took the key over."""

    api_key_id: str
    key: str
    token: str
    recovered: str | None = None


_held: contextvars.ContextVar[Claim | None] = contextvars.ContextVar(
    "idempotency_claim", default=None
)


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


def _in_use() -> Conflict:
    return Conflict(
        "a request with this Idempotency-Key is still in flight", code="idempotency_key_in_use"
    )


def begin(gw: Gateway, api_key_id: str, key: str, digest: str) -> Replay | Claim:
    """Claim the key for this request (taking it over if its holder's lease ran out), or say
    what a repeat must answer."""
    lease = dt.timedelta(seconds=gw.settings.idempotency_lease_s)
    for _ in range(2):
        token = secrets.token_hex(16)
        now = clock.now()
        try:
            with gw.db.transaction() as session:
                session.add(
                    IdempotencyRecord(
                        api_key_id=api_key_id,
                        key=key,
                        request_hash=digest,
                        state=STARTED,
                        created_at=now,
                        locked_until=now + lease,
                        lease_token=token,
                    )
                )
            return Claim(api_key_id, key, token)
        except IntegrityError:
            pass
        with gw.db.transaction() as session:
            record = session.execute(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.api_key_id == api_key_id, IdempotencyRecord.key == key)
                .with_for_update()
            ).scalar_one_or_none()
            if record is None:
                continue  # the first request gave the key up meanwhile: claim it again
            now = clock.now()
            if record.created_at < now - dt.timedelta(seconds=gw.settings.idempotency_ttl_s):
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
            if record.state == FINISHED and record.response_status is not None:
                return Replay(status=record.response_status, body=record.response_body or "")
            locked_until = record.locked_until or record.created_at + lease
            if locked_until > now:
                raise _in_use()
            # The holder died in flight: this request holds the key from now on.
            record.locked_until = now + lease
            record.lease_token = token
            return Claim(api_key_id, key, token, recovered=record.recovery_object)
    raise _in_use()


def hold(claim: Claim | None) -> contextvars.Token[Claim | None]:
    """Make `claim` the current request's, for `committed` and `recovered`."""
    return _held.set(claim)


def let_go(token: contextvars.Token[Claim | None]) -> None:
    _held.reset(token)


def recovered() -> str | None:
    """The payment or refund that a dead holder of this request's key committed: answer it as
    it now stands rather than doing the work again."""
    claim = _held.get()
    return claim.recovered if claim is not None else None


def committed(session: Session, object_id: str) -> None:
    """Record, in the transaction of the work itself, the object this request's key made or
    moved; refused (and the work rolled back) if another request has taken the key over."""
    claim = _held.get()
    if claim is None:
        return
    moved = session.execute(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.api_key_id == claim.api_key_id,
            IdempotencyRecord.key == claim.key,
            IdempotencyRecord.lease_token == claim.token,
        )
        .values(recovery_object=object_id)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise _in_use()


def finish(gw: Gateway, claim: Claim, status: int, body: str) -> None:
    """Keep the response for repeats, unless another request has taken the key over."""
    with gw.db.transaction() as session:
        session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.api_key_id == claim.api_key_id,
                IdempotencyRecord.key == claim.key,
                IdempotencyRecord.lease_token == claim.token,
            )
            .values(state=FINISHED, response_status=status, response_body=body)
            .execution_options(synchronize_session=False)
        )


def release(gw: Gateway, claim: Claim) -> None:
    """Give the key up after a response that is not kept (invalid, or 5xx and retryable):
    forgotten if this request committed nothing, else left for the retry to take over now."""
    held = (
        IdempotencyRecord.api_key_id == claim.api_key_id,
        IdempotencyRecord.key == claim.key,
        IdempotencyRecord.state == STARTED,
        IdempotencyRecord.lease_token == claim.token,
    )
    with gw.db.transaction() as session:
        session.execute(
            delete(IdempotencyRecord).where(*held, IdempotencyRecord.recovery_object.is_(None))
        )
        session.execute(
            update(IdempotencyRecord)
            .where(*held)
            .values(locked_until=clock.now())
            .execution_options(synchronize_session=False)
        )
