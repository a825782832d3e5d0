"""Request hooks and error mapping: request ids, body limits and strict JSON, authentication,
idempotency, and the one error shape of API.md."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from payments import i18n, idempotency
from payments.api import keys
from payments.api.context import caller, gateway
from payments.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Unavailable,
    ValidationFailed,
)
from payments.schemas import unstorable

log = logging.getLogger("gateway.http")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}\Z")


def is_api(path: str) -> bool:
    """Whether `path` is the API's (/v1): keyed, limited per key, stateless."""
    return path == "/v1" or path.startswith("/v1/")


# Responses an idempotency key keeps; anything else leaves the key free for a retry.
KEPT_STATUSES = frozenset({200, 201, 409})


def _language() -> str:
    """Arabic or English, by the caller's preference order; region tags (ar-OM) count."""
    for value, quality in request.accept_languages:  # highest quality first
        primary = value.replace("_", "-").split("-", 1)[0].lower()
        if quality > 0 and primary in ("ar", "en"):
            return primary
    return "en"


def error_response(error: GatewayError) -> Response:
    body: dict[str, Any] = {
        "type": error.type,
        "code": error.code,
        "message": i18n.message(error.code, error.type, error.message, _language()),
        "request_id": g.get("request_id"),
    }
    if error.param is not None:
        body["param"] = error.param
    if error.details:
        body["details"] = error.details
    response = Response(
        json.dumps({"error": body}, ensure_ascii=False),
        status=error.status,
        mimetype="application/json",
    )
    if error.status == 503:
        response.headers["Retry-After"] = "1"
    return response


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":  # a nested object of the wrong type: the error is the field's
                name = prefix or "body"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                flat[name] = list(value)
            else:
                flat.update(_flatten(value, name))
    elif isinstance(messages, list):
        flat[prefix or "body"] = [str(m) for m in messages]
    return flat


def _from_http_exception(exc: HTTPException) -> GatewayError:
    data = getattr(exc, "data", None) or {}
    if exc.code == 422 and "messages" in data:
        by_location = data["messages"]
        merged: dict[str, Any] = {}
        for value in by_location.values():
            merged.update(value if isinstance(value, dict) else {"body": value})
        details = _flatten(merged)
        first = next(iter(details), None)
        what = "; ".join(f"{k}: {' '.join(v)}" for k, v in details.items())
        return ValidationFailed(f"Invalid request: {what}", param=first, details=details)
    if exc.code == 404:
        return NotFound("no such route", code="route_missing")
    if exc.code == 405:
        err = InvalidRequest("method not allowed on this route", code="method_not_allowed")
        err.status = 405
        return err
    if exc.code == 413:
        return PayloadTooLarge("the request body is over 64 KiB")
    status = exc.code or 500
    if status >= 500:
        internal = GatewayError("an unexpected error occurred", code="internal")
        internal.status, internal.type = status, "internal"
        return internal
    err = InvalidRequest(exc.description or "invalid request", code="invalid_request")
    err.status = status
    return err


# The one endpoint that takes a multipart upload, not JSON, and its own size limit: the
# settlement file limit plus room for the multipart envelope and the `provider` field.
UPLOAD_PATHS = frozenset({"/v1/settlements"})
UPLOAD_ENVELOPE_BYTES = 64 * 1024


def _parse_upload() -> None:
    """Admit a multipart settlement file up to its own limit; key idempotency on its
    fields and the file's digest."""
    max_bytes = gateway().settings.max_settlement_file_bytes + UPLOAD_ENVELOPE_BYTES
    request.max_content_length = max_bytes
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the upload is over {max_bytes} bytes")
    body: dict[str, Any] = {key: request.form.getlist(key) for key in sorted(request.form)}
    for name, upload in sorted(request.files.items(multi=True)):
        digest = hashlib.sha256()
        while block := upload.stream.read(1024 * 1024):  # bounded by the request's limit
            digest.update(block)
        upload.stream.seek(0)
        body[f"file:{name}"] = digest.hexdigest()
    g.body = body


def _parse_body() -> None:
    """Refuse over-large, non-JSON and non-object bodies before any view sees them."""
    if request.path in UPLOAD_PATHS:
        # Only finance keys import settlements: anyone else is refused before a byte of a
        # body that may be 256 MiB is read, hashed or spooled.
        if not g.principal.is_finance:
            raise PermissionDenied("settlements are for finance keys")
        if request.mimetype == "multipart/form-data":
            _parse_upload()
            return
    max_bytes = gateway().settings.max_body_bytes
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge("the request body is over 64 KiB")
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise PayloadTooLarge("the request body is over 64 KiB")
    is_json = request.mimetype == "application/json"
    if not raw or (not raw.strip() and not is_json):  # no body; blanks declared JSON are not
        g.body = {}
        return
    if not is_json:
        raise InvalidRequest(
            "the body must be JSON with Content-Type: application/json",
            code="unsupported_media_type",
        )
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("the body is not valid UTF-8 JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", code="body_not_object")
    _check_document(body)
    g.body = body


MAX_DEPTH = 32


def _check_document(body: Any) -> None:
    """Refuse documents nested deeper than any request needs, and strings holding NUL or a
    lone surrogate (no database keeps them alike). Iterative: no recursion limit to hit."""
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidRequest(
                f"the body is nested deeper than {MAX_DEPTH} levels", code="body_too_deep"
            )
        if isinstance(value, str):
            if unstorable(value):
                raise InvalidRequest(
                    "the body holds a NUL character or an unpaired surrogate, which no field "
                    "may hold",
                    code="invalid_characters",
                )
        elif isinstance(value, dict):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _claim_idempotency_key() -> Response | None:
    """Hold the request's Idempotency-Key: claimed by the view's own work where it claims it
    there (`keys.claimed_in_work`), else now, in a transaction of its own, which may answer a
    repeat at once."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    idempotency.check_key(key)
    sent = idempotency.Request(request.method, request.path, g.body)
    if keys.claims_in_work(current_app.view_functions.get(request.endpoint or "")):
        asked = idempotency.asked(gateway(), g.principal.key_id, key, sent)
        g.idempotency_held = idempotency.hold(None, asked)
        return None
    claimed = idempotency.begin(gateway(), g.principal.key_id, key, sent)
    if isinstance(claimed, idempotency.Replay):
        return keys.replayed(claimed)
    g.idempotency_held = idempotency.hold(claimed)
    return None


def _settle_key(response: Response) -> None:
    """Keep the answer under its Idempotency-Key, or give the key up, unless the work kept it
    in its own transaction. If the database went away after the work was done, the answer
    still goes out: the key stays `started`, its lease runs out, and a retry answers from what
    the work committed (API.md §2). An answer that carries a secret is kept without its body;
    its repeats answer the object afresh."""
    holding = idempotency.holding()
    claim = holding.claim if holding is not None else None
    if claim is None or idempotency.is_kept_answer(response):
        return  # nothing written under the key, or the work kept this answer with it
    if claim.replay:
        response.headers["Idempotent-Replayed"] = "true"
        return
    try:
        if response.status_code in KEPT_STATUSES and not _is_key_conflict(response):
            body = None if idempotency.answer_withheld() else response.get_data(as_text=True)
            idempotency.finish(gateway(), claim, response.status_code, body)
        else:
            idempotency.release(gateway(), claim)
    except Unavailable:
        log.warning("the database went away before the Idempotency-Key was settled")


def install(app: Flask) -> None:
    @app.before_request
    def _before() -> Response | None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else f"req_{uuid.uuid4().hex}"
        if not is_api(request.path):
            return None
        g.principal = caller()
        if request.method == "POST":
            _parse_body()
            return _claim_idempotency_key()
        return None

    @app.after_request
    def _after(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("Cache-Control", "no-store")
        if "idempotency_held" in g:
            _settle_key(response)
        return response

    @app.teardown_request
    def _teardown(_exc: BaseException | None) -> None:
        held = g.pop("idempotency_held", None)
        if held is not None:
            idempotency.let_go(held)

    @app.errorhandler(GatewayError)
    def _gateway_error(error: GatewayError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(_from_http_exception(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        error = GatewayError("an unexpected error occurred", code="internal")
        error.status, error.type = 500, "internal"
        return error_response(error)


def _is_key_conflict(response: Response) -> bool:
    if response.status_code != 409:
        return False
    return b"idempotency_key_in_use" in response.get_data()
