"""A real gateway, started the way an operator starts it, driven over HTTP.

Per backend (a SQLite file, and a PostgreSQL database created for the run and dropped after
it) the `gateway` fixture runs `gateway db upgrade` and `gateway demo seed` in a temp dir,
starts `gateway serve` (gunicorn, two workers) on a free port and stops it at the end of the
session. The helpers below speak to it as a ministry backend would, and check on every
response what API.md promises of every response: an `X-Request-Id` and, for errors, the
one error shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import requests
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.conftest import _libpq, postgres_available, postgres_base_url
from tests.e2e import browser as chromium_for_tests

if TYPE_CHECKING:
    from playwright.sync_api import Browser

BACKENDS = ("sqlite", "postgresql")
GATEWAY_BIN = Path(sys.executable).parent / "gateway"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 25.0  # gunicorn's graceful_timeout is 20 s
CLI_TIMEOUT_S = 60.0
HTTP_TIMEOUT = (5.0, 30.0)  # connect, read
MAX_PAGES = 50  # bound on any walk through a paginated list
RACE_TIMEOUT_S = 60.0

# The demo agencies `gateway demo seed` creates, each with its one currency.
AGENCY_CURRENCIES = {
    "sa-moj": "SAR",
    "ae-icp": "AED",
    "kw-moi": "KWD",
    "qa-moph": "QAR",
    "bh-lmra": "BHD",
    "om-moh": "OMR",
}
SEEDED = (*AGENCY_CURRENCIES, "finance")

# Every sandbox card of API.md: number -> (status, failure code, brand).
SANDBOX_CARDS: dict[str, tuple[str, str | None, str]] = {
    "4242424242424242": ("succeeded", None, "visa"),
    "5555555555554444": ("succeeded", None, "mastercard"),
    "4000000000000002": ("failed", "card_declined", "visa"),
    "4000000000009995": ("failed", "insufficient_funds", "visa"),
    "4000000000000069": ("failed", "expired_card", "visa"),
    "4000000000000119": ("failed", "provider_unavailable", "visa"),
    "4000000000005126": ("processing", None, "visa"),
}
TIMEOUT_CARD = "4000000000005126"
CVC = "737"

# API.md section 2: the HTTP status of each error type.
ERROR_TYPES_BY_STATUS = {
    400: {"invalid_request"},
    401: {"authentication"},
    403: {"permission"},
    404: {"not_found"},
    405: {"invalid_request"},
    409: {"conflict"},
    413: {"invalid_request"},
    422: {"invalid_request"},
    429: {"rate_limited"},
    500: {"internal"},
    502: {"provider"},
    503: {"unavailable"},
}
ERROR_KEYS_REQUIRED = {"type", "code", "message"}
ERROR_KEYS_ALLOWED = ERROR_KEYS_REQUIRED | {"param", "details", "request_id"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
KEY_LINE = re.compile(r"^  (\S+)\s+(gw_(?:test|live|fin)_[A-Za-z0-9]+)\s*$")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "after_all_flows: run after every other e2e test of the same backend"
    )


def _backend_of(item: pytest.Item) -> object:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("gateway")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move `after_all_flows` tests behind every other test on the same server."""
    last = [item for item in items if item.get_closest_marker("after_all_flows")]
    if not last:
        return
    rest = [item for item in items if not item.get_closest_marker("after_all_flows")]
    for item in last:
        backend = _backend_of(item)
        same = [n for n, other in enumerate(rest) if _backend_of(other) == backend]
        rest.insert((same[-1] + 1) if same else len(rest), item)
    items[:] = rest


# --------------------------------------------------------------------------- HTTP


def json_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert isinstance(body, dict), f"expected a JSON object, got {body!r}"
    return body


def check_error_shape(response: requests.Response) -> dict[str, Any]:
    """The error shape of API.md section 2; returns the inner `error` object."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        response.status_code,
        response.headers.get("Content-Type"),
        response.text[:300],
    )
    body = json_of(response)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert ERROR_KEYS_REQUIRED <= set(error) <= ERROR_KEYS_ALLOWED, error
    for key in ERROR_KEYS_REQUIRED:
        assert isinstance(error[key], str) and error[key], (key, error)
    expected_types = ERROR_TYPES_BY_STATUS.get(response.status_code)
    assert expected_types is not None, f"undocumented error status {response.status_code}"
    assert error["type"] in expected_types, (response.status_code, error)
    if "param" in error:
        assert isinstance(error["param"], str) and error["param"], error
    if "details" in error:
        details = error["details"]
        assert isinstance(details, dict) and details, error
        for field, messages in details.items():
            assert isinstance(field, str)
            assert isinstance(messages, list) and messages, error
            assert all(isinstance(m, str) and m for m in messages), error
        if "param" in error:
            assert error["param"] in details, error
    if "request_id" in error:
        assert error["request_id"] == response.headers["X-Request-Id"], error
    assert "Traceback" not in response.text
    return error


def check_response(response: requests.Response) -> None:
    """What API.md promises of every response."""
    assert response.headers.get("X-Request-Id"), "every response carries X-Request-Id"
    if response.status_code >= 400:
        check_error_shape(response)


def expect_error(
    response: requests.Response, status: int, type_: str, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    error = check_error_shape(response)
    assert error["type"] == type_, error
    if code is not None:
        assert error["code"] == code, error
    return error


@dataclasses.dataclass(frozen=True)
class Api:
    """One caller of the gateway: an API key (or none) against a base URL."""

    base_url: str
    key: str | None
    agency: str | None = None

    @property
    def currency(self) -> str:
        assert self.agency is not None, "a finance or anonymous caller has no currency"
        return AGENCY_CURRENCIES[self.agency]

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> requests.Response:
        """The bare request, without checks (safe to call from any thread)."""
        sent: dict[str, str] = {}
        if self.key is not None:
            sent["Authorization"] = f"Bearer {self.key}"
        sent.update(headers or {})
        return requests.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers=sent,
            data=data,
            timeout=HTTP_TIMEOUT,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> requests.Response:
        response = self.send(method, path, json=json, params=params, headers=headers, data=data)
        check_response(response)
        return response

    def get(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.request("GET", path, params=params, headers=headers)

    def post(
        self,
        path: str,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.request("POST", path, json=json, headers=headers)

    # ---- conveniences that assert the happy path

    def ok(self, path: str, *, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text[:500])
        return json_of(response)

    def create_payment(self, **fields: Any) -> dict[str, Any]:
        response = self.post("/v1/payments", payment_body(self.currency, **fields))
        assert response.status_code == 201, response.text[:500]
        return json_of(response)

    def confirm(self, payment_id: str, number: str, **card_fields: Any) -> dict[str, Any]:
        response = self.post(f"/v1/payments/{payment_id}/confirm", card_body(number, **card_fields))
        assert response.status_code == 200, response.text[:500]
        body = json_of(response)
        assert body["id"] == payment_id
        return body

    def payable(self, currency: str) -> int:
        """What the gateway owes this agency in `currency` (0 before any capture)."""
        body = self.ok("/v1/balance")
        found = [b["payable"] for b in body["balances"] if b["currency"] == currency]
        assert len(found) <= 1, body
        return int(found[0]) if found else 0

    def list_all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a list, walking `starting_after` (bounded)."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 100, **(params or {})}
        for _ in range(MAX_PAGES):
            page = self.ok(path, params=query)
            assert page["object"] == "list", page
            assert isinstance(page["has_more"], bool), page
            items.extend(page["data"])
            if not page["has_more"]:
                return items
            query["starting_after"] = page["data"][-1]["id"]
        raise AssertionError(f"{path}: more than {MAX_PAGES} pages")

    def events_for(self, object_id: str, type_: str) -> list[dict[str, Any]]:
        return [
            event
            for event in self.list_all("/v1/events", {"type": type_})
            if event["data"]["id"] == object_id
        ]


def race(count: int, call: Callable[[], requests.Response]) -> list[requests.Response]:
    """`count` threads, released together by a barrier, each sending one request; the
    responses once all are back (bounded by RACE_TIMEOUT_S). Checks run in the caller."""
    barrier = threading.Barrier(count, timeout=RACE_TIMEOUT_S / 2)
    responses: list[requests.Response] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait()
            response = call()
        except BaseException as exc:  # re-raised in the caller's thread below
            with lock:
                failures.append(exc)
            return
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + RACE_TIMEOUT_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "requests did not finish in time"
    assert failures == [], failures
    assert len(responses) == count
    for response in responses:
        check_response(response)
    return responses


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def payment_body(currency: str, **fields: Any) -> dict[str, Any]:
    """A valid create body with a fresh reference; `fields` override or add."""
    body: dict[str, Any] = {
        "amount": 12500,
        "currency": currency,
        "reference": unique("E2E"),
        "description": "Medical certificate fee",
        "return_url": "https://agency.example/done",
    }
    body.update(fields)
    return body


def card_body(number: str, **card_fields: Any) -> dict[str, Any]:
    card: dict[str, Any] = {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": CVC}
    card.update(card_fields)
    return {"payment_method": {"type": "card", "card": card}}


def spaced(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


# --------------------------------------------------------------------------- the server


@dataclasses.dataclass
class LiveGateway:
    """A running `gateway serve` and what an operator knows about it."""

    backend: str
    workdir: Path
    env: dict[str, str]
    base_url: str
    database_url: str
    log_path: Path
    cli_log_path: Path
    keys: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def var_dir(self) -> Path:
        return Path(self.env["GATEWAY_VAR_DIR"])

    @property
    def sqlite_path(self) -> Path | None:
        url = make_url(self.database_url)
        return Path(url.database or "") if url.get_backend_name() == "sqlite" else None

    def api(self, who: str | None) -> Api:
        """A caller holding the seeded key of `who` (an agency id or `finance`), or no key."""
        if who is None:
            return Api(self.base_url, None)
        return Api(self.base_url, self.keys[who], who if who in AGENCY_CURRENCIES else None)

    def with_key(self, key: str, agency: str | None = None) -> Api:
        return Api(self.base_url, key, agency)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `gateway ARGS` with the server's environment, as the operator would."""
        done = subprocess.run(
            [str(GATEWAY_BIN), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        with self.cli_log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ gateway {' '.join(args)}\n{done.stdout}{done.stderr}")
        if check and done.returncode != 0:
            pytest.fail(
                f"gateway {' '.join(args)} exited with {done.returncode}\n"
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"
            )
        return done

    def server_log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def parse_seed_keys(output: str) -> dict[str, str]:
    keys = {}
    for line in output.splitlines():
        match = KEY_LINE.match(line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys


def operator_env(workdir: Path, database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_") and k != "PORT"}
    env.update(
        GATEWAY_ENV="test",
        GATEWAY_VAR_DIR=str(workdir / "var"),
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{port}",
        GATEWAY_LOG_LEVEL="INFO",
        # The suite calls from one address faster than any client: limits have their own tests.
        GATEWAY_RATE_LIMIT_UNAUTHENTICATED="100000/second",
        # gunicorn opens a control socket under $XDG_RUNTIME_DIR (else ~/.gunicorn): keep
        # it inside the temp dir so the run leaves nothing behind and meets no other server.
        XDG_RUNTIME_DIR=str(workdir),
    )
    return env


@contextlib.contextmanager
def database_for(backend: str, workdir: Path) -> Iterator[str]:
    """A SQLite file in `workdir`, or a fresh PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'gateway.db'}"
    else:
        with fresh_postgres_database() as url:
            yield url


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the PostgreSQL server, dropped afterwards."""
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL does not answer at " + postgres_base_url())
        pytest.skip("PostgreSQL does not answer; set GATEWAY_TEST_POSTGRES_URL")
    name = f"gwe2e_{uuid.uuid4().hex[:12]}"
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


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            pytest.fail(f"gateway serve exited with {process.returncode}:\n{log}")
        try:
            response = requests.get(base_url + "/healthz", timeout=(1.0, 2.0))
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    pytest.fail(
        f"gateway not healthy within {STARTUP_TIMEOUT_S} s ({last_error}):\n"
        + log_path.read_text(errors="replace")
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL to the group we started."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # our own session: the master and workers
        process.wait(timeout=10)


@contextlib.contextmanager
def running_gateway(
    backend: str, workdir: Path, database_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[LiveGateway]:
    port = free_port()
    gw = LiveGateway(
        backend=backend,
        workdir=workdir,
        env={**operator_env(workdir, database_url, port), **(extra_env or {})},
        base_url=f"http://127.0.0.1:{port}",
        database_url=database_url,
        log_path=workdir / "server.log",
        cli_log_path=workdir / "cli.log",
    )
    assert "up to date" in gw.cli("db", "upgrade").stdout
    gw.keys = parse_seed_keys(gw.cli("demo", "seed").stdout)
    assert set(gw.keys) == set(SEEDED), gw.keys
    with gw.log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(GATEWAY_BIN), "serve", "--port", str(port), "--workers", "2", "--no-worker"],
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


@contextlib.contextmanager
def gateway_with(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LiveGateway]:
    """A server of its own on a fresh database, started with operator settings `extra_env`."""
    workdir = tmp_path_factory.mktemp(f"{name}-{backend}")
    with (
        database_for(backend, workdir) as url,
        running_gateway(backend, workdir, url, extra_env) as gw,
    ):
        yield gw


@pytest.fixture(scope="session", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    """`gateway serve` on a fresh database of each backend, shared by the e2e tests."""
    backend: str = request.param
    workdir = tmp_path_factory.mktemp(f"e2e-{backend}")
    with database_for(backend, workdir) as url, running_gateway(backend, workdir, url) as gw:
        yield gw


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One Chromium for the whole run, shared by every page's browser tests (Playwright's
    synchronous API runs one instance at a time); each test gets its own context."""
    missing = chromium_for_tests.unavailable()
    if missing is not None:
        pytest.fail(missing)
    with chromium_for_tests.chromium() as launched:
        yield launched
