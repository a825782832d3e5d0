"""What a database backup gives away: read every value of every table as an attacker with a
backup would, and find no card number, no security code (not even by guessing all 1,000 of
them against every stored value) and no webhook signing secret."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import inspect, select, text
from werkzeug.test import TestResponse

from payments import idempotency
from payments.api.app import create_app
from payments.gateway import Gateway, build_gateway
from payments.models import IdempotencyRecord
from tests.conftest import PAYMENT, auth, make_settings

PUBLIC_URL = "http://93.184.215.14/hooks"  # a public address literal: no DNS, never contacted
NUMBER = "4242424242424242"
CVC = "739"


def _confirm_body(cvc: str) -> dict[str, Any]:
    return {
        "payment_method": {
            "type": "card",
            "card": {"number": NUMBER, "exp_month": 12, "exp_year": 2034, "cvc": cvc},
        }
    }


def _json(response: TestResponse) -> dict[str, Any]:
    body = response.json
    assert isinstance(body, dict), response.get_data(as_text=True)
    return body


def _every_value(gw: Gateway) -> Iterator[str]:
    """Every non-null value of every row of every table, as text."""
    with gw.db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                for value in row:
                    if value is not None:
                        yield value.hex() if isinstance(value, bytes) else str(value)


def _guesses(path: str) -> dict[str, str]:
    """What an attacker who knows API.md tries: each of the 1,000 security codes, in the
    request the payment row's brand, last four and expiry narrow it to, digested as a plain
    hash of the canonical request or of the card alone."""
    found: dict[str, str] = {}
    for code in range(1000):
        cvc = f"{code:03d}"
        body = _confirm_body(cvc)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        card = json.dumps(body["payment_method"]["card"], sort_keys=True, separators=(",", ":"))
        for message in (f"POST {path}\n{canonical}", canonical, card, NUMBER + cvc):
            for digest in (hashlib.sha256, hashlib.sha1, hashlib.md5):
                found[digest(message.encode()).hexdigest()] = cvc
    return found


def test_a_backup_gives_back_no_card_code_and_no_webhook_secret(
    client: FlaskClient, gw: Gateway, agency_key: str
) -> None:
    created = client.post(
        "/v1/payments", json=PAYMENT, headers=auth(agency_key, **{"Idempotency-Key": "create-1"})
    )
    path = f"/v1/payments/{_json(created)['id']}/confirm"
    confirmed = client.post(
        path, json=_confirm_body(CVC), headers=auth(agency_key, **{"Idempotency-Key": "pay-1"})
    )
    assert confirmed.status_code == 200 and _json(confirmed)["status"] == "succeeded"
    endpoint = client.post(
        "/v1/webhook-endpoints",
        json={"url": PUBLIC_URL, "events": ["*"]},
        headers=auth(agency_key, **{"Idempotency-Key": "hook-1"}),
    )
    rotated = client.post(
        f"/v1/webhook-endpoints/{_json(endpoint)['id']}/rotate-secret",
        json={},
        headers=auth(agency_key, **{"Idempotency-Key": "rotate-1"}),
    )
    secrets = {_json(endpoint)["secret"], _json(rotated)["secret"]}
    assert all(secret.startswith("whsec_") for secret in secrets) and len(secrets) == 2

    guesses = _guesses(path)
    values = list(_every_value(gw))
    assert len(values) > 100  # the tables were read, not an empty database
    recovered = {guesses[v] for v in values if v in guesses}
    assert recovered == set(), f"security codes recovered from the database: {recovered}"
    for value in values:
        assert NUMBER not in value
        assert f'"cvc": "{CVC}"' not in value and f'"cvc":"{CVC}"' not in value
        for secret in secrets:
            assert secret not in value and secret.removeprefix("whsec_") not in value


def test_a_repeat_reissues_the_secret_it_was_not_allowed_to_keep(
    client: FlaskClient, agency_key: str
) -> None:
    headers = auth(agency_key, **{"Idempotency-Key": "hook-1"})
    body = {"url": PUBLIC_URL, "events": ["*"]}
    first = client.post("/v1/webhook-endpoints", json=body, headers=headers)
    again = client.post("/v1/webhook-endpoints", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json  # the same endpoint and the same secret
    listed = _json(client.get("/v1/webhook-endpoints", headers=auth(agency_key)))["data"]
    assert len(listed) == 1

    rotate = f"/v1/webhook-endpoints/{_json(first)['id']}/rotate-secret"
    headers = auth(agency_key, **{"Idempotency-Key": "rotate-1"})
    rotated = client.post(rotate, json={}, headers=headers)
    replayed = client.post(rotate, json={}, headers=headers)
    assert rotated.status_code == replayed.status_code == 200
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert _json(replayed)["secret"] == _json(rotated)["secret"] != _json(first)["secret"]
    different = client.post(rotate, json={"expire_now": True}, headers=headers)
    assert different.status_code == 422
    assert _json(different)["error"]["code"] == "idempotency_key_reused"


def test_a_retry_matches_the_same_card_and_not_another(
    client: FlaskClient, gw: Gateway, agency_key: str
) -> None:
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key))
    path = f"/v1/payments/{_json(created)['id']}/confirm"
    headers = auth(agency_key, **{"Idempotency-Key": "pay-1"})
    first = client.post(path, json=_confirm_body(CVC), headers=headers)
    same = client.post(path, json=_confirm_body(CVC), headers=headers)
    assert same.headers.get("Idempotent-Replayed") == "true" and same.json == first.json
    other_code = client.post(path, json=_confirm_body("740"), headers=headers)
    assert other_code.status_code == 422
    assert _json(other_code)["error"]["code"] == "idempotency_key_reused"
    with gw.db.read() as session:
        record = session.execute(
            select(IdempotencyRecord).where(IdempotencyRecord.key == "pay-1")
        ).scalar_one()
    assert record.request_key == idempotency.fingerprint_key(gw.settings.secret_key).id


def test_fingerprints_made_before_a_secret_key_rotation_still_match(
    client: FlaskClient, gw: Gateway, agency_key: str, tmp_path: Path
) -> None:
    """With the replaced key as GATEWAY_SECRET_KEY_PREVIOUS, a retry after the rotation
    replays as before, and a changed body is still told apart."""
    headers = auth(agency_key, **{"Idempotency-Key": "create-1"})
    first = client.post("/v1/payments", json=PAYMENT, headers=headers)
    old = gw.settings
    rotated = make_settings(
        old.database_url,
        tmp_path,
        secret_key="rotated-secret-key-" + "r" * 32,
        previous_secret_key=old.secret_key,
    )
    rotated_gw = build_gateway(rotated)
    try:
        after = create_app(gw=rotated_gw).test_client()
        again = after.post("/v1/payments", json=PAYMENT, headers=headers)
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json == first.json
        changed = after.post("/v1/payments", json={**PAYMENT, "amount": 1}, headers=headers)
        assert _json(changed)["error"]["code"] == "idempotency_key_reused"
    finally:
        rotated_gw.db.dispose()
