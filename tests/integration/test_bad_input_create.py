"""Bad fields in `POST /v1/payments` (API.md section 3): each answers 422 `invalid_request`
naming the bad field in `param` and mapping every bad field in `details`, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from payments.gateway import Gateway
from tests.conftest import PAYMENT, count_rows, new_agency
from tests.integration.test_bad_input import (
    body_of,
    call,
    create_payment,
    expect_error,
    nothing_written,
)

MISSING = object()  # drop the field from the body


def _body(field: str, value: Any) -> dict[str, Any]:
    body = dict(PAYMENT)
    if value is MISSING:
        body.pop(field, None)
    else:
        body[field] = value
    return body


BAD_FIELDS: list[tuple[str, str, Any]] = [
    # amount: a positive integer of minor units, at most 10^12
    ("amount-float", "amount", 12.5),
    ("amount-integral-float", "amount", 12.0),
    ("amount-exponent", "amount", 1e4),
    ("amount-string", "amount", "12500"),
    ("amount-decimal-string", "amount", "12.500"),
    ("amount-true", "amount", True),
    ("amount-false", "amount", False),
    ("amount-null", "amount", None),
    ("amount-list", "amount", [12500]),
    ("amount-object", "amount", {"value": 12500}),
    ("amount-zero", "amount", 0),
    ("amount-negative", "amount", -12500),
    ("amount-minus-one", "amount", -1),
    ("amount-over-max", "amount", 10**12 + 1),
    ("amount-far-over-max", "amount", 10**30),
    ("amount-missing", "amount", MISSING),
    # currency: a supported code (an agency's own currencies are checked below)
    ("currency-unknown", "currency", "XXX"),
    ("currency-empty", "currency", ""),
    ("currency-long", "currency", "OMRX"),
    ("currency-number", "currency", 512),
    ("currency-null", "currency", None),
    ("currency-missing", "currency", MISSING),
    # reference and description: 1 to 255 characters
    ("reference-256", "reference", "R" * 256),
    ("reference-empty", "reference", ""),
    ("reference-number", "reference", 123),
    ("reference-null", "reference", None),
    ("reference-missing", "reference", MISSING),
    ("description-256", "description", "D" * 256),
    ("description-empty", "description", ""),
    ("description-list", "description", ["fee"]),
    ("description-missing", "description", MISSING),
    # return_url: an http(s) URL
    ("return-url-not-a-url", "return_url", "not a url"),
    ("return-url-ftp", "return_url", "ftp://moh.example.om/done"),
    ("return-url-javascript", "return_url", "javascript:alert(1)"),
    ("return-url-relative", "return_url", "/done"),
    ("return-url-scheme-relative", "return_url", "//moh.example.om/done"),
    ("return-url-no-host", "return_url", "https://"),
    ("return-url-too-long", "return_url", "https://moh.example.om/" + "a" * 2048),
    ("return-url-number", "return_url", 42),
    ("return-url-empty", "return_url", ""),
    ("return-url-missing", "return_url", MISSING),
    # language, capture_method: closed lists
    ("language-fr", "language", "fr"),
    ("language-upper", "language", "AR"),
    ("language-empty", "language", ""),
    ("language-null", "language", None),
    ("capture-method-later", "capture_method", "later"),
    ("capture-method-upper", "capture_method", "Manual"),
    ("capture-method-bool", "capture_method", True),
    # service_code: 1 to 64 of [A-Za-z0-9_.-]
    ("service-code-space", "service_code", "moh certificate"),
    ("service-code-slash", "service_code", "moh/certificate"),
    ("service-code-65", "service_code", "s" * 65),
    ("service-code-empty", "service_code", ""),
    ("service-code-arabic", "service_code", "شهادة"),
    ("service-code-newline", "service_code", "moh.cert\n"),
    # metadata: at most 20 string keys of at most 40 chars to strings of at most 500
    ("metadata-key-41", "metadata", {"k" * 41: "v"}),
    ("metadata-key-empty", "metadata", {"": "v"}),
    ("metadata-value-501", "metadata", {"k": "v" * 501}),
    ("metadata-value-number", "metadata", {"k": 1}),
    ("metadata-value-null", "metadata", {"k": None}),
    ("metadata-value-object", "metadata", {"k": {"nested": "v"}}),
    ("metadata-21-keys", "metadata", {f"k{i}": "v" for i in range(21)}),
    ("metadata-list", "metadata", ["k", "v"]),
    ("metadata-string", "metadata", "k=v"),
    ("metadata-null", "metadata", None),
    # payer: an object of email, name, national_id
    ("payer-string", "payer", "Fatima"),
    ("payer-list", "payer", [{"name": "Fatima"}]),
    ("payer-bad-email", "payer", {"email": "not-an-email"}),
    ("payer-bad-national-id", "payer", {"national_id": "12 34"}),
    ("payer-national-id-newline", "payer", {"national_id": "OM-12345\n"}),
    ("payer-long-name", "payer", {"name": "N" * 201}),
    ("payer-unknown-field", "payer", {"phone": "+968 9000 0000"}),
]


@pytest.mark.parametrize(
    ("case", "field", "value"), BAD_FIELDS, ids=[case for case, _, _ in BAD_FIELDS]
)
def test_a_bad_field_is_422_naming_it(
    client: FlaskClient, agency_key: str, gw: Gateway, case: str, field: str, value: Any
) -> None:
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            json_body=_body(field, value),
            headers={"Idempotency-Key": f"bad-{case}"},
        )
        expect_error(response, 422, "invalid_request", param=field, fields={field})


def test_a_bad_field_leaves_the_idempotency_key_free(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    headers = {"Idempotency-Key": "order-7"}
    with nothing_written(gw):
        bad = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            json_body=_body("amount", 12.5),
            headers=headers,
        )
        expect_error(bad, 422, "invalid_request", param="amount")
    good = call(client, "POST", "/v1/payments", agency_key, json_body=PAYMENT, headers=headers)
    assert good.status_code == 201, good.get_data(as_text=True)
    assert "Idempotent-Replayed" not in good.headers


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 1),
        ("amount", 10**12),
        ("reference", "R" * 255),
        ("description", "D" * 255),
        ("return_url", "http://moh.example.om/done"),
        ("return_url", "https://localhost:8443/done?x=1#y"),
        ("language", "en"),
        ("capture_method", "manual"),
        ("service_code", "S" * 64),
        ("service_code", "moh.certificate_v-2"),
        ("metadata", {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(20)}),
        ("metadata", {}),
        ("payer", {"email": "f@moh.example.om", "name": "Fatima", "national_id": "OM-12345"}),
    ],
)
def test_the_limits_themselves_are_accepted(
    client: FlaskClient, agency_key: str, field: str, value: Any
) -> None:
    """The controls for the table above: every boundary value is valid and kept."""
    payment = create_payment(client, agency_key, **{field: value})
    if field != "payer":  # the payer is never returned
        assert payment[field] == value


def test_every_bad_field_is_mapped_and_the_first_is_named(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    body = {
        "amount": 12.5,
        "currency": "XXX",
        "reference": "",
        "description": "Medical certificate fee",
        "return_url": "ftp://moh.example.om/done",
        "language": "fr",
        "colour": "blue",
    }
    with nothing_written(gw):
        response = call(client, "POST", "/v1/payments", agency_key, json_body=body)
        expect_error(
            response,
            422,
            "invalid_request",
            param="amount",
            fields={"amount", "currency", "reference", "return_url", "language", "colour"},
        )


def test_an_empty_object_names_every_required_field(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    with nothing_written(gw):
        response = call(client, "POST", "/v1/payments", agency_key, json_body={})
        expect_error(
            response,
            422,
            "invalid_request",
            param="amount",
            fields={"amount", "currency", "reference", "description", "return_url"},
        )


def test_an_empty_body_names_every_required_field(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    with nothing_written(gw):
        response = call(
            client, "POST", "/v1/payments", agency_key, data=b"", content_type="application/json"
        )
        expect_error(
            response,
            422,
            "invalid_request",
            param="amount",
            fields={"amount", "currency", "reference", "description", "return_url"},
        )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"colour": "blue"}, "colour"),
        ({"Amount": 12500}, "Amount"),
        ({"amount_minor": 12500}, "amount_minor"),
        ({"status": "succeeded"}, "status"),
        ({"livemode": True}, "livemode"),
        ({"agency": "om-other"}, "agency"),
        ({"id": "pay_01abc"}, "id"),
        ({"amount_captured": 12500}, "amount_captured"),
        ({"metadata ": {}}, "metadata "),
    ],
)
def test_an_unknown_field_is_422_naming_it(
    client: FlaskClient, agency_key: str, gw: Gateway, extra: dict[str, Any], field: str
) -> None:
    with nothing_written(gw):
        response = call(client, "POST", "/v1/payments", agency_key, json_body={**PAYMENT, **extra})
        error = expect_error(response, 422, "invalid_request", param=field, fields={field})
    assert error["param"] == field


@pytest.mark.parametrize("currency", ["USD", "SAR", "KWD"])
def test_a_supported_currency_the_agency_does_not_accept_is_422(
    client: FlaskClient, agency_key: str, gw: Gateway, currency: str
) -> None:
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            json_body={**PAYMENT, "currency": currency},
            headers={"Idempotency-Key": f"ccy-{currency}"},
        )
        error = expect_error(
            response, 422, "invalid_request", param="currency", fields={"currency"}
        )
    assert error["param"] == "currency"


def test_the_same_currency_is_accepted_by_an_agency_that_takes_it(
    client: FlaskClient, gw: Gateway
) -> None:
    """The control for the test above: USD itself is fine where the agency accepts it."""
    key = new_agency(gw, "ae-moi", currency="USD", state="AE")
    payment = create_payment(client, key, currency="USD", amount=1250)
    assert (payment["currency"], payment["amount"]) == ("USD", 1250)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount": 1' + b"0" * 5000 + b"}",
        b'{"amount": 1' + b"0" * 4000 + b"}",
    ],
    ids=["5000-digits", "4000-digits"],
)
def test_an_absurdly_long_number_is_refused_not_crashed_on(
    client: FlaskClient, agency_key: str, gw: Gateway, raw: bytes
) -> None:
    with nothing_written(gw):
        response = call(
            client, "POST", "/v1/payments", agency_key, data=raw, content_type="application/json"
        )
        assert response.status_code in (400, 422), response.get_data(as_text=True)
        error = expect_error(response, response.status_code, "invalid_request")
    if response.status_code == 422:
        assert error["param"] == "amount"


def test_arabic_callers_get_arabic_messages_with_the_same_fields(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            "/v1/payments",
            agency_key,
            json_body={**PAYMENT, "amount": "12500"},
            headers={"Accept-Language": "ar"},
        )
        error = expect_error(response, 422, "invalid_request", param="amount", fields={"amount"})
    assert any("\u0600" <= ch <= "\u06ff" for ch in error["message"]), error["message"]


def test_a_refused_create_is_not_listed(client: FlaskClient, agency_key: str, gw: Gateway) -> None:
    for value in (0, 12.5, "12500", True, 10**12 + 1):
        expect_error(
            call(client, "POST", "/v1/payments", agency_key, json_body=_body("amount", value)),
            422,
            "invalid_request",
            param="amount",
        )
    listed = body_of(call(client, "GET", "/v1/payments", agency_key))
    assert listed["data"] == []
    assert count_rows(gw)["payments"] == 0
