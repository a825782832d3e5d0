"""After every flow on a server, the whole book verifies, over HTTP and with the CLI."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LiveGateway, json_of

pytestmark = [pytest.mark.e2e, pytest.mark.after_all_flows]


def test_the_ledger_verifies_on_the_database_the_flows_built(gateway: LiveGateway) -> None:
    trial = json_of(gateway.api("finance").get("/v1/ledger/trial-balance"))
    assert trial["currencies"], "the flows before this test posted nothing"
    for currency, totals in trial["currencies"].items():
        assert totals["debits"] == totals["credits"] > 0, currency
    done = gateway.cli("ledger", "verify")
    assert "ledger verified" in done.stdout
    assert "checked 0 transactions" not in done.stdout


def test_statements_run_to_the_balance(gateway: LiveGateway) -> None:
    trial = json_of(gateway.api("finance").get("/v1/ledger/trial-balance"))
    account = next(a for a in trial["accounts"] if a["account"].endswith(":payable"))
    finance = gateway.api("finance")
    path = f"/v1/ledger/accounts/{account['account']}/statement"
    first = json_of(finance.get(path, params={"currency": account["currency"], "limit": 5}))
    assert first["balance"] == account["balance"]
    assert first["data"][0]["balance_after"] == account["balance"]
    lines = list(first["data"])
    cursor = first
    for _ in range(1000):  # bounded walk to the oldest line
        if not cursor["has_more"]:
            break
        cursor = json_of(
            finance.get(
                path,
                params={
                    "currency": account["currency"],
                    "limit": 100,
                    "starting_after": lines[-1]["id"],
                },
            )
        )
        lines += cursor["data"]
    running = 0
    for line in reversed(lines):  # oldest first: a liability grows with credits
        running += line["amount"] if line["direction"] == "credit" else -line["amount"]
        assert line["balance_after"] == running
    assert running == account["balance"]
    agency = gateway.api("om-moh")
    assert agency.get(path, params={"currency": account["currency"]}).status_code == 403
