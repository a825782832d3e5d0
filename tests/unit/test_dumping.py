"""`FastDump`: a response schema's own dump gives what marshmallow's dump gives, for every
shape of payment, refund and event the gateway answers with."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, fields, post_dump

from payments.dumping import FastDump
from payments.models import Event, Payment, Refund
from payments.schemas import (
    EventSchema,
    PaymentListSchema,
    PaymentSchema,
    PaymentSummarySchema,
    RefundSchema,
)
from payments.states import PaymentStatus, RefundStatus

text = st.text(max_size=30)
maybe_text = st.none() | text
times = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)
card = st.none() | st.fixed_dictionaries(
    {"type": st.just("card"), "brand": text, "last4": text, "exp_month": st.integers(1, 12)}
)

payments = st.builds(
    Payment,
    id=st.just("pay_" + "a" * 26),
    agency_id=text,
    livemode=st.booleans(),
    status=st.sampled_from([s.value for s in PaymentStatus]),
    amount_minor=st.integers(1, 10**12),
    currency=st.sampled_from(["OMR", "KWD", "SAR"]),
    amount_captured_minor=st.integers(0, 10**12),
    amount_refunded_minor=st.integers(0, 10**12),
    reference=text,
    description=text,
    service_code=maybe_text,
    language=st.sampled_from(["ar", "en"]),
    capture_method=st.sampled_from(["automatic", "manual"]),
    return_url=text,
    next_url=maybe_text,
    payment_method=card,
    provider=maybe_text,
    provider_reference=maybe_text,
    failure_code=maybe_text,
    failure_message=maybe_text,
    extra=st.dictionaries(text, text, max_size=3),
    payer=st.none() | st.dictionaries(text, text, max_size=2),
    created_at=times,
    updated_at=times,
    expires_at=times,
)
refunds = st.builds(
    Refund,
    id=st.just("re_" + "b" * 26),
    payment_id=st.just("pay_" + "a" * 26),
    livemode=st.booleans(),
    amount_minor=st.integers(1, 10**12),
    currency=st.sampled_from(["OMR", "BHD"]),
    status=st.sampled_from([s.value for s in RefundStatus]),
    reason=maybe_text,
    failure_message=maybe_text,
    created_at=times,
    updated_at=times,
)


def marshmallows(schema: Schema, obj: Any, many: bool = False) -> Any:
    """What marshmallow's own dump gives, whatever the schema's class overrides."""
    return Schema.dump(schema, obj, many=many)


def test_the_answer_schemas_take_the_plain_loop() -> None:
    for schema in (PaymentSchema(), PaymentSummarySchema(), RefundSchema(), EventSchema()):
        assert isinstance(schema, FastDump)
        assert schema._dump_steps is not None, type(schema).__name__


@settings(max_examples=150, deadline=None)
@given(payment=payments)
def test_a_payment_dumps_as_marshmallow_dumps_it(payment: Payment) -> None:
    for schema in (PaymentSchema(), PaymentSummarySchema()):
        assert schema.dump(payment) == marshmallows(schema, payment)
    summary = PaymentSummarySchema().dump(payment)
    assert "payer" not in summary  # a list and an event never carry the payer


@settings(max_examples=60, deadline=None)
@given(refund=refunds)
def test_a_refund_dumps_as_marshmallow_dumps_it(refund: Refund) -> None:
    schema = RefundSchema()
    assert schema.dump(refund) == marshmallows(schema, refund)


@given(items=st.lists(payments, max_size=3), more=st.booleans())
@settings(max_examples=30, deadline=None)
def test_a_list_page_dumps_each_item_as_marshmallow_does(items: list[Payment], more: bool) -> None:
    page = {"object": "list", "data": items, "has_more": more}
    dumped = PaymentListSchema().dump(page)
    assert dumped == marshmallows(PaymentListSchema(), page)
    assert PaymentSummarySchema().dump(items, many=True) == marshmallows(
        PaymentSummarySchema(), items, many=True
    )


def test_an_event_dumps_as_marshmallow_dumps_it() -> None:
    event = Event(id="evt_" + "c" * 26, type="payment.succeeded", object_id="pay_x")
    schema = EventSchema()
    # The event row has no `object`, `timestamp` or `data` attributes: the constant comes from
    # the field, and the missing ones are left out exactly as marshmallow leaves them out.
    assert schema.dump(event) == marshmallows(schema, event)
    mapping = {"id": event.id, "type": event.type, "timestamp": "t", "data": {"a": 1}}
    assert schema.dump(mapping) == marshmallows(schema, mapping) == {**mapping, "object": "event"}


def test_a_schema_with_a_hook_or_a_dotted_attribute_runs_marshmallows_dump() -> None:
    class Hooked(FastDump):
        name = fields.String()

        @post_dump
        def _shout(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
            return {key: value.upper() for key, value in data.items()}

    class Dotted(FastDump):
        agency = fields.String(attribute="agency.id")

    class Row:
        def __init__(self) -> None:
            self.name = "visa"
            self.agency = type("A", (), {"id": "moh"})()

    assert Hooked()._dump_steps is None and Hooked().dump(Row()) == {"name": "VISA"}
    assert Dotted()._dump_steps is None and Dotted().dump(Row()) == {"agency": "moh"}


def test_a_missing_attribute_takes_the_fields_default_or_is_left_out() -> None:
    class Shape(FastDump):
        kind = fields.String(dump_default="card")
        name = fields.String()
        key = fields.String(data_key="other")

    class Row:
        key = "k"

    schema = Shape()
    assert schema._dump_steps is not None
    assert schema.dump(Row()) == marshmallows(schema, Row()) == {"kind": "card", "other": "k"}
    assert schema.dump(None) == marshmallows(schema, None)
