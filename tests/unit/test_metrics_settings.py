"""`/metrics`' settings: GATEWAY_METRICS_TOKEN (none by default, a long visible-ASCII token when
set) and GATEWAY_METRICS_SAMPLE_S (5 s by default); a bad value stops the gateway at start,
naming the variable and never repeating the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigurationError, load_settings

TOKEN = "Zq7-" + "x" * 40


def test_by_default_no_token_and_a_five_second_sample(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_VAR_DIR": str(tmp_path)})
    assert settings.metrics_token is None
    assert settings.metrics_sample_s == 5.0


def test_a_token_and_an_interval_are_read(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "GATEWAY_VAR_DIR": str(tmp_path),
            "GATEWAY_METRICS_TOKEN": f" {TOKEN}\n",  # as a secrets file often ends
            "GATEWAY_METRICS_SAMPLE_S": "0.5",
        }
    )
    assert settings.metrics_token == TOKEN
    assert settings.metrics_sample_s == 0.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_METRICS_TOKEN", "short-secret"),
        ("GATEWAY_METRICS_TOKEN", "x" * 20 + " " + "x" * 20),
        ("GATEWAY_METRICS_TOKEN", "ر" * 40),
        ("GATEWAY_METRICS_TOKEN", "x" * 257),
        ("GATEWAY_METRICS_SAMPLE_S", "0"),
        ("GATEWAY_METRICS_SAMPLE_S", "-1"),
        ("GATEWAY_METRICS_SAMPLE_S", "301"),
        ("GATEWAY_METRICS_SAMPLE_S", "nan"),
        ("GATEWAY_METRICS_SAMPLE_S", "five"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name) as refused:
        load_settings({"GATEWAY_VAR_DIR": str(tmp_path), name: value})
    if name == "GATEWAY_METRICS_TOKEN":
        assert value not in str(refused.value)
