"""The payer's use cases on the hosted page: see the payment, pay by card (with 3-D Secure
and up to three tries) or on a national scheme's own page, come back from the acquirer's or
the scheme's page, cancel and return.

The signed token in `next_url` is the payer's only credential, so these functions take a
payment id the page has already read from a verified token. They charge through the same
money-safe sequence as server-to-server confirm; coming back from the acquirer's page only
triggers a status query, and nothing the browser brings back is trusted: a scheme's
callback is decrypted or verified and must name one of the payment's attempts, its amount and
currency, and even then only prompts the gateway's own inquiry.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

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
from payments.service.payments import charge_card, return_late_capture
from payments.service.payments import pay_with_scheme as charge_scheme
from payments.states import AttemptStatus, PaymentStatus
from providers import (
    Card,
    InvalidNotification,
    Outcome,
    ProviderResult,
    RedirectProvider,
    SchemeReturn,
)

log = logging.getLogger(__name__)

__all__ = [
    "MAX_CARD_TRIES",
    "CheckoutView",
    "TryResult",
    "cancel",
    "pay_with_card",
    "pay_with_scheme",
    "return_from_acquirer",
    "view",
]

# The national schemes whose own page the payer pays on; mada is a card, paid by the form.
SCHEMES = ("knet", "benefit", "omannet")
CARD_METHODS = ("card", "mada")
# A scheme's callback fields: a bounded handful, each bounded, whatever the browser brings.
MAX_CALLBACK_FIELDS = 64
MAX_CALLBACK_FIELD_CHARS = 8192


class CallbackRefused(Exception):
    """A scheme's callback that does not verify or does not name this payment's attempt: it
    changes nothing, and the page says so."""


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


def pay_with_scheme(
    gw: Gateway, payment_id: str, method: str, *, return_to: str, language: str
) -> TryResult:
    """The payer chose a national scheme: open an attempt there and send them to its page."""
    if method not in SCHEMES:
        raise NotFound(f"no payment method {method[:40]!r}", param="method")
    with gw.db.read() as session:
        payment = _payment(session, payment_id)
        before = declined_tries(session, payment.id)
        offered = _view(gw, session, payment).methods
    if method not in offered:
        # A stale page, or a hand-made request: the payment stays as it is, for what is offered.
        raise Conflict(f"{method} is not offered for this payment", code="method_not_offered")
    if before >= MAX_CARD_TRIES:
        raise Conflict("no tries are left for this payment", code="payment_invalid_state")
    charge_scheme(gw, payment_id, method, return_to=return_to, language=language)
    return _outcome(gw, payment_id)


def _verified_callback(
    gw: Gateway, payment: Payment, attempts: list[Attempt], fields: Mapping[str, str]
) -> SchemeReturn | None:
    """The scheme's callback, verified and checked against the payment's attempts; None when
    the return carries no callback (the payer came back by hand) or its acquirer sends none."""
    latest = attempts[-1] if attempts else None
    if not fields or latest is None or latest.provider not in gw.providers:
        return None
    provider = gw.providers.get(latest.provider)
    if not isinstance(provider, RedirectProvider) or not provider.callback_fields & fields.keys():
        return None  # no scheme's result here: the return only prompts the inquiry
    if len(fields) > MAX_CALLBACK_FIELDS or any(
        len(k) > MAX_CALLBACK_FIELD_CHARS or len(v) > MAX_CALLBACK_FIELD_CHARS
        for k, v in fields.items()
    ):
        raise CallbackRefused("the callback is larger than any scheme sends")
    try:
        said = provider.parse_return(fields)
    except InvalidNotification as exc:
        raise CallbackRefused(str(exc)) from None
    keys = {attempt.action_key or attempt.id for attempt in attempts}
    if said.attempt_key not in keys:
        raise CallbackRefused("the callback names another payment's attempt")
    if (said.amount_minor, said.currency) != (payment.amount_minor, payment.currency):
        raise CallbackRefused("the callback's amount or currency is not the payment's")
    return said


def return_from_acquirer(
    gw: Gateway, payment_id: str, fields: Mapping[str, str] | None = None
) -> TryResult:
    """The payer is back from the acquirer's page: ask the acquirer how the attempt ended.
    A scheme's callback (`fields`) must verify and name one of this payment's attempts with
    its amount and currency, or it is refused (`CallbackRefused`) and changes nothing; one
    about an attempt already resolved (a replay, or the worker was first) changes nothing
    either."""
    with gw.db.read() as session:
        payment = _payment(session, payment_id)
        attempts = _attempts(session, payment.id)
    said = _verified_callback(gw, payment, attempts, fields or {})
    pending = next((a for a in reversed(attempts) if a.pending_action == "authorize"), None)
    if said is not None and (
        pending is None or said.attempt_key != (pending.action_key or pending.id)
    ):
        log.info("scheme callback for a resolved attempt", extra={"payment": payment_id})
        resolved = next(a for a in attempts if (a.action_key or a.id) == said.attempt_key)
        if resolved.status not in (AttemptStatus.SUCCEEDED, AttemptStatus.REQUIRES_CAPTURE):
            return_late_capture(gw, resolved, payment.currency)
        return _outcome(gw, payment_id)
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
            checks, due = attempt.checks, attempt.next_check_at
            apply_result(session, locked, attempt, result, payer_may_retry=True)
            if attempt.pending_action is not None and due is not None:
                # Still waiting: the payer's question never pushes the worker's schedule back
                # (however often a page is reloaded), it may only bring it forward.
                attempt.checks = checks
                attempt.next_check_at = min(due, attempt.next_check_at or due)
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
