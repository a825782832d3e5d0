"""Webhook endpoints over the API: the secret shown once and sealed at rest, the event filter,
agency isolation, the private-network guard at registration, rotation, change and delete."""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from config import Settings
from payments.api.app import create_app
from payments.errors import ValidationFailed
from payments.gateway import Gateway, build_gateway
from payments.schemas import AGENCY_EVENT_TYPES as EVENT_TYPES
from payments.service.webhooks import check_url
from payments.webhooks.delivery import secret_context
from payments.webhooks.models import DeliveryJob, WebhookEndpoint
from payments.webhooks.sealing import SealError, SecretBox
from tests.conftest import PAYMENT, auth, card, make_settings, new_agency

SECRET_RE = re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$")
PUBLIC_URL = "http://93.184.215.14/hooks"  # a public address literal: no DNS, never contacted
ENDPOINT_KEYS = {
    "id", "object", "livemode", "url", "events", "description", "status", "disabled_reason",
    "ed25519_public_key", "previous_secret_expires_at", "created_at", "updated_at",
}  # fmt: skip


def _create(client: FlaskClient, key: str, **fields: Any) -> dict[str, Any]:
    body = {"url": PUBLIC_URL, "events": ["*"], **fields}
    response = client.post("/v1/webhook-endpoints", json=body, headers=auth(key))
    assert response.status_code == 201, response.json
    created = response.json
    assert isinstance(created, dict)
    return created


def _error(response: Any) -> dict[str, Any]:
    assert response.json is not None, response.data
    error: dict[str, Any] = response.json["error"]
    return error


def test_create_shows_the_secret_once_and_keeps_it_sealed(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    created = _create(client, agency_key, description="MOH receipts")
    assert set(created) == ENDPOINT_KEYS | {"secret"}
    assert created["object"] == "webhook_endpoint"
    assert re.fullmatch(r"we_[0-9a-z]{26}", created["id"])
    assert created["status"] == "enabled"
    assert created["events"] == ["*"]
    assert created["ed25519_public_key"] is None
    secret = created["secret"]
    assert SECRET_RE.match(secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32

    one = client.get(f"/v1/webhook-endpoints/{created['id']}", headers=auth(agency_key)).json
    listed = client.get("/v1/webhook-endpoints", headers=auth(agency_key)).json
    assert one is not None and listed is not None
    assert set(one) == ENDPOINT_KEYS
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    assert "secret" not in listed["data"][0]

    with gw.db.read() as session:
        row = session.get(WebhookEndpoint, created["id"])
        assert row is not None
        stored = " ".join(
            str(getattr(row, column.key)) for column in WebhookEndpoint.__table__.columns
        )
    assert secret not in stored and secret.removeprefix("whsec_") not in stored
    box = SecretBox(gw.settings.encryption_key)
    assert box.open(row.secret_sealed, context=secret_context(row.id)).decode() == secret
    with pytest.raises(SealError):  # bound to its endpoint: it does not open as another's
        box.open(row.secret_sealed, context=secret_context("we_other"))
    with pytest.raises(SealError):
        SecretBox("another-key" * 4).open(row.secret_sealed, context=secret_context(row.id))


def test_two_secrets_are_never_alike(client: FlaskClient, agency_key: str) -> None:
    secrets = {_create(client, agency_key)["secret"] for _ in range(5)}
    assert len(secrets) == 5


INVALID_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"url": PUBLIC_URL, "events": ["payment.refunded"]}, "events.0"),
    ({"url": PUBLIC_URL, "events": ["*", "payment.failed"]}, "events"),
    ({"url": PUBLIC_URL, "events": ["payment.failed", "payment.failed"]}, "events"),
    ({"url": PUBLIC_URL, "events": []}, "events"),
    ({"url": PUBLIC_URL, "events": "*"}, "events"),
    ({"url": PUBLIC_URL}, "events"),
    ({"events": ["*"]}, "url"),
    ({"url": PUBLIC_URL, "events": ["*"], "ed25519_signing": "yes"}, "ed25519_signing"),
    ({"url": PUBLIC_URL, "events": ["*"], "secret": "whsec_mine"}, "secret"),
    ({"url": "ftp://93.184.215.14/x", "events": ["*"]}, "url"),
    ({"url": "http://user:pw@93.184.215.14/", "events": ["*"]}, "url"),
    ({"url": "not a url", "events": ["*"]}, "url"),
]


def test_invalid_endpoints_are_refused_and_write_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    for body, param in INVALID_BODIES:
        response = client.post("/v1/webhook-endpoints", json=body, headers=auth(agency_key))
        assert response.status_code == 422, (body, response.json)
        assert _error(response)["param"] == param, (body, response.json)
    with gw.db.read() as session:
        assert session.execute(select(WebhookEndpoint)).first() is None


def test_listed_event_types_are_accepted(client: FlaskClient, agency_key: str) -> None:
    created = _create(client, agency_key, events=list(EVENT_TYPES))
    assert created["events"] == list(EVENT_TYPES)


REFUSED_URLS = (
    "http://127.0.0.1/hooks",
    "http://127.8.9.10:8080/hooks",
    "http://localhost/hooks",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://192.168.1.10/",
    "http://169.254.169.254/latest/meta-data",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[ff02::1]/",
    "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 wrapping 10.0.0.1
    "http://[2001:db8::1]/",  # documentation
)


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_private_and_reserved_addresses_are_refused_without_the_allow_list(url: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_url(Settings(env="test"), url)
    assert (refused.value.code, refused.value.param) == ("url_not_allowed", "url")


def test_public_addresses_pass_the_guard() -> None:
    for url in ("http://93.184.215.14/", "https://[2606:4700::1111]:8443/x?y=1"):
        check_url(Settings(env="test"), url)


def test_registration_refuses_a_private_address(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    response = client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://169.254.169.254/", "events": ["*"]},
        headers=auth(agency_key),
    )
    assert response.status_code == 422, response.json
    error = _error(response)
    assert (error["code"], error["param"]) == ("url_not_allowed", "url")
    assert "169.254.169.254" in error["message"]


def test_the_refusal_speaks_arabic(client: FlaskClient, agency_key: str) -> None:
    response = client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://10.0.0.1/", "events": ["*"]},
        headers=auth(agency_key, **{"Accept-Language": "ar"}),
    )
    assert response.status_code == 422
    assert "خاص" in _error(response)["message"]


def _client_with(
    tmp_path: Path, database_url: str, **overrides: Any
) -> tuple[FlaskClient, Gateway]:
    other = build_gateway(make_settings(database_url, tmp_path, **overrides))
    return create_app(gw=other).test_client(), other


def test_allowed_networks_admit_private_addresses_they_cover(
    settings: Settings, tmp_path: Path, gw: Gateway
) -> None:
    client, other = _client_with(
        tmp_path,
        settings.database_url,
        webhook_allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    key = new_agency(other)
    try:
        for url in ("http://127.0.0.1:9/hooks", "http://localhost:9/hooks"):
            response = client.post(
                "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=auth(key)
            )
            assert response.status_code == 201, (url, response.json)
        still = client.post(
            "/v1/webhook-endpoints",
            json={"url": "http://10.0.0.1/", "events": ["*"]},
            headers=auth(key),
        )
        assert still.status_code == 422
        assert _error(still)["code"] == "url_not_allowed"
    finally:
        other.db.dispose()


def test_production_takes_https_only(settings: Settings, tmp_path: Path, gw: Gateway) -> None:
    client, other = _client_with(tmp_path, settings.database_url, env="production")
    key = new_agency(other)
    try:
        plain = client.post(
            "/v1/webhook-endpoints", json={"url": PUBLIC_URL, "events": ["*"]}, headers=auth(key)
        )
        assert plain.status_code == 422
        assert _error(plain)["code"] == "url_https_required"
        secure = client.post(
            "/v1/webhook-endpoints",
            json={"url": PUBLIC_URL.replace("http:", "https:"), "events": ["*"]},
            headers=auth(key),
        )
        assert secure.status_code == 201, secure.json
    finally:
        other.db.dispose()


def test_another_agency_sees_404_and_finance_reads_but_never_changes_it(
    client: FlaskClient, agency_key: str, finance_key: str, gw: Gateway
) -> None:
    created = _create(client, agency_key)
    other = new_agency(gw, "kw-moi", "KWD", "KW")
    base = f"/v1/webhook-endpoints/{created['id']}"
    for method, path, body in (
        ("GET", base, None),
        ("POST", base, {"description": "mine now"}),
        ("DELETE", base, None),
        ("POST", base + "/rotate-secret", {}),
        ("GET", base + "/deliveries", None),
        ("POST", base + "/recover", {"since": "2026-01-01T00:00:00Z"}),
    ):
        response = client.open(path, method=method, json=body, headers=auth(other))
        assert response.status_code == 404, (method, path, response.json)
        assert _error(response)["type"] == "not_found"
    listed = client.get("/v1/webhook-endpoints", headers=auth(other)).json
    assert listed is not None and listed["data"] == []

    seen = client.get(base, headers=auth(finance_key))
    assert seen.status_code == 200 and seen.json is not None
    assert "secret" not in seen.json
    for method, path, body in (
        ("POST", base, {"description": "finance's now"}),
        ("DELETE", base, None),
        ("POST", base + "/rotate-secret", {}),
    ):
        response = client.open(path, method=method, json=body, headers=auth(finance_key))
        assert response.status_code == 404, (method, path, response.json)
    unchanged = client.get(base, headers=auth(agency_key)).json
    assert unchanged is not None and unchanged["description"] != "finance's now"


def test_finance_endpoints_take_only_finance_events_and_agencies_only_theirs(
    client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    everything = client.post(
        "/v1/webhook-endpoints",
        json={"url": PUBLIC_URL, "events": ["*"]},
        headers=auth(finance_key),
    )
    assert everything.status_code == 201, everything.json
    finance = client.post(
        "/v1/webhook-endpoints",
        json={"url": PUBLIC_URL, "events": ["settlement.imported", "reconciliation.completed"]},
        headers=auth(finance_key),
    )
    assert finance.status_code == 201, finance.json
    assert finance.json is not None and finance.json["secret"].startswith("whsec_")
    for key, events in (
        (finance_key, ["settlement.imported", "payment.succeeded"]),
        (agency_key, ["reconciliation.completed"]),
    ):
        refused = client.post(
            "/v1/webhook-endpoints",
            json={"url": PUBLIC_URL, "events": events},
            headers=auth(key),
        )
        assert refused.status_code == 422, refused.json
        assert _error(refused)["param"] == "events"
    mine = client.post(
        f"/v1/webhook-endpoints/{finance.json['id']}",
        json={"description": "treasury ERP"},
        headers=auth(finance_key),
    )
    assert mine.status_code == 200 and mine.json is not None
    assert mine.json["description"] == "treasury ERP"
    hidden = client.get(f"/v1/webhook-endpoints/{finance.json['id']}", headers=auth(agency_key))
    assert hidden.status_code == 404


def test_redeliver_checks_the_event_belongs_to_the_caller(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert payment is not None
    client.post(f"/v1/payments/{payment['id']}/confirm", json=card(), headers=auth(agency_key))
    events = client.get("/v1/events", headers=auth(agency_key)).json
    assert events is not None
    event_id = events["data"][0]["id"]
    other = new_agency(gw, "kw-moi", "KWD", "KW")
    response = client.post(f"/v1/events/{event_id}/redeliver", json={}, headers=auth(other))
    assert response.status_code == 404
    missing = client.post("/v1/events/evt_nothing/redeliver", json={}, headers=auth(agency_key))
    assert missing.status_code == 404


def test_rotation_answers_a_new_secret_and_keeps_the_old_one_for_a_day(
    client: FlaskClient, agency_key: str
) -> None:
    created = _create(client, agency_key)
    path = f"/v1/webhook-endpoints/{created['id']}/rotate-secret"
    rotated = client.post(path, headers=auth(agency_key)).json
    assert rotated is not None
    assert set(rotated) == ENDPOINT_KEYS | {"secret"}
    assert SECRET_RE.match(rotated["secret"]) and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    ended = client.post(path, json={"expire_now": True}, headers=auth(agency_key)).json
    assert ended is not None
    assert ended["previous_secret_expires_at"] is None
    assert ended["secret"] not in (created["secret"], rotated["secret"])


def test_ed25519_signing_shows_a_public_key_that_rotates(
    client: FlaskClient, agency_key: str
) -> None:
    created = _create(client, agency_key, ed25519_signing=True)
    public = created["ed25519_public_key"]
    assert public.startswith("whpk_") and len(base64.b64decode(public[5:])) == 32
    rotated = client.post(
        f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=auth(agency_key)
    ).json
    assert rotated is not None
    assert rotated["ed25519_public_key"].startswith("whpk_")
    assert rotated["ed25519_public_key"] != public


def test_disabled_and_deleted_endpoints_are_owed_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    created = _create(client, agency_key)
    path = f"/v1/webhook-endpoints/{created['id']}"

    def pay() -> None:
        payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
        assert payment is not None
        client.post(f"/v1/payments/{payment['id']}/confirm", json=card(), headers=auth(agency_key))

    def jobs() -> int:
        with gw.db.read() as session:
            return len(session.execute(select(DeliveryJob)).all())

    pay()
    assert jobs() == 1
    disabled = client.post(path, json={"disabled": True}, headers=auth(agency_key)).json
    assert disabled is not None
    assert (disabled["status"], disabled["disabled_reason"]) == ("disabled", "agency")
    pay()
    assert jobs() == 1
    enabled = client.post(path, json={"disabled": False}, headers=auth(agency_key)).json
    assert enabled is not None and enabled["status"] == "enabled"
    pay()
    assert jobs() == 2

    moved = client.post(path, json={"url": "http://10.0.0.1/"}, headers=auth(agency_key))
    assert moved.status_code == 422 and _error(moved)["code"] == "url_not_allowed"

    deleted = client.delete(path, headers=auth(agency_key))
    assert deleted.status_code == 200
    assert deleted.json == {"id": created["id"], "object": "webhook_endpoint", "deleted": True}
    assert client.get(path, headers=auth(agency_key)).status_code == 404
    assert client.delete(path, headers=auth(agency_key)).status_code == 404
    pay()
    assert jobs() == 2


def test_an_agency_has_at_most_sixteen_endpoints_per_mode(
    client: FlaskClient, agency_key: str
) -> None:
    for _ in range(16):
        _create(client, agency_key)
    response = client.post(
        "/v1/webhook-endpoints", json={"url": PUBLIC_URL, "events": ["*"]}, headers=auth(agency_key)
    )
    assert response.status_code == 409
    assert _error(response)["code"] == "endpoint_limit_reached"


def test_the_openapi_document_describes_the_webhook_routes(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec is not None
    paths = spec["paths"]
    for path in (
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/{endpoint_id}",
        "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
        "/v1/webhook-endpoints/{endpoint_id}/deliveries",
        "/v1/webhook-endpoints/{endpoint_id}/recover",
        "/v1/events/{event_id}/redeliver",
    ):
        assert path in paths, path


def test_nul_and_control_characters_never_reach_the_database(
    client: FlaskClient, agency_key: str
) -> None:
    created = _create(client, agency_key)
    path = f"/v1/webhook-endpoints/{created['id']}"
    assert client.get("/v1/webhook-endpoints/we_%00", headers=auth(agency_key)).status_code == 404
    log = client.get(path + "/deliveries?event=evt_%00", headers=auth(agency_key))
    assert log.status_code == 200 and log.json is not None and log.json["data"] == []
    for body in (
        {"description": "a\x00b"},
        {"description": "a\x01b"},
        {"url": "http://93.184.215.14/\x00"},
    ):
        response = client.post(path, json=body, headers=auth(agency_key))
        assert response.status_code in (400, 422), (body, response.json)  # refused, not a crash
    redeliver = client.post("/v1/events/evt_%00/redeliver", json={}, headers=auth(agency_key))
    assert redeliver.status_code == 404
