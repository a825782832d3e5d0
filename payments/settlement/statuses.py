"""What reconciliation calls a settlement line and a report's item (API.md §5): a line's status
when it is imported, and an item's in the report, which adds the captures and refunds that no
line explains."""

from __future__ import annotations

import enum


class ItemStatus(enum.StrEnum):
    """An item's status in the reconciliation report; the first five are also a settlement
    line's when it is imported."""

    MATCHED = "matched"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    DUPLICATE = "duplicate"
    MISSING_IN_GATEWAY = "missing_in_gateway"
    MISSING_IN_SETTLEMENT = "missing_in_settlement"
    PENDING_SETTLEMENT = "pending_settlement"


# A settlement line's status at import: what the file says against the gateway's records.
LINE_STATUSES = (
    ItemStatus.MATCHED,
    ItemStatus.AMOUNT_MISMATCH,
    ItemStatus.CURRENCY_MISMATCH,
    ItemStatus.DUPLICATE,
    ItemStatus.MISSING_IN_GATEWAY,
)
STATUSES = tuple(ItemStatus)
# Neither needs a finance officer: one agrees, the other is still inside the settlement lag.
NOT_BREAKS = frozenset({ItemStatus.MATCHED, ItemStatus.PENDING_SETTLEMENT})
BREAKS = tuple(status for status in STATUSES if status not in NOT_BREAKS)
