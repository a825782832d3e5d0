"""The settlement statuses the ledger's plumbing names by their strings (suspense, audit) are
the ones reconciliation defines."""

from __future__ import annotations

from payments import suspense
from payments.settlement.statuses import DISPUTES, LINE_STATUSES, SETTLES


def test_suspense_names_the_statuses_reconciliation_defines() -> None:
    assert set(suspense.DISPUTED) == set(DISPUTES)
    assert set(suspense.EXPLAINED) == {*SETTLES, *DISPUTES}
    assert set(suspense.PAIRED) < set(LINE_STATUSES)
