"""Payment endpoints: thin views that turn a request into one service call."""

from __future__ import annotations

from typing import Any

from payments.api.context import agency_principal, gateway, principal
from payments.api.keys import claimed_in_work
from payments.api.openapi import ApiBlueprint
from payments.models import Payment
from payments.schemas import (
    CancelSchema,
    CaptureSchema,
    ConfirmSchema,
    ErrorSchema,
    PaymentCreateSchema,
    PaymentListQuerySchema,
    PaymentListSchema,
    PaymentSchema,
)
from payments.service import payments as service
from providers import Card

blp = ApiBlueprint("payments", __name__, url_prefix="/v1/payments", description="Payments")


def listing(rows: list[Any], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": rows, "has_more": has_more}


@blp.route("", methods=["POST"], errors=(403,))
@blp.arguments(
    PaymentCreateSchema(),
    example={
        "amount": 12500,
        "currency": "OMR",
        "reference": "MOH-2026-000123",
        "description": "Medical certificate fee",
        "return_url": "https://moh.example.om/done",
        "service_code": "moh.certificate",
    },
)
@blp.response(201, PaymentSchema)
@claimed_in_work(201, PaymentSchema())
@blp.alt_response(422, schema=ErrorSchema, description="Invalid request")
def create_payment(args: dict[str, Any]) -> Payment:
    """Create a payment."""
    new = service.NewPayment(
        amount_minor=args["amount"],
        currency=args["currency"],
        reference=args["reference"],
        description=args["description"],
        return_url=args["return_url"],
        language=args["language"],
        capture_method=args["capture_method"],
        service_code=args.get("service_code"),
        metadata=args["metadata"],
        payer=args.get("payer"),
    )
    return service.create_payment(gateway(), agency_principal(), new)


@blp.route("", methods=["GET"])
@blp.arguments(PaymentListQuerySchema(), location="query")
@blp.response(200, PaymentListSchema)
def list_payments(args: dict[str, Any]) -> dict[str, Any]:
    """List payments, newest first."""
    filters = service.PaymentFilters(
        status=args.get("status"),
        reference=args.get("reference"),
        service_code=args.get("service_code"),
        created_gte=args.get("created_gte"),
        created_lt=args.get("created_lt"),
    )
    page = service.Page(limit=args["limit"], starting_after=args.get("starting_after"))
    return listing(*service.list_payments(gateway(), principal(), filters, page))


@blp.route("/<string:payment_id>", methods=["GET"])
@blp.response(200, PaymentSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No such payment")
def get_payment(payment_id: str) -> Payment:
    """Read a payment."""
    return service.get_payment(gateway(), principal(), payment_id)


@blp.route("/<string:payment_id>/confirm", methods=["POST"], errors=(403,))
@blp.arguments(
    ConfirmSchema(),
    example={
        "payment_method": {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    },
)
@blp.response(200, PaymentSchema)
@claimed_in_work(200, PaymentSchema())
@blp.alt_response(409, schema=ErrorSchema, description="The payment's status forbids it")
def confirm_payment(args: dict[str, Any], payment_id: str) -> Payment:
    """Pay with a card server-to-server; a decline answers 200 with `status: failed`."""
    card = args["payment_method"]["card"]
    return service.confirm_payment(
        gateway(),
        agency_principal(),
        payment_id,
        Card(
            number=card["number"],
            exp_month=card["exp_month"],
            exp_year=card["exp_year"],
            cvc=card["cvc"],
            name=card.get("name"),
        ),
    )


@blp.route("/<string:payment_id>/capture", methods=["POST"], errors=(403, 502))
@blp.arguments(CaptureSchema(), example={"amount": 12500})
@blp.response(200, PaymentSchema)
@claimed_in_work(200, PaymentSchema())
@blp.alt_response(409, schema=ErrorSchema, description="Only from requires_capture")
def capture_payment(args: dict[str, Any], payment_id: str) -> Payment:
    """Capture an authorised payment, in full or in part."""
    return service.capture_payment(gateway(), agency_principal(), payment_id, args.get("amount"))


@blp.route("/<string:payment_id>/cancel", methods=["POST"], errors=(403, 502))
@blp.arguments(CancelSchema())
@blp.response(200, PaymentSchema)
@claimed_in_work(200, PaymentSchema())
@blp.alt_response(409, schema=ErrorSchema, description="Only from created or requires_capture")
def cancel_payment(_args: dict[str, Any], payment_id: str) -> Payment:
    """Cancel a payment that has not been charged."""
    return service.cancel_payment(gateway(), agency_principal(), payment_id)
