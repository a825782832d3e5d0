"""Operations endpoints, the OpenAPI document and the error shape of unexpected failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from payments.service import payments as payment_service
from tests.conftest import PAYMENT, auth


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "database": "ok"}


def test_openapi_documents_every_endpoint(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec is not None
    paths = spec["paths"]
    expected = {
        "/v1/payments": {"get", "post"},
        "/v1/payments/{payment_id}": {"get"},
        "/v1/payments/{payment_id}/confirm": {"post"},
        "/v1/payments/{payment_id}/capture": {"post"},
        "/v1/payments/{payment_id}/cancel": {"post"},
        "/v1/payments/{payment_id}/refunds": {"get", "post"},
        "/v1/refunds/{refund_id}": {"get"},
        "/v1/events": {"get"},
        "/v1/events/{event_id}": {"get"},
        "/v1/balance": {"get"},
        "/v1/ledger/trial-balance": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    create = spec["components"]["schemas"]["PaymentCreate"]
    assert set(create["required"]) == {
        "amount",
        "currency",
        "reference",
        "description",
        "return_url",
    }
    assert create["properties"]["amount"]["maximum"] == 10**12


def test_unknown_route_and_method(client: FlaskClient, agency_key: str) -> None:
    missing = client.get("/v1/nothing-here", headers=auth(agency_key))
    assert missing.status_code == 404
    assert missing.json is not None and missing.json["error"]["type"] == "not_found"
    wrong = client.delete("/v1/payments", headers=auth(agency_key))
    assert wrong.status_code == 405
    assert wrong.json is not None and wrong.json["error"]["code"] == "method_not_allowed"


def test_an_unexpected_failure_answers_500_with_a_request_id_and_no_trace(
    client: FlaskClient, agency_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(payment_service, "get_payment", broken)
    response = client.get("/v1/payments/pay_x", headers=auth(agency_key, **{"X-Request-Id": "r-1"}))
    assert response.status_code == 500
    assert response.headers["X-Request-Id"] == "r-1"
    body = response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert response.json is not None
    assert response.json["error"]["type"] == "internal"
    assert response.json["error"]["request_id"] == "r-1"


def test_request_ids_are_echoed_or_made(client: FlaskClient, agency_key: str) -> None:
    given = client.post(
        "/v1/payments", json=PAYMENT, headers=auth(agency_key, **{"X-Request-Id": "abc-123"})
    )
    assert given.headers["X-Request-Id"] == "abc-123"
    made = client.get("/healthz")
    assert made.headers["X-Request-Id"].startswith("req_")


def test_the_openapi_document_is_valid(client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").json
    assert spec is not None
    validate(spec)


def test_a_database_outage_answers_503(tmp_path: Path) -> None:
    from payments.api.app import create_app
    from tests.conftest import make_settings

    settings = make_settings("postgresql+psycopg://postgres@127.0.0.1:9/absent", tmp_path)
    client = create_app(settings).test_client()
    response = client.get("/v1/payments", headers=auth("gw_test_" + "a" * 40))
    assert response.status_code == 503
    assert response.json is not None and response.json["error"]["type"] == "unavailable"
    assert response.headers["Retry-After"] == "1"
    assert client.get("/readyz").status_code == 503


def test_payer_details_show_on_one_payment_never_in_lists(
    client: FlaskClient, agency_key: str
) -> None:
    payer = {"email": "citizen@example.om", "name": "Salim", "national_id": "12345678"}
    created = client.post(
        "/v1/payments", json={**PAYMENT, "payer": payer}, headers=auth(agency_key)
    )
    assert created.json is not None and created.json["payer"] == payer
    one = client.get(f"/v1/payments/{created.json['id']}", headers=auth(agency_key)).json
    assert one is not None and one["payer"] == payer
    listed = client.get("/v1/payments", headers=auth(agency_key)).json
    assert listed is not None
    assert "payer" not in listed["data"][0]
    assert "citizen@example.om" not in str(listed)
