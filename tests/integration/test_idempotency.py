"""Idempotency keys: replay, reuse with another body, and concurrent identical requests."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from payments.gateway import Gateway
from payments.models import IdempotencyRecord, Payment
from tests.conftest import PAYMENT, auth, card, count_rows


def test_replay_returns_the_first_response(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    headers = auth(agency_key, **{"Idempotency-Key": "order-1"})
    first = client.post("/v1/payments", json=PAYMENT, headers=headers)
    second = client.post("/v1/payments", json=PAYMENT, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.get_data() == first.get_data()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count_rows(gw)["payments"] == 1
    # The answer kept with the key is the payment as the API shows it.
    shown = client.get(f"/v1/payments/{first.json['id']}", headers=auth(agency_key))  # type: ignore[index]
    assert shown.get_data() == first.get_data()


def test_same_key_other_body_is_refused(client: FlaskClient, agency_key: str, gw: Gateway) -> None:
    headers = auth(agency_key, **{"Idempotency-Key": "order-2"})
    assert client.post("/v1/payments", json=PAYMENT, headers=headers).status_code == 201
    before = count_rows(gw)
    other = client.post("/v1/payments", json={**PAYMENT, "amount": 1}, headers=headers)
    assert other.status_code == 422
    assert other.json is not None and other.json["error"]["code"] == "idempotency_key_reused"
    assert count_rows(gw) == before


def test_keys_are_scoped_to_the_api_key(client: FlaskClient, gw: Gateway) -> None:
    from tests.conftest import new_agency

    key_a = new_agency(gw, "om-moh", "OMR", "OM")
    key_b = new_agency(gw, "om-mol", "OMR", "OM")
    for key in (key_a, key_b):
        response = client.post(
            "/v1/payments", json=PAYMENT, headers=auth(key, **{"Idempotency-Key": "same"})
        )
        assert response.status_code == 201
    assert count_rows(gw)["payments"] == 2


def test_a_refused_request_keeps_no_key(client: FlaskClient, agency_key: str, gw: Gateway) -> None:
    headers = auth(agency_key, **{"Idempotency-Key": "order-3"})
    bad = client.post("/v1/payments", json={**PAYMENT, "amount": 0}, headers=headers)
    assert bad.status_code == 422
    with gw.db.read() as session:
        assert session.execute(select(func.count()).select_from(IdempotencyRecord)).scalar() == 0
    good = client.post("/v1/payments", json=PAYMENT, headers=headers)
    assert good.status_code == 201


def _all_at_once(
    app: Flask, n: int, path: str, body: dict[str, Any], headers: dict[str, str]
) -> list[tuple[int, bytes, str | None]]:
    """`n` clients POST the same request at the same moment: each one's status, body and
    `Idempotent-Replayed`."""
    barrier = threading.Barrier(n)

    def send(_: int) -> tuple[int, bytes, str | None]:
        client = app.test_client()
        barrier.wait(timeout=30)
        response = client.post(path, json=body, headers=headers)
        return (
            response.status_code,
            response.get_data(),
            response.headers.get("Idempotent-Replayed"),
        )

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(send, range(n)))


def test_twenty_concurrent_identical_requests_create_one_payment(
    app: Flask, agency_key: str, gw: Gateway
) -> None:
    headers = auth(agency_key, **{"Idempotency-Key": "concurrent-1"})
    results = _all_at_once(app, 20, "/v1/payments", PAYMENT, headers)
    with gw.db.read() as session:
        assert session.execute(select(func.count()).select_from(Payment)).scalar() == 1
    created = [body for status, body, replayed in results if status == 201 and replayed is None]
    assert len(created) == 1
    for status, body, _replayed in results:
        if status == 201:
            assert body == created[0]
        else:
            assert status == 409, body
            assert b"idempotency_key_in_use" in body


def test_ten_concurrent_identical_confirms_charge_once(
    app: Flask, client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    """The key is claimed in the transaction that opens the attempt, behind the payment's
    lock: the twins that follow find the payment moving and learn from the key what to say."""
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key))
    assert created.status_code == 201 and created.json is not None
    path = f"/v1/payments/{created.json['id']}/confirm"
    headers = auth(agency_key, **{"Idempotency-Key": "concurrent-confirm"})
    results = _all_at_once(app, 10, path, card(), headers)
    assert count_rows(gw)["attempts"] == 1
    answered = [body for status, body, replayed in results if status == 200 and replayed is None]
    assert len(answered) == 1 and b'"succeeded"' in answered[0]
    for status, body, _replayed in results:
        if status == 200:
            assert body == answered[0]
        else:
            assert status == 409 and b"idempotency_key_in_use" in body, body
    again = client.post(path, json=card(), headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_data() == answered[0]
