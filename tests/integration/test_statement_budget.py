"""The hot path's database work, counted: creating and confirming a payment may not take more
statements or transactions than the budget below, so that a change that adds a round trip says
so here, naming the statements. Statements run on the driver's own cursor (`statements.driver`)
are counted too: on PostgreSQL a ledger posting is one of them, a call of `ledger_post`; on
SQLite it is written statement by statement in-process."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from payments.gateway import Gateway
from tests.conftest import PAYMENT, auth, card

# (statements, transactions) per request, with an API key the process verified a moment ago.
BUDGET = {
    ("postgresql", "create"): (1, 1),
    ("postgresql", "confirm"): (9, 2),
    ("postgresql", "create keyed"): (2, 1),
    ("postgresql", "confirm keyed"): (11, 2),
    ("sqlite", "create"): (2, 1),
    # SQLite writes a ledger posting as ten statements in-process (no round trips), and
    # BEGIN IMMEDIATE is a statement.
    ("sqlite", "confirm"): (20, 2),
    ("sqlite", "create keyed"): (3, 1),
    ("sqlite", "confirm keyed"): (22, 2),
}


@dataclasses.dataclass
class Counted:
    statements: list[str] = dataclasses.field(default_factory=list)
    transactions: int = 0


@contextlib.contextmanager
def counting(gw: Gateway) -> Iterator[Counted]:
    counted = Counted()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        counted.statements.append(" ".join(sql.split())[:120])

    def begin(_conn: Any) -> None:
        counted.transactions += 1

    event.listen(gw.db.engine, "before_cursor_execute", statement)
    event.listen(gw.db.engine, "begin", begin)
    try:
        yield counted
    finally:
        event.remove(gw.db.engine, "before_cursor_execute", statement)
        event.remove(gw.db.engine, "begin", begin)


def _within(backend: str, what: str, counted: Counted) -> None:
    statements, transactions = BUDGET[(backend, what)]
    listing = "\n  ".join(counted.statements)
    assert len(counted.statements) <= statements, (
        f"{what} on {backend}: {len(counted.statements)} statements, budget {statements}:\n  "
        f"{listing}"
    )
    assert counted.transactions <= transactions, (
        f"{what} on {backend}: {counted.transactions} transactions, budget {transactions}"
    )


@pytest.mark.parametrize("keyed", [False, True], ids=["without keys", "with Idempotency-Keys"])
def test_create_and_confirm_stay_within_their_statement_budget(
    client: FlaskClient, gw: Gateway, agency_key: str, keyed: bool
) -> None:
    backend = gw.db.dialect
    suffix = " keyed" if keyed else ""

    def headers(n: int) -> dict[str, str]:
        return auth(agency_key, **({"Idempotency-Key": f"budget-{n}"} if keyed else {}))

    # A first payment verifies the key and opens the ledger's accounts.
    warm = client.post("/v1/payments", json=PAYMENT, headers=headers(-1))
    assert warm.status_code == 201 and warm.json is not None, warm.get_data(as_text=True)
    warmed = client.post(f"/v1/payments/{warm.json['id']}/confirm", json=card(), headers=headers(0))
    assert warmed.status_code == 200, warmed.get_data(as_text=True)
    with counting(gw) as created:
        response = client.post("/v1/payments", json=PAYMENT, headers=headers(1))
    assert response.status_code == 201 and response.json is not None
    with counting(gw) as confirmed:
        paid = client.post(
            f"/v1/payments/{response.json['id']}/confirm", json=card(), headers=headers(2)
        )
    assert paid.status_code == 200 and paid.json is not None
    assert paid.json["status"] == "succeeded"
    print(
        f"\n{backend}{suffix}: create {len(created.statements)} statements in "
        f"{created.transactions} transactions, confirm {len(confirmed.statements)} in "
        f"{confirmed.transactions}"
    )
    _within(backend, "create" + suffix, created)
    _within(backend, "confirm" + suffix, confirmed)
