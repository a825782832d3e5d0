"""Webhook configuration and the pure parts of delivery: the retry schedule and timeout from the
environment, jitter bounds, `Retry-After`, and the Standard Webhooks signature against the
independent `standardwebhooks` package."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
import standardwebhooks

from config import ConfigurationError, load_settings
from payments.webhooks import schedule, signing

CONTRACT_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)


def test_the_contract_schedule_and_timeout_are_the_defaults(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_VAR_DIR": str(tmp_path)})
    assert settings.webhook_retry_schedule_s == CONTRACT_SCHEDULE_S
    assert settings.webhook_timeout_s == 15.0


def test_the_schedule_and_timeout_come_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "GATEWAY_VAR_DIR": str(tmp_path),
            "GATEWAY_WEBHOOK_RETRY_SCHEDULE": "0.2, 1,30",
            "GATEWAY_WEBHOOK_TIMEOUT_S": "2.5",
        }
    )
    assert settings.webhook_retry_schedule_s == (0.2, 1.0, 30.0)
    assert settings.webhook_timeout_s == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_WEBHOOK_RETRY_SCHEDULE", "5,soon"),
        ("GATEWAY_WEBHOOK_RETRY_SCHEDULE", "0,5"),
        ("GATEWAY_WEBHOOK_RETRY_SCHEDULE", "-1"),
        ("GATEWAY_WEBHOOK_RETRY_SCHEDULE", "nan"),
        ("GATEWAY_WEBHOOK_RETRY_SCHEDULE", "1e9"),
        ("GATEWAY_WEBHOOK_RETRY_SCHEDULE", ",".join(["1"] * 21)),
        ("GATEWAY_WEBHOOK_TIMEOUT_S", "0"),
        ("GATEWAY_WEBHOOK_TIMEOUT_S", "61"),
        ("GATEWAY_WEBHOOK_TIMEOUT_S", "fast"),
    ],
)
def test_bad_values_stop_the_gateway(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({"GATEWAY_VAR_DIR": str(tmp_path), name: value})


def test_jitter_only_ever_lengthens_a_delay() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    for attempts, base in enumerate(CONTRACT_SCHEDULE_S, start=1):
        for _ in range(50):
            due = schedule.next_attempt_at(CONTRACT_SCHEDULE_S, attempts, now, None)
            assert due is not None
            assert base <= (due - now).total_seconds() <= base * (1 + schedule.JITTER) + 0.001
    assert schedule.next_attempt_at(CONTRACT_SCHEDULE_S, 10, now, None) is None


def test_retry_after_is_read_as_seconds_or_a_date_and_capped() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    assert schedule.retry_after_s("120", now) == 120.0
    assert schedule.retry_after_s("Tue, 01 Dec 2026 12:10:00 GMT", now) == 600.0
    assert schedule.retry_after_s("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0.0
    assert schedule.retry_after_s("9999999999", now) == schedule.MAX_RETRY_AFTER_S
    assert schedule.retry_after_s("soon", now) is None
    assert schedule.retry_after_s(None, now) is None


def test_signatures_match_the_standard_webhooks_package() -> None:
    secret = signing.new_secret()
    body = '{"id":"evt_1","type":"payment.succeeded","data":{"name":"وزارة"}}'
    when = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    ours = signing.signature_header(
        "evt_1", int(when.timestamp()), body.encode(), hmac_keys=[signing.secret_key(secret)]
    )
    assert ours == standardwebhooks.Webhook(secret).sign("evt_1", when, body)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    with pytest.raises(ValueError):
        signing.secret_key("not-a-webhook-secret")
