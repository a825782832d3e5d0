"""The outbox: events written in the same transaction as the change they announce."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from payments import clock, store
from payments.ids import new_id
from payments.models import Event, Payment, Refund
from payments.schemas import PaymentSummarySchema, RefundSchema
from payments.webhooks.fanout import enqueue

# Events travel to webhook endpoints and stay in the outbox: no payer personal data in them.
_payment_schema = PaymentSummarySchema()
_refund_schema = RefundSchema()


def _record(
    session: Session,
    *,
    type_: str,
    agency_id: str | None,
    livemode: bool,
    object_id: str,
    data: dict[str, object],
) -> str:
    """Write the event and the deliveries it owes; its id."""
    event_id = new_id("evt")
    created_at = clock.now()
    body = {
        "id": event_id,
        "object": "event",
        "type": type_,
        "timestamp": clock.rfc3339(created_at),
        "data": data,
    }
    store.append(
        session,
        Event,
        {
            "id": event_id,
            "agency_id": agency_id,
            "livemode": livemode,
            "type": type_,
            "object_id": object_id,
            "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True),
            "created_at": created_at,
        },
    )
    # The webhook deliveries it owes commit with it.
    enqueue(session, event_id, type_, agency_id=agency_id, livemode=livemode, at=created_at)
    return event_id


def finance_event(
    session: Session, type_: str, *, object_id: str, livemode: bool, data: dict[str, object]
) -> str:
    """An event for finance keys' endpoints, belonging to no agency."""
    return _record(
        session, type_=type_, agency_id=None, livemode=livemode, object_id=object_id, data=data
    )


def payment_event(session: Session, type_: str, payment: Payment) -> str:
    return _record(
        session,
        type_=type_,
        agency_id=payment.agency_id,
        livemode=payment.livemode,
        object_id=payment.id,
        data=_payment_schema.dump(payment),
    )


def refund_event(session: Session, type_: str, refund: Refund) -> str:
    return _record(
        session,
        type_=type_,
        agency_id=refund.agency_id,
        livemode=refund.livemode,
        object_id=refund.id,
        data=_refund_schema.dump(refund),
    )
