"""The settlement statuses the ledger's plumbing names by their strings (suspense, audit) are
the ones reconciliation defines, and the console and the workbook name each of them."""

from __future__ import annotations

from payments import suspense
from payments.finance.settlement_pages import PAGE
from payments.settlement.parsers import LINE_TYPES
from payments.settlement.report_writers import STATUS_LABELS
from payments.settlement.statuses import DISPUTES, LINE_STATUSES, SETTLES, STATUSES


def test_suspense_names_the_statuses_reconciliation_defines() -> None:
    assert set(suspense.DISPUTED) == set(DISPUTES)
    assert set(suspense.EXPLAINED) == {*SETTLES, *DISPUTES}
    assert set(suspense.PAIRED) < set(LINE_STATUSES)


def test_the_console_names_every_line_type_and_status_in_both_languages() -> None:
    for kind in LINE_TYPES:
        assert all(PAGE[f"type_{kind}"]), kind
    for status in STATUSES:
        assert all(PAGE[f"status_{status}"]), status
        assert all(STATUS_LABELS[status]), status
