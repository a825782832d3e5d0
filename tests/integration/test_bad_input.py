"""Bad input at the HTTP boundary: bodies that are not JSON objects, wrong content types,
bodies over 64 KiB, and characters no database can keep.

This module also holds the helpers the other `test_bad_input_*` modules share: one way to call
the API that checks what every response must carry, one check of the error shape of API.md
section 2, and a guard proving that a refused write wrote nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from payments.gateway import Gateway
from tests.conftest import PAYMENT, auth, card, count_rows

MAX_BODY = 64 * 1024
ERROR_KEYS = {"type", "code", "message", "param", "details", "request_id"}
DECLINED_CARD = "4000000000000002"


# --- helpers shared by every test_bad_input_* module -------------------------------------------


def call(
    client: FlaskClient,
    method: str,
    path: str,
    key: str | None = None,
    *,
    json_body: Any = None,
    data: str | bytes | dict[str, str] | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | str | None = None,
) -> TestResponse:
    """One request; whatever it answers must carry a request id and never a traceback."""
    sent = {**(auth(key) if key else {}), **(headers or {})}
    kwargs: dict[str, Any] = {"method": method, "headers": sent}
    if json_body is not None:
        kwargs["json"] = json_body
    if data is not None:
        kwargs["data"] = data
    if content_type is not None:
        kwargs["content_type"] = content_type
    if query is not None:
        kwargs["query_string"] = query
    response = client.open(path, **kwargs)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text, text
    assert 'File "' not in text, text
    assert response.headers.get("X-Request-Id"), f"{method} {path}: no X-Request-Id"
    return response


def body_of(response: TestResponse) -> dict[str, Any]:
    payload = response.get_json(silent=True)
    assert isinstance(payload, dict), response.get_data(as_text=True)
    return payload


def expect_error(
    response: TestResponse,
    status: int,
    type_: str,
    *,
    code: str | None = None,
    param: str | None = None,
    fields: set[str] | None = None,
) -> dict[str, Any]:
    """Check the one error shape of API.md section 2 and return the `error` object.

    `param` is the field the error must name: exactly, or a path inside it such as
    `metadata.<key>.key`. `fields` are the prefixes of every bad field `details` must map.
    """
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    payload = body_of(response)
    assert set(payload) == {"error"}, payload
    error: dict[str, Any] = payload["error"]
    assert set(error) <= ERROR_KEYS, error
    assert error["type"] == type_, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    if "request_id" in error:
        assert error["request_id"] == response.headers["X-Request-Id"]
    if code is not None:
        assert error["code"] == code, error
    if status == 422:
        assert isinstance(error.get("param"), str) and error["param"], f"422 without param: {error}"
        details = error.get("details")
        assert isinstance(details, dict) and details, f"422 without details: {error}"
        for name, messages in details.items():
            assert isinstance(name, str) and name, details
            assert "_schema" not in name.split("."), f"{name!r} is not a field: {details}"
            assert isinstance(messages, list) and messages, details
            assert all(isinstance(m, str) and m.strip() for m in messages), details
        assert error["param"] in details, f"param {error['param']!r} not in details {details}"
    if param is not None:
        assert _names(error.get("param"), param), f"param should name {param!r}: {error}"
    if fields is not None:
        details = error.get("details") or {}
        named = {f for f in fields if any(_names(k, f) for k in details)}
        assert named == fields, f"details should map exactly {fields}: {details}"
        assert all(any(_names(k, f) for f in fields) for k in details), details
    return error


def _names(actual: Any, field: str) -> bool:
    return isinstance(actual, str) and (actual == field or actual.startswith(field + "."))


@contextlib.contextmanager
def nothing_written(gw: Gateway) -> Iterator[None]:
    """Every table, idempotency keys included, holds as many rows after as before."""
    before = count_rows(gw)
    yield
    assert count_rows(gw) == before


def create_payment(client: FlaskClient, key: str, **overrides: Any) -> dict[str, Any]:
    response = call(client, "POST", "/v1/payments", key, json_body={**PAYMENT, **overrides})
    assert response.status_code == 201, response.get_data(as_text=True)
    return body_of(response)


def confirm(client: FlaskClient, key: str, payment_id: str, number: str) -> dict[str, Any]:
    path = f"/v1/payments/{payment_id}/confirm"
    response = call(client, "POST", path, key, json_body=card(number))
    assert response.status_code == 200, response.get_data(as_text=True)
    return body_of(response)


def status_of(client: FlaskClient, key: str, payment_id: str) -> str:
    response = call(client, "GET", f"/v1/payments/{payment_id}", key)
    assert response.status_code == 200, response.get_data(as_text=True)
    status: str = body_of(response)["status"]
    return status


@dataclasses.dataclass(frozen=True)
class Objects:
    """One payment in each status a caller can reach at once, a refund of 100 minor units of
    the succeeded one, and an event, all of one agency."""

    created: str
    authorised: str
    succeeded: str
    failed: str
    cancelled: str
    refund: str
    event: str

    def path(self, template: str) -> str:
        return template.format(**dataclasses.asdict(self))


def make_objects(client: FlaskClient, key: str) -> Objects:
    created = create_payment(client, key)["id"]
    authorised = create_payment(client, key, capture_method="manual")["id"]
    assert confirm(client, key, authorised, "4242424242424242")["status"] == "requires_capture"
    succeeded = create_payment(client, key)["id"]
    assert confirm(client, key, succeeded, "4242424242424242")["status"] == "succeeded"
    failed = create_payment(client, key)["id"]
    assert confirm(client, key, failed, DECLINED_CARD)["status"] == "failed"
    cancelled = create_payment(client, key)["id"]
    cancel = call(client, "POST", f"/v1/payments/{cancelled}/cancel", key)
    assert cancel.status_code == 200 and body_of(cancel)["status"] == "cancelled"
    refund = call(
        client, "POST", f"/v1/payments/{succeeded}/refunds", key, json_body={"amount": 100}
    )
    assert refund.status_code == 201, refund.get_data(as_text=True)
    events = call(client, "GET", "/v1/events", key)
    assert events.status_code == 200
    event_ids = [e["id"] for e in body_of(events)["data"]]
    assert event_ids, "the confirmed payments should have produced events"
    return Objects(
        created, authorised, succeeded, failed, cancelled, body_of(refund)["id"], event_ids[0]
    )


# Every POST endpoint, with a target in a status where a valid body would succeed.
POST_ENDPOINTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/payments", PAYMENT),
    ("/v1/payments/{created}/confirm", card()),
    ("/v1/payments/{authorised}/capture", {"amount": 100}),
    ("/v1/payments/{created}/cancel", {}),
    ("/v1/payments/{succeeded}/refunds", {"amount": 100}),
]
POST_IDS = ["create", "confirm", "capture", "cancel", "refund"]


# --- bodies that are not JSON objects ----------------------------------------------------------

MALFORMED_JSON: list[tuple[str, bytes]] = [
    ("unclosed", b'{"amount": 12500'),
    ("trailing-comma", b'{"amount": 12500,}'),
    ("single-quotes", b"{'amount': 12500}"),
    ("bare-word", b"amount=12500"),
    ("nan", b'{"amount": NaN}'),
    ("infinity", b'{"amount": Infinity}'),
    ("minus-infinity", b'{"amount": -Infinity}'),
    ("two-documents", b'{"amount": 1} {"amount": 2}'),
    ("invalid-utf8", b'{"reference": "\xc3\x28"}'),
    ("comment", b'{"amount": 12500 /* minor units */}'),
    ("blank", b" \r\n\t "),
]
NOT_AN_OBJECT: list[tuple[str, bytes]] = [
    ("empty-array", b"[]"),
    ("array-of-object", json.dumps([PAYMENT]).encode()),
    ("string", b'"pay me"'),
    ("integer", b"12500"),
    ("float", b"12.5"),
    ("null", b"null"),
    ("true", b"true"),
]
# Nesting deep enough to exhaust Python's recursion limit, yet far under 64 KiB.
NOT_AN_OBJECT.append(("deep-array", b"[" * 5000 + b"]" * 5000))  # deeper than Python recurses


@pytest.mark.parametrize(
    ("name", "raw"),
    MALFORMED_JSON + NOT_AN_OBJECT,
    ids=[name for name, _ in MALFORMED_JSON + NOT_AN_OBJECT],
)
def test_a_body_that_is_not_a_json_object_is_400_on_every_post(
    client: FlaskClient, agency_key: str, gw: Gateway, name: str, raw: bytes
) -> None:
    objects = make_objects(client, agency_key)
    for template, _ in POST_ENDPOINTS:
        path = objects.path(template)
        with nothing_written(gw):
            response = call(
                client,
                "POST",
                path,
                agency_key,
                data=raw,
                content_type="application/json",
                headers={"Idempotency-Key": f"bad-body-{name}"},
            )
            expect_error(response, 400, "invalid_request")
    assert status_of(client, agency_key, objects.created) == "created"
    assert status_of(client, agency_key, objects.authorised) == "requires_capture"


def _nested(depth: int, opening: bytes, closing: bytes, inner: bytes = b"") -> bytes:
    return b'{"metadata": ' + opening * depth + inner + closing * depth + b"}"


# Deep nesting, far under 64 KiB: past Python's recursion limit for the parser (5000) or for
# any recursive walk of the parsed body (450, 900).
TOO_DEEP: list[tuple[str, bytes]] = [
    ("object-5000", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("metadata-arrays-450", _nested(450, b"[", b"]")),
    ("metadata-arrays-900", _nested(900, b"[", b"]")),
    ("metadata-arrays-5000", _nested(5000, b"[", b"]")),
    ("metadata-objects-450", _nested(450, b'{"a":', b"}", b"1")),
    ("metadata-objects-900", _nested(900, b'{"a":', b"}", b"1")),
]


@pytest.mark.parametrize(("name", "raw"), TOO_DEEP, ids=[name for name, _ in TOO_DEEP])
def test_a_deeply_nested_body_is_refused_not_crashed_on(
    client: FlaskClient, agency_key: str, gw: Gateway, name: str, raw: bytes
) -> None:
    """A JSON object, so 400 (too deep to read) or 422 (metadata is not a flat map of
    strings) are both right; a 500 is not."""
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            data=raw,
            content_type="application/json",
            headers={"Idempotency-Key": f"deep-{name}"},
        )
        assert response.status_code in (400, 422), response.get_data(as_text=True)
        error = expect_error(response, response.status_code, "invalid_request")
    if response.status_code == 422:
        assert error["param"].split(".")[0] in {"a", "metadata", "amount"}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json-patch+json",
        "application/jsonp",
    ],
)
def test_a_json_body_under_another_content_type_is_400(
    client: FlaskClient, agency_key: str, gw: Gateway, content_type: str | None
) -> None:
    objects = make_objects(client, agency_key)
    for template, body in POST_ENDPOINTS:
        if not body:
            continue  # an empty body needs no content type
        with nothing_written(gw):
            response = call(
                client,
                "POST",
                objects.path(template),
                agency_key,
                data=json.dumps(body),
                content_type=content_type,
                headers={"Idempotency-Key": "wrong-type"},
            )
            expect_error(response, 400, "invalid_request")


def test_a_form_post_is_not_taken_for_json(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    form = {k: str(v) for k, v in PAYMENT.items()}
    with nothing_written(gw):
        response = call(client, "POST", "/v1/payments", agency_key, data=form)
        expect_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_content_types_are_accepted(
    client: FlaskClient, agency_key: str, content_type: str
) -> None:
    response = call(
        client,
        "POST",
        "/v1/payments",
        agency_key,
        data=json.dumps(PAYMENT),
        content_type=content_type,
    )
    assert response.status_code == 201, response.get_data(as_text=True)


# --- bodies over 64 KiB ------------------------------------------------------------------------


def _padded(body: dict[str, Any], size: int) -> bytes:
    """`body` with an extra string field sized so that the JSON is exactly `size` bytes."""
    skeleton = json.dumps({**body, "padding": ""}).encode()
    raw = json.dumps({**body, "padding": "x" * (size - len(skeleton))}).encode()
    assert len(raw) == size
    return raw


@pytest.mark.parametrize(("template", "body"), POST_ENDPOINTS, ids=POST_IDS)
def test_a_body_over_64_kib_is_413(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    template: str,
    body: dict[str, Any],
) -> None:
    objects = make_objects(client, agency_key)
    for size in (MAX_BODY + 1, 4 * MAX_BODY):
        with nothing_written(gw):
            response = call(
                client,
                "POST",
                objects.path(template),
                agency_key,
                data=_padded(body, size),
                content_type="application/json",
                headers={"Idempotency-Key": f"big-{size}"},
            )
            expect_error(response, 413, "invalid_request")


@pytest.mark.parametrize(("template", "body"), POST_ENDPOINTS, ids=POST_IDS)
def test_a_body_of_exactly_64_kib_is_read(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    template: str,
    body: dict[str, Any],
) -> None:
    """The limit is inclusive: 64 KiB is parsed, and refused only for its unknown field."""
    objects = make_objects(client, agency_key)
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            objects.path(template),
            agency_key,
            data=_padded(body, MAX_BODY),
            content_type="application/json",
        )
        expect_error(response, 422, "invalid_request", param="padding", fields={"padding"})


def test_an_over_long_body_is_413_even_when_its_json_is_broken(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            data=b"{" * (MAX_BODY + 10),
            content_type="application/json",
        )
        expect_error(response, 413, "invalid_request")


# --- characters that are valid JSON but that no database column can keep ----------------------


UNSTORABLE: list[tuple[str, str]] = [
    ("nul-in-reference", json.dumps({**PAYMENT, "reference": "MOH\u0000123"})),
    ("nul-in-description", json.dumps({**PAYMENT, "description": "fee\u0000"})),
    (
        "lone-surrogate-in-reference",
        json.dumps({**PAYMENT, "reference": "x"}).replace('"x"', '"MOH\\ud800"'),
    ),
    (
        "lone-surrogate-in-description",
        json.dumps({**PAYMENT, "description": "x"}).replace('"x"', '"\\udfff"'),
    ),
    ("lone-surrogate-as-unknown-field", json.dumps(PAYMENT)[:-1] + ', "\\ud800": 1}'),
]


@pytest.mark.parametrize(("name", "raw"), UNSTORABLE, ids=[n for n, _ in UNSTORABLE])
def test_unstorable_characters_are_refused_alike_on_every_database(
    client: FlaskClient, agency_key: str, gw: Gateway, name: str, raw: str
) -> None:
    """NUL and unpaired surrogates parse as JSON, but PostgreSQL (and UTF-8) cannot keep them:
    the gateway must refuse them as bad input, the same on both databases, not crash."""
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            data=raw.encode("utf-8", "surrogatepass"),
            content_type="application/json",
            headers={"Idempotency-Key": f"chars-{name}"},
        )
        assert response.status_code in (400, 422), response.get_data(as_text=True)
        expect_error(response, response.status_code, "invalid_request")


def test_nul_in_a_refund_reason_is_refused(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = create_payment(client, agency_key)["id"]
    confirm(client, agency_key, payment, "4242424242424242")
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            f"/v1/payments/{payment}/refunds",
            agency_key,
            json_body={"reason": "duplicate\u0000"},
        )
        assert response.status_code in (400, 422), response.get_data(as_text=True)
        expect_error(response, response.status_code, "invalid_request")


def test_real_unicode_is_kept(client: FlaskClient, agency_key: str) -> None:
    """The control for the test above: Arabic text and astral characters are fine."""
    text = "رسوم شهادة طبية 😀"
    payment = create_payment(
        client, agency_key, description=text, reference="مرجع-١٢٣", metadata={"ملاحظة": text}
    )
    read = body_of(call(client, "GET", f"/v1/payments/{payment['id']}", agency_key))
    assert read["description"] == text
    assert read["reference"] == "مرجع-١٢٣"
    assert read["metadata"] == {"ملاحظة": text}
