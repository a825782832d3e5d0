"""Marshmallow schemas of the webhook API: endpoint requests, endpoints, deliveries."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from payments.schemas import (
    EVENT_TYPES,
    FAILURE_DOC,
    HTTP_URL_PATTERN,
    ListQuerySchema,
    Timestamp,
    answered,
    constant,
    id_of,
    list_of,
    one_of,
)
from payments.webhooks.fanout import ALL_EVENTS


def _strict_bool(**kwargs: Any) -> fields.Boolean:
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


# The document's word for what `_check_events` enforces: each type once, or "*" alone.
EVENTS_DOC = {
    "uniqueItems": True,
    "anyOf": [
        {"items": {"type": "string", "enum": list(EVENT_TYPES)}},
        {"maxItems": 1, "items": {"type": "string", "enum": [ALL_EVENTS]}},
    ],
}


def _events_field(*, required: bool) -> fields.List[str]:
    return fields.List(
        fields.String(validate=validate.OneOf([*EVENT_TYPES, ALL_EVENTS])),
        required=required,
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
        metadata=EVENTS_DOC,
    )


def _url(*, required: bool) -> fields.String:
    return fields.String(
        required=required,
        validate=validate.Length(min=1, max=2048),
        metadata={"format": "uri", "pattern": HTTP_URL_PATTERN},
    )


def _text(max_len: int) -> fields.String:
    """Free text that a database can store: no NUL or other control characters."""
    return fields.String(
        validate=[
            validate.Length(max=max_len),
            validate.Regexp(
                r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$", error="Control characters are not allowed."
            ),
        ]
    )


def _check_events(value: list[str]) -> None:
    if ALL_EVENTS in value and len(value) > 1:
        raise ValidationError('"*" stands alone: it already means every event type.')
    if len(set(value)) != len(value):
        raise ValidationError("List each event type once.")


class EndpointCreateSchema(Schema):
    url = _url(required=True)
    events = _events_field(required=True)
    description = _text(255)
    ed25519_signing = _strict_bool(load_default=False)

    @validates("events")
    def _events(self, value: list[str], **kwargs: Any) -> None:
        _check_events(value)


class EndpointUpdateSchema(Schema):
    url = _url(required=False)
    events = _events_field(required=False)
    description = _text(255)
    disabled = _strict_bool()

    @validates("events")
    def _events(self, value: list[str], **kwargs: Any) -> None:
        _check_events(value)


class RotateSecretSchema(Schema):
    expire_now = _strict_bool(load_default=False)


class RedeliverSchema(Schema):
    endpoint = fields.String(validate=validate.Length(min=1, max=40))


class RecoverSchema(Schema):
    since = Timestamp(required=True)


class DeliveryListQuerySchema(ListQuerySchema):
    event = fields.String(validate=validate.Length(min=1, max=40))


@answered()
class WebhookEndpointSchema(Schema):
    id = id_of("we")
    object = constant("webhook_endpoint")
    livemode = fields.Boolean()
    url = fields.String()
    events = fields.List(one_of([*EVENT_TYPES, ALL_EVENTS]))
    description = fields.String(allow_none=True)
    status = one_of(["enabled", "disabled"])
    disabled_reason = fields.String(allow_none=True)
    ed25519_public_key = fields.String(attribute="public_key", allow_none=True)
    previous_secret_expires_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


@answered()
class WebhookEndpointWithSecretSchema(WebhookEndpointSchema):
    """An endpoint as answered on create and rotation: the only time its secret is shown."""

    secret = fields.String(metadata={"pattern": "^whsec_"})


@answered()
class DeletedEndpointSchema(Schema):
    id = id_of("we")
    object = constant("webhook_endpoint")
    deleted = constant(True)


@answered()
class DeliverySchema(Schema):
    """One attempt to deliver one event to one endpoint."""

    id = fields.String()
    object = constant("webhook_delivery")
    endpoint = id_of("we", attribute="endpoint_id")
    event = id_of("evt", attribute="event_id")
    event_type = one_of(EVENT_TYPES)
    attempt = fields.Integer()
    redelivery = fields.Boolean()
    created_at = Timestamp(attribute="started_at")
    duration_ms = fields.Integer()
    succeeded = fields.Boolean()
    response_status = fields.Integer(allow_none=True)
    response_body = fields.String(allow_none=True)
    error = fields.Method("_error", metadata=FAILURE_DOC)
    next_attempt_at = Timestamp(allow_none=True)

    def _error(self, delivery: Any) -> dict[str, str] | None:
        if delivery.error_code is None:
            return None
        return {"code": delivery.error_code, "message": delivery.error_message or ""}


@answered()
class RedeliverySchema(Schema):
    object = constant("webhook_redelivery")
    event = id_of("evt")
    endpoints = fields.List(id_of("we"))


@answered()
class RecoverySchema(Schema):
    object = constant("webhook_recovery")
    endpoint = id_of("we")
    since = Timestamp()
    requeued = fields.Integer()
    has_more = fields.Boolean()


WebhookEndpointListSchema = list_of(WebhookEndpointSchema(), "WebhookEndpointList")
DeliveryListSchema = list_of(DeliverySchema(), "WebhookDeliveryList")
