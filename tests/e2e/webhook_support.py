"""A gateway started as an operator starts it, for the webhook end-to-end tests: `gateway serve`
with loopback receivers allowed, a short retry schedule and a 1 s delivery timeout (all set
through the environment), and `gateway worker` processes the tests start, stop and kill."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.conftest import _libpq, postgres_available, postgres_base_url

GATEWAY_BIN = Path(sys.executable).parent / "gateway"
WEBHOOK_ENV = {
    "GATEWAY_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
    "GATEWAY_WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.3,0.3",
    "GATEWAY_WEBHOOK_TIMEOUT_S": "1",
}
HTTP_TIMEOUT = (5.0, 30.0)
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 25.0
CLI_TIMEOUT_S = 60.0
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [str(GATEWAY_BIN), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _seeded_keys(output: str) -> dict[str, str]:
    keys = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith("gw_"):
            keys[parts[0]] = parts[1]
    return keys


@contextlib.contextmanager
def _database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'gateway.db'}"
        return
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL does not answer at " + postgres_base_url())
        pytest.skip("PostgreSQL does not answer; set GATEWAY_TEST_POSTGRES_URL")
    name = f"gwwh_{uuid.uuid4().hex[:12]}"
    admin = _libpq(postgres_base_url())
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(postgres_base_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway serve exited:\n{log_path.read_text(errors='replace')}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(base_url + "/healthz", timeout=(1.0, 2.0)).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"gateway not healthy in time:\n{log_path.read_text(errors='replace')}")


@contextlib.contextmanager
def webhook_gateway_running(backend: str, workdir: Path) -> Iterator[WebhookGateway]:
    port = free_port()
    with _database(backend, workdir) as database_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            GATEWAY_ENV="test",
            GATEWAY_VAR_DIR=str(workdir / "var"),
            GATEWAY_DATABASE_URL=database_url,
            GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
            GATEWAY_LOG_LEVEL="INFO",
            XDG_RUNTIME_DIR=str(workdir),
            PORT=str(port),
            **WEBHOOK_ENV,
        )
        _cli(env, workdir, "db", "upgrade")
        keys = _seeded_keys(_cli(env, workdir, "demo", "seed"))
        log_path = workdir / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [str(GATEWAY_BIN), "serve", "--port", str(port), "--workers", "2", "--no-worker"],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(server, base_url, log_path)
            yield WebhookGateway(backend, workdir, env, base_url, keys)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


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
