"""Webhook delivery to a real receiver on loopback: every event type signed per Standard
Webhooks (checked with the independent `standardwebhooks` package), rotation, Ed25519, the
retry schedule, Retry-After, 410, redirects, timeouts, TLS, the connect-time guard, the delivery
log, redelivery, recovery, and workers that race or die."""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import email.utils
import io
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from sqlalchemy import select

from config import Settings
from payments import clock
from payments.gateway import Gateway, build_gateway
from payments.ids import new_id
from payments.models import Payment, Refund
from payments.schemas import AGENCY_EVENT_TYPES as EVENT_TYPES
from payments.service.resolution import run_pass
from payments.settlement import imports
from payments.settlement.sandbox_file import HEADER
from payments.webhooks.delivery import DeliveryReport, claim, deliver_due, lease_s
from payments.webhooks.models import DeliveryJob
from tests.conftest import PAYMENT, auth, card, make_settings
from tests.integration.webhook_support import Answer, Received, Receiver

ALLOW_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
DEFAULT_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
DECLINED = "4000000000000002"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """The API's settings: loopback receivers allowed, the contract's retry schedule."""
    return make_settings(
        database_url, tmp_path, webhook_allow_networks=ALLOW_LOOPBACK, webhook_timeout_s=2.0
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def worker_gateway(gw: Gateway) -> Iterator[Callable[..., Gateway]]:
    """Another worker on the same database, its settings changed as given."""
    made: list[Gateway] = []

    def build(**overrides: Any) -> Gateway:
        other = build_gateway(dataclasses.replace(gw.settings, **overrides))
        made.append(other)
        return other

    yield build
    for other in made:
        other.db.dispose()


def _endpoint(client: FlaskClient, key: str, url: str, **fields: Any) -> dict[str, Any]:
    body = {"url": url, "events": ["*"], **fields}
    response = client.post("/v1/webhook-endpoints", json=body, headers=auth(key))
    assert response.status_code == 201, response.json
    created = response.json
    assert isinstance(created, dict)
    return created


def _pay(
    client: FlaskClient, key: str, number: str = "4242424242424242", **extra: Any
) -> dict[str, Any]:
    created = client.post("/v1/payments", json={**PAYMENT, **extra}, headers=auth(key)).json
    assert created is not None
    confirmed = client.post(
        f"/v1/payments/{created['id']}/confirm", json=card(number), headers=auth(key)
    ).json
    assert isinstance(confirmed, dict)
    return confirmed


def _log(client: FlaskClient, key: str, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
        query_string={"limit": 100, **params},
        headers=auth(key),
    )
    assert response.status_code == 200, response.json
    assert response.json is not None
    rows: list[dict[str, Any]] = response.json["data"]
    return rows


def _jobs(gw: Gateway) -> list[DeliveryJob]:
    with gw.db.read() as session:
        return list(session.execute(select(DeliveryJob).order_by(DeliveryJob.id)).scalars())


def _verify(secret: str, received: Received) -> dict[str, Any]:
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(
        received.body, received.headers
    )
    return payload


def _freeze(at: dt.datetime) -> None:
    clock.set_clock(lambda: at)


def _orphan_refund(gw: Gateway, payment_id: str) -> None:
    """A refund whose request died before the acquirer heard of it: the worker finds that out
    and the refund fails."""
    now = clock.now()
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None and payment.provider is not None
        session.add(
            Refund(
                id=new_id("re"),
                payment_id=payment.id,
                agency_id=payment.agency_id,
                livemode=payment.livemode,
                amount_minor=1000,
                currency=payment.currency,
                status="pending",
                reason=None,
                provider=payment.provider,
                checks=0,
                next_check_at=now - dt.timedelta(seconds=1),
                created_at=now,
                updated_at=now,
            )
        )


def test_every_event_type_arrives_signed_per_standard_webhooks(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    secret = _endpoint(client, agency_key, receiver.url())["secret"]
    paid = _pay(client, agency_key)
    refunded = client.post(
        f"/v1/payments/{paid['id']}/refunds", json={"amount": 2500}, headers=auth(agency_key)
    )
    assert refunded.status_code == 201
    assert _pay(client, agency_key, DECLINED)["status"] == "failed"
    manual = _pay(client, agency_key, capture_method="manual")
    assert manual["status"] == "requires_capture"
    cancel = client.post(f"/v1/payments/{manual['id']}/cancel", headers=auth(agency_key))
    assert cancel.status_code == 200
    _freeze(clock.now() - dt.timedelta(minutes=91))  # a payment abandoned 91 minutes ago
    assert client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).status_code == 201
    clock.set_clock(None)
    _orphan_refund(gw, paid["id"])
    # The acquirer's settlement file takes 5.000 of the payment back, then pays it back.
    today = clock.now().date().isoformat()
    reference = paid["provider_reference"]
    stated = "\n".join(
        [
            HEADER,
            f"{today},{reference},chargeback,OMR,-5.000,0.000,-5.000",
            f"{today},{reference},chargeback_reversal,OMR,5.000,0.000,5.000",
        ]
    )
    imports.import_file(
        gw, "sandbox", io.BytesIO(stated.encode()), filename="day.csv", imported_by="cli"
    )

    report = run_pass(gw)  # expires, resolves the refund, then delivers everything

    assert report.webhooks_delivered == len(EVENT_TYPES)
    posts = receiver.posts()
    assert sorted(json.loads(p.body)["type"] for p in posts) == sorted(EVENT_TYPES)
    for post in posts:
        payload = _verify(secret, post)
        event = client.get(f"/v1/events/{payload['id']}", headers=auth(agency_key)).json
        assert payload == event
        assert post.headers["webhook-id"] == payload["id"]
        assert post.headers["content-type"] == "application/json"
        assert abs(int(post.headers["webhook-timestamp"]) - time.time()) < 60
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            _verify("whsec_" + base64.b64encode(b"w" * 32).decode(), post)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(post.body + b" ", post.headers)
    assert run_pass(gw).webhooks_delivered == 0  # each once


def test_an_endpoint_hears_only_the_event_types_it_chose(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    _endpoint(client, agency_key, receiver.url(), events=["payment.failed"])
    _pay(client, agency_key)
    failed = _pay(client, agency_key, DECLINED)
    deliver_due(gw)
    assert [json.loads(p.body)["data"]["id"] for p in receiver.posts()] == [failed["id"]]


def test_during_rotation_both_secrets_verify_until_the_old_one_expires(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    created = _endpoint(client, agency_key, receiver.url())
    path = f"/v1/webhook-endpoints/{created['id']}/rotate-secret"
    rotated = client.post(path, headers=auth(agency_key)).json
    assert rotated is not None
    _pay(client, agency_key)
    deliver_due(gw)
    (post,) = receiver.posts()
    assert len(post.headers["webhook-signature"].split(" ")) == 2
    assert _verify(created["secret"], post) == _verify(rotated["secret"], post)

    a_day_later = clock.now() + dt.timedelta(hours=24, seconds=1)
    _freeze(a_day_later)
    _pay(client, agency_key)
    deliver_due(gw)
    late = receiver.posts()[-1]
    # only the new secret signs now; computed independently by the package's signer
    expected = standardwebhooks.Webhook(rotated["secret"]).sign(
        late.headers["webhook-id"], a_day_later, late.body.decode()
    )
    assert late.headers["webhook-signature"] == expected

    clock.set_clock(None)
    final = client.post(path, json={"expire_now": True}, headers=auth(agency_key)).json
    assert final is not None
    _pay(client, agency_key)
    deliver_due(gw)
    last = receiver.posts()[-1]
    _verify(final["secret"], last)
    for old in (created["secret"], rotated["secret"]):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            _verify(old, last)


def test_ed25519_endpoints_also_get_a_v1a_signature(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    created = _endpoint(client, agency_key, receiver.url(), ed25519_signing=True)
    _pay(client, agency_key)
    deliver_due(gw)
    (post,) = receiver.posts()
    _verify(created["secret"], post)  # the v1 signature, as every receiver checks it
    signatures = dict(part.split(",", 1) for part in post.headers["webhook-signature"].split(" "))
    assert set(signatures) == {"v1", "v1a"}
    public = Ed25519PublicKey.from_public_bytes(
        base64.b64decode(created["ed25519_public_key"].removeprefix("whpk_"))
    )
    signed = f"{post.headers['webhook-id']}.{post.headers['webhook-timestamp']}.".encode()
    public.verify(base64.b64decode(signatures["v1a"]), signed + post.body)  # raises if wrong


def test_failures_are_retried_on_the_schedule_with_jitter_then_fail(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    receiver.default = Answer(status=500, body=b"down for maintenance")
    created = _endpoint(client, agency_key, receiver.url())
    now = clock.now()
    _freeze(now)
    _pay(client, agency_key)
    for delay_s in DEFAULT_SCHEDULE_S:
        assert deliver_due(gw).retrying == 1
        (job,) = _jobs(gw)
        assert job.next_attempt_at is not None
        waited = (job.next_attempt_at - now).total_seconds()
        assert delay_s <= waited <= delay_s * 1.2 + 0.01, (delay_s, waited)
        assert deliver_due(gw) == DeliveryReport()  # nothing is due before its time
        now = job.next_attempt_at
        _freeze(now)
    assert deliver_due(gw).failed == 1
    (job,) = _jobs(gw)
    assert (job.status, job.next_attempt_at, job.attempts) == ("failed", None, 10)
    posts = receiver.posts()
    assert len(posts) == 10 and len({p.headers["webhook-id"] for p in posts}) == 1
    log = _log(client, agency_key, created["id"])
    assert [row["attempt"] for row in log] == list(range(10, 0, -1))
    assert log[0]["next_attempt_at"] is None and log[1]["next_attempt_at"] is not None
    assert all(row["response_status"] == 500 and not row["succeeded"] for row in log)
    assert log[0]["response_body"] == "down for maintenance"
    endpoint = client.get(f"/v1/webhook-endpoints/{created['id']}", headers=auth(agency_key)).json
    assert endpoint is not None and endpoint["status"] == "enabled"  # 3 days is not 5


def test_retry_after_is_honoured(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    now = clock.now()
    _freeze(now)
    in_ten_minutes = email.utils.format_datetime(now + dt.timedelta(seconds=600), usegmt=True)
    receiver.answers = [
        Answer(status=429, headers={"Retry-After": "600"}),
        Answer(status=503, headers={"Retry-After": in_ten_minutes}),
    ]
    _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    _pay(client, agency_key)
    assert deliver_due(gw).retrying == 2
    for job in _jobs(gw):
        assert job.next_attempt_at is not None
        waited = (job.next_attempt_at - now).total_seconds()
        assert 599 <= waited <= 720, waited  # not the 5 s of the schedule
    _freeze(now + dt.timedelta(seconds=720))
    assert deliver_due(gw).delivered == 2


def test_a_410_disables_the_endpoint(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    receiver.default = Answer(status=410, body=b"gone")
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    report = deliver_due(gw)
    assert (report.failed, report.endpoints_disabled) == (1, 1)
    endpoint = client.get(f"/v1/webhook-endpoints/{created['id']}", headers=auth(agency_key)).json
    assert endpoint is not None
    assert (endpoint["status"], endpoint["disabled_reason"]) == ("disabled", "gone")
    _pay(client, agency_key)
    deliver_due(gw)
    assert len(receiver.posts()) == 1  # nothing more is sent to it
    (job,) = _jobs(gw)
    assert job.status == "failed"


def test_a_redirect_is_not_followed(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    receiver.answers = [Answer(status=302, headers={"Location": receiver.url("/elsewhere")})]
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    assert deliver_due(gw).retrying == 1
    assert [r.path for r in receiver.received] == ["/hooks"]
    (row,) = _log(client, agency_key, created["id"])
    assert row["response_status"] == 302 and not row["succeeded"]
    assert row["error"]["code"] == "redirect_not_followed"
    assert row["error"]["message"].endswith("/elsewhere")
    assert row["next_attempt_at"] is not None


def test_a_slow_receiver_times_out_and_is_retried(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
    worker_gateway: Callable[..., Gateway],
) -> None:
    worker = worker_gateway(webhook_timeout_s=0.5, webhook_retry_schedule_s=(0.1,))
    receiver.answers = [Answer(delay_s=3.0)]
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    began = time.monotonic()
    assert deliver_due(worker).retrying == 1
    assert time.monotonic() - began < 2.0  # the worker did not wait for the receiver
    time.sleep(0.15)
    assert deliver_due(worker).delivered == 1
    second, first = _log(client, agency_key, created["id"])
    assert first["error"]["code"] == "timeout" and first["response_status"] is None
    assert 450 <= first["duration_ms"] < 2000
    assert second["succeeded"] and second["attempt"] == 2
    posts = receiver.posts()
    assert len(posts) == 2 and posts[0].headers["webhook-id"] == posts[1].headers["webhook-id"]


def test_a_receiver_down_then_up_gets_the_event(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
    worker_gateway: Callable[..., Gateway],
) -> None:
    worker = worker_gateway(webhook_retry_schedule_s=(0.2, 0.2, 0.2))
    created = _endpoint(client, agency_key, receiver.url())
    receiver.stop()
    payment = _pay(client, agency_key)
    assert deliver_due(worker).retrying == 1
    (row,) = _log(client, agency_key, created["id"])
    assert row["error"]["code"] == "connection_refused"
    receiver.start()
    time.sleep(0.25)
    assert deliver_due(worker).delivered == 1
    (post,) = receiver.posts()
    assert json.loads(post.body)["data"]["id"] == payment["id"]


def test_only_64_kib_of_a_response_are_read(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    receiver.default = Answer(status=200, body=b"x" * (4 * 1024 * 1024))
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    assert deliver_due(gw).delivered == 1
    (row,) = _log(client, agency_key, created["id"])
    assert row["succeeded"] and len(row["response_body"]) == 2000


def test_the_guard_runs_again_when_connecting(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
    worker_gateway: Callable[..., Gateway],
) -> None:
    """Registered while loopback was allowed; a worker without the allow-list refuses it."""
    strict = worker_gateway(webhook_allow_networks=())
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    assert deliver_due(strict).retrying == 1
    assert receiver.received == []
    (row,) = _log(client, agency_key, created["id"])
    assert row["error"]["code"] == "blocked_address"
    assert "127.0.0.1" in row["error"]["message"]


def test_five_days_without_success_disable_the_endpoint(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    receiver.default = Answer(status=503)
    created = _endpoint(client, agency_key, receiver.url())
    start = clock.now()
    _freeze(start)
    _pay(client, agency_key)
    assert deliver_due(gw).endpoints_disabled == 0
    _freeze(start + dt.timedelta(days=4, hours=23))
    _pay(client, agency_key)
    assert deliver_due(gw).endpoints_disabled == 0
    _freeze(start + dt.timedelta(days=5, seconds=1))
    _pay(client, agency_key)
    assert deliver_due(gw).endpoints_disabled == 1
    endpoint = client.get(f"/v1/webhook-endpoints/{created['id']}", headers=auth(agency_key)).json
    assert endpoint is not None
    assert (endpoint["status"], endpoint["disabled_reason"]) == ("disabled", "failing")
    # the jobs still waiting are closed when they come due, saying why
    _freeze(start + dt.timedelta(days=6))
    sent = len(receiver.posts())
    deliver_due(gw)
    assert len(receiver.posts()) == sent
    assert {j.status for j in _jobs(gw)} == {"failed"}
    assert _log(client, agency_key, created["id"])[0]["error"]["code"] == "endpoint_disabled"


def test_a_success_ends_the_failure_streak(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    created = _endpoint(client, agency_key, receiver.url())
    start = clock.now()
    _freeze(start)
    receiver.answers = [Answer(status=500)]
    _pay(client, agency_key)
    deliver_due(gw)
    _freeze(start + dt.timedelta(days=4))
    assert deliver_due(gw).delivered == 1
    receiver.default = Answer(status=500)
    _freeze(start + dt.timedelta(days=6))
    _pay(client, agency_key)
    assert deliver_due(gw).endpoints_disabled == 0
    endpoint = client.get(f"/v1/webhook-endpoints/{created['id']}", headers=auth(agency_key)).json
    assert endpoint is not None and endpoint["status"] == "enabled"


def test_the_log_redelivery_and_its_filters(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    created = _endpoint(client, agency_key, receiver.url())
    first = _pay(client, agency_key)
    _pay(client, agency_key)
    deliver_due(gw)
    events = client.get("/v1/events", headers=auth(agency_key)).json
    assert events is not None
    event_id = next(e["id"] for e in events["data"] if e["data"]["id"] == first["id"])

    response = client.post(f"/v1/events/{event_id}/redeliver", json={}, headers=auth(agency_key))
    assert response.status_code == 200, response.json
    assert response.json == {
        "object": "webhook_redelivery",
        "event": event_id,
        "endpoints": [created["id"]],
    }
    assert deliver_due(gw).delivered == 1
    again = receiver.posts()[-1]
    assert again.headers["webhook-id"] == event_id
    _verify(created["secret"], again)

    rows = _log(client, agency_key, created["id"], event=event_id)
    assert [(r["attempt"], r["redelivery"], r["succeeded"]) for r in rows] == [
        (1, True, True),
        (1, False, True),
    ]
    assert set(rows[0]) == {
        "id", "object", "endpoint", "event", "event_type", "attempt", "redelivery",
        "created_at", "duration_ms", "succeeded", "response_status", "response_body", "error",
        "next_attempt_at",
    }  # fmt: skip
    assert rows[0]["object"] == "webhook_delivery" and rows[0]["event_type"] == "payment.succeeded"
    page = client.get(
        f"/v1/webhook-endpoints/{created['id']}/deliveries?limit=1", headers=auth(agency_key)
    ).json
    assert page is not None and page["has_more"] is True and len(page["data"]) == 1
    assert len(_log(client, agency_key, created["id"])) == 3

    named = client.post(
        f"/v1/events/{event_id}/redeliver",
        json={"endpoint": created["id"]},
        headers=auth(agency_key),
    )
    assert named.status_code == 200
    client.post(
        f"/v1/webhook-endpoints/{created['id']}", json={"disabled": True}, headers=auth(agency_key)
    )
    refused = client.post(
        f"/v1/events/{event_id}/redeliver",
        json={"endpoint": created["id"]},
        headers=auth(agency_key),
    )
    assert refused.status_code == 409
    assert refused.json is not None and refused.json["error"]["code"] == "endpoint_disabled"


def test_recover_sends_every_failed_delivery_again(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
    worker_gateway: Callable[..., Gateway],
) -> None:
    worker = worker_gateway(webhook_retry_schedule_s=(0.05,))
    created = _endpoint(client, agency_key, receiver.url())
    since = clock.rfc3339(clock.now())
    receiver.default = Answer(status=500)
    paid = [_pay(client, agency_key)["id"] for _ in range(3)]
    deliver_due(worker)
    time.sleep(0.1)
    assert deliver_due(worker).failed == 3
    receiver.default = Answer()
    path = f"/v1/webhook-endpoints/{created['id']}/recover"
    recovered = client.post(path, json={"since": since}, headers=auth(agency_key))
    assert recovered.status_code == 200, recovered.json
    assert recovered.json == {
        "object": "webhook_recovery",
        "endpoint": created["id"],
        "since": since,
        "requeued": 3,
        "has_more": False,
    }
    assert deliver_due(worker).delivered == 3
    arrived = [json.loads(p.body)["data"]["id"] for p in receiver.posts() if p.at]
    assert set(arrived) == set(paid) and len(arrived) == 9
    again = client.post(path, json={"since": since}, headers=auth(agency_key)).json
    assert again is not None and again["requeued"] == 0


def test_two_workers_at_once_send_each_event_once(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
    worker_gateway: Callable[..., Gateway],
) -> None:
    receiver.default = Answer(delay_s=0.005)
    _endpoint(client, agency_key, receiver.url())
    count = 24
    for _ in range(count):
        _pay(client, agency_key)
    workers = [worker_gateway(), worker_gateway()]
    reports = [DeliveryReport(), DeliveryReport()]
    barrier = threading.Barrier(2)

    def work(index: int) -> None:
        barrier.wait(timeout=10)
        for _ in range(200):  # bounded: stops once every event has arrived
            reports[index].add(deliver_due(workers[index], max_jobs=8))
            if len(receiver.posts()) >= count:
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = collections.Counter(p.headers["webhook-id"] for p in receiver.posts())
    assert len(ids) == count and set(ids.values()) == {1}
    assert reports[0].delivered + reports[1].delivered == count
    assert reports[0].delivered > 0 and reports[1].delivered > 0
    assert {j.status for j in _jobs(gw)} == {"succeeded"}


def test_a_worker_that_dies_after_claiming_loses_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    _endpoint(client, agency_key, receiver.url())
    paid = {_pay(client, agency_key)["id"] for _ in range(5)}
    taken, seen = claim(gw, 100)  # a worker claims the batch, then dies before sending
    assert len(taken) == seen == 5
    assert deliver_due(gw) == DeliveryReport()  # leased: no second worker takes them early
    _freeze(clock.now() + dt.timedelta(seconds=lease_s(gw.settings) + 1))
    assert deliver_due(gw).delivered == 5
    assert {json.loads(p.body)["data"]["id"] for p in receiver.posts()} == paid
    assert [j.attempts for j in _jobs(gw)] == [2] * 5


def test_a_secret_that_does_not_open_fails_the_attempt_not_the_worker(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
    worker_gateway: Callable[..., Gateway],
) -> None:
    """A worker started with another GATEWAY_ENCRYPTION_KEY signs nothing and sends nothing;
    once the right key is back, the event goes out."""
    wrong = worker_gateway(
        encryption_key="not-the-key-" + "x" * 32, webhook_retry_schedule_s=(0.05,)
    )
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    assert deliver_due(wrong) == DeliveryReport()
    (row,) = _log(client, agency_key, created["id"])
    assert row["error"]["code"] == "secret_unavailable" and row["next_attempt_at"] is not None
    assert receiver.received == []
    time.sleep(0.1)
    assert deliver_due(gw).delivered == 1
    _verify(created["secret"], receiver.posts()[0])


def test_deleting_an_endpoint_drops_what_it_was_still_owed(
    client: FlaskClient, agency_key: str, gw: Gateway, receiver: Receiver
) -> None:
    created = _endpoint(client, agency_key, receiver.url())
    _pay(client, agency_key)
    client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=auth(agency_key))
    deliver_due(gw)
    assert receiver.received == []
    (job,) = _jobs(gw)
    assert job.status == "cancelled"


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


def test_an_untrusted_certificate_is_a_tls_error(
    client: FlaskClient, agency_key: str, gw: Gateway, tmp_path: Path
) -> None:
    context = _self_signed(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    port = listener.getsockname()[1]

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                pass  # the client refuses the certificate during the handshake

    server = threading.Thread(target=serve_one, daemon=True)
    server.start()
    created = _endpoint(client, agency_key, f"https://127.0.0.1:{port}/hooks")
    _pay(client, agency_key)
    assert deliver_due(gw).retrying == 1
    server.join(timeout=5)
    listener.close()
    (row,) = _log(client, agency_key, created["id"])
    assert row["error"]["code"] == "tls", row
    assert "certificate" in row["error"]["message"].lower()
