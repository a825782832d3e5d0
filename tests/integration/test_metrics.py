"""`GET /metrics` on the app, in one process: requests by route and status, payments by status
and acquirer (counted when the transaction commits), acquirer calls and errors, circuit
breakers, and the backlogs read from the database at most once per sample interval however
often it is scraped; the metrics token when one is set; and the request's ids on every log
line written while answering it."""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from payments import clock, logs, metrics
from payments.api.app import create_app
from payments.gateway import Gateway, build_gateway
from payments.metrics import MULTIPROC_ENV
from payments.models import Payment
from payments.service import checkout
from payments.service.outcomes import move
from payments.service.resolution import run_pass
from payments.states import PaymentStatus
from providers import Card, RefundOutcome, RefundRequest, RefundResult
from tests.conftest import PAYMENT, _truncate_postgres, auth, card, make_settings, new_agency
from tests.integration.ledger_support import post, spec
from tests.integration.test_statement_budget import counting

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CONFIRM = "/v1/payments/<string:payment_id>/confirm"
READ = "/v1/payments/<string:payment_id>"


@pytest.fixture(autouse=True)
def _one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read this process's own metrics."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)


class Ticks:
    """The backlog samplers' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Iterator[Ticks]:
    source = Ticks()
    metrics.set_monotonic(source)
    yield source
    metrics.set_monotonic(None)


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def pay(client: FlaskClient, key: str, number: str, reference: str) -> dict[str, object]:
    created = client.post(
        "/v1/payments", json={**PAYMENT, "reference": reference}, headers=auth(key)
    )
    assert created.status_code == 201, created.json
    payment_id = created.json["id"]  # type: ignore[index]
    confirmed = client.post(
        f"/v1/payments/{payment_id}/confirm", json=card(number), headers=auth(key)
    )
    assert confirmed.status_code == 200, confirmed.json
    body = confirmed.json
    assert isinstance(body, dict)
    return body


def test_metrics_answer_without_a_key_in_the_text_format(client: FlaskClient) -> None:
    samples = scrape(client)
    assert value(samples, "gateway_webhook_backlog") == 0
    assert value(samples, "gateway_ledger_seal_backlog") == 0
    assert ("gateway_webhook_backlog", frozenset()) in samples


def test_requests_are_counted_by_route_never_by_path(client: FlaskClient, agency_key: str) -> None:
    before = scrape(client)
    ids = [str(pay(client, agency_key, "4242424242424242", f"R-{n}")["id"]) for n in range(2)]
    for payment_id in ids:
        assert client.get(f"/v1/payments/{payment_id}", headers=auth(agency_key)).status_code == 200
    assert client.get("/v1/payments/pay_nothing", headers=auth(agency_key)).status_code == 404
    assert client.get("/nowhere").status_code == 404
    after = scrape(client)

    def grew(**labels: str) -> float:
        name = "gateway_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew(endpoint=CONFIRM, method="POST", status="200") == 2
    assert grew(endpoint=READ, method="GET", status="200") == 2
    assert grew(endpoint=READ, method="GET", status="404") == 1
    assert grew(endpoint="unmatched", method="GET", status="404") == 1
    latency = "gateway_http_request_duration_seconds_count"
    assert (
        value(after, latency, endpoint=CONFIRM, method="POST")
        - value(before, latency, endpoint=CONFIRM, method="POST")
        == 2
    )
    labels = {v for (_, pairs) in after for (_, v) in pairs}
    assert not any(v.startswith("pay_") for v in labels), "a path, not a route, became a label"


def test_payments_and_acquirer_calls_by_outcome(client: FlaskClient, agency_key: str) -> None:
    before = scrape(client)
    paid = pay(client, agency_key, "4242424242424242", "OK-1")
    refund = client.post(
        f"/v1/payments/{paid['id']}/refunds", json={"amount": 2500}, headers=auth(agency_key)
    )
    assert refund.status_code == 201, refund.json
    assert pay(client, agency_key, "4000000000000002", "DECLINED-1")["status"] == "failed"
    assert pay(client, agency_key, "4000000000000119", "DOWN-1")["status"] == "failed"
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    moved = "gateway_payments_total"
    assert grew(moved, status="processing", acquirer="none") == 3
    assert grew(moved, status="succeeded", acquirer="sandbox") == 1
    # The decline and the unavailable acquirer both fail the payment at the sandbox.
    assert grew(moved, status="failed", acquirer="sandbox") == 2
    calls = "gateway_acquirer_call_duration_seconds_count"
    assert grew(calls, acquirer="sandbox", call="authorize") == 3
    assert grew(calls, acquirer="sandbox", call="refund") == 1
    errors = "gateway_acquirer_call_errors_total"
    assert grew(errors, acquirer="sandbox", call="authorize", error="unavailable") == 1
    assert grew(errors, acquirer="sandbox", call="refund", error="unavailable") == 0


def test_every_status_a_payment_enters_is_counted_once_per_entry(
    client: FlaskClient, agency_key: str
) -> None:
    """`created` on create, and `processing` again when a capture or a void of an
    authorisation is sent, count as every other entry does."""
    before = scrape(client)

    def create(reference: str, **extra: object) -> str:
        body = {**PAYMENT, "reference": reference, **extra}
        created = client.post("/v1/payments", json=body, headers=auth(agency_key))
        assert created.status_code == 201, created.json
        assert created.json is not None and created.json["status"] == "created"
        payment_id: str = created.json["id"]
        return payment_id

    def act(payment_id: str, action: str, body: dict[str, object], status: str) -> None:
        path = f"/v1/payments/{payment_id}/{action}"
        answer = client.post(path, json=body, headers=auth(agency_key))
        assert answer.status_code == 200, answer.json
        assert answer.json is not None and answer.json["status"] == status

    paid = create("AUTO-1")
    act(paid, "confirm", card(), "succeeded")
    captured = create("MANUAL-1", capture_method="manual")
    act(captured, "confirm", card(), "requires_capture")
    act(captured, "capture", {}, "succeeded")
    voided = create("MANUAL-2", capture_method="manual")
    act(voided, "confirm", card(), "requires_capture")
    act(voided, "cancel", {}, "cancelled")
    dropped = create("DROPPED-1")
    act(dropped, "cancel", {}, "cancelled")
    after = scrape(client)

    moved = "gateway_payments_total"
    grown: dict[tuple[str, str], float] = {}
    for (name, pairs), count in after.items():
        labels = dict(pairs)
        if name == moved and count != before.get((name, pairs), 0.0):
            grown[labels["status"], labels["acquirer"]] = count - before.get((name, pairs), 0.0)
    assert grown == {
        ("created", "none"): 4,  # every create, before any acquirer is chosen
        ("processing", "none"): 3,  # every confirm, before the acquirer answers
        ("requires_capture", "sandbox"): 2,
        ("processing", "sandbox"): 2,  # the capture and the void sent to the acquirer
        ("succeeded", "sandbox"): 2,
        ("cancelled", "sandbox"): 1,
        ("cancelled", "none"): 1,
    }


def test_status_inquiries_are_timed_as_acquirer_calls(
    client: FlaskClient, agency_key: str, gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's `status` and `refund_status` questions, and the hosted page's `status`
    question when the payer is back from 3-D Secure, each count as one acquirer call; a
    `no such charge` or `no such refund` is an answer, not an error."""
    sandbox = gw.providers.get("sandbox")
    before = scrape(client)
    # A timeout after the charge: the worker asks the acquirer once and finds it succeeded.
    timed_out = pay(client, agency_key, "4000000000005126", "TIMEOUT-1")
    assert timed_out["status"] == "processing"
    # A refund whose answer never came back: the worker asks about it; the sandbox knows no
    # refund under its key, so it fails.
    paid = pay(client, agency_key, "4242424242424242", "PAID-1")

    def lost(request: RefundRequest) -> RefundResult:
        return RefundResult(RefundOutcome.UNKNOWN, message="no answer")

    monkeypatch.setattr(sandbox, "refund", lost)
    refund = client.post(
        f"/v1/payments/{paid['id']}/refunds", json={"amount": 100}, headers=auth(agency_key)
    )
    assert refund.status_code == 201 and refund.json is not None
    assert refund.json["status"] == "pending"
    report = run_pass(gw)
    assert (report.attempts_resolved, report.refunds_resolved) == (1, 1)
    # The payer back from the acquirer's 3-D Secure page: the page asks the acquirer.
    created = client.post(
        "/v1/payments", json={**PAYMENT, "reference": "3DS-1"}, headers=auth(agency_key)
    )
    assert created.json is not None
    three_ds = Card(number="4000000000003220", exp_month=12, exp_year=2034, cvc="123")
    sent = checkout.pay_with_card(gw, created.json["id"], three_ds, return_to="https://x.om/r")
    assert sent.kind == "redirect"
    assert checkout.return_from_acquirer(gw, created.json["id"]).view.status == "processing"
    # A status question that raises is timed and counted as an exception, then handled.
    timed_out_again = pay(client, agency_key, "4000000000005126", "TIMEOUT-2")

    def broken(idempotency_key: str, reference: str | None) -> None:
        raise ConnectionError("the acquirer hung up")

    monkeypatch.setattr(sandbox, "status", broken)
    assert run_pass(gw).attempts_waiting == 1
    assert timed_out_again["status"] == "processing"
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "gateway_acquirer_call_duration_seconds_count"
    assert grew(calls, acquirer="sandbox", call="status") == 3
    assert grew(calls, acquirer="sandbox", call="refund_status") == 1
    errors = "gateway_acquirer_call_errors_total"
    assert grew(errors, acquirer="sandbox", call="status", error="exception") == 1
    assert grew(errors, acquirer="sandbox", call="status", error="unknown") == 0
    assert grew(errors, acquirer="sandbox", call="status", error="unavailable") == 0
    assert grew(errors, acquirer="sandbox", call="refund_status", error="unavailable") == 0


def test_a_status_change_rolled_back_is_not_counted(
    gw: Gateway, client: FlaskClient, agency_key: str
) -> None:
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key))
    payment_id = created.json["id"]  # type: ignore[index]
    name, labels = "gateway_payments_total", {"status": "cancelled", "acquirer": "none"}
    before = value(scrape(client), name, **labels)
    with contextlib.suppress(RuntimeError), gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        move(session, payment, PaymentStatus.CANCELLED)
        raise RuntimeError("the transaction fails after the move")
    assert value(scrape(client), name, **labels) == before
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        move(session, payment, PaymentStatus.CANCELLED)
    assert value(scrape(client), name, **labels) == before + 1


def test_an_acquirer_that_keeps_failing_opens_its_breaker(
    client: FlaskClient, agency_key: str
) -> None:
    before = scrape(client)
    for n in range(5):  # the default breaker opens after 5 unavailable answers within 60 s
        pay(client, agency_key, "4000000000000119", f"DOWN-{n}")
    after = scrape(client)
    state = "gateway_circuit_breaker_state"
    assert value(after, state, acquirer="sandbox", state="open") == 1
    assert value(after, state, acquirer="sandbox", state="closed") == 0
    moves = "gateway_circuit_breaker_transitions_total"
    labels = {"acquirer": "sandbox", "from_state": "closed", "to_state": "open"}
    assert value(after, moves, **labels) - value(before, moves, **labels) == 1


def test_a_new_breaker_starts_closed(gw: Gateway, client: FlaskClient) -> None:
    gw.breakers.for_name("metrics-probe")
    samples = scrape(client)
    state = "gateway_circuit_breaker_state"
    assert value(samples, state, acquirer="metrics-probe", state="closed") == 1
    assert value(samples, state, acquirer="metrics-probe", state="open") == 0


def test_webhook_backlog_is_read_from_the_database_again_once_the_sample_is_old(
    database_url: str, tmp_path: Path, ticks: Ticks
) -> None:
    allow = (ipaddress.ip_network("127.0.0.0/8"),)
    gw = build_gateway(
        make_settings(database_url, tmp_path, webhook_allow_networks=allow, metrics_sample_s=5.0)
    )
    try:
        client = create_app(gw=gw).test_client()
        key = new_agency(gw)
        endpoint = client.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "events": ["*"]},
            headers=auth(key),
        )
        assert endpoint.status_code == 201, endpoint.json
        assert value(scrape(client), "gateway_webhook_backlog") == 0
        pay(client, key, "4242424242424242", "HOOKED-1")
        pay(client, key, "4000000000000002", "HOOKED-2")
        with gw.db.read() as session:
            pending = session.execute(
                text("SELECT COUNT(*) FROM webhook_jobs WHERE status = 'pending'")
            ).scalar_one()
        assert pending == 2  # payment.succeeded and payment.failed
        ticks.now += 4.9
        assert value(scrape(client), "gateway_webhook_backlog") == 0  # the sample still stands
        ticks.now += 0.1
        assert value(scrape(client), "gateway_webhook_backlog") == 2
    finally:
        gw.db.dispose()


def backlog_queries(statements: list[str]) -> int:
    return sum(1 for sql in statements if "webhook_jobs" in sql)


def test_scrapes_within_the_sample_interval_ask_the_database_once(
    gw: Gateway, client: FlaskClient, ticks: Ticks
) -> None:
    assert gw.settings.metrics_sample_s == 5.0  # the default
    with counting(gw) as first:
        assert value(scrape(client), "gateway_webhook_backlog") == 0
    assert backlog_queries(first.statements) == 1, first.statements
    with counting(gw) as within:
        for _ in range(50):
            ticks.now += 0.099
            assert value(scrape(client), "gateway_ledger_seal_backlog") == 0
    assert within.statements == [], "a scrape within the interval asked the database"
    ticks.now += 0.1
    with counting(gw) as after:
        scrape(client)
        scrape(client)
    assert backlog_queries(after.statements) == 1, after.statements


def test_a_database_that_does_not_answer_is_not_asked_at_every_scrape(
    gw: Gateway, client: FlaskClient, ticks: Ticks, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = []

    def away() -> object:
        asked.append(1)
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(gw.db, "read", away)
    for _ in range(10):
        samples = scrape(client)
        assert ("gateway_webhook_backlog", frozenset()) not in samples
    assert len(asked) == 1
    ticks.now += 5.0
    scrape(client)
    assert len(asked) == 2


TOKEN = "metrics-" + "t" * 40


@pytest.fixture
def guarded(database_url: str, tmp_path: Path) -> Iterator[tuple[Gateway, FlaskClient]]:
    gw = build_gateway(make_settings(database_url, tmp_path, metrics_token=TOKEN))
    try:
        yield gw, create_app(gw=gw).test_client()
    finally:
        gw.db.dispose()


def test_with_a_token_set_metrics_answer_only_the_token(
    guarded: tuple[Gateway, FlaskClient],
) -> None:
    gw, client = guarded
    refusals = [
        {},
        {"Authorization": "Bearer " + TOKEN[:-1] + "u"},
        {"Authorization": "Bearer " + TOKEN[:-1]},
        {"Authorization": "Bearer " + TOKEN + "t"},
        {"Authorization": "Basic " + TOKEN},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
    ]
    with counting(gw) as refused_work:
        for headers in refusals:
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
            body = refused.json
            assert isinstance(body, dict) and set(body) == {"error"}
            assert body["error"]["type"] == "authentication"
            assert "gateway_" not in refused.get_data(as_text=True)
    assert refused_work.statements == [], "a refused scrape asked the database"
    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert "gateway_webhook_backlog 0.0" in allowed.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    documented = client.get("/openapi.json").json
    assert documented is not None
    operation = documented["paths"]["/metrics"]["get"]
    assert set(operation["responses"]) == {"200", "401"}
    assert operation["security"] == [{"bearer": []}]


@contextlib.contextmanager
def holding_chain_head(gw: Gateway) -> Iterator[None]:
    """Hold the chain head's row lock from another connection, as a slow sealer would."""
    with gw.db.engine.connect() as conn:
        conn.execute(text("SELECT 1 FROM ledger_chain_head WHERE id = 1 FOR UPDATE"))
        yield
        conn.rollback()


def test_ledger_seal_backlog_counts_transactions_waiting_for_the_chain(
    postgres_url: str, tmp_path: Path
) -> None:
    _truncate_postgres(postgres_url)
    gw = build_gateway(make_settings(postgres_url, tmp_path), pool_size=8)
    try:
        client = create_app(gw=gw).test_client()
        with holding_chain_head(gw):
            for n in range(3):
                post(gw, spec(f"unsealed-{n}", n + 1))
        assert value(scrape(client), "gateway_ledger_seal_backlog") == 3
    finally:
        gw.db.dispose()
        clock.set_clock(None)


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The gateway's log lines as the JSON formatter writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_log_lines_of_a_request_carry_its_request_agency_and_payment(
    client: FlaskClient, agency_key: str, json_log: io.StringIO
) -> None:
    created = client.post(
        "/v1/payments", json=PAYMENT, headers=auth(agency_key, **{"X-Request-Id": "req-create-1"})
    )
    payment_id = created.json["id"]  # type: ignore[index]
    for n in range(5):  # the fifth unavailable answer opens the breaker, which is logged
        other = client.post(
            "/v1/payments", json={**PAYMENT, "reference": f"B-{n}"}, headers=auth(agency_key)
        ).json["id"]  # type: ignore[index]
        target = payment_id if n == 4 else other
        confirmed = client.post(
            f"/v1/payments/{target}/confirm",
            json=card("4000000000000119"),
            headers=auth(agency_key, **{"X-Request-Id": f"req-confirm-{n}"}),
        )
        assert confirmed.status_code == 200
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    made = next(line for line in lines if line["message"] == "payment created")
    assert made["request_id"] == "req-create-1"
    assert (made["agency"], made["payment"]) == ("om-moh", payment_id)
    opened = next(line for line in lines if line["message"].startswith("circuit breaker"))
    assert opened["request_id"] == "req-confirm-4"
    assert (opened["agency"], opened["payment"]) == ("om-moh", payment_id)
    outside = logging.LogRecord("gateway.worker", logging.INFO, __file__, 1, "idle", (), None)
    assert set(json.loads(logs.JsonFormatter().format(outside))) == {
        "time",
        "level",
        "logger",
        "message",
    }
