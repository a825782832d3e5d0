"""The console's pages, gathered on its one blueprint (each module adds its own views)."""

from __future__ import annotations

from payments.finance import (  # noqa: F401 - their views join the blueprint
    admin_pages,
    audit_pages,
    dashboard,
    ledger_pages,
    payment_pages,
    settlement_pages,
    signin,
)
from payments.finance.web import blp

__all__ = ["blp"]
