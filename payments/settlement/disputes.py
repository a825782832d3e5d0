"""Chargebacks and their reversals, as an imported settlement file states them: each matched
line opens or reverses its payment's dispute, posts the agency's side of it to the ledger
(`postings.RULES["dispute"]`, `["dispute_reversal"]`) and tells the agency with a
`payment.disputed` or `payment.dispute_reversed` event, all in the import's transaction. The
payment keeps its status (API.md §4): a dispute is money moving after the payment succeeded."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

import ledger
from payments import outbox, postings
from payments.models import Payment, Settlement, SettlementLine
from payments.settlement.statuses import DISPUTES, ItemStatus

OPEN = "open"
REVERSED = "reversed"


def apply(session: Session, settlement: Settlement, now: dt.datetime) -> int:
    """Open or reverse the dispute of every chargeback line of `settlement` the matching
    accepted, in file order; return how many."""
    lines = session.scalars(
        select(SettlementLine)
        .where(
            SettlementLine.settlement_id == settlement.id,
            SettlementLine.status.in_([status.value for status in DISPUTES]),
        )
        .order_by(SettlementLine.line_no)
    ).all()
    specs: list[ledger.TransactionSpec] = []
    for line in lines:
        assert line.payment_id is not None  # the matching named it
        payment = session.get(Payment, line.payment_id, with_for_update=True)
        assert payment is not None
        reversal = line.status == ItemStatus.CHARGEBACK_REVERSAL
        amount = abs(line.gross_minor)
        if reversal:
            payment.dispute_status = REVERSED
        else:
            payment.dispute_status, payment.dispute_amount_minor = OPEN, amount
        payment.updated_at = now
        specs.append(_spec(line, payment, amount, reversal=reversal, now=now))
        outbox.payment_event(
            session, "payment.dispute_reversed" if reversal else "payment.disputed", payment
        )
    if specs:
        ledger.post_many(session, specs, now, seal=False)  # chained after the commit
    return len(specs)


def _spec(
    line: SettlementLine, payment: Payment, amount: int, *, reversal: bool, now: dt.datetime
) -> ledger.TransactionSpec:
    what = "reversal of the chargeback" if reversal else "chargeback"
    return postings.transaction(
        "dispute_reversal" if reversal else "dispute",
        external_id=postings.dispute_id(line.id),
        description=f"{what} of {payment.id}, line {line.line_no} of {line.settlement_id}",
        amounts={"amount": amount},
        currency=payment.currency,
        livemode=payment.livemode,
        agency=payment.agency_id,
        provider=line.provider,
        effective_at=now,
        metadata={"payment": payment.id, "settlement_line": str(line.id)},
    )
