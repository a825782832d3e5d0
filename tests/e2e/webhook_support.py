"""A gateway started as an operator starts it, for the webhook end-to-end tests: `gateway serve`
with loopback receivers allowed, a short retry schedule and a 1 s delivery timeout (all set
through the environment), and `gateway worker` processes the tests start, stop and kill."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from tests.e2e.conftest import database_for, running_gateway

GATEWAY_BIN = Path(sys.executable).parent / "gateway"
WEBHOOK_ENV = {
    "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
    "GATEWAY_WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.3,0.3",
    "GATEWAY_WEBHOOK_TIMEOUT_S": "1",
}
HTTP_TIMEOUT = (5.0, 30.0)
STOP_TIMEOUT_S = 25.0
WAIT_S = 20.0


@dataclasses.dataclass(frozen=True)
class Caller:
    """An agency's backend: its key against the server."""

    base_url: str
    key: str

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        return requests.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=HTTP_TIMEOUT,
        )

    def ok(self, method: str, path: str, json: Any = None, status: int = 200) -> dict[str, Any]:
        response = self.call(method, path, json)
        assert response.status_code == status, (path, response.status_code, response.text[:500])
        body: dict[str, Any] = response.json()
        return body

    def pay(self, currency: str, number: str = "4242424242424242", **fields: Any) -> dict[str, Any]:
        created = self.ok(
            "POST",
            "/v1/payments",
            {
                "amount": 12500,
                "currency": currency,
                "reference": f"WH-{uuid.uuid4().hex[:12]}",
                "description": "Webhook test fee",
                "return_url": "https://agency.example/done",
                **fields,
            },
            status=201,
        )
        card = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "737"}
        return self.ok(
            "POST",
            f"/v1/payments/{created['id']}/confirm",
            {"payment_method": {"type": "card", "card": card}},
        )

    def deliveries(self, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
        response = self.call(
            "GET",
            f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
            params={"limit": 100, **params},
        )
        assert response.status_code == 200, response.text[:500]
        rows: list[dict[str, Any]] = response.json()["data"]
        return rows


class Worker:
    """One `gateway worker` process."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GATEWAY_BIN), "worker"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: the worker dies wherever it is, with nothing cleaned up."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclasses.dataclass
class WebhookGateway:
    backend: str
    workdir: Path
    env: dict[str, str]
    base_url: str
    keys: dict[str, str]

    def caller(self, agency: str) -> Caller:
        return Caller(self.base_url, self.keys[agency])


@contextlib.contextmanager
def webhook_gateway_running(backend: str, workdir: Path) -> Iterator[WebhookGateway]:
    """The shared e2e server, started with the webhook settings above."""
    with (
        database_for(backend, workdir) as url,
        running_gateway(backend, workdir, url, extra_env=WEBHOOK_ENV) as live,
    ):
        yield WebhookGateway(backend, workdir, live.env, live.base_url, live.keys)


@contextlib.contextmanager
def workers_of(gw: WebhookGateway) -> Iterator[Callable[..., Worker]]:
    """Start workers with the server's environment (entries given override it); every worker
    still running is stopped at the end."""
    started: list[Worker] = []

    def start(**env: str) -> Worker:
        worker = Worker({**gw.env, **env}, gw.workdir, gw.workdir / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")
