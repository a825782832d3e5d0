"""Idempotency keys: the first request under a key runs, repeats replay its response.

The key row is written in the work's own first transaction (`committed`, or `answered` when
that transaction also holds the answer): a concurrent repeat blocks on the key's unique index,
finds the key taken (`KeyTaken`), rolls its own work back, and replays or answers 409 instead
of doing the work twice. Work that cannot say where it commits claims the key beforehand, in a
transaction of its own (`begin`), as does a request whose work stopped before its claim, to
learn what a repeat must answer. The row holds a lease (`locked_until`) with a token naming
its holder. A request that dies in flight (the
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

import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payments import clock
from payments.errors import Conflict, ValidationFailed
from payments.gateway import Gateway
from payments.models import IdempotencyRecord
from statements import prepared

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


class KeyTaken(Exception):
    """The work's transaction found its Idempotency-Key written by another request: it rolls
    back, and the request learns what to answer (`begin`)."""


Render = Callable[[Any], Any]  # the work's answer, from the object it made or moved


@dataclasses.dataclass
class _Holding:
    """A request's Idempotency-Key: asked for (`asked`, no row yet) until a transaction claims
    it (`claim`); `answer` once the work's transaction committed its answer with the key."""

    asked: Asked | None
    claim: Claim | None = None
    withhold_answer: bool = False
    render: Render | None = None
    made: tuple[Any, Any] | None = None  # an object, and the answer made of it beforehand
    answer: tuple[Any, Any] | None = None  # the work's object, and the answer kept of it


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


@dataclasses.dataclass(frozen=True)
class Asked:
    """A request's Idempotency-Key and fingerprint, before any row of it is written."""

    api_key_id: str
    key: str
    request: Request
    digest: str
    key_id: str
    lease: dt.timedelta


def asked(gw: Gateway, api_key_id: str, key: str, request: Request) -> Asked:
    """The key and the fingerprint of `request` under the current fingerprint key."""
    current = fingerprint_keys(gw)[0]
    lease = dt.timedelta(seconds=gw.settings.idempotency_lease_s)
    return Asked(api_key_id, key, request, request.fingerprint(current), current.id, lease)


def begin(gw: Gateway, api_key_id: str, key: str, request: Request) -> Replay | Claim:
    """Claim the key for this request in a transaction of its own (taking it over if its
    holder's lease ran out), or say what a repeat must answer."""
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


def hold(claim: Claim | None, asked: Asked | None = None) -> contextvars.Token[_Holding | None]:
    """Make the current request's key `claim` (held already) or `asked` (for its work to
    claim), for the work's `committed`, `answered` and `recovered`."""
    return _held.set(_Holding(asked, claim))


def let_go(token: contextvars.Token[_Holding | None]) -> None:
    _held.reset(token)


def holding() -> _Holding | None:
    """The current request's key, if it sent one."""
    return _held.get()


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


@contextlib.contextmanager
def rendering(render: Render) -> Iterator[None]:
    """While the block runs, `answered` keeps the answer `render` makes of the work's object
    (an HTTP response) with the key, in the work's transaction."""
    holding = _held.get()
    if holding is None:
        yield
        return
    holding.render = render
    try:
        yield
    finally:
        holding.render = None


def _insert(session: Session) -> Any:
    """INSERT of a key row that does nothing where the key is written already: a concurrent
    writer's uncommitted row is waited for first (PostgreSQL; SQLite writes one at a time)."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    return _INSERT_PG if postgresql else _INSERT_SQLITE


_INSERT_PG = pg_insert(IdempotencyRecord).on_conflict_do_nothing(
    index_elements=["api_key_id", "key"]
)
_INSERT_SQLITE = sqlite_insert(IdempotencyRecord).on_conflict_do_nothing(
    index_elements=["api_key_id", "key"]
)


def _claim_in(session: Session, holding: _Holding, object_id: str, **answer: Any) -> None:
    """Write the key row in the work's transaction, naming `object_id` (and, with `answer`,
    finished with it); KeyTaken if another request wrote the key first."""
    asked, now = holding.asked, clock.now()
    assert asked is not None, "a key held from the start is claimed already"
    token = secrets.token_hex(16)
    written = prepared.run(
        session.connection(),
        _insert(session),
        {
            "api_key_id": asked.api_key_id,
            "key": asked.key,
            "request_hash": asked.digest,
            "request_key": asked.key_id,
            "state": FINISHED if answer else STARTED,
            "created_at": now,
            "locked_until": now + asked.lease,
            "lease_token": token,
            "recovery_object": object_id,
            **answer,
        },
    )
    if written.rowcount != 1:
        raise KeyTaken(asked.key)
    holding.claim = Claim(asked.api_key_id, asked.key, token)


def _update_held(session: Session, claim: Claim, **values: Any) -> bool:
    """Change the key's row if this request still holds it; whether it did."""
    moved = prepared.run(
        session.connection(),
        _UPDATE_HELD,
        {
            "held_api_key_id": claim.api_key_id,
            "held_key": claim.key,
            "held_token": claim.token,
            **values,
        },
    )
    return moved.rowcount == 1


_UPDATE_HELD = update(IdempotencyRecord).where(
    IdempotencyRecord.api_key_id == bindparam("held_api_key_id"),
    IdempotencyRecord.key == bindparam("held_key"),
    IdempotencyRecord.lease_token == bindparam("held_token"),
)


def committed(session: Session, object_id: str) -> None:
    """Record, in the transaction of the work itself, the object this request's key made or
    moved: the key is claimed here if the request has not claimed it yet (KeyTaken if another
    request did), and refused (the work rolled back) if another request has taken it over."""
    holding = _held.get()
    if holding is None:
        return
    if holding.claim is None:
        _claim_in(session, holding, object_id)
    elif not _update_held(session, holding.claim, recovery_object=object_id):
        raise _in_use()  # taken over: the work stops here, rolled back


def answered(session: Session, object_id: str, obj: Any) -> None:
    """Record, in the work's last transaction, that `obj` is the request's answer: the key is
    finished with the answer made of it (`rendering`), so that the answer and the work commit
    together. A key not yet claimed is claimed here (KeyTaken if another request wrote it
    first); a key another request has taken over since keeps nothing of this one, and the work
    commits all the same: what it records is what the new holder answers from."""
    holding = _held.get()
    if holding is None:
        return
    if holding.render is None:
        if holding.claim is None:
            committed(session, object_id)
        return  # kept after the view, as any other answer
    made = holding.made
    answer = made[1] if made is not None and made[0] is obj else holding.render(obj)
    kept = {
        "response_status": answer.status_code,
        "response_body": None if holding.withhold_answer else answer.get_data(as_text=True),
    }
    if holding.claim is None:
        _claim_in(session, holding, object_id, **kept)
    elif not _update_held(
        session, holding.claim, state=FINISHED, recovery_object=object_id, **kept
    ):
        log.warning(
            "an Idempotency-Key was taken over before its holder's last transaction",
            extra={"key": holding.claim.key},
        )
        return
    holding.answer = (obj, answer)


def make_answer(obj: Any) -> None:
    """Make the answer of `obj` now, for `answered` to keep when the work commits it
    unchanged: work that knows its answer before its transaction makes it outside."""
    holding = _held.get()
    if holding is not None and holding.render is not None:
        holding.made = (obj, holding.render(obj))


def answer_kept_for(obj: Any) -> Any:
    """The answer the work kept with the key for `obj`, if it kept one, to send as it is."""
    holding = _held.get()
    if holding is None or holding.answer is None or holding.answer[0] is not obj:
        return None
    return holding.answer[1]


def is_kept_answer(response: Any) -> bool:
    """Whether `response` is the answer the work kept with the key in its own transaction."""
    holding = _held.get()
    return holding is not None and holding.answer is not None and holding.answer[1] is response


def finish(gw: Gateway, claim: Claim, status: int, body: str | None) -> bool:
    """Keep the response for repeats, unless another request has taken the key over (or the
    key's row never committed); with no `body`, only its status: a repeat answers the recorded
    object afresh. Whether it was kept."""
    with gw.db.transaction() as session:
        kept = session.execute(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.api_key_id == claim.api_key_id,
                IdempotencyRecord.key == claim.key,
                IdempotencyRecord.lease_token == claim.token,
            )
            .values(state=FINISHED, response_status=status, response_body=body)
            .execution_options(synchronize_session=False)
        )
    return bool(kept.rowcount)  # type: ignore[attr-defined]


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
