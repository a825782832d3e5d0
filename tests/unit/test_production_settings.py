"""The production profile: `GATEWAY_ENV=production` refuses unsafe settings, and gunicorn's
settings come from one place for `gateway serve` and `gunicorn -c gunicorn.conf.py`."""

from __future__ import annotations

import dataclasses
import os
import runpy
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config

from config import ConfigurationError, load_settings
from payments.api.server import (
    ForwardedFor,
    GatewayServer,
    JsonLogger,
    default_workers,
    proxy_networks,
    server_options,
)

ROOT = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "GATEWAY_ENV": "production",
        "GATEWAY_VAR_DIR": str(tmp_path),
        "GATEWAY_DATABASE_URL": "postgresql+psycopg://db.internal/gateway",
        "GATEWAY_PUBLIC_URL": "https://pay.example.gov.om",
        "GATEWAY_SECRET_KEY": "k" * 48,
        "GATEWAY_ENCRYPTION_KEY": "e" * 48,
    }
    env.update(extra)
    return env


def test_a_safe_production_environment_starts(tmp_path: Path) -> None:
    settings = load_settings(production_env(tmp_path))
    assert settings.is_production
    assert settings.public_url == "https://pay.example.gov.om"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("GATEWAY_DATABASE_URL", "sqlite:////srv/gateway.db", "SQLite"),
        ("GATEWAY_PUBLIC_URL", "http://pay.example.gov.om", "https://"),
        ("GATEWAY_PUBLIC_URL", "", "https://"),
        ("GATEWAY_SECRET_KEY", "dev-" + "x" * 44, "GATEWAY_SECRET_KEY"),
        ("GATEWAY_ENCRYPTION_KEY", "short", "GATEWAY_ENCRYPTION_KEY"),
        ("GATEWAY_SANDBOX_BACKUP", "1", "sandbox-backup"),
        ("GATEWAY_SANDBOX_FAULTS", "error_before_charge=0.5", "GATEWAY_SANDBOX_FAULTS"),
        # The Stripe SDK prints to stderr itself: request bodies, card data among them.
        ("STRIPE_LOG", "debug", "STRIPE_LOG"),
        ("STRIPE_LOG", "info", "STRIPE_LOG"),
    ],
)
def test_production_refuses_unsafe_settings(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        load_settings(production_env(tmp_path, **{name: value}))
    # The same setting is allowed outside production.
    relaxed = production_env(tmp_path, **{name: value}, GATEWAY_ENV="test")
    assert not load_settings(relaxed).is_production


def test_production_refuses_a_sandbox_instance_from_the_routing_file(tmp_path: Path) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text('[acquirers.sandbox-two]\nadapter = "sandbox"\n')
    with pytest.raises(ConfigurationError, match="sandbox-two"):
        load_settings(production_env(tmp_path, GATEWAY_ROUTING_FILE=str(routing)))


def test_production_refuses_a_rule_that_sends_live_payments_to_the_sandbox(
    tmp_path: Path,
) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text('[[rules]]\nname = "everything"\nproviders = ["sandbox"]\n')
    with pytest.raises(ConfigurationError, match="everything"):
        load_settings(production_env(tmp_path, GATEWAY_ROUTING_FILE=str(routing)))
    routing.write_text('[[rules]]\nname = "test-only"\nlivemode = false\nproviders = ["sandbox"]\n')
    assert load_settings(production_env(tmp_path, GATEWAY_ROUTING_FILE=str(routing)))


def test_workers_and_trusted_proxies_come_from_the_environment() -> None:
    assert server_options({})["workers"] == 2 * (os.cpu_count() or 1) + 1 == default_workers()
    assert server_options({"GATEWAY_WORKERS": "7"})["workers"] == 7
    assert server_options({})["forwarded_allow_ips"] == ""
    proxies = {"GATEWAY_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16"}
    assert server_options(proxies)["forwarded_allow_ips"] == "10.0.0.5/32,10.1.0.0/16"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_TRUSTED_PROXIES", "*"),
        ("GATEWAY_TRUSTED_PROXIES", "10.0.0.5,*"),
        ("GATEWAY_TRUSTED_PROXIES", "load-balancer"),
        ("GATEWAY_WORKERS", "0"),
        ("GATEWAY_WORKERS", "many"),
    ],
)
def test_bad_server_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        server_options({name: value})


def test_gunicorn_conf_and_gateway_serve_use_the_same_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_WORKERS", "3")
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", "10.0.0.5")
    monkeypatch.setenv("PORT", "9123")
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    options = server_options(os.environ)
    assert {name: conf[name] for name in options} == options
    settings = load_settings({"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_ENV": "test"})
    served = GatewayServer(settings, bind="127.0.0.1:9123")
    from_file = Config()
    for name in options:
        from_file.set(name, conf[name])
    for name in options:
        assert served.cfg.settings[name].get() == from_file.settings[name].get(), name
    assert served.cfg.logger_class is from_file.logger_class is JsonLogger
    assert served.cfg.workers == 3
    assert served.cfg.forwarded_allow_ips == ["10.0.0.5/32"]
    assert served.cfg.keepalive > 0 and served.cfg.limit_request_fields <= 100


def client_address(remote: str, forwarded: str | None, trusted: str) -> str:
    """REMOTE_ADDR as the app behind `ForwardedFor` sees it."""
    seen: dict[str, str] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["address"] = environ["REMOTE_ADDR"]
        start_response("204 No Content", [])
        return []

    environ: dict[str, Any] = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    networks = proxy_networks({"GATEWAY_TRUSTED_PROXIES": trusted})
    ForwardedFor(app, networks)(environ, lambda *_: None)
    return seen["address"]


@pytest.mark.parametrize(
    ("remote", "forwarded", "seen"),
    [
        # From the load balancer: the address it saw connect.
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),
        # A client's own X-Forwarded-For is left of the balancer's entry: ignored.
        ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        # Two trusted hops (an edge proxy in the trusted network, then the balancer).
        ("10.0.0.5", "203.0.113.7, 10.1.2.3", "203.0.113.7"),
        # Straight from the internet: the header is the client's say-so, never believed.
        ("203.0.113.9", "10.0.0.1", "203.0.113.9"),
        # A hop that is not an address stops the walk at the last trusted proxy's word.
        ("10.0.0.5", "203.0.113.7, nonsense", "10.0.0.5"),
        ("10.0.0.5", None, "10.0.0.5"),
    ],
)
def test_the_client_address_comes_from_trusted_proxies_only(
    remote: str, forwarded: str | None, seen: str
) -> None:
    assert client_address(remote, forwarded, "10.0.0.5,10.1.0.0/16") == seen
    assert client_address(remote, forwarded, "") == remote


@dataclasses.dataclass
class ExitedWorker:
    """What gunicorn hands `child_exit`: the worker, of which only the pid is read."""

    pid: int


def test_a_dead_workers_live_gauges_leave_the_sums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    dead, alive = tmp_path / "gauge_livesum_4242.db", tmp_path / "gauge_livesum_4343.db"
    counted = tmp_path / "counter_4242.db"
    for path in (dead, alive, counted):
        path.write_bytes(b"")
    options = server_options({})
    options["child_exit"](None, ExitedWorker(4242))
    assert not dead.exists()
    assert alive.exists() and counted.exists()  # what it counted stays counted
