"""Owing an event to every endpoint that subscribes to it, in the event's own transaction, so
that an event committed is an event that will be delivered."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, Select, bindparam, select
from sqlalchemy.orm import Session

from payments import store
from payments.ids import new_id
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


def enqueue(
    session: Session,
    event_id: str,
    event_type: str,
    *,
    agency_id: str | None,
    livemode: bool,
    at: dt.datetime,
) -> int:
    """Owe the event a delivery to each enabled endpoint that subscribes to its type: its
    agency's in its mode, or for a finance event (no agency), the finance keys'. How many."""
    if agency_id is None:
        found = prepared.run(session.connection(), _FINANCE_ENDPOINTS, {})
    else:
        found = prepared.run(
            session.connection(), _AGENCY_ENDPOINTS, {"agency_id": agency_id, "livemode": livemode}
        )
    jobs = [
        {
            "id": new_id("wj"),
            "event_id": event_id,
            "endpoint_id": endpoint_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": at,
            "lease": None,
            "requeued": False,
            "created_at": at,
            "updated_at": at,
        }
        for endpoint_id, events in found.rows
        if subscribed(events, event_type)
    ]
    store.append(session, DeliveryJob, *jobs)
    return len(jobs)
