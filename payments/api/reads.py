"""Events and the agency's balance."""

from __future__ import annotations

from typing import Any

from payments.api.context import gateway, principal
from payments.api.openapi import ApiBlueprint
from payments.api.payments import listing
from payments.schemas import BalanceSchema, ErrorSchema, EventListQuerySchema, EventListSchema
from payments.schemas import EventSchema as EventOut
from payments.service import reads
from payments.service.payments import Page

blp = ApiBlueprint("reads", __name__, url_prefix="/v1", description="Events and balances")


@blp.route("/events", methods=["GET"])
@blp.arguments(EventListQuerySchema(), location="query")
@blp.response(200, EventListSchema)
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """Events, newest first, each the same JSON as its webhook body."""
    page = Page(limit=args["limit"], starting_after=args.get("starting_after"))
    rows, has_more = reads.list_events(gateway(), principal(), args.get("type"), page)
    return listing([reads.event_json(row) for row in rows], has_more)


@blp.route("/events/<string:event_id>", methods=["GET"])
@blp.response(200, EventOut)
@blp.alt_response(404, schema=ErrorSchema, description="No such event")
def get_event(event_id: str) -> dict[str, Any]:
    """Read an event."""
    return reads.event_json(reads.get_event(gateway(), principal(), event_id))


@blp.route("/balance", methods=["GET"], errors=(403,))
@blp.response(200, BalanceSchema)
def balance() -> dict[str, Any]:
    """What the gateway owes the calling agency, per currency."""
    who = principal()
    return {"livemode": who.livemode, "balances": reads.agency_balance(gateway(), who)}
