"""Agencies, API keys and the principal a key authenticates as."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from config import ConfigurationError, Settings
from payments import clock
from payments.db import Database
from payments.errors import (
    AuthenticationFailed,
    Conflict,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from payments.gateway import Gateway
from payments.ids import new_id
from payments.models import Agency, ApiKey
from payments.money import CURRENCY_EXPONENTS
from payments.principal import KeyAgency, Principal
from payments.schemas import unstorable

MEMBER_STATES = ("SA", "AE", "KW", "QA", "BH", "OM")
AGENCY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
KEY_RE = re.compile(r"^gw_(test|live|fin)_[A-Za-z0-9]{32,64}\Z")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


FEE_BEARERS = ("gateway", "agency")
MAX_NAME_CHARS = 200  # the names' columns
LIST_LIMIT = 500  # the most agencies or keys one listing shows, newest first


def create_agency(
    gw: Gateway,
    agency_id: str,
    *,
    name: str,
    name_ar: str,
    state: str,
    currencies: list[str],
    fee_bearer: str = "gateway",
    audited: Callable[[Session, Agency], None] | None = None,
) -> Agency:
    """Register an agency; `audited`, if given, is called with the new agency inside the
    transaction that adds it (to write the audit log with the change)."""
    if not AGENCY_ID_RE.match(agency_id):
        raise ValidationFailed("agency id: lower-case letters, digits and '-'", param="id")
    if state not in MEMBER_STATES:
        raise ValidationFailed(f"state must be one of {', '.join(MEMBER_STATES)}", param="state")
    unknown = [c for c in currencies if c not in CURRENCY_EXPONENTS]
    if not currencies or unknown:
        raise ValidationFailed(f"unsupported currencies: {unknown}", param="currency")
    if not name.strip() or not name_ar.strip():
        raise ValidationFailed("an agency needs an English and an Arabic name", param="name")
    if unstorable(name) or unstorable(name_ar):
        raise ValidationFailed("an agency's names are text without NUL characters", param="name")
    if len(name) > MAX_NAME_CHARS or len(name_ar) > MAX_NAME_CHARS:
        raise ValidationFailed(
            f"an agency's names have at most {MAX_NAME_CHARS} characters", param="name"
        )
    if fee_bearer not in FEE_BEARERS:
        raise ValidationFailed("fee bearer must be gateway or agency", param="fee_bearer")
    with gw.db.transaction() as session:
        if session.get(Agency, agency_id) is not None:
            raise Conflict(f"agency {agency_id} already exists", code="agency_exists")
        agency = Agency(
            id=agency_id,
            name=name,
            name_ar=name_ar,
            state=state,
            currencies=list(dict.fromkeys(currencies)),
            fee_bearer=fee_bearer,
            created_at=clock.now(),
        )
        session.add(agency)
        if audited is not None:
            audited(session, agency)
    return agency


def list_agencies(gw: Gateway, *, limit: int = LIST_LIMIT) -> list[Agency]:
    """The agencies, newest first, at most `limit` of them."""
    with gw.db.read() as session:
        return list(
            session.scalars(
                select(Agency).order_by(Agency.created_at.desc(), Agency.id).limit(limit)
            )
        )


@dataclasses.dataclass(frozen=True)
class KeySummary:
    """What may be shown of an API key: never its secret nor its digest."""

    id: str
    prefix: str
    agency_id: str | None
    role: str
    mode: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def list_keys(gw: Gateway, *, limit: int = LIST_LIMIT) -> list[KeySummary]:
    """The API keys, newest first, at most `limit` of them."""
    query = (
        select(
            ApiKey.id,
            ApiKey.prefix,
            ApiKey.agency_id,
            ApiKey.role,
            ApiKey.mode,
            ApiKey.created_at,
            ApiKey.revoked_at,
        )
        .order_by(ApiKey.id.desc())
        .limit(limit)
    )
    with gw.db.read() as session:
        rows = session.execute(query).all()
    return [
        KeySummary(
            id=row.id,
            prefix=row.prefix,
            agency_id=row.agency_id,
            role=row.role,
            mode=row.mode,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


def refuse_live_keys_outside_production(settings: Settings, db: Database) -> None:
    """A gateway holding live agency keys takes real money: refuse to start it as development
    (what a missing GATEWAY_ENV gives: generated secrets, SQLite, http, the simulators)."""
    if settings.env != "development":
        return
    try:
        with db.read() as session:
            live = session.execute(
                select(ApiKey.id)
                .where(ApiKey.role == "agency", ApiKey.mode == "live", ApiKey.revoked_at.is_(None))
                .limit(1)
            ).first()
    except (SQLAlchemyError, Unavailable) as exc:
        raise ConfigurationError(
            "could not check GATEWAY_DATABASE_URL for live API keys (run `gateway db upgrade` "
            f"first): {type(exc).__name__}"
        ) from None
    if live is not None:
        raise ConfigurationError(
            f"the database holds live API keys (such as {live.id}) but GATEWAY_ENV is "
            "development: set GATEWAY_ENV=production with its real secrets, or revoke them"
        )


def create_key(
    gw: Gateway,
    *,
    agency_id: str | None,
    role: str,
    mode: str = "test",
    audited: Callable[[Session, ApiKey], None] | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key; the secret is returned once and only its digest is kept. `audited`, if
    given, is called with the new key inside the transaction that adds it."""
    if role not in ("agency", "finance"):
        raise ValidationFailed("role must be agency or finance", param="role")
    if role == "agency" and agency_id is None:
        raise ValidationFailed("an agency key needs --agency", param="agency")
    if role == "finance":
        agency_id, mode, kind = None, "live", "fin"
    else:
        kind = mode
    if mode not in ("test", "live"):
        raise ValidationFailed("mode must be test or live", param="mode")
    secret = f"gw_{kind}_{secrets.token_urlsafe(30).replace('-', 'x').replace('_', 'y')}"
    with gw.db.transaction() as session:
        if agency_id is not None and session.get(Agency, agency_id) is None:
            raise NotFound(f"no agency {agency_id}", param="agency")
        key = ApiKey(
            id=new_id("key"),
            agency_id=agency_id,
            role=role,
            mode=mode,
            prefix=secret[:12],
            digest=digest(secret),
            created_at=clock.now(),
        )
        session.add(key)
        if audited is not None:
            audited(session, key)
    return key, secret


MAX_KEY_ID_CHARS = 40  # api_keys.id


def revoke_key(
    gw: Gateway, key_id: str, *, audited: Callable[[Session, ApiKey], None] | None = None
) -> ApiKey:
    """Revoke a key: refused at once by this process, and by every other within
    `VERIFIED_KEY_TTL_S` (the time they may keep a key they verified). `audited`, if given,
    is called inside the transaction that revokes it (not for a key revoked before)."""
    if unstorable(key_id) or len(key_id) > MAX_KEY_ID_CHARS:
        raise NotFound(f"no key {key_id[:MAX_KEY_ID_CHARS]!r}")
    with gw.db.transaction() as session:
        key = session.get(ApiKey, key_id, with_for_update=True)
        if key is None:
            raise NotFound(f"no key {key_id}")
        if key.revoked_at is None:
            key.revoked_at = clock.now()
            if audited is not None:
                audited(session, key)
    gw.verified_keys.forget(lambda principal: principal.key_id == key_id)
    return key


def verify(gw: Gateway, secret: str) -> Principal:
    """The principal an API key authenticates as: from the keys this process verified in the
    last `VERIFIED_KEY_TTL_S`, else from the database (the key and its agency in one query)."""
    if not KEY_RE.match(secret):
        raise AuthenticationFailed("the API key is malformed")
    key_digest = digest(secret)
    known: Principal | None = gw.verified_keys.get(key_digest)
    if known is not None:
        return known
    with gw.db.read() as session:
        principal = _principal(session, key_digest)
    gw.verified_keys.put(key_digest, principal)
    return principal


def authenticate(session: Session, secret: str) -> Principal:
    """The principal an API key authenticates as, read in `session` (no cache)."""
    if not KEY_RE.match(secret):
        raise AuthenticationFailed("the API key is malformed")
    return _principal(session, digest(secret))


def _principal(session: Session, key_digest: str) -> Principal:
    row = session.execute(
        select(
            ApiKey.id,
            ApiKey.role,
            ApiKey.agency_id,
            ApiKey.mode,
            ApiKey.revoked_at,
            Agency.state,
            Agency.currencies,
        )
        .outerjoin(Agency, Agency.id == ApiKey.agency_id)
        .where(ApiKey.digest == key_digest)
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        raise AuthenticationFailed("the API key is unknown or revoked")
    agency = None
    if row.agency_id is not None:
        agency = KeyAgency(row.agency_id, row.state, tuple(row.currencies or ()))
    return Principal(
        key_id=row.id,
        role=row.role,
        agency_id=row.agency_id,
        livemode=row.mode == "live",
        agency=agency,
    )
