"""The acquirers' settlement tolerances as `GATEWAY_SETTLEMENT_TOLERANCES` states them."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import ConfigurationError, load_settings
from config.tolerance import Tolerance, parse_tolerances


def test_each_acquirer_gets_its_amount_and_window() -> None:
    assert parse_tolerances("knet=5/1, stripe=0/2,sandbox=3") == {
        "knet": Tolerance(5, 1),
        "stripe": Tolerance(0, 2),
        "sandbox": Tolerance(3, None),
    }
    assert parse_tolerances("") == {}
    assert parse_tolerances(" , ") == {}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("knet", "not acquirer=AMOUNT"),
        ("knet=-1", "not acquirer=AMOUNT"),
        ("knet=1.5", "not acquirer=AMOUNT"),
        ("KNET=1", "not acquirer=AMOUNT"),
        ("knet=1/", "not acquirer=AMOUNT"),
        ("knet=2000000", "at most 1000000"),
        ("knet=1/61", "at most 60 days"),
        ("knet=1,knet=2", "listed twice"),
    ],
)
def test_a_list_the_gateway_cannot_follow_stops_it_at_start(
    raw: str, says: str, tmp_path: Path
) -> None:
    environ = {
        "GATEWAY_VAR_DIR": str(tmp_path),
        "GATEWAY_SETTLEMENT_TOLERANCES": raw,
    }
    with pytest.raises(ConfigurationError, match="GATEWAY_SETTLEMENT_TOLERANCES") as refused:
        load_settings(environ)
    assert says in str(refused.value)


def test_the_settings_carry_the_tolerances(tmp_path: Path) -> None:
    settings = load_settings(
        {"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_SETTLEMENT_TOLERANCES": "sandbox=5/1"}
    )
    assert settings.settlement_tolerances == {"sandbox": Tolerance(5, 1)}
    assert load_settings({"GATEWAY_VAR_DIR": str(tmp_path)}).settlement_tolerances == {}
