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

What a key row keeps is safe in a backup: the request's fingerprint is an HMAC under a key
derived from `GATEWAY_SECRET_KEY` (a confirm's card fields are first replaced by a keyed
digest of the card), never a plain hash that the card's number or security code could be
guessed back from; and an answer that carries a secret (a webhook endpoint's signing secret)
is kept without its body, so a repeat reissues it from the object as the take-over does.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payments import clock
from payments.errors import Conflict, ValidationFailed
from payments.gateway import Gateway
from payments.models import IdempotencyRecord

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
STARTED = "started"
FINISHED = "finished"
_FINGERPRINT_CONTEXT = b"gateway idempotency request fingerprint"


@dataclasses.dataclass(frozen=True)
class Replay:
    status: int
    body: str


@dataclasses.dataclass(frozen=True)
class Claim:
    """This request holds the key: `token` proves it; `recovered` is what a dead holder's
    work committed, if the request took the key over. `replay` marks the repeat of a finished
    request whose answer was not kept: it answers `recovered` as it now stands, and keeps
    nothing."""

    api_key_id: str
    key: str
    token: str
    recovered: str | None = None
    replay: bool = False


@dataclasses.dataclass
class _Holding:
    claim: Claim
    withhold_answer: bool = False


_held: contextvars.ContextVar[_Holding | None] = contextvars.ContextVar(
    "idempotency_claim", default=None
)


@dataclasses.dataclass(frozen=True)
class FingerprintKey:
    """A key that request fingerprints are made under, and the short id stored beside each
    fingerprint to say which key made it."""

    id: str
    secret: bytes = dataclasses.field(repr=False)


@functools.lru_cache(maxsize=8)
def fingerprint_key(secret_key: str) -> FingerprintKey:
    """The fingerprint key derived from the gateway's secret key (its own purpose, so it
    reveals nothing of the key that signs links)."""
    derived = hmac.new(secret_key.encode(), _FINGERPRINT_CONTEXT, hashlib.sha256).digest()
    key_id = hmac.new(derived, b"key id", hashlib.sha256).hexdigest()[:12]
    return FingerprintKey(id=key_id, secret=derived)


@dataclasses.dataclass(frozen=True)
class Request:
    """What a repeat must match: the method, the path and the JSON body (card data and all,
    held only for this request)."""

    method: str
    path: str
    body: Any = dataclasses.field(repr=False)

    def fingerprint(self, key: FingerprintKey) -> str:
        canonical = _canonical(_without_card_data(key, self.body))
        message = f"{self.method} {self.path}\n{canonical}".encode()
        return hmac.new(key.secret, message, hashlib.sha256).hexdigest()


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


def _canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _without_card_data(key: FingerprintKey, body: Any) -> Any:
    """`body` with a confirm's card replaced by a keyed digest of it: the same card matches,
    another card does not, and the fingerprint covers no card digit directly."""
    method = body.get("payment_method") if isinstance(body, dict) else None
    if not isinstance(method, dict) or "card" not in method:
        return body
    card = hmac.new(key.secret, b"card\n" + _canonical(method["card"]).encode(), hashlib.sha256)
    return {**body, "payment_method": {**method, "card": {"digest": card.hexdigest()}}}


def _same_request(
    record: IdempotencyRecord, request: Request, keys: tuple[FingerprintKey, ...]
) -> bool:
    """Whether `request` is the one the key was first used with. A fingerprint that can no
    longer be compared (dropped when fingerprints became keyed, or made under a key retired
    before the last rotation) is taken as the same request: a repeat then replays or takes
    over, which never does the work twice."""
    if record.request_hash is None:
        return True
    for key in keys:
        if key.id == record.request_key:
            return hmac.compare_digest(record.request_hash, request.fingerprint(key))
    log.info(
        "an Idempotency-Key's fingerprint was made under a retired secret key",
        extra={"key_id": record.request_key},
    )
    return True


def _in_use() -> Conflict:
    return Conflict(
        "a request with this Idempotency-Key is still in flight", code="idempotency_key_in_use"
    )


def fingerprint_keys(gw: Gateway) -> tuple[FingerprintKey, ...]:
    """The current fingerprint key first, then the one of the secret key it replaced."""
    settings = gw.settings
    previous = settings.previous_secret_key
    current = fingerprint_key(settings.secret_key)
    return (current, fingerprint_key(previous)) if previous else (current,)


def begin(gw: Gateway, api_key_id: str, key: str, request: Request) -> Replay | Claim:
    """Claim the key for this request (taking it over if its holder's lease ran out), or say
    what a repeat must answer."""
    lease = dt.timedelta(seconds=gw.settings.idempotency_lease_s)
    keys = fingerprint_keys(gw)
    digest = request.fingerprint(keys[0])
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
                        request_key=keys[0].id,
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
            if not _same_request(record, request, keys):
                message = "this Idempotency-Key was used with a different request"
                raise ValidationFailed(
                    message,
                    code="idempotency_key_reused",
                    param="Idempotency-Key",
                    details={"Idempotency-Key": [message]},
                )
            if record.state == FINISHED and record.response_status is not None:
                if record.response_body is not None:
                    return Replay(status=record.response_status, body=record.response_body)
                if record.recovery_object is None:  # nothing to answer from: never redo it
                    raise _in_use()
                # The answer held a secret and was not kept: answer the object again.
                return Claim(api_key_id, key, token, recovered=record.recovery_object, replay=True)
            locked_until = record.locked_until or record.created_at + lease
            if locked_until > now:
                raise _in_use()
            # The holder died in flight: this request holds the key from now on.
            record.locked_until = now + lease
            record.lease_token = token
            return Claim(api_key_id, key, token, recovered=record.recovery_object)
    raise _in_use()


def hold(claim: Claim | None) -> contextvars.Token[_Holding | None]:
    """Make `claim` the current request's, for `committed` and `recovered`."""
    return _held.set(_Holding(claim) if claim is not None else None)


def let_go(token: contextvars.Token[_Holding | None]) -> None:
    _held.reset(token)


def _claim() -> Claim | None:
    holding = _held.get()
    return holding.claim if holding is not None else None


def recovered() -> str | None:
    """The payment or refund that a dead holder of this request's key committed: answer it as
    it now stands rather than doing the work again."""
    claim = _claim()
    return claim.recovered if claim is not None else None


def withhold_answer() -> None:
    """This request's answer carries a secret: keep the key's outcome but not the answer, so
    no secret sits in the key's row; a repeat answers the object afresh (`recovered`)."""
    holding = _held.get()
    if holding is not None:
        holding.withhold_answer = True


def answer_withheld() -> bool:
    holding = _held.get()
    return holding is not None and holding.withhold_answer


def committed(session: Session, object_id: str) -> None:
    """Record, in the transaction of the work itself, the object this request's key made or
    moved; refused (and the work rolled back) if another request has taken the key over."""
    claim = _claim()
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


def finish(gw: Gateway, claim: Claim, status: int, body: str | None) -> None:
    """Keep the response for repeats, unless another request has taken the key over; with no
    `body`, only its status: a repeat answers the recorded object afresh."""
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
