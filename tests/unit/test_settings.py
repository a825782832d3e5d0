"""Settings come from GATEWAY_* variables; production refuses development secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigurationError, load_settings


def test_development_generates_secrets_once(tmp_path: Path) -> None:
    env = {"GATEWAY_VAR_DIR": str(tmp_path)}
    first = load_settings(env)
    second = load_settings(env)
    assert first.secret_key == second.secret_key
    assert first.secret_key.startswith("dev-")
    assert first.database_url == f"sqlite:///{tmp_path}/gateway.db"
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_refuses_development_secrets(tmp_path: Path) -> None:
    env = {
        "GATEWAY_ENV": "production",
        "GATEWAY_VAR_DIR": str(tmp_path),
        "GATEWAY_DATABASE_URL": "postgresql+psycopg://db/gateway",
        "GATEWAY_PUBLIC_URL": "https://pay.example.gov.om",
        "GATEWAY_SECRET_KEY": "dev-" + "x" * 40,
        "GATEWAY_ENCRYPTION_KEY": "y" * 40,
    }
    with pytest.raises(ConfigurationError, match="GATEWAY_SECRET_KEY"):
        load_settings(env)
    env["GATEWAY_SECRET_KEY"] = "z" * 40
    assert load_settings(env).is_production
    del env["GATEWAY_DATABASE_URL"]
    with pytest.raises(ConfigurationError, match="GATEWAY_DATABASE_URL"):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_ENV", "staging"),
        ("PORT", "eighty"),
        ("GATEWAY_WEBHOOK_ALLOW_NETWORKS", "10.0.0.0/33"),
        ("GATEWAY_ROUTING_FILE", "/nonexistent/routing.toml"),
        ("GATEWAY_SANDBOX_BACKUP", "maybe"),
        ("GATEWAY_ROUTING_LIVE_PROVIDERS", "stripe"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        load_settings({"GATEWAY_VAR_DIR": str(tmp_path), name: value})


def test_public_url_follows_port(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_VAR_DIR": str(tmp_path), "PORT": "9100"})
    assert settings.public_url == "http://127.0.0.1:9100"
    assert settings.port == 9100
