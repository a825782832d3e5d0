"""Failover over a real gunicorn: a second sandbox instance configured by the operator takes
the payment the first errors on before charging; a decline never moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select

from payments.models import Attempt, Payment
from tests.e2e.conftest import BACKENDS, LiveGateway, gateway_with

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=BACKENDS)
def with_backup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    with gateway_with(
        request.param, tmp_path_factory, "failover", {"GATEWAY_SANDBOX_BACKUP": "1"}
    ) as gw:
        yield gw


def _attempts(gw: LiveGateway, payment_id: str) -> tuple[list[tuple[str, str]], dict[str, object]]:
    engine = create_engine(gw.database_url)
    try:
        with engine.connect() as conn:
            attempts = conn.execute(
                select(Attempt.provider, Attempt.status)
                .where(Attempt.payment_id == payment_id)
                .order_by(Attempt.id)
            ).all()
            routing = conn.execute(
                select(Payment.routing).where(Payment.id == payment_id)
            ).scalar_one()
    finally:
        engine.dispose()
    return [(a.provider, a.status) for a in attempts], routing


def test_an_error_before_charging_fails_over_to_the_backup(with_backup: LiveGateway) -> None:
    agency = with_backup.api("om-moh")
    payment = agency.create_payment()
    paid = agency.confirm(payment["id"], "4000000000000119")
    assert (paid["status"], paid["provider"]) == ("succeeded", "sandbox-backup")
    attempts, routing = _attempts(with_backup, payment["id"])
    assert attempts == [("sandbox", "unavailable"), ("sandbox-backup", "succeeded")]
    assert routing["providers"] == ["sandbox", "sandbox-backup"]
    assert routing["rule"] == "test-mode-sandbox"


def test_a_decline_stays_with_the_first_acquirer(with_backup: LiveGateway) -> None:
    agency = with_backup.api("om-moh")
    payment = agency.create_payment()
    declined = agency.confirm(payment["id"], "4000000000000002")
    assert (declined["status"], declined["provider"]) == ("failed", "sandbox")
    assert _attempts(with_backup, payment["id"])[0] == [("sandbox", "declined")]
