"""The gateway's audit: the ledger's own checks, plus the gateway's invariants that tie the
book to payments and refunds (an agency's payable and an acquirer's clearing account each
equal captures minus refunds, until settlement and payouts come in)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import ledger
from payments import clock
from payments.gateway import Gateway
from payments.models import Payment, Refund
from payments.postings import CLEARING, PAYABLE, account_code
from payments.states import RefundStatus

Key = tuple[str, str]  # (account code, currency)


def _expected_balances(session: Session) -> dict[Key, int]:
    expected: dict[Key, int] = defaultdict(int)
    captured = session.execute(
        select(
            Payment.agency_id,
            Payment.livemode,
            Payment.provider,
            Payment.currency,
            func.sum(Payment.amount_captured_minor),
        )
        .where(Payment.amount_captured_minor > 0)
        .group_by(Payment.agency_id, Payment.livemode, Payment.provider, Payment.currency)
    ).all()
    refunded = session.execute(
        select(
            Refund.agency_id,
            Refund.livemode,
            Refund.provider,
            Refund.currency,
            func.sum(Refund.amount_minor),
        )
        .where(Refund.status == RefundStatus.SUCCEEDED.value)
        .group_by(Refund.agency_id, Refund.livemode, Refund.provider, Refund.currency)
    ).all()
    for rows, sign in ((captured, 1), (refunded, -1)):
        for agency, livemode, provider, currency, amount in rows:
            for template, _kind in (PAYABLE, CLEARING):
                code = account_code(
                    template, livemode=bool(livemode), agency=agency, provider=provider or ""
                )
                expected[(code, currency)] += sign * int(amount)
    return expected


def audit(gw: Gateway, anchors: Sequence[ledger.Anchor] = ()) -> ledger.Report:
    """Every ledger invariant (the chain held to `anchors` too), then every payable and
    clearing account against the payments."""
    with gw.db.snapshot() as session:  # the book and the payments as of one moment
        report = ledger.verify(session, now=clock.now(), anchors=anchors)
        book = ledger.trial_balance(session)
        expected = _expected_balances(session)
    actual = {
        (a.code, a.currency): a.balance_minor
        for a in book.accounts
        if a.code.removeprefix("test:").startswith(("agency:", "acquirer:"))
    }
    for key in sorted(set(actual) | set(expected)):
        if actual.get(key, 0) != expected.get(key, 0):
            report.add(
                "gateway",
                f"account {key[0]} {key[1]}",
                f"balance {actual.get(key, 0)}, but captures - refunds = {expected.get(key, 0)}",
            )
    for currency, (debits, credits) in book.totals.items():
        if debits != credits:
            report.add("trial balance", currency, f"debits {debits} != credits {credits}")
    return report
