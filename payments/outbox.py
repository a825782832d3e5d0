"""The outbox: events written in the same transaction as the change they announce."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from payments import clock
from payments.ids import new_id
from payments.models import Event, Payment, Refund
from payments.schemas import PaymentSummarySchema, RefundSchema
from payments.webhooks.fanout import enqueue

# Events travel to webhook endpoints and stay in the outbox: no payer personal data in them.
_payment_schema = PaymentSummarySchema()
_refund_schema = RefundSchema()


def _record(
    session: Session, *, type_: str, obj: Payment | Refund, data: dict[str, object]
) -> Event:
    event_id = new_id("evt")
    created_at = clock.now()
    body = {
        "id": event_id,
        "object": "event",
        "type": type_,
        "timestamp": clock.rfc3339(created_at),
        "data": data,
    }
    event = Event(
        id=event_id,
        agency_id=obj.agency_id,
        livemode=obj.livemode,
        type=type_,
        object_id=obj.id,
        body=json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True),
        created_at=created_at,
    )
    session.add(event)
    enqueue(session, event)  # the webhook deliveries it owes commit with it
    return event


def payment_event(session: Session, type_: str, payment: Payment) -> Event:
    return _record(session, type_=type_, obj=payment, data=_payment_schema.dump(payment))


def refund_event(session: Session, type_: str, refund: Refund) -> Event:
    return _record(session, type_=type_, obj=refund, data=_refund_schema.dump(refund))
