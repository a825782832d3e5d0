"""What reconciliation calls a settlement line and a report's item (API.md §5): a line's status
when it is imported, and an item's in the report, which adds the captures and refunds that no
line explains."""

from __future__ import annotations

import enum


class ItemStatus(enum.StrEnum):
    """An item's status in the reconciliation report; all but the last two are also a
    settlement line's when it is imported."""

    MATCHED = "matched"
    MATCHED_WITHIN_TOLERANCE = "matched_within_tolerance"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    DUPLICATE = "duplicate"
    MISSING_IN_GATEWAY = "missing_in_gateway"
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSAL = "chargeback_reversal"
    MISSING_IN_SETTLEMENT = "missing_in_settlement"
    PENDING_SETTLEMENT = "pending_settlement"


# A settlement line's status at import: what the file says against the gateway's records.
LINE_STATUSES = tuple(
    status
    for status in ItemStatus
    if status not in (ItemStatus.MISSING_IN_SETTLEMENT, ItemStatus.PENDING_SETTLEMENT)
)
STATUSES = tuple(ItemStatus)
# A line of these statuses settles the capture or refund it names: its money is explained.
SETTLES = (ItemStatus.MATCHED, ItemStatus.MATCHED_WITHIN_TOLERANCE)
# A line of these is a chargeback or its reversal, matched to its payment's dispute.
DISPUTES = (ItemStatus.CHARGEBACK, ItemStatus.CHARGEBACK_REVERSAL)
# None needs a finance officer: they agree (within the acquirer's tolerance), are a dispute the
# agency is told of, or are still inside the settlement lag.
NOT_BREAKS = frozenset({*SETTLES, *DISPUTES, ItemStatus.PENDING_SETTLEMENT})
BREAKS = tuple(status for status in STATUSES if status not in NOT_BREAKS)
