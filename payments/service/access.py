"""Agencies, API keys and the principal a key authenticates as."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments import clock
from payments.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from payments.gateway import Gateway
from payments.ids import new_id
from payments.models import Agency, ApiKey
from payments.money import CURRENCY_EXPONENTS

MEMBER_STATES = ("SA", "AE", "KW", "QA", "BH", "OM")
AGENCY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
KEY_RE = re.compile(r"^gw_(test|live|fin)_[A-Za-z0-9]{32,64}\Z")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: an agency in one mode, or finance staff across agencies."""

    key_id: str
    role: str
    agency_id: str | None
    livemode: bool

    @property
    def is_finance(self) -> bool:
        return self.role == "finance"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


FEE_BEARERS = ("gateway", "agency")


def create_agency(
    gw: Gateway,
    agency_id: str,
    *,
    name: str,
    name_ar: str,
    state: str,
    currencies: list[str],
    fee_bearer: str = "gateway",
) -> Agency:
    if not AGENCY_ID_RE.match(agency_id):
        raise ValidationFailed("agency id: lower-case letters, digits and '-'", param="id")
    if state not in MEMBER_STATES:
        raise ValidationFailed(f"state must be one of {', '.join(MEMBER_STATES)}", param="state")
    unknown = [c for c in currencies if c not in CURRENCY_EXPONENTS]
    if not currencies or unknown:
        raise ValidationFailed(f"unsupported currencies: {unknown}", param="currency")
    if not name.strip() or not name_ar.strip():
        raise ValidationFailed("an agency needs an English and an Arabic name", param="name")
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
    return agency


def create_key(
    gw: Gateway, *, agency_id: str | None, role: str, mode: str = "test"
) -> tuple[ApiKey, str]:
    """Issue a key; the secret is returned once and only its digest is kept."""
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
            raise NotFound(f"no agency {agency_id}")
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
    return key, secret


def revoke_key(gw: Gateway, key_id: str) -> ApiKey:
    with gw.db.transaction() as session:
        key = session.get(ApiKey, key_id, with_for_update=True)
        if key is None:
            raise NotFound(f"no key {key_id}")
        if key.revoked_at is None:
            key.revoked_at = clock.now()
    return key


def authenticate(session: Session, secret: str) -> Principal:
    if not KEY_RE.match(secret):
        raise AuthenticationFailed("the API key is malformed")
    key = session.execute(
        select(ApiKey).where(ApiKey.digest == digest(secret))
    ).scalar_one_or_none()
    if key is None or key.revoked_at is not None:
        raise AuthenticationFailed("the API key is unknown or revoked")
    return Principal(
        key_id=key.id, role=key.role, agency_id=key.agency_id, livemode=key.mode == "live"
    )
