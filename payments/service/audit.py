"""The gateway's audit: the ledger's own checks, plus the gateway's invariants that tie the
book to payments, refunds, settlement batches and payouts (DESIGN.md, "The ledger"):
an agency's payable = captures - refunds - fees it bore - payouts - chargebacks + their
reversals; an acquirer's clearing account = captures - refunds - chargebacks + reversals - the
gross its batches settled (a refund's or a chargeback's adds back); its settlement bank
account = the batches' net - payouts; its suspense account = what its batches could not
explain, less what resolved breaks released; its fee expense = fees the gateway bore; its
settlement differences = the drift of lines matched within tolerance, and what released
breaks made. Lines imported before batches count as the one-line batches they were posted
as."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import ledger
from payments import clock, postings, suspense
from payments.gateway import Gateway
from payments.models import Payment, Payout, Refund, SettlementBatch, SettlementLine
from payments.postings import (
    CLEARING,
    DIFFERENCES,
    FEES,
    PAYABLE,
    SETTLEMENT,
    SUSPENSE,
    account_code,
)
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
    # A chargeback line's gross is negative, its reversal's positive: each moved the agency's
    # payable and the acquirer's clearing by it (`postings.RULES["dispute"]`).
    disputed = session.execute(
        select(
            SettlementLine.agency_id,
            SettlementLine.livemode,
            SettlementLine.provider,
            SettlementLine.currency,
            func.sum(SettlementLine.gross_minor),
        )
        .where(SettlementLine.status.in_(suspense.DISPUTED))
        .group_by(
            SettlementLine.agency_id,
            SettlementLine.livemode,
            SettlementLine.provider,
            SettlementLine.currency,
        )
    ).all()
    for disputed_agency, disputed_mode, provider, currency, gross in disputed:
        for template, _kind in (PAYABLE, CLEARING):
            code = account_code(
                template,
                livemode=bool(disputed_mode),
                agency=disputed_agency or "",
                provider=provider,
            )
            expected[(code, currency)] += int(gross)
    _settled(session, expected)
    return expected


def _settled(session: Session, expected: dict[Key, int]) -> None:
    """What settlement batches, matched lines imported before batches, and payouts moved,
    added to `expected`."""
    _batches(session, expected)
    _releases(session, expected)
    lines = session.execute(
        select(
            SettlementLine.agency_id,
            SettlementLine.livemode,
            SettlementLine.provider,
            SettlementLine.currency,
            SettlementLine.type,
            SettlementLine.fee_bearer,
            func.sum(SettlementLine.gross_minor),
            func.sum(SettlementLine.fee_minor),
            func.sum(SettlementLine.net_minor),
        )
        .where(SettlementLine.status == "matched", SettlementLine.batch_id.is_(None))
        .group_by(
            SettlementLine.agency_id,
            SettlementLine.livemode,
            SettlementLine.provider,
            SettlementLine.currency,
            SettlementLine.type,
            SettlementLine.fee_bearer,
        )
    ).all()
    for agency, livemode, provider, currency, kind, bearer, gross, fee, net in lines:
        live = bool(livemode)
        clearing = account_code(CLEARING[0], livemode=live, provider=provider)
        bank = account_code(SETTLEMENT[0], livemode=live, provider=provider)
        expected[(clearing, currency)] -= int(gross)
        if kind == "refund":
            expected[(bank, currency)] += int(gross)
            continue
        expected[(bank, currency)] += int(net)
        if bearer == "agency":
            payable = account_code(PAYABLE[0], livemode=live, agency=agency or "")
            expected[(payable, currency)] -= int(fee)
        else:
            fees = account_code(FEES[0], livemode=live, provider=provider)
            expected[(fees, currency)] += int(fee)
    payouts = session.execute(
        select(
            Payout.agency_id,
            Payout.livemode,
            Payout.provider,
            Payout.currency,
            func.sum(Payout.amount_minor),
        ).group_by(Payout.agency_id, Payout.livemode, Payout.provider, Payout.currency)
    ).all()
    for agency, livemode, provider, currency, amount in payouts:
        for template in (PAYABLE[0], SETTLEMENT[0]):
            code = account_code(template, livemode=bool(livemode), agency=agency, provider=provider)
            expected[(code, currency)] -= int(amount)


def _batches(session: Session, expected: dict[Key, int]) -> None:
    """Each batch's legs, from its own figures (the ledger's postings must match them)."""
    batch = SettlementBatch
    rows = session.execute(
        select(
            batch.agency_id,
            batch.livemode,
            batch.provider,
            batch.currency,
            batch.fee_bearer,
            func.sum(
                batch.captured_minor
                - batch.refunded_minor
                - batch.chargebacks_minor
                + batch.reversals_minor
            ),
            func.sum(batch.fees_minor),
            func.sum(batch.differences_minor),
            func.sum(batch.suspense_in_minor - batch.suspense_out_minor),
            func.sum(batch.net_minor),
        ).group_by(
            batch.agency_id, batch.livemode, batch.provider, batch.currency, batch.fee_bearer
        )
    ).all()
    for agency, livemode, provider, currency, bearer, gross, fees, drift, unexplained, net in rows:
        legs = [
            (CLEARING[0], -int(gross)),
            (DIFFERENCES[0], -int(drift)),
            (SETTLEMENT[0], int(net)),
            (SUSPENSE[0], -int(unexplained)),
            (PAYABLE[0], -int(fees)) if bearer == "agency" else (FEES[0], int(fees)),
        ]
        for template, amount in legs:
            code = account_code(
                template, livemode=bool(livemode), agency=agency or "", provider=provider
            )
            expected[(code, currency)] += amount


def _releases(session: Session, expected: dict[Key, int]) -> None:
    """What resolved breaks took out of suspense, by the release rule's own legs."""
    for freed in suspense.released(session):
        spec = postings.suspense_release(freed, description="", effective_at=clock.now())
        for entry in spec.entries:
            sign = 1 if (entry.direction is ledger.Direction.DEBIT) else -1
            normal = 1 if entry.account.kind.debit_normal else -1
            expected[(entry.account.code, entry.account.currency)] += (
                sign * normal * entry.amount_minor
            )


def audit(gw: Gateway, anchors: Sequence[ledger.Anchor] = ()) -> ledger.Report:
    """Every ledger invariant (the chain held to `anchors` too), then every payable and
    clearing, settlement and fee account against the payments, settlements and payouts."""
    with gw.db.snapshot() as session:  # the book and the payments as of one moment
        report = ledger.verify(session, now=clock.now(), anchors=anchors)
        book = ledger.trial_balance(session)
        expected = _expected_balances(session)
    actual = {
        (a.code, a.currency): a.balance_minor
        for a in book.accounts
        if a.code.removeprefix("test:").startswith(
            ("agency:", "acquirer:", "bank:", "expense:", "suspense:")
        )
    }
    for key in sorted(set(actual) | set(expected)):
        if actual.get(key, 0) != expected.get(key, 0):
            report.add(
                "gateway",
                f"account {key[0]} {key[1]}",
                f"balance {actual.get(key, 0)}, but the payments, refunds, settlement lines "
                f"and payouts make it {expected.get(key, 0)}",
            )
    for currency, (debits, credits) in book.totals.items():
        if debits != credits:
            report.add("trial balance", currency, f"debits {debits} != credits {credits}")
    return report
