"""Settings fail closed: a gateway with live money in reach (a live acquirer key, or live
agency keys in its database) refuses to start unless GATEWAY_ENV=production says so."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigurationError, load_settings
from payments.gateway import Gateway
from payments.service import access
from tests.conftest import new_agency

GATEWAY = Path(sys.executable).parent / "gateway"


def _development(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What `make run` gives: no GATEWAY_ENV at all."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}
    return {**env, "GATEWAY_VAR_DIR": str(tmp_path), **extra}


@pytest.mark.parametrize("key", ["sk_live_" + "a" * 24, "rk_live_" + "b" * 24])
@pytest.mark.parametrize("env", [None, "development", "test"])
def test_a_live_stripe_key_outside_production_refuses_to_start(
    tmp_path: Path, key: str, env: str | None
) -> None:
    environ = _development(tmp_path, GATEWAY_STRIPE_API_KEY=key)
    if env is not None:
        environ["GATEWAY_ENV"] = env
    with pytest.raises(ConfigurationError, match="GATEWAY_STRIPE_API_KEY is a live Stripe key"):
        load_settings(environ)
    assert load_settings({**environ, "GATEWAY_STRIPE_API_KEY": "sk_test_" + "c" * 24})


def test_a_live_key_in_the_routing_file_refuses_to_start(tmp_path: Path) -> None:
    routing = tmp_path / "routing.toml"
    routing.write_text(
        '[acquirers.stripe-om]\nadapter = "stripe"\napi_key = "sk_live_' + "d" * 24 + '"\n'
    )
    environ = _development(tmp_path, GATEWAY_ROUTING_FILE=str(routing))
    with pytest.raises(ConfigurationError, match=r"acquirers\.stripe-om\.api_key"):
        load_settings(environ)


def test_live_agency_keys_in_the_database_refuse_development(gw: Gateway) -> None:
    new_agency(gw)
    development = dataclasses.replace(gw.settings, env="development")
    access.create_key(gw, agency_id=None, role="finance")  # finance keys move no money
    access.refuse_live_keys_outside_production(development, gw.db)
    live, _secret = access.create_key(gw, agency_id="om-moh", role="agency", mode="live")
    with pytest.raises(ConfigurationError, match="GATEWAY_ENV is development"):
        access.refuse_live_keys_outside_production(development, gw.db)
    access.refuse_live_keys_outside_production(gw.settings, gw.db)  # env test: the suite's
    access.revoke_key(gw, live.id)
    access.refuse_live_keys_outside_production(development, gw.db)


def test_the_worker_refuses_to_start_on_live_keys_without_production(
    gw: Gateway, tmp_path: Path
) -> None:
    new_agency(gw)
    access.create_key(gw, agency_id="om-moh", role="agency", mode="live")
    environ = _development(
        tmp_path,
        GATEWAY_DATABASE_URL=gw.settings.database_url,
        GATEWAY_SANDBOX_DATABASE=str(tmp_path / "sandbox.db"),
    )
    ran = subprocess.run(
        [str(GATEWAY), "worker", "--once"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "live API keys" in ran.stderr and "GATEWAY_ENV=production" in ran.stderr
