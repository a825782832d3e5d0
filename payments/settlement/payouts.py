"""Payouts: what the treasury paid an agency out of an acquirer's settlement bank account,
recorded with its `payout` ledger transaction in one transaction, once per agency and
reference, and never for more than the gateway owes the agency."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

import ledger
from payments import clock, postings
from payments.errors import Conflict, NotFound, ValidationFailed
from payments.gateway import Gateway
from payments.ids import new_id
from payments.models import Agency, Payout
from payments.money import CURRENCY_EXPONENTS, MAX_AMOUNT_MINOR

SANDBOX = "sandbox"


@dataclasses.dataclass(frozen=True)
class NewPayout:
    agency_id: str
    currency: str
    amount_minor: int
    reference: str
    livemode: bool
    provider: str | None = None  # whose settlement account pays; `sandbox` in test mode


@dataclasses.dataclass(frozen=True)
class PayoutResult:
    payout: Payout
    created: bool  # False: the reference was paid out before, and this is that payout


def create_payout(gw: Gateway, new: NewPayout) -> PayoutResult:
    """Record a payout; the same reference again answers the first payout."""
    _check(new)
    provider = new.provider or SANDBOX
    with gw.db.transaction() as session:
        if session.get(Agency, new.agency_id) is None:
            raise NotFound(f"no agency {new.agency_id}", param="agency")
        first = session.execute(
            select(Payout).where(
                Payout.agency_id == new.agency_id, Payout.reference == new.reference
            )
        ).scalar_one_or_none()
        if first is not None:
            same = (first.currency, first.amount_minor, first.livemode, first.provider) == (
                new.currency,
                new.amount_minor,
                new.livemode,
                provider,
            )
            if not same:
                raise Conflict(
                    f"reference {new.reference} was paid out before with other details "
                    f"({first.id})",
                    code="payout_reference_reused",
                )
            return PayoutResult(first, created=False)
        code = postings.payable_code(new.agency_id, livemode=new.livemode)
        # The payable's row lock orders this payout after any posting to it in flight.
        account = session.execute(
            select(ledger.Account)
            .where(ledger.Account.code == code, ledger.Account.currency == new.currency)
            .with_for_update()
        ).scalar_one_or_none()
        payable = account.credits_minor - account.debits_minor if account is not None else 0
        if new.amount_minor > payable:
            raise Conflict(
                f"the payout of {new.amount_minor} {new.currency} minor units is more than "
                f"{new.agency_id} is owed ({payable})",
                code="payout_exceeds_payable",
            )
        now = clock.now()
        payout = Payout(
            id=new_id("po"),
            agency_id=new.agency_id,
            livemode=new.livemode,
            provider=provider,
            currency=new.currency,
            amount_minor=new.amount_minor,
            reference=new.reference,
            created_at=now,
        )
        session.add(payout)
        ledger.post(
            session,
            postings.transaction(
                "payout",
                external_id=f"payout:{payout.id}",
                description=f"payout {payout.id} to {new.agency_id} ({new.reference})",
                amounts={"amount": new.amount_minor},
                currency=new.currency,
                livemode=new.livemode,
                agency=new.agency_id,
                provider=provider,
                effective_at=now,
                metadata={"payout": payout.id, "reference": new.reference},
            ),
            now,
        )
    return PayoutResult(payout, created=True)


def _check(new: NewPayout) -> None:
    if new.currency not in CURRENCY_EXPONENTS:
        raise ValidationFailed(f"unsupported currency {new.currency!r}", param="currency")
    if not 0 < new.amount_minor <= MAX_AMOUNT_MINOR:
        raise ValidationFailed(
            f"amount must be 1 to {MAX_AMOUNT_MINOR} minor units", param="amount"
        )
    if not 1 <= len(new.reference) <= 255 or not new.reference.isprintable():
        raise ValidationFailed("reference must be 1 to 255 printable characters", param="reference")
    if new.livemode and not new.provider:
        raise ValidationFailed("a live payout names the acquirer it is paid from", param="provider")
