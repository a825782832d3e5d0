"""The parts of the OpenAPI document every operation shares, declared once: the error answers of
API.md §2 that any call can get (with their `Retry-After` header where one is sent), the
`Idempotency-Key` header of every `POST`, and the shape of the ids in paths."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask_smorest import Blueprint
from marshmallow import fields

from payments.schemas import ErrorSchema

# API.md §2, by status; each a description of when the gateway answers it.
ERRORS: dict[int, str] = {
    400: "`invalid_request`: the body is not JSON, not an object, or not sent as JSON",
    401: "`authentication`: missing, malformed, unknown or revoked API key",
    403: "`permission`: the key's role may not do this",
    404: "`not_found`: no such object for this key (another agency's answers the same)",
    409: "`conflict`: the object's state forbids it, or the idempotency key is in use",
    413: "`invalid_request`: the body is over 64 KiB",
    422: "`invalid_request`: well-formed but invalid; `param` names the first bad field and "
    "`details` every one",
    429: "`rate_limited`: too many requests; retry after `Retry-After` seconds",
    502: "`provider`: the acquirer failed and the payment's outcome is known to be unaffected",
    503: "`unavailable`: the database or a dependency is down; retry with the same key",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }
}
# Every call can be refused for its key, its rate or an unavailable database.
EVERY_CALL = (401, 429, 503)
# Every POST reads a JSON body (bar the one upload) and may carry an idempotency key.
EVERY_POST = (400, 409, 413, 422)
IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "1-255 printable ASCII characters, scoped to the API key and kept 24 hours: "
    "a repeat with the same body replays the first answer (`Idempotent-Replayed: true`), "
    "with another body answers 422 `idempotency_key_reused`, and while the first is still "
    "running answers 409 `idempotency_key_in_use`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}
# Path parameters by name: the id prefix each one takes (API.md §2), or a schema of its own.
ID_PREFIXES = {
    "payment_id": "pay",
    "refund_id": "re",
    "event_id": "evt",
    "endpoint_id": "we",
    "settlement_id": "stl",
}
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "code": {"type": "string", "minLength": 1, "maxLength": 100},
}


def path_parameter(name: str) -> dict[str, Any]:
    prefix = ID_PREFIXES.get(name)
    schema = (
        {"type": "string", "pattern": f"^{prefix}_[0-9a-z]{{26}}$"}
        if prefix
        else PATH_SCHEMAS.get(name, {"type": "string", "minLength": 1})
    )
    return {"in": "path", "name": name, "required": True, "schema": schema}


def _documented(func: Any) -> set[int]:
    responses = getattr(func, "_apidoc", {}).get("response", {}).get("responses", {})
    return {int(code) for code in responses}


# No string the gateway takes or gives holds NUL (payments.api.http refuses a body with one).
NO_NUL = "^[^\\x00]*$"


def _json_schema(
    _converter: Any, field: Any, ret: dict[str, Any], **_kwargs: Any
) -> dict[str, Any]:
    """A field's `metadata["json_schema"]` (keywords apispec does not carry over itself, such
    as `propertyNames`), and the NUL-free pattern on a free-text string that has no pattern,
    choice or format of its own."""
    extra: dict[str, Any] = dict(field.metadata.get("json_schema", {}))
    if isinstance(field, fields.String) and not {"pattern", "enum", "format"} & set(ret):
        extra.setdefault("pattern", NO_NUL)
    return extra


def _install_converter(api: Any) -> None:
    converter = api.ma_plugin.converter
    if not getattr(converter, "gateway_json_schema", False):  # once per Api
        converter.add_attribute_function(_json_schema)
        converter.gateway_json_schema = True


class ApiBlueprint(Blueprint):  # type: ignore[misc]
    """A flask-smorest blueprint whose every operation documents the errors of API.md that it
    can answer, its path ids' shape and, on a `POST`, the `Idempotency-Key` header."""

    def register_views_in_doc(self, api: Any, app: Any, spec: Any, **kwargs: Any) -> None:
        _install_converter(api)  # before any of this blueprint's schemas is converted
        super().register_views_in_doc(api, app, spec, **kwargs)

    def route(
        self,
        rule: str,
        *,
        parameters: list[Any] | None = None,
        errors: Iterable[int] = (),
        **options: Any,
    ) -> Callable[[Any], Any]:
        """`errors`: the statuses this view answers beyond those every call (401, 429, 503),
        every POST (400, 409, 413, 422) and every path with an id (404) can."""
        methods = {m.upper() for m in options.get("methods", ["GET"])}
        names = [part[1:-1].split(":")[-1] for part in rule.split("/") if part.startswith("<")]
        path_params = [path_parameter(name) for name in names]
        register = super().route(rule, parameters=[*path_params, *(parameters or [])], **options)
        statuses = set(EVERY_CALL) | set(errors)
        if "POST" in methods:
            statuses |= set(EVERY_POST)
        if names:
            statuses.add(404)

        def decorator(func: Any) -> Any:
            already = _documented(func)
            for status in sorted(statuses - already):
                func = self.alt_response(
                    status,
                    schema=ErrorSchema,
                    description=ERRORS[status],
                    headers=RETRY_AFTER if status in (429, 503) else None,
                )(func)
            if "POST" in methods:
                func = self.doc(parameters=[IDEMPOTENCY_KEY])(func)
            return register(func)

        return decorator
