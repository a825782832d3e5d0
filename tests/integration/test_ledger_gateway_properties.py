"""Property-based, stateful test of the gateway's posting rules, on SQLite and PostgreSQL:
after any sequence of API operations (payments created, confirmed with cards that succeed,
decline or time out, captured in part, cancelled, refunded, worker passes), every agency's
payable and the acquirer's clearing account equal what the API reports captured less
refunded, the trial balance balances, and the full audit passes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from payments import clock
from payments.api.app import create_app
from payments.gateway import build_gateway
from payments.service import access
from payments.service.audit import audit
from payments.service.resolution import run_pass
from tests.conftest import PAYMENT, _truncate_postgres, auth, card, make_settings, new_agency

CARDS = {
    "succeeds": "4242424242424242",
    "declines": "4000000000000002",
    "times out": "4000000000005126",
}
SETTINGS = settings(
    max_examples=10,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _machine(database: Any, tmp_path: Path) -> type[RuleBasedStateMachine]:
    """A machine class whose every run starts from an empty database made by `database()`."""

    class Gateway(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.gw = build_gateway(make_settings(database(), tmp_path))
            self.client: FlaskClient = create_app(gw=self.gw).test_client()
            self.key = new_agency(self.gw)
            self.finance = access.create_key(self.gw, agency_id=None, role="finance")[1]
            self.payments: list[str] = []

        def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
            response = self.client.post(path, json=body or {}, headers=auth(self.key))
            assert response.status_code < 500, response.json
            return response

        @rule(amount=st.integers(1, 10**6), manual=st.booleans())
        def create(self, amount: int, manual: bool) -> None:
            body = {**PAYMENT, "amount": amount, "capture_method": "manual" if manual else None}
            created = self._post("/v1/payments", {k: v for k, v in body.items() if v})
            assert created.status_code == 201
            self.payments.append(created.json["id"])

        @precondition(lambda self: bool(self.payments))
        @rule(data=st.data(), outcome=st.sampled_from(sorted(CARDS)))
        def confirm(self, data: st.DataObject, outcome: str) -> None:
            payment = data.draw(st.sampled_from(self.payments))
            self._post(f"/v1/payments/{payment}/confirm", card(CARDS[outcome]))

        @precondition(lambda self: bool(self.payments))
        @rule(data=st.data(), share=st.sampled_from([None, 1, 2, 3]))
        def capture(self, data: st.DataObject, share: int | None) -> None:
            payment = data.draw(st.sampled_from(self.payments))
            amount = self._get(payment)["amount"]
            body = {"amount": max(1, amount * share // 4)} if share else None
            self._post(f"/v1/payments/{payment}/capture", body)

        @precondition(lambda self: bool(self.payments))
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            self._post(f"/v1/payments/{data.draw(st.sampled_from(self.payments))}/cancel")

        @precondition(lambda self: bool(self.payments))
        @rule(data=st.data(), share=st.sampled_from([None, 1, 2, 5]))
        def refund(self, data: st.DataObject, share: int | None) -> None:
            payment = data.draw(st.sampled_from(self.payments))
            captured = self._get(payment)["amount_captured"]
            body = {"amount": max(1, captured * share // 4)} if share else None
            self._post(f"/v1/payments/{payment}/refunds", body)

        @rule()
        def worker_pass(self) -> None:
            run_pass(self.gw)

        def _get(self, payment: str) -> Any:
            found = self.client.get(f"/v1/payments/{payment}", headers=auth(self.key))
            assert found.status_code == 200
            return found.json

        @invariant()
        def the_book_matches_the_payments(self) -> None:
            owed = sum(
                p["amount_captured"] - p["amount_refunded"]
                for p in (self._get(payment) for payment in self.payments)
            )
            trial = self.client.get("/v1/ledger/trial-balance", headers=auth(self.finance)).json
            assert trial is not None
            for totals in trial["currencies"].values():
                assert totals["debits"] == totals["credits"]
            balances = {row["account"]: row["balance"] for row in trial["accounts"]}
            assert balances.get("test:agency:om-moh:payable", 0) == owed
            assert balances.get("test:acquirer:sandbox:clearing", 0) == owed
            report = audit(self.gw)
            assert report.ok, report.problems

        def teardown(self) -> None:
            self.gw.db.dispose()
            clock.set_clock(None)

    return Gateway


def test_any_sequence_of_operations_keeps_the_book_tied_to_the_payments(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    runs = iter(range(10**6))

    def database() -> str:
        if database_url.startswith("sqlite"):
            path = tmp_path / f"run-{next(runs)}.db"
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
            return f"sqlite:///{path}"
        _truncate_postgres(database_url)
        return database_url

    run_state_machine_as_test(_machine(database, tmp_path), settings=SETTINGS)
