"""Settlement endpoints for finance keys: import an acquirer's settlement file (multipart),
list the imports and read one."""

from __future__ import annotations

from typing import Any

from flask import Request
from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict, FileStorage

from payments.api.arguments import BodyParser
from payments.api.context import gateway, principal
from payments.api.openapi import ApiBlueprint
from payments.schemas import (
    ErrorSchema,
    FullMatch,
    ListQuerySchema,
    Timestamp,
    answered,
    constant,
    id_of,
)
from payments.service.payments import Page
from payments.settlement import imports


class MultipartParser(BodyParser):
    """Reads a multipart body's form fields and files as one document, so one schema (and
    one OpenAPI request body) describes the whole upload."""

    __location_map__ = {**BodyParser.__location_map__, "multipart": "load_multipart"}

    def load_multipart(self, req: Request, schema: Schema) -> MultiDictProxy:
        return MultiDictProxy(CombinedMultiDict([req.form, req.files]), schema)


class UploadBlueprint(ApiBlueprint):
    """A blueprint whose `multipart` arguments are documented as a multipart request body."""

    ARGUMENTS_PARSER = MultipartParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **ApiBlueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }


blp = UploadBlueprint(
    "settlements", __name__, url_prefix="/v1/settlements", description="Settlement (finance)"
)


class SettlementUploadSchema(Schema):
    provider = fields.String(required=True, validate=validate.Length(min=1, max=40))
    file = Upload(required=True)


@answered()
class SettlementSchema(Schema):
    id = id_of("stl")
    object = constant("settlement")
    provider = fields.String()
    filename = fields.String()
    lines = fields.Integer()
    summary = fields.Dict(keys=fields.String(), values=fields.Integer())
    created_at = Timestamp()


class SettlementListQuerySchema(ListQuerySchema):
    starting_after = fields.String(validate=FullMatch(r"^stl_[0-9a-z]{26}$"))


@answered()
class SettlementListSchema(Schema):
    object = constant("list")
    data = fields.List(fields.Nested(SettlementSchema))
    has_more = fields.Boolean()


@blp.route("", methods=["POST"])
@blp.arguments(SettlementUploadSchema(), location="multipart")
@blp.response(201, SettlementSchema)
@blp.alt_response(200, schema=SettlementSchema, description="The same file, imported before")
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
@blp.alt_response(422, schema=ErrorSchema, description="Malformed file, naming its first bad line")
def create(upload_args: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Import an acquirer's settlement file; the same file again answers the first import.
    The upload may be as large as the gateway's settlement file limit (256 MiB by default),
    not the 64 KiB of JSON bodies."""
    upload: FileStorage = upload_args["file"]
    result = imports.import_for(
        gateway(), principal(), upload_args["provider"], upload.stream, upload.filename or "upload"
    )
    return imports.settlement_json(result.settlement), 201 if result.created else 200


@blp.route("", methods=["GET"])
@blp.arguments(SettlementListQuerySchema(), location="query")
@blp.response(200, SettlementListSchema)
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
def list_(args: dict[str, Any]) -> dict[str, Any]:
    """Imported settlement files, newest first."""
    page = Page(limit=args["limit"], starting_after=args.get("starting_after"))
    found, has_more = imports.list_settlements(gateway(), principal(), page)
    return {
        "object": "list",
        "data": [imports.settlement_json(s) for s in found],
        "has_more": has_more,
    }


@blp.route("/<string:settlement_id>", methods=["GET"])
@blp.response(200, SettlementSchema)
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
@blp.alt_response(404, schema=ErrorSchema, description="No such settlement")
def get(settlement_id: str) -> dict[str, Any]:
    """One imported settlement file and its status summary."""
    return imports.settlement_json(imports.get_settlement(gateway(), principal(), settlement_id))
