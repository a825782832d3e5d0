"""Operations endpoints, the OpenAPI document and the error shape of unexpected failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_openapi_documents_the_operations_endpoints(client: FlaskClient) -> None:
    """API.md §6: /healthz, /readyz, /metrics and /openapi.json, without a key, as they answer."""
    spec = client.get("/openapi.json").json
    assert spec is not None
    paths = spec["paths"]
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert set(paths[path]) == {"get"}, path
        assert paths[path]["get"]["security"] == [], f"{path} takes no API key"
        assert paths[path]["get"]["tags"] == ["operations"]
    assert "operations" in {tag["name"] for tag in spec["tags"]}

    def body_schema(path: str, status: str) -> dict[str, Any]:
        schema: dict[str, Any] = paths[path]["get"]["responses"][status]["content"][
            "application/json"
        ]["schema"]
        return schema

    health = body_schema("/healthz", "200")
    assert health["required"] == ["status"]
    assert health["properties"]["status"]["enum"] == ["ok"]
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    ready = body_schema("/readyz", "200")
    assert ready["properties"]["status"]["enum"] == ["ok"]
    assert ready["properties"]["database"]["enum"] == ["ok"]
    down = body_schema("/readyz", "503")
    assert set(down["required"]) == {"status", "database"}
    assert down["properties"]["status"]["enum"] == ["unavailable"]
    assert set(down["properties"]["database"]["enum"]) == {"unreachable", "migrations pending"}
    metrics = paths["/metrics"]["get"]["responses"]
    assert set(metrics) == {"200"}
    assert set(metrics["200"]["content"]) == {"text/plain"}
    assert set(body_schema("/openapi.json", "200")["required"]) == {"openapi", "info", "paths"}
    # What they answer is what the document says.
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok", "database": "ok"}
    assert client.get("/metrics").mimetype == "text/plain"


def test_openapi_documents_the_request_id_and_replay_headers(client: FlaskClient) -> None:
    """`X-Request-Id` on every answer of every operation (API.md §2); `Idempotent-Replayed`
    on the answers of a `POST` that an Idempotency-Key replays (200, 201 and 409) only."""
    spec = client.get("/openapi.json").json
    assert spec is not None
    shared = spec["components"].get("responses", {})
    answers = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[1]]
                headers = response.get("headers", {})
                where = f"{method.upper()} {path} {status}"
                assert headers.get("X-Request-Id", {}).get("required") is True, where
                schema = headers["X-Request-Id"]["schema"]
                assert schema == {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"}
                replayable = method == "post" and status in ("200", "201", "409")
                assert ("Idempotent-Replayed" in headers) is replayable, where
                if replayable:
                    replayed = headers["Idempotent-Replayed"]
                    assert replayed["required"] is False
                    assert replayed["schema"] == {"type": "string", "enum": ["true"]}
                answers += 1
    assert answers > 100


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
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "database": "unreachable"}  # as documented


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
