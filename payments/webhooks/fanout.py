"""Owing an event to every endpoint that subscribes to it, in the event's own transaction, so
that an event committed is an event that will be delivered."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session

from payments import store
from payments.ids import new_id
from payments.models import Event
from payments.webhooks.models import DeliveryJob, WebhookEndpoint
from statements import prepared

ALL_EVENTS = "*"
MAX_ENDPOINTS = 16  # per agency and mode


def subscribed(events: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `events` hears an event of `event_type`."""
    return ALL_EVENTS in events or event_type in events


def subscribes(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return subscribed(endpoint.events, event_type)


def _enabled_endpoints(*whose: ColumnElement[bool]) -> Select[str, list[str]]:
    """The ids and subscriptions of the enabled endpoints `whose` selects, as plain rows:
    built once, so a fan-out neither builds a query nor flushes the session first (the
    endpoints are never among its pending changes)."""
    return (
        select(WebhookEndpoint.id, WebhookEndpoint.events)
        .where(*whose, WebhookEndpoint.status == "enabled", WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.id)
        .limit(MAX_ENDPOINTS)
    )


# An agency's endpoints in the event's mode; finance keys' endpoints have no mode: they hear test
# and live acquirers alike, and the event's data says which (`livemode`).
_AGENCY_ENDPOINTS = _enabled_endpoints(
    WebhookEndpoint.agency_id == bindparam("agency_id"),
    WebhookEndpoint.livemode == bindparam("livemode"),
)
_FINANCE_ENDPOINTS = _enabled_endpoints(WebhookEndpoint.agency_id.is_(None))


def new_job(event: Event, endpoint_id: str, *, requeued: bool = False) -> DeliveryJob:
    return DeliveryJob(
        id=new_id("wj"),
        event_id=event.id,
        endpoint_id=endpoint_id,
        status="pending",
        attempts=0,
        next_attempt_at=event.created_at,
        lease=None,
        requeued=requeued,
        created_at=event.created_at,
        updated_at=event.created_at,
    )


def enqueue(session: Session, event: Event) -> list[DeliveryJob]:
    """Add a delivery job for each enabled endpoint that subscribes to the event's type: its
    agency's in its mode, or for a finance event, the finance keys'."""
    if event.agency_id is None:
        found = prepared.run(session.connection(), _FINANCE_ENDPOINTS, {})
    else:
        found = prepared.run(
            session.connection(),
            _AGENCY_ENDPOINTS,
            {"agency_id": event.agency_id, "livemode": event.livemode},
        )
    jobs = [
        new_job(event, endpoint_id)
        for endpoint_id, events in found.rows
        if subscribed(events, event.type)
    ]
    store.add(session, *jobs)
    return jobs
