"""Webhook endpoints, their delivery log, redelivery of an event and recovery of failures."""

from __future__ import annotations

from typing import Any

from payments.api.context import gateway, principal
from payments.api.openapi import ApiBlueprint
from payments.api.payments import listing
from payments.schemas import ErrorSchema, ListQuerySchema
from payments.service import webhooks as service
from payments.service.payments import Page
from payments.webhooks.models import WebhookEndpoint
from payments.webhooks.schemas import (
    DeletedEndpointSchema,
    DeliveryListQuerySchema,
    DeliveryListSchema,
    EndpointCreateSchema,
    EndpointUpdateSchema,
    RecoverSchema,
    RecoverySchema,
    RedeliverSchema,
    RedeliverySchema,
    RotateSecretSchema,
    WebhookEndpointListSchema,
    WebhookEndpointSchema,
    WebhookEndpointWithSecretSchema,
)

blp = ApiBlueprint("webhooks", __name__, url_prefix="/v1", description="Webhooks")
ENDPOINT = "/webhook-endpoints/<string:endpoint_id>"


@blp.route("/webhook-endpoints", methods=["POST"])
@blp.arguments(
    EndpointCreateSchema(),
    example={"url": "https://moh.example.om/gateway-events", "events": ["*"]},
)
@blp.response(201, WebhookEndpointWithSecretSchema)
@blp.alt_response(422, schema=ErrorSchema, description="Invalid, insecure or private URL")
def create_endpoint(args: dict[str, Any]) -> service.IssuedSecret:
    """Register an endpoint; its signing secret is shown only in this answer."""
    new = service.NewEndpoint(
        url=args["url"],
        events=args["events"],
        description=args.get("description"),
        ed25519_signing=args["ed25519_signing"],
    )
    return service.create_endpoint(gateway(), principal(), new)


@blp.route("/webhook-endpoints", methods=["GET"])
@blp.arguments(ListQuerySchema(), location="query")
@blp.response(200, WebhookEndpointListSchema)
def list_endpoints(args: dict[str, Any]) -> dict[str, Any]:
    """Endpoints, newest first."""
    page = Page(limit=args["limit"], starting_after=args.get("starting_after"))
    return listing(*service.list_endpoints(gateway(), principal(), page))


@blp.route(ENDPOINT, methods=["GET"])
@blp.response(200, WebhookEndpointSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such endpoint")
def get_endpoint(endpoint_id: str) -> WebhookEndpoint:
    """Read an endpoint (never its secret)."""
    return service.get_endpoint(gateway(), principal(), endpoint_id)


@blp.route(ENDPOINT, methods=["POST"])
@blp.arguments(EndpointUpdateSchema())
@blp.response(200, WebhookEndpointSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such endpoint")
def update_endpoint(args: dict[str, Any], endpoint_id: str) -> WebhookEndpoint:
    """Change the URL, events or description; `disabled` stops or resumes delivery."""
    changes = service.EndpointChanges(
        url=args.get("url"),
        events=args.get("events"),
        description=args.get("description"),
        disabled=args.get("disabled"),
    )
    return service.update_endpoint(gateway(), principal(), endpoint_id, changes)


@blp.route(ENDPOINT, methods=["DELETE"])
@blp.response(200, DeletedEndpointSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such endpoint")
def delete_endpoint(endpoint_id: str) -> dict[str, Any]:
    """Delete an endpoint; nothing more is sent to it."""
    return {"id": service.delete_endpoint(gateway(), principal(), endpoint_id)}


@blp.route(ENDPOINT + "/rotate-secret", methods=["POST"])
@blp.arguments(RotateSecretSchema())
@blp.response(200, WebhookEndpointWithSecretSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such endpoint")
def rotate_secret(args: dict[str, Any], endpoint_id: str) -> service.IssuedSecret:
    """A new secret; the old one keeps signing for 24 hours unless `expire_now`."""
    return service.rotate_secret(gateway(), principal(), endpoint_id, expire_now=args["expire_now"])


@blp.route(ENDPOINT + "/deliveries", methods=["GET"])
@blp.arguments(DeliveryListQuerySchema(), location="query")
@blp.response(200, DeliveryListSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such endpoint")
def list_deliveries(args: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    """The delivery log: every attempt, newest first; `event` narrows it to one event."""
    page = Page(limit=args["limit"], starting_after=args.get("starting_after"))
    rows, has_more = service.list_deliveries(
        gateway(), principal(), endpoint_id, args.get("event"), page
    )
    return listing(rows, has_more)


@blp.route(ENDPOINT + "/recover", methods=["POST"])
@blp.arguments(RecoverSchema())
@blp.response(200, RecoverySchema)
@blp.alt_response(409, schema=ErrorSchema, description="The endpoint is disabled")
def recover(args: dict[str, Any], endpoint_id: str) -> service.Recovery:
    """Send again every delivery to this endpoint that failed, for events since `since`."""
    return service.recover(gateway(), principal(), endpoint_id, args["since"])


@blp.route("/events/<string:event_id>/redeliver", methods=["POST"])
@blp.arguments(RedeliverSchema())
@blp.response(200, RedeliverySchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such event or endpoint")
@blp.alt_response(409, schema=ErrorSchema, description="The endpoint is disabled")
def redeliver(args: dict[str, Any], event_id: str) -> dict[str, Any]:
    """Send an event again, with the same `webhook-id`, to one endpoint or to every enabled
    endpoint that subscribes to it."""
    endpoints = service.redeliver(gateway(), principal(), event_id, args.get("endpoint"))
    return {"event": event_id, "endpoints": endpoints}
