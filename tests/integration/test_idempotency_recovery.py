"""A key whose request died in flight: refused while its lease runs, then taken over by the
retry, which finishes from what the database shows and never does the work twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Response
from flask.testing import FlaskClient
from sqlalchemy import func, select

from config import ConfigurationError, load_settings
from payments import clock, idempotency
from payments.api import http
from payments.gateway import Gateway
from payments.models import Attempt, IdempotencyRecord, Payment, Refund
from payments.webhooks.models import WebhookEndpoint
from providers.sandbox import SandboxProvider
from tests.conftest import PAYMENT, auth, card

START = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=60)


class Killed(BaseException):
    """The process dying mid-request: no handler runs, nothing is answered."""


@pytest.fixture(autouse=True)
def _frozen_clock() -> Iterator[None]:
    clock.set_clock(lambda: START)
    yield
    clock.set_clock(None)


def _later(by: dt.timedelta) -> None:
    moment = START + by
    clock.set_clock(lambda: moment)


def _headers(key: str, idempotency_key: str) -> dict[str, str]:
    return auth(key, **{"Idempotency-Key": idempotency_key})


def _count(gw: Gateway, model: type[object]) -> int:
    with gw.db.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _key_row(gw: Gateway, key: str) -> IdempotencyRecord:
    with gw.db.read() as session:
        return session.execute(
            select(IdempotencyRecord).where(IdempotencyRecord.key == key)
        ).scalar_one()


def _die_before_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The work commits; the process dies before the response is sent, and before the key
    keeps it where the work's own transaction did not."""

    def killed(*_args: object, **_kwargs: object) -> None:
        raise Killed

    monkeypatch.setattr(http, "_settle_key", killed)


def test_a_create_that_committed_answers_its_payment_at_once_from_its_key(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create keeps its answer with the payment, in one transaction: a process that dies
    after it leaves nothing for a retry to wait for or take over."""
    headers = _headers(agency_key, "create-died")
    with monkeypatch.context() as patch:
        _die_before_answering(patch)
        with pytest.raises(Killed):
            client.post("/v1/payments", json=PAYMENT, headers=headers)
    assert _count(gw, Payment) == 1
    row = _key_row(gw, "create-died")
    assert row.state == idempotency.FINISHED and row.recovery_object is not None

    _later(LEASE - dt.timedelta(seconds=1))
    early = client.post("/v1/payments", json=PAYMENT, headers=headers)
    assert early.status_code == 201, early.json
    assert early.headers["Idempotent-Replayed"] == "true"
    assert early.json is not None and early.json["id"] == row.recovery_object
    assert _count(gw, Payment) == 1
    _later(LEASE + dt.timedelta(seconds=1))
    again = client.post("/v1/payments", json=PAYMENT, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == early.get_data()


def test_a_key_whose_request_died_before_committing_runs_afresh(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert payment is not None
    path = f"/v1/payments/{payment['id']}/confirm"
    headers = _headers(agency_key, "confirm-died-early")

    def killed_on_the_way(*_args: object, **_kwargs: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(idempotency, "committed", killed_on_the_way)
        with pytest.raises(Killed):
            client.post(path, json=card(), headers=headers)
    assert _count(gw, Attempt) == 0
    assert client.get(f"/v1/payments/{payment['id']}", headers=auth(agency_key)).json == payment

    _later(LEASE + dt.timedelta(seconds=1))
    retry = client.post(path, json=card(), headers=headers)
    assert retry.status_code == 200, retry.json
    assert retry.json is not None and retry.json["status"] == "succeeded"
    assert _count(gw, Attempt) == 1


def test_a_confirm_that_charged_but_never_answered_is_answered_not_charged_again(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert payment is not None
    path = f"/v1/payments/{payment['id']}/confirm"
    headers = _headers(agency_key, "confirm-died-late")
    calls: list[str] = []
    authorize = SandboxProvider.authorize

    def counted(self: SandboxProvider, request: object) -> object:
        calls.append(self.name)
        return authorize(self, request)  # type: ignore[arg-type]

    monkeypatch.setattr(SandboxProvider, "authorize", counted)
    with monkeypatch.context() as patch:
        _die_before_answering(patch)
        with pytest.raises(Killed):
            client.post(path, json=card(), headers=headers)
    assert calls == ["sandbox"]

    _later(LEASE + dt.timedelta(seconds=1))
    retry = client.post(path, json=card(), headers=headers)
    assert retry.status_code == 200, retry.json
    assert retry.json is not None and retry.json["status"] == "succeeded"
    assert calls == ["sandbox"]  # the acquirer was not asked again
    assert _count(gw, Attempt) == 1
    shown = client.get(f"/v1/payments/{payment['id']}", headers=auth(agency_key)).json
    assert retry.json == shown


def test_a_confirm_that_died_at_the_acquirer_answers_processing_and_opens_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert payment is not None
    path = f"/v1/payments/{payment['id']}/confirm"
    headers = _headers(agency_key, "confirm-died-at-acquirer")

    def killed(*_args: object, **_kwargs: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(SandboxProvider, "authorize", killed)
        with pytest.raises(Killed):
            client.post(path, json=card(), headers=headers)

    _later(LEASE + dt.timedelta(seconds=1))
    retry = client.post(path, json=card(), headers=headers)
    assert retry.status_code == 200, retry.json
    assert retry.json is not None and retry.json["status"] == "processing"
    assert _count(gw, Attempt) == 1  # the open attempt is the worker's to resolve


def test_a_refund_that_died_is_answered_once(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert payment is not None
    client.post(f"/v1/payments/{payment['id']}/confirm", json=card(), headers=auth(agency_key))
    path = f"/v1/payments/{payment['id']}/refunds"
    headers = _headers(agency_key, "refund-died")
    with monkeypatch.context() as patch:
        _die_before_answering(patch)
        with pytest.raises(Killed):
            client.post(path, json={"amount": 2500}, headers=headers)

    _later(LEASE + dt.timedelta(seconds=1))
    retry = client.post(path, json={"amount": 2500}, headers=headers)
    assert retry.status_code == 201, retry.json
    assert retry.json is not None and retry.json["status"] == "succeeded"
    assert _count(gw, Refund) == 1


def test_a_webhook_endpoint_created_by_a_dead_request_is_answered_with_its_secret(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"url": "http://93.184.215.14/hooks", "events": ["*"]}
    headers = _headers(agency_key, "endpoint-died")
    with monkeypatch.context() as patch:
        _die_before_answering(patch)
        with pytest.raises(Killed):
            client.post("/v1/webhook-endpoints", json=body, headers=headers)

    _later(LEASE + dt.timedelta(seconds=1))
    retry = client.post("/v1/webhook-endpoints", json=body, headers=headers)
    assert retry.status_code == 201, retry.json
    assert retry.json is not None and retry.json["secret"].startswith("whsec_")
    assert _count(gw, WebhookEndpoint) == 1


def test_a_holder_overtaken_after_its_lease_commits_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    """A request slower than its lease loses the key: its work is refused and rolled back,
    so the key's work is done once, by whoever holds it."""
    principal_key = _key_row_for_new_claim(gw, agency_key)
    asked = idempotency.Request("POST", "/v1/payments", {"amount": 100})
    first = idempotency.begin(gw, principal_key, "slow", asked)
    assert isinstance(first, idempotency.Claim)
    _later(LEASE + dt.timedelta(seconds=1))
    second = idempotency.begin(gw, principal_key, "slow", asked)
    assert isinstance(second, idempotency.Claim) and second.token != first.token
    held = idempotency.hold(first)
    try:
        with pytest.raises(Exception) as refused, gw.db.transaction() as session:
            idempotency.committed(session, "pay_late")
        assert getattr(refused.value, "code", None) == "idempotency_key_in_use"
    finally:
        idempotency.let_go(held)
    assert _key_row(gw, "slow").recovery_object is None


def test_a_holder_overtaken_before_its_last_transaction_still_records_its_work(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    """The last transaction records what the acquirer answered: if the key was taken over
    meanwhile, the answer is not kept under it, but the work commits, for the new holder to
    answer from."""
    payment = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).json
    assert payment is not None
    principal_key = _key_row_for_new_claim(gw, agency_key)
    asked = idempotency.Request("POST", "/v1/payments/x/confirm", {"amount": 100})
    first = idempotency.begin(gw, principal_key, "slow-answer", asked)
    assert isinstance(first, idempotency.Claim)
    _later(LEASE + dt.timedelta(seconds=1))
    second = idempotency.begin(gw, principal_key, "slow-answer", asked)
    assert isinstance(second, idempotency.Claim) and second.token != first.token
    held = idempotency.hold(first)
    try:
        with (
            idempotency.rendering(lambda _obj: Response("{}", status=200)),
            gw.db.transaction() as session,
        ):
            stored = session.get(Payment, payment["id"])
            assert stored is not None
            stored.description = "recorded by the overtaken holder"
            idempotency.answered(session, stored.id, stored)
        assert idempotency.answer_kept_for(stored) is None
    finally:
        idempotency.let_go(held)
    row = _key_row(gw, "slow-answer")
    assert row.state == idempotency.STARTED and row.lease_token == second.token
    assert row.response_body is None
    with gw.db.read() as session:
        kept = session.get(Payment, payment["id"])
        assert kept is not None and kept.description == "recorded by the overtaken holder"


def _key_row_for_new_claim(gw: Gateway, secret: str) -> str:
    """The id of the API key whose secret is `secret`."""
    from payments.service.access import authenticate

    with gw.db.read() as session:
        return authenticate(session, secret).key_id


@pytest.mark.parametrize("value", ["0", "-5", "3601", "a minute", "nan"])
def test_a_bad_lease_setting_is_refused(tmp_path: Path, value: str) -> None:
    env = {"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_IDEMPOTENCY_LEASE_S": value}
    with pytest.raises(ConfigurationError, match="GATEWAY_IDEMPOTENCY_LEASE_S"):
        load_settings(env)
    env["GATEWAY_IDEMPOTENCY_LEASE_S"] = "5"
    assert load_settings(env).idempotency_lease_s == 5.0
