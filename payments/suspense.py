"""Suspense: what a settlement batch could not explain waits in `suspense:P:settlement` until a
finance officer resolves the line's break, and then leaves it by a release transaction (the
rule is `postings.suspense_release`). This module says what a resolved line releases."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments import postings
from payments.models import (
    Payment,
    ReconciliationResolution,
    Refund,
    SettlementBatch,
    SettlementLine,
)

# A line of these report statuses (API.md §5) pairs with the capture or refund it names: its
# release settles that capture or refund. Any other break's money is only a difference.
PAIRED = ("amount_mismatch", "currency_mismatch")
# A chargeback line, or its reversal, that opened or closed its payment's dispute.
DISPUTED = ("chargeback", "chargeback_reversal")
# A line of these statuses at import was booked as explained, never into suspense.
EXPLAINED = ("matched", "matched_within_tolerance", *DISPUTED)


def release(session: Session, line: SettlementLine, status: str) -> postings.Release | None:
    """What resolving `line` (a break of report status `status`) takes out of suspense; None
    for a line no batch put there (a matched line, or one imported before batches)."""
    if line.batch_id is None or line.status in EXPLAINED:
        return None
    batch = session.get(SettlementBatch, line.batch_id)
    assert batch is not None  # the foreign key
    expected_currency: str | None = None
    expected = 0
    if status in PAIRED and line.type == "refund" and line.refund_id is not None:
        refund = session.get(Refund, line.refund_id)
        assert refund is not None
        expected_currency, expected = refund.currency, -refund.amount_minor
    elif status in PAIRED and line.type == "payment" and line.payment_id is not None:
        payment = session.get(Payment, line.payment_id)
        assert payment is not None
        expected_currency, expected = payment.currency, payment.amount_captured_minor
    return postings.Release(
        line_id=line.id,
        provider=line.provider,
        agency=batch.agency_id or "",
        livemode=batch.livemode,
        currency=line.currency,
        net=line.net_minor,
        fee=line.fee_minor,
        fee_bearer=batch.fee_bearer,
        expected_currency=expected_currency,
        expected=expected,
    )


def released(session: Session) -> list[postings.Release]:
    """Every release the resolutions so far have made (for the audit)."""
    rows = session.execute(
        select(SettlementLine, ReconciliationResolution.status)
        .join(
            ReconciliationResolution,
            ReconciliationResolution.settlement_line_id == SettlementLine.id,
        )
        .where(SettlementLine.batch_id.is_not(None))
        .order_by(SettlementLine.id)
    ).all()
    found = (release(session, line, status) for line, status in rows)
    return [item for item in found if item is not None]
