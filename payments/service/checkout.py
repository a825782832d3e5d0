"""The payer's use cases on the hosted page: see the payment, pay by card (with 3-D Secure
and up to three tries), come back from the acquirer's page, cancel and return.

The signed token in `next_url` is the payer's only credential, so these functions take a
payment id the page has already read from a verified token. They charge through the same
money-safe sequence as server-to-server confirm; coming back from the acquirer's page only
triggers a status query, and nothing the browser brings back is trusted.
"""

from __future__ import annotations

import dataclasses
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from payments import clock
from payments.errors import Conflict, NotFound
from payments.gateway import Gateway
from payments.ids import is_id
from payments.models import Agency, Attempt, Payment
from payments.routing import methods_for
from payments.service.outcomes import (
    MAX_CARD_TRIES,
    apply_result,
    ask_status,
    declined_tries,
    move,
)
from payments.service.payments import charge_card
from payments.states import AttemptStatus, PaymentStatus
from providers import Card, Outcome, ProviderResult

log = logging.getLogger(__name__)

__all__ = [
    "MAX_CARD_TRIES",
    "CheckoutView",
    "TryResult",
    "cancel",
    "pay_with_card",
    "return_from_acquirer",
    "view",
]

# What the payer sees happen after a try.
FINISHED = "finished"  # a final outcome: back to the agency's return_url
DECLINED = "declined"  # the payment is still `created`: another card may be tried
REDIRECT = "redirect"  # to the acquirer's page (3-D Secure)
PROCESSING = "processing"  # the outcome is not known yet: the page waits and refreshes
FINAL_FOR_PAYER = frozenset(
    {
        PaymentStatus.SUCCEEDED,
        PaymentStatus.REQUIRES_CAPTURE,
        PaymentStatus.FAILED,
        PaymentStatus.CANCELLED,
        PaymentStatus.EXPIRED,
    }
)


@dataclasses.dataclass(frozen=True)
class CheckoutView:
    """Everything the hosted page shows of a payment; no card data, no payer details."""

    payment_id: str
    status: str
    amount_minor: int
    currency: str
    description: str
    language: str
    return_url: str
    agency_name: str
    agency_name_ar: str
    methods: tuple[str, ...]
    tries_used: int
    tries_left: int
    last_decline: str | None
    failure_code: str | None
    redirect_url: str | None
    livemode: bool
    expired: bool
    # The page's link lives as long as the payment may be paid (`expires_at`); after that it
    # only shows a payment in flight, and changes nothing.
    link_expired: bool


@dataclasses.dataclass(frozen=True)
class TryResult:
    """What happened to the payer's try, and where the page sends them next."""

    kind: str  # FINISHED | DECLINED | REDIRECT | PROCESSING
    view: CheckoutView
    decline_code: str | None = None
    redirect_url: str | None = None


def _attempts(session: Session, payment_id: str) -> list[Attempt]:
    return list(
        session.execute(
            select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.id)
        ).scalars()
    )


def _view(gw: Gateway, session: Session, payment: Payment) -> CheckoutView:
    agency = session.get(Agency, payment.agency_id)
    assert agency is not None
    attempts = _attempts(session, payment.id)
    declined = [a for a in attempts if a.status == AttemptStatus.DECLINED]
    waiting = [a for a in attempts if a.pending_action == "authorize" and a.redirect_url]
    status = PaymentStatus(payment.status)
    link_expired = clock.now() >= payment.expires_at
    expired = status is PaymentStatus.EXPIRED or (status is PaymentStatus.CREATED and link_expired)
    open_for_cards = status is PaymentStatus.CREATED and not expired
    return CheckoutView(
        payment_id=payment.id,
        status=status.value,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        description=payment.description,
        language=payment.language,
        return_url=payment.return_url,
        agency_name=agency.name,
        agency_name_ar=agency.name_ar,
        methods=(
            methods_for(gw.routing_rules, gw.providers, payment, agency, gw.breakers)
            if open_for_cards
            else ()
        ),
        tries_used=len(declined),
        tries_left=max(0, MAX_CARD_TRIES - len(declined)) if open_for_cards else 0,
        last_decline=declined[-1].decline_code if declined and open_for_cards else None,
        failure_code=payment.failure_code,
        redirect_url=waiting[-1].redirect_url if waiting else None,
        livemode=payment.livemode,
        expired=expired,
        link_expired=link_expired,
    )


def _payment(session: Session, payment_id: str) -> Payment:
    payment = session.get(Payment, payment_id) if is_id(payment_id, "pay") else None
    if payment is None:
        raise NotFound(f"no payment {payment_id[:40]!r}", param="id")
    return payment


def view(gw: Gateway, payment_id: str) -> CheckoutView:
    """The payment as the hosted page shows it."""
    with gw.db.read() as session:
        return _view(gw, session, _payment(session, payment_id))


def _outcome(gw: Gateway, payment_id: str) -> TryResult:
    """Where the payer goes now, from what the database shows after a try."""
    with gw.db.read() as session:
        payment = _payment(session, payment_id)
        page = _view(gw, session, payment)
    status = PaymentStatus(payment.status)
    if status in FINAL_FOR_PAYER:
        return TryResult(FINISHED, page)
    if status is PaymentStatus.CREATED and page.last_decline is not None:
        return TryResult(DECLINED, page, decline_code=page.last_decline)
    if status is PaymentStatus.PROCESSING and page.redirect_url:
        return TryResult(REDIRECT, page, redirect_url=page.redirect_url)
    return TryResult(PROCESSING, page)


def pay_with_card(gw: Gateway, payment_id: str, card: Card, *, return_to: str) -> TryResult:
    """One try with a card; `return_to` is where the acquirer's page sends the payer back."""
    with gw.db.read() as session:
        before = declined_tries(session, _payment(session, payment_id).id)
    if before >= MAX_CARD_TRIES:
        raise Conflict("no card tries are left for this payment", code="payment_invalid_state")
    charge_card(gw, payment_id, card, principal=None, channel="page", return_to=return_to)
    result = _outcome(gw, payment_id)
    if result.kind == DECLINED and result.view.tries_used == before:
        return TryResult(PROCESSING, result.view)  # not this try's decline (a race): just wait
    return result


def return_from_acquirer(gw: Gateway, payment_id: str) -> TryResult:
    """The payer is back from the acquirer's page: ask the acquirer how the attempt ended."""
    with gw.db.read() as session:
        payment = _payment(session, payment_id)
        pending = session.execute(
            select(Attempt)
            .where(Attempt.payment_id == payment.id, Attempt.pending_action == "authorize")
            .order_by(Attempt.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    if pending is None:
        return _outcome(gw, payment_id)
    provider = gw.providers.get(pending.provider)
    try:
        result = ask_status(provider, pending.action_key or pending.id, pending.provider_reference)
    except Exception:
        log.exception("status query failed", extra={"attempt": pending.id})
        result = ProviderResult(Outcome.UNKNOWN, message="the acquirer did not answer")
    if result.outcome is Outcome.UNAVAILABLE:
        # The acquirer knows no charge under this key, yet it sent the payer to its page:
        # not an answer to act on. Leave the attempt to the worker's schedule.
        result = ProviderResult(Outcome.UNKNOWN, message=result.message)
    with gw.db.transaction() as session:
        locked = session.get(Payment, payment_id, with_for_update=True)
        attempt = session.get(Attempt, pending.id, with_for_update=True)
        assert locked is not None and attempt is not None
        if attempt.pending_action == "authorize":
            apply_result(session, locked, attempt, result, payer_may_retry=True)
    outcome = _outcome(gw, payment_id)
    if outcome.kind == REDIRECT:  # still waiting on the payer's authentication
        return TryResult(PROCESSING, outcome.view, redirect_url=outcome.redirect_url)
    return outcome


def cancel(gw: Gateway, payment_id: str) -> CheckoutView:
    """ "Cancel and return": a payment nobody has charged yet is cancelled."""
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id, with_for_update=True)
        if payment is None:
            raise NotFound(f"no payment {payment_id[:40]!r}", param="id")
        if payment.status != PaymentStatus.CREATED:
            raise Conflict(
                f"a {payment.status} payment cannot be cancelled here",
                code="payment_invalid_state",
            )
        if clock.now() >= payment.expires_at:  # an old link found later changes nothing
            raise Conflict("the payment's link has expired", code="payment_expired")
        move(session, payment, PaymentStatus.CANCELLED)
        return _view(gw, session, payment)
