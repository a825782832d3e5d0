"""Rate limit settings: limit strings, the per-agency file and the Redis URL, each
checked when the gateway starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigurationError, Settings, load_settings
from config.settings import (
    DEFAULT_RATE_LIMIT,
    DEFAULT_RATE_LIMIT_CHECKOUT,
    DEFAULT_RATE_LIMIT_CHECKOUT_POST,
    DEFAULT_RATE_LIMIT_UNAUTHENTICATED,
)

LIMIT_VARIABLES = (
    "GATEWAY_RATE_LIMIT",
    "GATEWAY_RATE_LIMIT_UNAUTHENTICATED",
    "GATEWAY_RATE_LIMIT_CHECKOUT",
    "GATEWAY_RATE_LIMIT_CHECKOUT_POST",
)


def load(tmp_path: Path, **env: str) -> Settings:
    return load_settings({"GATEWAY_VAR_DIR": str(tmp_path), **env})


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, GATEWAY_RATE_LIMIT=" ")
    assert settings.rate_limit == DEFAULT_RATE_LIMIT
    assert settings.rate_limit_unauthenticated == DEFAULT_RATE_LIMIT_UNAUTHENTICATED
    assert settings.rate_limit_checkout == DEFAULT_RATE_LIMIT_CHECKOUT
    assert settings.rate_limit_checkout_post == DEFAULT_RATE_LIMIT_CHECKOUT_POST
    assert settings.rate_limits_by_agency == ()
    assert settings.redis_url is None


def test_limits_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "GATEWAY_VAR_DIR": str(tmp_path),
            "GATEWAY_RATE_LIMIT": "50/second;1000/minute",
            "GATEWAY_RATE_LIMIT_UNAUTHENTICATED": "5 per minute",
            "GATEWAY_RATE_LIMIT_CHECKOUT": "100/minute",
            "GATEWAY_RATE_LIMIT_CHECKOUT_POST": " 10/minute ",
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert settings.rate_limit == "50/second;1000/minute"
    assert settings.rate_limit_unauthenticated == "5 per minute"
    assert settings.rate_limit_checkout == "100/minute"
    assert settings.rate_limit_checkout_post == "10/minute"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("name", LIMIT_VARIABLES)
@pytest.mark.parametrize(
    "value", ["lots", "100", "100/fortnight", "0/second", "-1/second", "100/second;often"]
)
def test_bad_limit_strings_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load(tmp_path, **{name: value})


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rate-limits.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_agency_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agencies]\nom-moh = "500/second;10000/minute"\n"sa-moi" = "20/second"\n',
    )
    settings = load(tmp_path, GATEWAY_RATE_LIMITS_FILE=path)
    assert settings.rate_limits_by_agency == (
        ("om-moh", "500/second;10000/minute"),
        ("sa-moi", "20/second"),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[agencies]\nom-moh = "often"\n', "agencies.om-moh"),
        ('[agencies]\nom-moh = "0/minute"\n', "at least 1"),
        ("[agencies]\nom-moh = 100\n", "must be a string"),
        ('[agencies]\n"OM MOH" = "1/second"\n', "not an agency id"),
        ('agencies = "om-moh"\n', "must be a table"),
        ('[agency]\nom-moh = "1/second"\n', "unknown key 'agency'"),
        ("[agencies\n", "not UTF-8 TOML"),
    ],
)
def test_a_bad_agency_file_is_refused(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError, match="GATEWAY_RATE_LIMITS_FILE") as raised:
        load(tmp_path, GATEWAY_RATE_LIMITS_FILE=path)
    assert says in str(raised.value)


def test_a_missing_agency_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load(tmp_path, GATEWAY_RATE_LIMITS_FILE=str(tmp_path / "absent.toml"))


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "memory://", "postgres://u:hunter2@db/0"]
)
def test_a_redis_url_of_another_scheme_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="GATEWAY_REDIS_URL") as raised:
        load(tmp_path, GATEWAY_REDIS_URL=url)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:secret@cache.internal:6380/2"]
)
def test_redis_urls_are_taken(tmp_path: Path, url: str) -> None:
    assert load(tmp_path, GATEWAY_REDIS_URL=url).redis_url == url
