"""Ledger endpoints for finance keys: the trial balance and account statements."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from payments.api.context import gateway, principal
from payments.api.openapi import ApiBlueprint
from payments.money import CURRENCY_EXPONENTS
from payments.schemas import (
    ErrorSchema,
    FullMatch,
    ListQuerySchema,
    Timestamp,
    answered,
    constant,
)
from payments.service import reads
from payments.service.payments import Page

blp = ApiBlueprint("ledger", __name__, url_prefix="/v1/ledger", description="Ledger (finance)")


class TrialBalanceQuerySchema(Schema):
    as_of = Timestamp()


@answered()
class TotalsSchema(Schema):
    debits = fields.Integer()
    credits = fields.Integer()


@answered()
class AccountLineSchema(Schema):
    account = fields.String()
    currency = fields.String()
    kind = fields.String()
    balance = fields.Integer()


@answered()
class TrialBalanceSchema(Schema):
    currencies = fields.Dict(keys=fields.String(), values=fields.Nested(TotalsSchema))
    accounts = fields.List(fields.Nested(AccountLineSchema))


# Posting ids are PostgreSQL `integer`s: a larger `starting_after` is past them all (and
# would otherwise reach the database as an out-of-range integer).
MAX_POSTING_ID = 2**31 - 1


class StatementQuerySchema(ListQuerySchema):
    starting_after = fields.String(validate=FullMatch(r"^pst_[0-9]{1,18}$"))
    currency = fields.String(required=True, validate=validate.OneOf(sorted(CURRENCY_EXPONENTS)))


@answered()
class StatementLineSchema(Schema):
    id = fields.String()
    transaction = fields.String()
    description = fields.String()
    effective_at = Timestamp()
    direction = fields.String()
    amount = fields.Integer()
    balance_after = fields.Integer()


@answered()
class StatementSchema(Schema):
    object = constant("list")
    account = fields.String()
    currency = fields.String()
    kind = fields.String()
    balance = fields.Integer()
    data = fields.List(fields.Nested(StatementLineSchema))
    has_more = fields.Boolean()


@blp.route("/trial-balance", methods=["GET"])
@blp.arguments(TrialBalanceQuerySchema(), location="query")
@blp.response(200, TrialBalanceSchema)
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
def trial_balance(args: dict[str, Any]) -> dict[str, Any]:
    """Debits and credits per currency, and every account's balance, now or `as_of` a time."""
    return reads.trial_balance(gateway(), principal(), args.get("as_of"))


@blp.route("/accounts/<string:code>/statement", methods=["GET"])
@blp.arguments(StatementQuerySchema(), location="query")
@blp.response(200, StatementSchema)
@blp.alt_response(403, schema=ErrorSchema, description="Finance keys only")
@blp.alt_response(404, schema=ErrorSchema, description="No such account")
def statement(args: dict[str, Any], code: str) -> dict[str, Any]:
    """An account's postings, newest first, each with the running balance after it."""
    after = args.get("starting_after")
    if after is not None and int(after.removeprefix("pst_")) > MAX_POSTING_ID:
        after = f"pst_{MAX_POSTING_ID}"  # past every posting: the same page, from the newest
    page = Page(limit=args["limit"], starting_after=after)
    return reads.account_statement(gateway(), principal(), code, args["currency"], page)
