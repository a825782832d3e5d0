"""Marshmallow schemas of the public API: request bodies, query strings and response objects."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from payments import clock
from payments.dumping import FastDump
from payments.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR
from payments.states import PaymentStatus, RefundStatus

SERVICE_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# What the OpenAPI document promises an http(s) URL looks like: a host of letters, digits and
# hyphens (the last label at least two long), an optional port and path. Every such URL passes
# `fields.Url`; the document's `format: uri` alone would admit `https://`.
HTTP_URL_PATTERN = (
    r"^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9](:[0-9]{1,5})?(/[!-~]*)?$"
)
# What an agency key's endpoints receive, about its own payments and refunds.
AGENCY_EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.requires_capture",
    "payment.cancelled",
    "payment.expired",
    "refund.succeeded",
    "refund.failed",
    "payment.disputed",
    "payment.dispute_reversed",
)
# What a finance key's endpoints receive: news of settlement files and reconciliation runs.
FINANCE_EVENT_TYPES = ("settlement.imported", "reconciliation.completed")
EVENT_TYPES = AGENCY_EVENT_TYPES + FINANCE_EVENT_TYPES


def constant(value: Any) -> fields.Constant[Any]:
    """A field always `value`, documented as exactly that (flask-smorest gives only a default)."""
    return fields.Constant(value, metadata={"enum": [value]})


def one_of(values: Any, **kwargs: Any) -> fields.String:
    """An output string documented as one of `values` (validators do not run on dump)."""
    return fields.String(validate=validate.OneOf(list(values)), **kwargs)


def id_of(prefix: str, **kwargs: Any) -> fields.String:
    """An output id of `prefix`, documented with its shape (API.md §2)."""
    return fields.String(metadata={"pattern": f"^{prefix}_[0-9a-z]{{26}}$"}, **kwargs)


S = TypeVar("S", bound=type[Schema])


def answered(*optional: str) -> Callable[[S], S]:
    """Mark a response schema's fields required in the document, bar `optional`: the gateway
    always answers them (as `null` when empty), so a missing one is a disagreement.
    `required` means nothing to marshmallow when dumping."""

    def on_bind_field(_schema: Schema, field_name: str, field_obj: fields.Field[Any]) -> None:
        field_obj.required = field_name not in optional

    def mark(schema: S) -> S:
        # marshmallow's hook for changing a field as a schema instance binds it.
        schema.on_bind_field = on_bind_field  # type: ignore[method-assign,assignment]
        return schema

    return mark


class FullMatch(validate.Regexp):
    """A pattern the whole value must match: `$` alone would let a trailing newline through.
    The pattern itself stays plain `^...$` for the OpenAPI document."""

    def __call__(self, value: Any) -> Any:
        pattern = cast("re.Pattern[str]", self.regex)
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class StrictInteger(fields.Integer):
    """An integer that refuses floats, numeric strings and booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Must be an integer.")
        result: int = super()._deserialize(value, attr, data, **kwargs)
        return result


class Timestamp(fields.DateTime):
    """RFC 3339 UTC with a `Z` out; RFC 3339 with an offset in. A `DateTime` only so that
    the OpenAPI document calls it a `date-time` string; the parsing is its own."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return clock.rfc3339(value)  # four-digit years, as RFC 3339 asks, before 1000 too

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if not isinstance(value, str) or len(value) > 40:
            raise ValidationError("Must be an RFC 3339 time.")
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError("Must be an RFC 3339 time.") from None
        if parsed.tzinfo is None:
            raise ValidationError("Must carry a time zone, such as Z.")
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("Must be an RFC 3339 time between years 1 and 9999.") from None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """Whether text holds NUL or an unpaired surrogate, which no database keeps alike."""
    return _UNSTORABLE.search(text) is not None


def _storable(value: str) -> None:
    if unstorable(value):
        raise ValidationError("Must not contain NUL or unpaired surrogate characters.")


def _text(max_len: int, *, required: bool = True) -> fields.String:
    return fields.String(
        required=required, validate=[validate.Length(min=1, max=max_len), _storable]
    )


def _amount(*, required: bool) -> StrictInteger:
    return StrictInteger(required=required, validate=validate.Range(min=1, max=MAX_AMOUNT_MINOR))


class PayerSchema(Schema):
    email = fields.Email(validate=validate.Length(max=254))
    name = _text(200, required=False)
    national_id = fields.String(validate=FullMatch(r"^[A-Za-z0-9-]{1,32}$"))


def _metadata_ok(value: dict[str, str]) -> None:
    if len(value) > 20:
        raise ValidationError("At most 20 keys.")


class PaymentCreateSchema(Schema):
    amount = _amount(required=True)
    currency = fields.String(required=True, validate=validate.OneOf(sorted(CURRENCY_EXPONENTS)))
    reference = _text(255)
    description = _text(255)
    return_url = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=2048),
        metadata={"format": "uri", "pattern": HTTP_URL_PATTERN},
    )
    language = fields.String(load_default="ar", validate=validate.OneOf(["ar", "en"]))
    service_code = fields.String(validate=FullMatch(SERVICE_CODE_RE))
    capture_method = fields.String(
        load_default="automatic", validate=validate.OneOf(["automatic", "manual"])
    )
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=40)),
        values=fields.String(validate=validate.Length(max=500)),
        load_default=dict,
        validate=_metadata_ok,
        metadata={
            "maxProperties": 20,
            "json_schema": {
                "propertyNames": {"minLength": 1, "maxLength": 40, "pattern": "^[^\\x00]*$"}
            },
        },
    )
    payer = fields.Nested(PayerSchema)


class CardSchema(Schema):
    number = fields.String(required=True, validate=FullMatch(r"^[0-9 ]{12,23}$"))
    exp_month = StrictInteger(required=True, validate=validate.Range(min=1, max=12))
    exp_year = StrictInteger(required=True, validate=validate.Range(min=2000, max=2100))
    cvc = fields.String(required=True, validate=FullMatch(r"^[0-9]{3,4}$"))
    name = _text(200, required=False)


class PaymentMethodInputSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["card"]))
    card = fields.Nested(CardSchema, required=True)


class ConfirmSchema(Schema):
    payment_method = fields.Nested(PaymentMethodInputSchema, required=True)


class CancelSchema(Schema):
    """Cancel takes no fields; any field sent is refused as unknown."""


class CaptureSchema(Schema):
    amount = _amount(required=False)


class RefundCreateSchema(Schema):
    amount = _amount(required=False)
    reason = _text(255, required=False)


class ListQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    starting_after = fields.String(validate=FullMatch(r"^[a-z]{2,4}_[0-9a-z]{26}$"))


class PaymentListQuerySchema(ListQuerySchema):
    status = fields.String(validate=validate.OneOf([s.value for s in PaymentStatus]))
    reference = _text(255, required=False)
    service_code = fields.String(validate=FullMatch(SERVICE_CODE_RE))
    created_gte = Timestamp()
    created_lt = Timestamp()

    @validates_schema
    def _range(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (
            "created_gte" in data
            and "created_lt" in data
            and data["created_gte"] >= data["created_lt"]
        ):
            raise ValidationError("Must be later than created_gte.", "created_lt")


class EventListQuerySchema(ListQuerySchema):
    type = fields.String(validate=validate.OneOf(EVENT_TYPES))


@answered()
class FailureSchema(FastDump):
    code = fields.String()
    message = fields.String()


NULLABLE_STRING = {"type": ["string", "null"]}
PAYMENT_METHOD_DOC = {
    "type": ["object", "null"],
    "required": ["type"],
    "properties": {
        "type": {"type": "string"},
        "brand": {"type": "string"},
        "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
        "exp_month": {"type": "integer", "minimum": 1, "maximum": 12},
        "exp_year": {"type": "integer"},
    },
}
FAILURE_DOC = {
    "type": ["object", "null"],
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    "additionalProperties": False,
}
DISPUTE_DOC = {
    "type": ["object", "null"],
    "required": ["status", "amount"],
    "properties": {
        "status": {"type": "string", "enum": ["open", "reversed"]},
        "amount": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
CURRENCIES = sorted(CURRENCY_EXPONENTS)


@answered()
class PaymentSchema(FastDump):
    id = id_of("pay")
    object = constant("payment")
    livemode = fields.Boolean()
    agency = fields.String(attribute="agency_id")
    status = one_of(s.value for s in PaymentStatus)
    amount = fields.Integer(attribute="amount_minor")
    currency = one_of(CURRENCIES)
    amount_captured = fields.Integer(attribute="amount_captured_minor")
    amount_refunded = fields.Integer(attribute="amount_refunded_minor")
    reference = fields.String()
    description = fields.String()
    service_code = fields.String(allow_none=True)
    language = one_of(["ar", "en"])
    capture_method = one_of(["automatic", "manual"])
    return_url = fields.String()
    next_url = fields.Method("_next_url", metadata=NULLABLE_STRING)
    payment_method = fields.Dict(metadata=PAYMENT_METHOD_DOC)
    provider = fields.String(allow_none=True)
    provider_reference = fields.String(allow_none=True)
    failure = fields.Method("_failure", metadata=FAILURE_DOC)
    dispute = fields.Method("_dispute", metadata=DISPUTE_DOC)
    metadata = fields.Dict(attribute="extra", keys=fields.String(), values=fields.String())
    payer = fields.Dict(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()
    expires_at = Timestamp()

    def _next_url(self, payment: Any) -> str | None:
        return payment.next_url if payment.status == PaymentStatus.CREATED else None

    def _failure(self, payment: Any) -> dict[str, str] | None:
        if payment.failure_code is None:
            return None
        return {"code": payment.failure_code, "message": payment.failure_message or ""}

    def _dispute(self, payment: Any) -> dict[str, Any] | None:
        """A chargeback the acquirer's settlement file stated, open or reversed."""
        if payment.dispute_status is None:
            return None
        return {"status": payment.dispute_status, "amount": payment.dispute_amount_minor}


@answered()
class RefundSchema(FastDump):
    id = id_of("re")
    object = constant("refund")
    livemode = fields.Boolean()
    payment = id_of("pay", attribute="payment_id")
    amount = fields.Integer(attribute="amount_minor")
    currency = one_of(CURRENCIES)
    status = one_of(s.value for s in RefundStatus)
    reason = fields.String(allow_none=True)
    failure_message = fields.String(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


@answered()
class EventSchema(FastDump):
    id = id_of("evt")
    object = constant("event")
    type = one_of(EVENT_TYPES)
    timestamp = fields.String(metadata={"format": "date-time"})
    data = fields.Dict()


def list_of(item: Schema, name: str) -> type[Schema]:
    """The schema of a list page of `item`s."""
    return answered()(
        Schema.from_dict(
            {
                "object": constant("list"),
                "data": fields.List(fields.Nested(item)),
                "has_more": fields.Boolean(),
            },
            name=name,
        )
    )


class PaymentSummarySchema(PaymentSchema):
    """A payment in a list: the payer's personal data is shown on one payment, never in lists."""

    class Meta:
        exclude = ("payer",)


PaymentListSchema = list_of(PaymentSummarySchema(), "PaymentList")
RefundListSchema = list_of(RefundSchema(), "RefundList")
EventListSchema = list_of(EventSchema(), "EventList")


@answered()
class BalanceItemSchema(Schema):
    currency = one_of(CURRENCIES)
    payable = fields.Integer()


@answered()
class BalanceSchema(Schema):
    object = constant("balance")
    livemode = fields.Boolean()
    balances = fields.List(fields.Nested(BalanceItemSchema))


@answered("param", "details")
class ErrorBodySchema(Schema):
    type = fields.String()
    code = fields.String()
    message = fields.String()
    param = fields.String(allow_none=True)
    details = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), allow_none=True
    )
    request_id = fields.String()


@answered()
class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema)
