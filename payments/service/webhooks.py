"""Webhook use cases: register, read, change, delete and rotate endpoints; read the delivery
log; redeliver one event; recover every failed delivery since a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from config import Settings
from payments import clock, idempotency
from payments.errors import Conflict, NotFound, ValidationFailed
from payments.gateway import Gateway
from payments.ids import is_id, new_id
from payments.models import Agency, ApiKey, Event
from payments.principal import Principal
from payments.schemas import AGENCY_EVENT_TYPES, FINANCE_EVENT_TYPES
from payments.service.payments import Page, paginate, scoped
from payments.webhooks import signing
from payments.webhooks.delivery import secret_context, signing_key_context
from payments.webhooks.fanout import ALL_EVENTS, MAX_ENDPOINTS, subscribes
from payments.webhooks.guard import UrlRefused, checked_addresses, parse_url
from payments.webhooks.models import Delivery, DeliveryJob, WebhookEndpoint
from payments.webhooks.sealing import SecretBox

ROTATION_OVERLAP = dt.timedelta(hours=24)
REGISTRATION_DNS_TIMEOUT_S = 5.0
MAX_RECOVER = 5000  # jobs requeued by one recover call; `has_more` says to call again
URL_ERROR_CODES = {
    "https_required": "url_https_required",
    "blocked_address": "url_not_allowed",
    "dns": "url_unresolvable",
}


@dataclasses.dataclass(frozen=True)
class NewEndpoint:
    url: str
    events: list[str]
    description: str | None = None
    ed25519_signing: bool = False


@dataclasses.dataclass(frozen=True)
class EndpointChanges:
    url: str | None = None
    events: list[str] | None = None
    description: str | None = None
    disabled: bool | None = None


@dataclasses.dataclass(frozen=True)
class IssuedSecret:
    """An endpoint together with its new secret, answered once and never stored in the clear."""

    endpoint: WebhookEndpoint
    secret: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.endpoint, name)


@dataclasses.dataclass(frozen=True)
class Recovery:
    endpoint: str
    since: dt.datetime
    requeued: int
    has_more: bool


def _managed(query: Select[Any], model: Any, principal: Principal) -> Select[Any]:
    """Restrict a query to what the principal may change: an agency key its agency's endpoints
    and events in its mode; a finance key, which has no mode, the endpoints and events that
    belong to no agency (finance keys read every agency's endpoints, but change only theirs)."""
    if not principal.is_finance:
        return scoped(query, model, principal)
    return query.where(model.agency_id.is_(None))


def _allowed_events(principal: Principal, events: list[str]) -> list[str]:
    """The event filter, refused if it names a type this kind of key never receives."""
    allowed = FINANCE_EVENT_TYPES if principal.is_finance else AGENCY_EVENT_TYPES
    foreign = [name for name in events if name != ALL_EVENTS and name not in allowed]
    if foreign:
        whose = "finance" if principal.is_finance else "agency"
        raise ValidationFailed(
            f"{whose} keys' endpoints receive {', '.join(allowed)}; not {', '.join(foreign)}",
            param="events",
            details={"events": [f"not an event for {whose} keys: {', '.join(foreign)}"]},
        )
    return _events(events)


def check_url(settings: Settings, url: str) -> None:
    """Refuse a URL that is malformed, plain http in production, or that resolves to an
    address the private-network guard does not allow."""
    try:
        target = parse_url(url, https_only=settings.is_production)
        checked_addresses(
            target, settings.webhook_allow_networks, timeout_s=REGISTRATION_DNS_TIMEOUT_S
        )
    except UrlRefused as exc:
        raise ValidationFailed(
            exc.message,
            code=URL_ERROR_CODES.get(exc.code, "url_invalid"),
            param="url",
            details={"url": [exc.message]},
        ) from None


def _events(events: list[str]) -> list[str]:
    return [ALL_EVENTS] if ALL_EVENTS in events else list(dict.fromkeys(events))


def _sealed_signing_key(box: SecretBox, endpoint_id: str) -> tuple[str, str]:
    raw = signing.new_signing_key()
    return box.seal(raw, context=signing_key_context(endpoint_id)), signing.public_key(raw)


def _load(
    session: Session,
    principal: Principal,
    endpoint_id: str,
    *,
    lock: bool = False,
    manage: bool = False,
) -> WebhookEndpoint:
    if not is_id(endpoint_id, "we"):  # no such id can exist: do not ask the database
        raise NotFound(f"no webhook endpoint {endpoint_id!r}", param="id")
    query = (_managed if manage else scoped)(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.deleted_at.is_(None)
        ),
        WebhookEndpoint,
        principal,
    )
    if lock:
        query = query.with_for_update()
    endpoint: WebhookEndpoint | None = session.execute(query).scalar_one_or_none()
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", param="id")
    return endpoint


def _reissued(gw: Gateway, principal: Principal, endpoint_id: str) -> IssuedSecret:
    """The endpoint with its current secret: the answer a dead request under the same
    Idempotency-Key would have given, for the retry that took the key over."""
    box = SecretBox(gw.settings.encryption_key)
    with gw.db.read() as session:
        endpoint = _load(session, principal, endpoint_id, manage=True)
        secret = box.open(endpoint.secret_sealed, context=secret_context(endpoint.id))
    idempotency.withhold_answer()
    return IssuedSecret(endpoint, secret.decode())


def create_endpoint(gw: Gateway, principal: Principal, new: NewEndpoint) -> IssuedSecret:
    done = idempotency.recovered()
    if done is not None and is_id(done, "we"):
        return _reissued(gw, principal, done)
    agency_id = principal.agency_id  # None: a finance key's endpoint, for finance events
    events = _allowed_events(principal, new.events)
    check_url(gw.settings, new.url)
    box = SecretBox(gw.settings.encryption_key)
    endpoint_id = new_id("we")
    secret = signing.new_secret()
    sealed_key, public_key = (
        _sealed_signing_key(box, endpoint_id) if new.ed25519_signing else (None, None)
    )
    now = clock.now()
    with gw.db.transaction() as session:
        # The owner's row lock (the agency's, or the finance key's own) makes count-then-insert
        # safe against a concurrent create.
        if agency_id is not None:
            session.get(Agency, agency_id, with_for_update=True)
        else:
            session.get(ApiKey, principal.key_id, with_for_update=True)
        count = session.execute(
            _managed(
                select(func.count())
                .select_from(WebhookEndpoint)
                .where(WebhookEndpoint.deleted_at.is_(None)),
                WebhookEndpoint,
                principal,
            )
        ).scalar_one()
        if count >= MAX_ENDPOINTS:
            raise Conflict(
                f"an agency may have at most {MAX_ENDPOINTS} webhook endpoints per mode",
                code="endpoint_limit_reached",
            )
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            agency_id=agency_id,
            livemode=principal.livemode,
            url=new.url,
            events=events,
            description=new.description,
            status="enabled",
            disabled_reason=None,
            secret_sealed=box.seal(secret.encode(), context=secret_context(endpoint_id)),
            previous_secret_sealed=None,
            previous_secret_expires_at=None,
            signing_key_sealed=sealed_key,
            previous_signing_key_sealed=None,
            public_key=public_key,
            failing_since=None,
            created_at=now,
            updated_at=now,
            deleted_at=None,
        )
        session.add(endpoint)
        idempotency.committed(session, endpoint_id)
    idempotency.withhold_answer()
    return IssuedSecret(endpoint, secret)


def list_endpoints(
    gw: Gateway, principal: Principal, page: Page
) -> tuple[list[WebhookEndpoint], bool]:
    query = scoped(
        select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None)),
        WebhookEndpoint,
        principal,
    )
    with gw.db.read() as session:
        return paginate(session, query, WebhookEndpoint, page)


def get_endpoint(gw: Gateway, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    with gw.db.read() as session:
        return _load(session, principal, endpoint_id)


def update_endpoint(
    gw: Gateway, principal: Principal, endpoint_id: str, changes: EndpointChanges
) -> WebhookEndpoint:
    """Change the URL, the event filter or the description; disable or enable again (which
    forgets the failure streak)."""
    events = _allowed_events(principal, changes.events) if changes.events is not None else None
    if changes.url is not None:
        check_url(gw.settings, changes.url)  # before the transaction: it may wait on DNS
    now = clock.now()
    with gw.db.transaction() as session:
        endpoint = _load(session, principal, endpoint_id, lock=True, manage=True)
        if changes.url is not None:
            endpoint.url = changes.url
        if events is not None:
            endpoint.events = events
        if changes.description is not None:
            endpoint.description = changes.description
        if changes.disabled is True and endpoint.status == "enabled":
            endpoint.status, endpoint.disabled_reason = "disabled", "agency"
        elif changes.disabled is False and endpoint.status == "disabled":
            endpoint.status, endpoint.disabled_reason = "enabled", None
            endpoint.failing_since = None
        endpoint.updated_at = now
    return endpoint


def delete_endpoint(gw: Gateway, principal: Principal, endpoint_id: str) -> str:
    """Delete an endpoint; its delivery log is kept, and its pending deliveries are cancelled
    as each falls due."""
    now = clock.now()
    with gw.db.transaction() as session:
        endpoint = _load(session, principal, endpoint_id, lock=True, manage=True)
        endpoint.deleted_at = endpoint.updated_at = now
        endpoint.status = "disabled"
    return endpoint_id


def rotate_secret(
    gw: Gateway, principal: Principal, endpoint_id: str, *, expire_now: bool
) -> IssuedSecret:
    """A new secret (and Ed25519 key, if the endpoint signs with one). The old one keeps
    signing beside it for 24 hours unless `expire_now`; an older one still is dropped."""
    if idempotency.recovered() == endpoint_id:
        return _reissued(gw, principal, endpoint_id)  # rotated by a dead request under the key
    box = SecretBox(gw.settings.encryption_key)
    secret = signing.new_secret()
    now = clock.now()
    with gw.db.transaction() as session:
        endpoint = _load(session, principal, endpoint_id, lock=True, manage=True)
        if expire_now:
            endpoint.previous_secret_sealed = None
            endpoint.previous_signing_key_sealed = None
            endpoint.previous_secret_expires_at = None
        else:
            endpoint.previous_secret_sealed = endpoint.secret_sealed
            endpoint.previous_signing_key_sealed = endpoint.signing_key_sealed
            endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
        endpoint.secret_sealed = box.seal(secret.encode(), context=secret_context(endpoint.id))
        if endpoint.signing_key_sealed is not None:
            endpoint.signing_key_sealed, endpoint.public_key = _sealed_signing_key(box, endpoint.id)
        endpoint.updated_at = now
        idempotency.committed(session, endpoint.id)
    idempotency.withhold_answer()
    return IssuedSecret(endpoint, secret)


def list_deliveries(
    gw: Gateway, principal: Principal, endpoint_id: str, event_id: str | None, page: Page
) -> tuple[list[Delivery], bool]:
    """The endpoint's delivery log, newest attempt first."""
    with gw.db.read() as session:
        endpoint = _load(session, principal, endpoint_id)
        query = select(Delivery).where(Delivery.endpoint_id == endpoint.id)
        if event_id is not None and not is_id(event_id, "evt"):
            return [], False
        if event_id is not None:
            query = query.where(Delivery.event_id == event_id)
        return paginate(session, query, Delivery, page)


def _requeue(session: Session, dialect: str, event: Event, endpoint_id: str) -> None:
    """Make the (event, endpoint) job due now with a fresh retry schedule, creating it if the
    endpoint never had one; an attempt in flight finishes but no longer moves the job."""
    now = clock.now()
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(DeliveryJob).values(
        id=new_id("wj"),
        event_id=event.id,
        endpoint_id=endpoint_id,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        lease=None,
        requeued=True,
        created_at=event.created_at,
        updated_at=now,
    )
    excluded = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[DeliveryJob.event_id, DeliveryJob.endpoint_id],
            set_={
                "status": excluded.status,
                "attempts": excluded.attempts,
                "next_attempt_at": excluded.next_attempt_at,
                "lease": excluded.lease,
                "requeued": excluded.requeued,
                "updated_at": excluded.updated_at,
            },
        )
    )


def redeliver(
    gw: Gateway, principal: Principal, event_id: str, endpoint_id: str | None
) -> list[str]:
    """Send an event again, with the same `webhook-id`: to one endpoint, or to every enabled
    endpoint that subscribes to its type. Answers the endpoints it will go to."""
    if not is_id(event_id, "evt"):
        raise NotFound(f"no event {event_id!r}", param="id")
    with gw.db.transaction() as session:
        event = session.execute(
            _managed(select(Event).where(Event.id == event_id), Event, principal)
        ).scalar_one_or_none()
        if event is None:
            raise NotFound(f"no event {event_id}", param="id")
        if endpoint_id is not None:
            endpoint = _load(session, principal, endpoint_id, manage=True)
            if endpoint.status != "enabled":
                raise Conflict(
                    f"webhook endpoint {endpoint_id} is disabled; enable it first",
                    code="endpoint_disabled",
                )
            targets = [endpoint.id]
        else:
            endpoints = session.execute(
                _managed(
                    select(WebhookEndpoint).where(
                        WebhookEndpoint.status == "enabled",
                        WebhookEndpoint.deleted_at.is_(None),
                    ),
                    WebhookEndpoint,
                    principal,
                )
                .order_by(WebhookEndpoint.id)
                .limit(MAX_ENDPOINTS)
            ).scalars()
            targets = [e.id for e in endpoints if subscribes(e, event.type)]
        for target in targets:
            _requeue(session, gw.db.dialect, event, target)
    return targets


def recover(gw: Gateway, principal: Principal, endpoint_id: str, since: dt.datetime) -> Recovery:
    """Requeue the endpoint's failed deliveries of events since `since` (at most 5000 a call),
    each with a fresh retry schedule and the same `webhook-id`."""
    now = clock.now()
    with gw.db.transaction() as session:
        endpoint = _load(session, principal, endpoint_id, manage=True)
        if endpoint.status != "enabled":
            raise Conflict(
                f"webhook endpoint {endpoint_id} is disabled; enable it first",
                code="endpoint_disabled",
            )
        failed = list(
            session.execute(
                select(DeliveryJob.id)
                .where(
                    DeliveryJob.endpoint_id == endpoint.id,
                    DeliveryJob.status == "failed",
                    DeliveryJob.created_at >= since,
                )
                .order_by(DeliveryJob.created_at)
                .limit(MAX_RECOVER + 1)
            ).scalars()
        )
        chosen = failed[:MAX_RECOVER]
        if chosen:
            session.execute(
                update(DeliveryJob)
                .where(DeliveryJob.id.in_(chosen), DeliveryJob.status == "failed")
                .values(
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    lease=None,
                    requeued=True,
                    updated_at=now,
                )
            )
    return Recovery(
        endpoint=endpoint_id, since=since, requeued=len(chosen), has_more=len(failed) > MAX_RECOVER
    )
