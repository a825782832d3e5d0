"""Refund endpoints."""

from __future__ import annotations

from typing import Any

from payments.api.context import agency_principal, gateway, principal
from payments.api.openapi import ApiBlueprint
from payments.api.payments import listing
from payments.models import Refund
from payments.schemas import (
    ErrorSchema,
    ListQuerySchema,
    RefundCreateSchema,
    RefundListSchema,
    RefundSchema,
)
from payments.service import refunds as service
from payments.service.payments import Page

blp = ApiBlueprint("refunds", __name__, url_prefix="/v1", description="Refunds")


@blp.route("/payments/<string:payment_id>/refunds", methods=["POST"], errors=(403,))
@blp.arguments(RefundCreateSchema(), example={"amount": 2500, "reason": "Duplicate payment"})
@blp.response(201, RefundSchema)
@blp.alt_response(409, schema=ErrorSchema, description="Only a succeeded payment")
@blp.alt_response(422, schema=ErrorSchema, description="amount_exceeds_refundable")
def create_refund(args: dict[str, Any], payment_id: str) -> Refund:
    """Refund a succeeded payment, by default its whole remaining captured amount."""
    return service.create_refund(
        gateway(), agency_principal(), payment_id, args.get("amount"), args.get("reason")
    )


@blp.route("/payments/<string:payment_id>/refunds", methods=["GET"])
@blp.arguments(ListQuerySchema(), location="query")
@blp.response(200, RefundListSchema)
def list_refunds(args: dict[str, Any], payment_id: str) -> dict[str, Any]:
    """A payment's refunds, newest first."""
    page = Page(limit=args["limit"], starting_after=args.get("starting_after"))
    return listing(*service.list_refunds(gateway(), principal(), payment_id, page))


@blp.route("/refunds/<string:refund_id>", methods=["GET"])
@blp.response(200, RefundSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such refund")
def get_refund(refund_id: str) -> Refund:
    """Read a refund."""
    return service.get_refund(gateway(), principal(), refund_id)
