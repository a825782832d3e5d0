"""The worker: unknown outcomes resolved by asking the acquirer, abandoned payments expired."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from payments import clock
from payments.gateway import Gateway
from payments.service.resolution import run_pass
from tests.conftest import PAYMENT, auth, card

TIMEOUT_CARD = "4000000000005126"


def _create(client: FlaskClient, key: str, **extra: object) -> str:
    response = client.post("/v1/payments", json={**PAYMENT, **extra}, headers=auth(key))
    assert response.status_code == 201
    assert response.json is not None
    payment_id: str = response.json["id"]
    return payment_id


def test_timeout_after_charge_stays_processing_until_the_acquirer_is_asked(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment_id = _create(client, agency_key)
    confirmed = client.post(
        f"/v1/payments/{payment_id}/confirm", json=card(TIMEOUT_CARD), headers=auth(agency_key)
    )
    assert confirmed.json is not None
    assert confirmed.json["status"] == "processing"
    assert client.get("/v1/balance", headers=auth(agency_key)).json == {
        "object": "balance",
        "livemode": False,
        "balances": [],
    }
    assert client.get("/v1/events", headers=auth(agency_key)).json["data"] == []  # type: ignore[index]

    report = run_pass(gw)

    assert report.attempts_resolved == 1
    payment = client.get(f"/v1/payments/{payment_id}", headers=auth(agency_key)).json
    assert payment is not None
    assert payment["status"] == "succeeded"
    assert payment["amount_captured"] == 12500
    balance = client.get("/v1/balance", headers=auth(agency_key)).json
    assert balance is not None and balance["balances"] == [{"currency": "OMR", "payable": 12500}]
    events = client.get("/v1/events", headers=auth(agency_key)).json
    assert events is not None
    assert [e["type"] for e in events["data"]] == ["payment.succeeded"]
    assert run_pass(gw).attempts_resolved == 0  # nothing left to ask


def test_an_attempt_whose_process_died_is_asked_after_the_grace_period(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    """The attempt committed, the acquirer never heard of it: nothing was charged."""
    from payments.models import Attempt, Payment
    from payments.service.outcomes import open_attempt

    payment_id = _create(client, agency_key)
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.status = "processing"
        open_attempt(session, payment, "sandbox", now=clock.now())
    assert run_pass(gw).attempts_resolved == 0  # too early: the call may still be in flight

    later = clock.now() + dt.timedelta(minutes=3)
    clock.set_clock(lambda: later)
    assert run_pass(gw).attempts_resolved == 1
    body = client.get(f"/v1/payments/{payment_id}", headers=auth(agency_key)).json
    assert body is not None
    assert body["status"] == "failed"
    assert body["failure"]["code"] == "provider_unavailable"
    with gw.db.read() as session:
        attempt = session.query(Attempt).filter_by(payment_id=payment_id).one()
        assert attempt.pending_action is None


def test_created_payments_expire_after_90_minutes(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    start = clock.now()
    clock.set_clock(lambda: start)
    payment_id = _create(client, agency_key)
    clock.set_clock(lambda: start + dt.timedelta(minutes=89))
    assert run_pass(gw).payments_expired == 0
    clock.set_clock(lambda: start + dt.timedelta(minutes=90))
    assert run_pass(gw).payments_expired == 1
    body = client.get(f"/v1/payments/{payment_id}", headers=auth(agency_key)).json
    assert body is not None
    assert body["status"] == "expired"
    assert body["failure"]["code"] == "abandoned"
    events = client.get("/v1/events?type=payment.expired", headers=auth(agency_key)).json
    assert events is not None and len(events["data"]) == 1
    late = client.post(f"/v1/payments/{payment_id}/confirm", json=card(), headers=auth(agency_key))
    assert late.status_code == 409


def test_confirm_after_expiry_time_but_before_the_worker_is_refused(
    client: FlaskClient, agency_key: str
) -> None:
    start = clock.now()
    clock.set_clock(lambda: start)
    payment_id = _create(client, agency_key)
    clock.set_clock(lambda: start + dt.timedelta(minutes=91))
    late = client.post(f"/v1/payments/{payment_id}/confirm", json=card(), headers=auth(agency_key))
    assert late.status_code == 409
    assert late.json is not None and late.json["error"]["code"] == "payment_expired"


def test_the_worker_outlives_a_database_outage(tmp_path: Path) -> None:
    """With the database away the worker keeps trying instead of exiting; SIGTERM stops it."""
    env = {
        **os.environ,
        "GATEWAY_ENV": "test",
        "GATEWAY_VAR_DIR": str(tmp_path),
        "GATEWAY_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/absent",
    }
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "gateway"), "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            worker.wait(timeout=3)  # still running after several failed passes
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=90)
    assert worker.returncode == 0
    assert "the database is unavailable" in stderr
