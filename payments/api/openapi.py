"""The parts of the OpenAPI document every operation shares, declared once: the error answers of
API.md §2 that any call can get (with their `Retry-After` header where one is sent), the
`Idempotency-Key` header of every `POST`, the response headers payments.api.http sends
(`X-Request-Id` on every answer, `Idempotent-Replayed` on a replayed one), the shape of the ids
in paths, and the operations endpoints of API.md §6 that live outside the versioned API."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask.sansio.app import App
from flask_smorest import Blueprint
from marshmallow import fields

from payments.api.arguments import BodyParser
from payments.api.http import KEPT_STATUSES, REQUEST_ID_RE
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
# Sent on every answer by payments.api.http (API.md §2): the caller's own id when it is a valid
# one, else one the gateway made up.
REQUEST_ID = {
    "X-Request-Id": {
        "description": "The request's id, also in the error body's `request_id` and in the "
        "gateway's logs: the request's own `X-Request-Id` when it sent a valid one (1-100 of "
        "`A-Z a-z 0-9 . _ : -`), else one the gateway made (`req_...`)",
        "required": True,
        "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern.replace("\\Z", "$")},
    }
}
# Sent by payments.api.http on an answer replayed from an earlier request's Idempotency-Key;
# only the statuses a key keeps (`KEPT_STATUSES`) are ever replayed.
IDEMPOTENT_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this answer is the replay of the first request sent with "
        "the same `Idempotency-Key` and body; absent otherwise",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
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


def response_headers(method: str, status: int | str) -> dict[str, Any]:
    """The headers payments.api.http adds to an operation's answer with this status (a copy
    of their own for each answer)."""
    headers: dict[str, Any] = copy.deepcopy(REQUEST_ID)
    if method.upper() == "POST" and str(status).isdigit() and int(status) in KEPT_STATUSES:
        headers.update(copy.deepcopy(IDEMPOTENT_REPLAYED))
    return headers


def _add_response_headers(responses: Mapping[Any, Any], method: str) -> None:
    for status, response in responses.items():
        if isinstance(response, dict):  # else a component's name: see _add_component_headers
            response.setdefault("headers", {}).update(response_headers(method, status))


def _add_component_headers(spec: Any) -> None:
    """The shared answers flask-smorest refers to (its 422 for query arguments) carry the
    request id too: it is on every answer."""
    for response in spec.components.responses.values():
        response.setdefault("headers", {}).update(copy.deepcopy(REQUEST_ID))


OPERATIONS_TAG = {
    "name": "operations",
    "description": "Liveness, readiness, metrics and this document (API.md §6): served "
    "outside /v1, without an API key, never rate limited",
}


def document_operations(app: App, operations: Mapping[str, Mapping[str, Any]]) -> None:
    """Add endpoints served outside the flask-smorest blueprints (a plain Flask view, or
    flask-smorest's own /openapi.json) to every Api's document: `operations` maps an endpoint
    name to its OpenAPI operations by method. Their answers get the `X-Request-Id` header
    as every other answer does. Call once the Api is initialised and the views registered."""
    apis = app.extensions.get("flask-smorest", {}).get("apis", {})
    for entry in apis.values():
        spec = entry["ext_obj"].spec
        spec.tag(dict(OPERATIONS_TAG))
        for endpoint, by_method in operations.items():
            rule = next((r for r in app.url_map.iter_rules() if r.endpoint == endpoint), None)
            if rule is None:  # not served by this app (the document's path configured away)
                continue
            documented = copy.deepcopy(dict(by_method))
            for method, operation in documented.items():
                _add_response_headers(operation.get("responses", {}), method)
            spec.path(rule=rule, operations=documented)


DOCUMENTED = "documented_statuses"  # the statuses a view's decorators documented


def _documented(func: Any) -> frozenset[int]:
    return frozenset(getattr(func, DOCUMENTED, frozenset()))


def _noting(status: int | str, decorate: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`decorate`, noting on the view it gives that `status` is documented (each wrapper gets
    its own set: `functools.wraps` hands the attribute up as it is)."""

    def decorator(func: Any) -> Any:
        wrapper = decorate(func)
        setattr(wrapper, DOCUMENTED, _documented(func) | {int(status)})
        return wrapper

    return decorator


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


def _error_answer(status: int) -> dict[str, Any]:
    """An error answer of API.md §2 as an operation documents it: the error shape, and the
    `Retry-After` header where one is sent."""
    answer: dict[str, Any] = {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": ErrorSchema}},
    }
    if status in (429, 503):
        answer["headers"] = copy.deepcopy(RETRY_AFTER)
    return answer


class ApiBlueprint(Blueprint):  # type: ignore[misc]
    """A flask-smorest blueprint whose every operation documents the errors of API.md that it
    can answer, its path ids' shape and, on a `POST`, the `Idempotency-Key` header. Its views
    read the JSON body the request hooks parsed (`BodyParser`)."""

    ARGUMENTS_PARSER = BodyParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Last, so that it sees every answer the other callbacks documented.
        self._prepare_doc_cbks.append(self._prepare_headers_doc)

    def register_views_in_doc(self, api: Any, app: Any, spec: Any, **kwargs: Any) -> None:
        _install_converter(api)  # before any of this blueprint's schemas is converted
        _add_component_headers(spec)
        super().register_views_in_doc(api, app, spec, **kwargs)

    @staticmethod
    def _prepare_headers_doc(
        doc: dict[str, Any], doc_info: dict[str, Any], *, method: str, **_kwargs: Any
    ) -> dict[str, Any]:
        """Every answer's `X-Request-Id`, and a `POST`'s `Idempotent-Replayed`: on the answers
        the decorators documented, and on those a view's `doc(responses=...)` writes itself
        (merged in after these callbacks; `doc_info` is the registration's own copy)."""
        _add_response_headers(doc.get("responses", {}), method)
        _add_response_headers(doc_info.get("manual_doc", {}).get("responses", {}), method)
        return doc

    def response(self, status_code: int | str, *args: Any, **kwargs: Any) -> Any:
        return _noting(status_code, super().response(status_code, *args, **kwargs))

    def alt_response(self, status_code: int | str, *args: Any, **kwargs: Any) -> Any:
        return _noting(status_code, super().alt_response(status_code, *args, **kwargs))

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
            # One documentation layer for every error answer (and a POST's key header), where
            # an `alt_response` each would wrap the view once per status.
            responses = {
                status: _error_answer(status) for status in sorted(statuses - _documented(func))
            }
            extra = {"parameters": [IDEMPOTENCY_KEY]} if "POST" in methods else {}
            if responses or extra:
                func = self.doc(responses=responses, **extra)(func)
            return register(func)

        return decorator
