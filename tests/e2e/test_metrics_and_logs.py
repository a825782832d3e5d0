"""Metrics and logs of a real node: `gateway serve` (two gunicorn workers and the background
worker) counts every process in one `/metrics`, and its log is JSON lines that carry the
request's ids and never a card number, a security code, an API key or a webhook secret, not
even with the Stripe SDK printing its own debug log to stderr. Then
`gunicorn -c gunicorn.conf.py wsgi:app` as production runs it: refused on unsafe settings,
serving on safe ones.

Every line of the server's output is JSON, gunicorn's own (access log included) as well: the
access line names the method, path, status, time and request id, never headers or bodies.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import (
    BACKENDS,
    CVC,
    GATEWAY_BIN,
    HTTP_TIMEOUT,
    Api,
    LiveGateway,
    _stop,
    _wait_until_healthy,
    card_body,
    database_for,
    free_port,
    fresh_postgres_database,
    json_of,
    operator_env,
    parse_seed_keys,
    payment_body,
    spaced,
)
from tests.fakes.stripe_server import FakeStripeServer
from tests.integration.webhook_support import Receiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CARD = "4242424242424242"
WAIT_S = 30.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# The security code as a value of its own, not three digits inside an id or a duration.
CVC_VALUE = re.compile(rf"(?<![0-9A-Za-z._-]){CVC}(?![0-9A-Za-z_-])")
# What the access log measures in numbers of its own: a response of 737 bytes is no card data.
ACCESS_COUNTS = re.compile(r'"(?:bytes|duration_ms|status)": [0-9.]+')
# A line the Stripe SDK prints to stderr itself: `key=value` pairs, a value quoted if it has spaces.
SDK_CONSOLE_LINE = re.compile(r"(?:[a-z_]+=(?:'[^']*'|\S*) ?)+")


@contextlib.contextmanager
def serving_node(backend: str, workdir: Path, extra_env: dict[str, str]) -> Iterator[LiveGateway]:
    """`gateway serve --workers 2` with its background worker, as `make run` starts it."""
    with database_for(backend, workdir) as url:
        port = free_port()
        gw = LiveGateway(
            backend=backend,
            workdir=workdir,
            env={**operator_env(workdir, url, port), **extra_env},
            base_url=f"http://127.0.0.1:{port}",
            database_url=url,
            log_path=workdir / "server.log",
            cli_log_path=workdir / "cli.log",
        )
        gw.cli("db", "upgrade")
        gw.keys = parse_seed_keys(gw.cli("demo", "seed").stdout)
        with gw.log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(GATEWAY_BIN), "serve", "--port", str(port), "--workers", "2"],
                cwd=workdir,
                env=gw.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                _wait_until_healthy(process, gw.base_url, gw.log_path)
                yield gw
            finally:
                _stop(process)


def scrape(base_url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(base_url + "/metrics", headers=headers, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def assert_no_card_data(log: str, numbers: Iterable[str]) -> None:
    """Neither the card numbers (plain or in groups of four) nor the security code, as a value
    or a form field, anywhere in `log`."""
    for number in numbers:
        assert number not in log and spaced(number) not in log, "a card number reached the log"
    assert CVC_VALUE.search(ACCESS_COUNTS.sub("", log)) is None, "the security code reached the log"
    assert '"cvc"' not in log and '"number"' not in log
    assert "[cvc]" not in log and "%5Bcvc%5D" not in log


def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_node_counts_every_process_and_logs_json_without_secrets(
    backend: str, tmp_path: Path
) -> None:
    webhook_env = {
        "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        "GATEWAY_WEBHOOK_RETRY_SCHEDULE": "0.3,0.3",
        "GATEWAY_WEBHOOK_TIMEOUT_S": "1",
    }
    with Receiver() as receiver, serving_node(backend, tmp_path, webhook_env) as node:
        agency = node.api("om-moh")
        endpoint = agency.post(
            "/v1/webhook-endpoints", {"url": receiver.url("/hooks"), "events": ["*"]}
        )
        assert endpoint.status_code == 201, endpoint.text[:300]
        secret = str(json_of(endpoint)["secret"])
        refused = f"http://127.0.0.1:{free_port()}/down"  # nobody listens: every try fails
        assert agency.post("/v1/webhook-endpoints", {"url": refused, "events": ["*"]}).ok

        created = agency.post(
            "/v1/payments", payment_body("OMR"), headers={"X-Request-Id": "req-e2e-create"}
        )
        payment_id = str(json_of(created)["id"])
        page_url = str(json_of(created)["next_url"])
        token = page_url.rsplit("/pay/", 1)[1]
        assert requests.get(page_url, timeout=HTTP_TIMEOUT).status_code == 200
        confirmed = agency.post(f"/v1/payments/{payment_id}/confirm", card_body(CARD))
        assert json_of(confirmed)["status"] == "succeeded", confirmed.text[:300]
        refund = agency.post(f"/v1/payments/{payment_id}/refunds", {"amount": 2500})
        assert refund.status_code == 201, refund.text[:300]

        # The worker process delivers payment.succeeded and refund.succeeded to the receiver.
        receiver.wait_for(lambda seen: len([r for r in seen if r.body]) >= 2)

        def worker_counted() -> bool:
            samples = scrape(node.base_url)
            delivered = value(samples, "gateway_webhook_delivery_duration_seconds_count")
            failed = value(
                samples, "gateway_webhook_delivery_failures_total", reason="connection_refused"
            )
            return delivered >= 4 and failed >= 2

        wait_until(worker_counted, "the worker's deliveries in /metrics")
        confirm_route = "/v1/payments/<string:payment_id>/confirm"
        for _ in range(6):  # whichever gunicorn worker answers, it sums every process
            samples = scrape(node.base_url)
            requests_by = "gateway_http_requests_total"
            assert (
                value(samples, requests_by, endpoint=confirm_route, method="POST", status="200")
                == 1
            )
            assert (
                value(samples, requests_by, endpoint="/v1/payments", method="POST", status="201")
                == 1
            )
            assert value(samples, "gateway_payments_total", status="succeeded", acquirer="sandbox")
            calls = "gateway_acquirer_call_duration_seconds_count"
            assert value(samples, calls, acquirer="sandbox", call="authorize") == 1
            assert value(samples, calls, acquirer="sandbox", call="refund") == 1
            assert value(
                samples, "gateway_circuit_breaker_state", acquirer="sandbox", state="closed"
            )
            assert "gateway_webhook_backlog" in {name for name, _ in samples}
            assert not any(label.startswith("pay_") for _, pairs in samples for _, label in pairs)
        metric_files = list((node.var_dir / "metrics").glob("*.db"))
        pids = {path.stem.rsplit("_", 1)[1] for path in metric_files}
        assert len(pids) >= 2, metric_files  # a gunicorn worker and the background worker
        keys = dict(node.keys)

    log = node.server_log()
    lines = [line for line in log.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line[:300]}")
    made = next(r for r in records if r.get("message") == "payment created")
    assert made["request_id"] == "req-e2e-create"
    assert (made["agency"], made["payment"]) == ("om-moh", payment_id)
    access = [r for r in records if r.get("logger") == "gunicorn.access"]
    confirm_line = next(r for r in access if r["path"] == f"/v1/payments/{payment_id}/confirm")
    assert confirm_line["request_id"] == confirmed.headers["X-Request-Id"]
    assert confirm_line["status"] == 200

    assert_no_card_data(log, [CARD])
    for key in keys.values():
        assert key not in log, "an API key reached the log"
    assert secret.startswith("whsec_") and "whsec_" not in log
    assert token not in log, "a hosted-page link reached the log"
    assert any(r["path"] == "/pay/<token>" for r in access)


def test_the_stripe_sdks_debug_log_never_shows_card_data(tmp_path: Path) -> None:
    """`STRIPE_LOG=debug` has the Stripe SDK print each request body to stderr itself, past the
    gateway's logging; a node charging cards through Stripe still never shows one."""
    declined = "4000000000000002"
    with FakeStripeServer() as fake:
        stripe_env = {
            "GATEWAY_STRIPE_API_KEY": fake.api_key,
            "GATEWAY_STRIPE_API_BASE": fake.url,
            "STRIPE_LOG": "debug",
        }
        with serving_node("sqlite", tmp_path, stripe_env) as node:
            created = node.cli("keys", "create", "--agency", "om-moh", "--mode", "live")
            agency = node.with_key(created.stdout.strip().splitlines()[-1], "om-moh")
            paid = agency.confirm(agency.create_payment()["id"], CARD)
            refused = agency.confirm(agency.create_payment()["id"], declined)
        assert fake.errors == []
    assert (paid["status"], paid["provider"]) == ("succeeded", "stripe")
    assert (refused["status"], refused["provider"]) == ("failed", "stripe")

    log = node.server_log()
    assert "Request to Stripe api" in log, "the SDK's console log was on"
    assert_no_card_data(log, [CARD, declined])
    assert "post_data" not in log
    records = []
    for line in filter(str.strip, log.splitlines()):
        if SDK_CONSOLE_LINE.fullmatch(line) is None:  # the gateway's own lines are still JSON
            records.append(json.loads(line))
    held = "the Stripe SDK's console log is held at info: at debug it prints card data"
    assert any(r["message"] == held and r["level"] == "WARNING" for r in records)


def test_gunicorn_conf_refuses_an_unsafe_production(tmp_path: Path) -> None:
    """`gunicorn -c gunicorn.conf.py wsgi:app` in production on SQLite and plain http stops
    before serving, saying why."""
    port = free_port()
    env = {
        **operator_env(tmp_path, f"sqlite:///{tmp_path / 'gateway.db'}", port),
        "GATEWAY_ENV": "production",
        "GATEWAY_SECRET_KEY": "k" * 48,
        "GATEWAY_ENCRYPTION_KEY": "e" * 48,
        "GATEWAY_PUBLIC_URL": "https://pay.example.gov.om",
        "PORT": str(port),
    }
    done = run_gunicorn_briefly(env, tmp_path)
    assert done.returncode != 0
    said = [json.loads(line) for line in (done.stdout + done.stderr).splitlines()]
    refusal = [line["message"] for line in said if line["level"] == "ERROR"]
    assert len(refusal) == 1 and refusal[0].startswith("refusing to start"), said
    assert "SQLite" in refusal[0]


def run_gunicorn_briefly(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_gunicorn_conf_serves_a_safe_production(tmp_path: Path) -> None:
    """On PostgreSQL, behind https, with real secrets: it serves, `/metrics` included (to the
    holder of GATEWAY_METRICS_TOKEN only), under the settings' var dir, and the sandbox's 3-D
    Secure simulator is absent."""
    token = "metrics-" + "m" * 40
    with fresh_postgres_database() as url:
        port = free_port()
        env = {
            **operator_env(tmp_path, url, port),
            "GATEWAY_ENV": "production",
            "GATEWAY_SECRET_KEY": "k" * 48,
            "GATEWAY_ENCRYPTION_KEY": "e" * 48,
            "GATEWAY_PUBLIC_URL": "https://pay.example.gov.om",
            "GATEWAY_WORKERS": "2",
            "GATEWAY_METRICS_TOKEN": token,
            "PORT": str(port),
        }
        upgrade = subprocess.run(
            [str(GATEWAY_BIN), "db", "upgrade"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert upgrade.returncode == 0, upgrade.stderr[-2000:]
        log_path = tmp_path / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    str(ROOT / "gunicorn.conf.py"),
                    "wsgi:app",
                ],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                base_url = f"http://127.0.0.1:{port}"
                _wait_until_healthy(process, base_url, log_path)
                anonymous = Api(base_url, None)
                assert anonymous.send("GET", "/readyz").status_code == 200
                assert anonymous.send("GET", "/sandbox/3ds/anything").status_code == 404
                for wrong in (None, "Bearer " + "m" * 48):
                    headers = {"Authorization": wrong} if wrong else {}
                    refused = requests.get(
                        base_url + "/metrics", headers=headers, timeout=HTTP_TIMEOUT
                    )
                    assert refused.status_code == 401, refused.text[:300]
                samples = scrape(base_url, token)
                assert (
                    value(
                        samples,
                        "gateway_http_requests_total",
                        endpoint="/readyz",
                        method="GET",
                        status="200",
                    )
                    == 1
                )
                assert (tmp_path / "var" / "metrics").is_dir()
            finally:
                _stop(process)
        for line in log_path.read_text().splitlines():
            json.loads(line)
