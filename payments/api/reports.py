"""Reconciliation endpoints for finance keys: the report as JSON, CSV or XLSX, and resolving a
break with a note."""

from __future__ import annotations

import io
import tempfile
from typing import Any

from flask import Response, send_file
from marshmallow import Schema, fields, validate

from payments.api.context import gateway, principal
from payments.api.openapi import ApiBlueprint
from payments.schemas import ErrorSchema, Timestamp, answered, constant
from payments.settlement import reports
from payments.settlement.items import TOTAL_FIELDS
from payments.settlement.reconcile import LEDGER_FIELDS
from payments.settlement.statuses import STATUSES

blp = ApiBlueprint(
    "reports", __name__, url_prefix="/v1/reports", description="Reconciliation (finance)"
)

# A report past this size is written to disk while it is made, never held in memory.
SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024


class ReportQuerySchema(Schema):
    provider = fields.String(
        required=True, validate=validate.Length(min=1, max=40), metadata={"example": "sandbox"}
    )
    from_ = fields.Date(required=True, data_key="from", metadata={"example": "2026-11-01"})
    to = fields.Date(required=True, metadata={"example": "2026-11-30"})
    format = fields.String(load_default="json", validate=validate.OneOf(sorted(reports.FORMATS)))


def _counts(names: tuple[str, ...], name: str) -> type[Schema]:
    return Schema.from_dict({field: fields.Integer() for field in names}, name=name)


StatusCountsSchema = _counts(STATUSES, "ReconciliationSummary")
CurrencyTotalsSchema = _counts(TOTAL_FIELDS, "ReconciliationTotals")
LedgerSideSchema = _counts(LEDGER_FIELDS, "ReconciliationLedgerSide")


@answered()
class ResolutionOutSchema(Schema):
    note = fields.String()
    by = fields.String()


class DriftSchema(Schema):
    """How far a line within the acquirer's tolerance lies from its capture or refund."""

    amount = fields.Integer()
    days = fields.Integer()


class ReportItemSchema(Schema):
    id = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))
    payment_id = fields.String(allow_none=True)
    refund_id = fields.String(allow_none=True)
    provider_reference = fields.String(allow_none=True)
    currency = fields.String()
    settled_currency = fields.String(allow_none=True)
    gateway_amount = fields.Integer(allow_none=True)
    settled_amount = fields.Integer(allow_none=True)
    fee = fields.Integer(allow_none=True)
    agency = fields.String(allow_none=True)
    gateway_date = fields.Date(allow_none=True)
    settlement_date = fields.Date(allow_none=True)
    resolution = fields.Nested(ResolutionOutSchema, allow_none=True)
    drift = fields.Nested(DriftSchema, allow_none=True)
    settled_with = fields.List(fields.String())


@answered()
class ReportPeriodSchema(Schema):
    provider = fields.String()
    from_ = fields.Date(data_key="from")
    to = fields.Date()
    generated_at = Timestamp()
    settlement_lag_days = fields.Integer()


class ReconciliationReportSchema(Schema):
    summary = fields.Nested(StatusCountsSchema)
    totals = fields.Dict(keys=fields.String(), values=fields.Nested(CurrencyTotalsSchema))
    period = fields.Nested(ReportPeriodSchema)
    agencies = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Nested(CurrencyTotalsSchema)),
    )
    ledger = fields.Dict(keys=fields.String(), values=fields.Nested(LedgerSideSchema))
    ledger_agrees = fields.Boolean()
    items = fields.List(fields.Nested(ReportItemSchema))


class ResolutionInSchema(Schema):
    provider = fields.String(required=True, validate=validate.Length(min=1, max=40))
    item = fields.String(required=True, validate=validate.Length(min=1, max=80))
    note = fields.String(
        required=True,
        validate=validate.Length(min=1, max=reports.MAX_NOTE_CHARS),
        metadata={"json_schema": {"pattern": reports.NOTE_PATTERN}},
    )


@answered()
class ResolutionSchema(Schema):
    object = constant("reconciliation_resolution")
    provider = fields.String()
    item = fields.String()
    status = fields.String()
    note = fields.String()
    resolved_by = fields.String()
    created_at = Timestamp()


_FILE = {"schema": {"type": "string", "format": "binary"}}


@blp.route("/reconciliation", methods=["GET"])
@blp.arguments(ReportQuerySchema(), location="query")
@blp.doc(
    responses={
        "200": {
            "description": "The report: JSON, CSV (UTF-8 with a BOM) or XLSX, as `format` asks",
            "content": {
                "application/json": {"schema": ReconciliationReportSchema},
                "text/csv": _FILE,
                reports.FORMATS["xlsx"][0]: _FILE,
            },
        },
    }
)
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
@blp.alt_response(422, schema=ErrorSchema, description="A bad period, provider or format")
def reconciliation(args: dict[str, Any]) -> Response:
    """The reconciliation report for payments captured and settlement lines dated in
    `[from, to]` (at most 100 days), every item in one status; amounts in minor units (JSON)
    or the currency's decimals (CSV, XLSX)."""
    fmt = args["format"]
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    try:
        reports.report_for(
            gateway(),
            principal(),
            args["provider"],
            date_from=args["from_"],
            date_to=args["to"],
            fmt=fmt,
            out=spool,  # type: ignore[arg-type]
        )
        size = spool.tell()
        spool.seek(0)
        body: Any = spool.read() if size <= SPOOL_IN_MEMORY_BYTES else spool
    except BaseException:
        spool.close()
        raise
    if body is not spool:
        spool.close()  # a small report answers from memory
    name = f"reconciliation-{args['provider']}-{args['from_']}-{args['to']}.{fmt}"
    response = send_file(
        io.BytesIO(body) if isinstance(body, bytes) else body,
        mimetype=reports.FORMATS[fmt][0].split(";")[0],
        as_attachment=fmt != "json",
        download_name=name,
    )
    if body is spool:
        response.call_on_close(spool.close)  # a large one streams from the spool's file
    response.headers["Cache-Control"] = "no-store"
    return response


@blp.route("/reconciliation/resolutions", methods=["POST"])
@blp.arguments(ResolutionInSchema())
@blp.response(201, ResolutionSchema)
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
@blp.alt_response(404, schema=ErrorSchema, description="No such item for this provider")
@blp.alt_response(409, schema=ErrorSchema, description="The break is resolved already")
@blp.alt_response(
    422, schema=ErrorSchema, description="Not a break, or no note, or a control character in it"
)
def resolve(body: dict[str, Any]) -> dict[str, Any]:
    """Mark one break of the report resolved, with a note saying why; the report shows both.
    `item` is the item's `id` in the report. The note is text, line breaks and tabs: a control
    character is refused (422, `param` `note`)."""
    resolution = reports.resolve_for(
        gateway(), principal(), body["provider"], body["item"], body["note"]
    )
    return {
        "provider": resolution.provider,
        "item": resolution.item,
        "status": resolution.status,
        "note": resolution.note,
        "resolved_by": resolution.resolved_by,
        "created_at": resolution.created_at,
    }
