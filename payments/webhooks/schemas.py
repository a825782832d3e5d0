"""Marshmallow schemas of the webhook API: endpoint requests, endpoints, deliveries."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from payments.schemas import EVENT_TYPES, ListQuerySchema, Timestamp, list_of
from payments.webhooks.fanout import ALL_EVENTS


def _strict_bool(**kwargs: Any) -> fields.Boolean:
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


def _events_field(*, required: bool) -> fields.List[str]:
    return fields.List(
        fields.String(validate=validate.OneOf([*EVENT_TYPES, ALL_EVENTS])),
        required=required,
        validate=validate.Length(min=1, max=len(EVENT_TYPES)),
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
    url = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    events = _events_field(required=True)
    description = _text(255)
    ed25519_signing = _strict_bool(load_default=False)

    @validates("events")
    def _events(self, value: list[str], **kwargs: Any) -> None:
        _check_events(value)


class EndpointUpdateSchema(Schema):
    url = fields.String(validate=validate.Length(min=1, max=2048))
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


class WebhookEndpointSchema(Schema):
    id = fields.String()
    object = fields.Constant("webhook_endpoint")
    livemode = fields.Boolean()
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.String()
    disabled_reason = fields.String(allow_none=True)
    ed25519_public_key = fields.String(attribute="public_key", allow_none=True)
    previous_secret_expires_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


class WebhookEndpointWithSecretSchema(WebhookEndpointSchema):
    """An endpoint as answered on create and rotation: the only time its secret is shown."""

    secret = fields.String()


class DeletedEndpointSchema(Schema):
    id = fields.String()
    object = fields.Constant("webhook_endpoint")
    deleted = fields.Constant(True)


class DeliverySchema(Schema):
    """One attempt to deliver one event to one endpoint."""

    id = fields.String()
    object = fields.Constant("webhook_delivery")
    endpoint = fields.String(attribute="endpoint_id")
    event = fields.String(attribute="event_id")
    event_type = fields.String()
    attempt = fields.Integer()
    redelivery = fields.Boolean()
    created_at = Timestamp(attribute="started_at")
    duration_ms = fields.Integer()
    succeeded = fields.Boolean()
    response_status = fields.Integer(allow_none=True)
    response_body = fields.String(allow_none=True)
    error = fields.Method("_error", allow_none=True)
    next_attempt_at = Timestamp(allow_none=True)

    def _error(self, delivery: Any) -> dict[str, str] | None:
        if delivery.error_code is None:
            return None
        return {"code": delivery.error_code, "message": delivery.error_message or ""}


class RedeliverySchema(Schema):
    object = fields.Constant("webhook_redelivery")
    event = fields.String()
    endpoints = fields.List(fields.String())


class RecoverySchema(Schema):
    object = fields.Constant("webhook_recovery")
    endpoint = fields.String()
    since = Timestamp()
    requeued = fields.Integer()
    has_more = fields.Boolean()


WebhookEndpointListSchema = list_of(WebhookEndpointSchema(), "WebhookEndpointList")
DeliveryListSchema = list_of(DeliverySchema(), "WebhookDeliveryList")
