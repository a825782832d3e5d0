"""Payment use cases: create, read, list, confirm a card, capture, cancel.

Every acquirer call follows the money-safe sequence: commit the attempt first, call the
acquirer outside any transaction, then commit its answer with the ledger postings and event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from payments import clock, idempotency, metrics, store
from payments.errors import Conflict, NotFound, ProviderFailed, ValidationFailed
from payments.gateway import Gateway
from payments.ids import is_id, new_id
from payments.links import page_url
from payments.models import Agency, Attempt, Payment
from payments.principal import Principal
from payments.routing import AgencyFacts, Route, route
from payments.service.outcomes import (
    OPEN_ATTEMPT_GRACE_S,
    apply_result,
    move,
    no_acquirer,
    open_attempt,
)
from payments.states import AttemptStatus, PaymentStatus, check_transition
from providers import AuthorizeRequest, Card, Outcome, ProviderResult, RefundRequest
from providers.cards import brand, digits_only, expired, fingerprint, luhn_ok
from providers.mada import is_mada

log = logging.getLogger(__name__)
PAST = {"capture": "captured", "cancel": "cancelled"}


@dataclasses.dataclass(frozen=True)
class NewPayment:
    amount_minor: int
    currency: str
    reference: str
    description: str
    return_url: str
    language: str = "ar"
    capture_method: str = "automatic"
    service_code: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    payer: dict[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class PaymentFilters:
    status: str | None = None
    reference: str | None = None
    service_code: str | None = None
    created_gte: dt.datetime | None = None
    created_lt: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Page:
    limit: int = 20
    starting_after: str | None = None


QueryT = TypeVar("QueryT", bound=Select[*tuple[Any, ...]])


def scope_of(principal: Principal | None) -> store.Scope | None:
    """The objects a principal may see: its agency's in its mode; all of them for finance and
    for none (the hosted page, whose signed token already names the payment)."""
    if principal is None or principal.is_finance:
        return None
    assert principal.agency_id is not None
    return store.Scope(principal.agency_id, principal.livemode)


def scoped(query: QueryT, model: Any, principal: Principal) -> QueryT:
    """Restrict a query to what the principal may see: its agency and mode, or all (finance)."""
    scope = scope_of(principal)
    if scope is None:
        return query
    return query.where(model.agency_id == scope.agency_id, model.livemode == scope.livemode)


def load_payment(
    session: Session, principal: Principal | None, payment_id: str, *, lock: bool = False
) -> Payment:
    """The payment if the principal may see it (any, for the hosted page's `None`); `lock`:
    locked until the transaction ends."""
    payment = (
        store.payment(session, payment_id, scope_of(principal), lock=lock)
        if is_id(payment_id, "pay")
        else None
    )
    if payment is None:
        raise NotFound(f"no payment {payment_id[:40]!r}", param="id")
    return payment


def paginate(
    session: Session, query: Select[Any], model: Any, page: Page
) -> tuple[list[Any], bool]:
    if page.starting_after is not None:
        query = query.where(model.id < page.starting_after)
    found = list(session.execute(query.order_by(model.id.desc()).limit(page.limit + 1)).scalars())
    return found[: page.limit], len(found) > page.limit


def create_payment(gw: Gateway, principal: Principal, new: NewPayment) -> Payment:
    if principal.agency_id is None:
        raise Conflict("only an agency key creates payments", code="agency_key_required")
    if gw.settings.is_production and not new.return_url.startswith("https://"):
        raise ValidationFailed("return_url must be an https URL", param="return_url")
    done = idempotency.recovered()
    if done is not None and is_id(done, "pay"):
        return get_payment(gw, principal, done)  # a dead request under this key created it
    now = clock.now()
    payment_id = new_id("pay")
    agency = principal.agency
    assert agency is not None
    if new.currency not in agency.currencies:
        raise ValidationFailed(
            f"{agency.id} does not accept {new.currency}",
            param="currency",
            details={"currency": [f"Must be one of: {', '.join(agency.currencies)}."]},
        )
    payment = Payment(
        id=payment_id,
        agency_id=agency.id,
        livemode=principal.livemode,
        status=PaymentStatus.CREATED.value,
        amount_minor=new.amount_minor,
        currency=new.currency,
        amount_captured_minor=0,
        amount_refunded_minor=0,
        reference=new.reference,
        description=new.description,
        service_code=new.service_code,
        language=new.language,
        capture_method=new.capture_method,
        return_url=new.return_url,
        next_url=page_url(gw.settings.public_url, gw.settings.secret_key, payment_id),
        extra=dict(new.metadata),
        payer=new.payer,
        created_at=now,
        updated_at=now,
        expires_at=now + dt.timedelta(seconds=gw.settings.payment_expiry_s),
    )
    # The answer is made before the write lock is taken (SQLite writes one at a time): the
    # payment is whole already, and the transaction only writes it.
    idempotency.make_answer(payment)
    with gw.db.transaction() as session:
        store.add(session, payment)
        metrics.payment_moved(session, payment.status, payment.provider)
        idempotency.answered(session, payment_id, payment)
    log.info("payment created", extra={"payment": payment_id, "agency": agency.id})
    return payment


def get_payment(gw: Gateway, principal: Principal, payment_id: str) -> Payment:
    with gw.db.read() as session:
        return load_payment(session, principal, payment_id)


def list_payments(
    gw: Gateway, principal: Principal, filters: PaymentFilters, page: Page
) -> tuple[list[Payment], bool]:
    query = scoped(select(Payment), Payment, principal)
    if filters.status:
        query = query.where(Payment.status == filters.status)
    if filters.reference:
        query = query.where(Payment.reference == filters.reference)
    if filters.service_code:
        query = query.where(Payment.service_code == filters.service_code)
    if filters.created_gte:
        query = query.where(Payment.created_at >= filters.created_gte)
    if filters.created_lt:
        query = query.where(Payment.created_at < filters.created_lt)
    with gw.db.read() as session:
        return paginate(session, query, Payment, page)


def _check_card(card: Card) -> str:
    number = digits_only(card.number)
    if not luhn_ok(number):
        raise ValidationFailed(
            "The card number is not valid.",
            param="payment_method.card.number",
            details={"payment_method.card.number": ["The card number is not valid."]},
        )
    if expired(card.exp_month, card.exp_year, clock.now().date()):
        raise ValidationFailed(
            "The card's expiry date has passed.",
            param="payment_method.card.exp_year",
            details={"payment_method.card.exp_year": ["The card's expiry date has passed."]},
        )
    return number


def _call(what: str, provider: str, call: Any, *args: Any) -> Any:
    """Call an acquirer; an exception after the request may have left means `unknown`."""
    started = time.perf_counter()
    try:
        result = call(*args)
    except Exception:
        log.exception("acquirer call failed", extra={"provider": provider, "call": what})
        metrics.acquirer_call(provider, what, time.perf_counter() - started, "exception")
        return ProviderResult(Outcome.UNKNOWN, message="the acquirer did not answer")
    failed = result.outcome in (Outcome.UNAVAILABLE, Outcome.UNKNOWN)
    error = result.outcome.value if failed else None
    metrics.acquirer_call(provider, what, time.perf_counter() - started, error)
    return result


def confirm_payment(gw: Gateway, principal: Principal, payment_id: str, card: Card) -> Payment:
    """Charge a card server-to-server (MOTO: no 3-D Secure, a decline is final)."""
    return charge_card(gw, payment_id, card, principal=principal, channel="api")


def charge_card(
    gw: Gateway,
    payment_id: str,
    card: Card,
    *,
    principal: Principal | None,
    channel: str,
    return_to: str | None = None,
) -> Payment:
    """Charge a card with the money-safe sequence, failing over only when an acquirer is
    known not to have charged. `channel` is `api` (server-to-server) or `page` (the payer on
    the hosted page: 3-D Secure may send them to `return_to` via the acquirer's page, and a
    decline leaves the payment `created` for another card until the third). A mada card goes
    to a mada-capable acquirer when routing has one for the payment (never for manual capture:
    mada has no authorisation apart from capture); otherwise it travels as any card."""
    number = _check_card(card)
    card = dataclasses.replace(card, number=number)
    if principal is not None and idempotency.recovered() == payment_id:
        return get_payment(gw, principal, payment_id)  # a dead request under this key began it

    def choose(payment: Payment, agency: AgencyFacts) -> tuple[str, Route]:
        if is_mada(number) and payment.capture_method == "automatic":
            mada = route(gw.routing_rules, gw.providers, payment, agency, "mada", gw.breakers)
            if mada.providers:
                return "mada", mada
        return "card", route(gw.routing_rules, gw.providers, payment, agency, "card", gw.breakers)

    def describe(payment: Payment) -> None:
        payment.payment_method = {
            "type": "card",
            "brand": brand(number),
            "last4": number[-4:],
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
        }
        payment.card_fingerprint = fingerprint(number, gw.fingerprint_key)

    return _charge(
        gw,
        payment_id,
        _Charge(choose=choose, describe=describe, card=card, return_to=return_to),
        principal=principal,
        channel=channel,
    )


def pay_with_scheme(
    gw: Gateway, payment_id: str, method: str, *, return_to: str, language: str
) -> Payment:
    """The payer chose a national scheme (`knet`, `benefit`, `omannet`) on the hosted page:
    the money-safe sequence opens an attempt at the scheme, whose answer sends the payer to
    the scheme's own page; the payment is `processing` until the scheme says how it ended."""

    def choose(payment: Payment, agency: AgencyFacts) -> tuple[str, Route]:
        return method, route(gw.routing_rules, gw.providers, payment, agency, method, gw.breakers)

    def describe(payment: Payment) -> None:
        payment.payment_method = {"type": method}

    return _charge(
        gw,
        payment_id,
        _Charge(choose=choose, describe=describe, return_to=return_to, language=language),
        principal=None,
        channel="page",
    )


@dataclasses.dataclass(frozen=True)
class _Charge:
    """What differs between a card and a scheme: how the method and acquirers are chosen, what
    the payment records of the method, and what the acquirer is sent."""

    choose: Callable[[Payment, AgencyFacts], tuple[str, Route]]
    describe: Callable[[Payment], None]
    card: Card | None = None
    return_to: str | None = None
    language: str | None = None


def _charge(
    gw: Gateway, payment_id: str, charge: _Charge, *, principal: Principal | None, channel: str
) -> Payment:
    """The money-safe sequence of a charge: the attempt committed first, the acquirer called
    outside any transaction, its answer committed with the postings and the event; failing
    over only when an acquirer is known not to have charged."""
    now = clock.now()
    with gw.db.transaction() as session:
        payment = load_payment(session, principal, payment_id, lock=True)
        if payment.status != PaymentStatus.CREATED:
            raise Conflict(
                f"only a created payment can be confirmed; this one is {payment.status}",
                code="payment_invalid_state",
            )
        if now >= payment.expires_at:
            raise Conflict("the payment has expired", code="payment_expired")
        method, chosen = charge.choose(payment, _agency_of(session, principal, payment))
        payment.routing = chosen.as_record()
        charge.describe(payment)
        move(session, payment, PaymentStatus.PROCESSING)
        remaining = list(chosen.providers)
        first = _claim(gw, remaining, payment)
        if first is None:
            no_acquirer(session, payment, None)
            idempotency.answered(session, payment_id, payment)
            return payment
        attempt = open_attempt(session, payment, first, now=now, channel=channel)
        idempotency.committed(session, payment_id)
    while True:
        result = _authorize(gw, payment, attempt, method, charge, channel=channel)
        with gw.db.transaction() as session:
            payment, attempt_row = _lock_with_attempt(session, principal, payment_id, attempt.id)
            following = None
            if attempt_row.pending_action == "authorize":  # else the worker recorded it first
                may_retry = channel == "page"
                if apply_result(session, payment, attempt_row, result, payer_may_retry=may_retry):
                    following = _claim(gw, remaining, payment)
                    if following is None:
                        no_acquirer(session, payment, attempt_row)
            if following is None:
                idempotency.answered(session, payment_id, payment)
                return payment
            attempt = open_attempt(session, payment, following, now=clock.now(), channel=channel)


def _authorize(
    gw: Gateway, payment: Payment, attempt: Attempt, method: str, charge: _Charge, *, channel: str
) -> ProviderResult:
    """Ask the attempt's acquirer to authorise (and, for automatic capture, capture) the
    payment, outside any transaction, and tell its circuit breaker how the call went."""
    provider = gw.providers.get(attempt.provider)
    request = AuthorizeRequest(
        idempotency_key=attempt.action_key or attempt.id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        method=method,
        capture=payment.capture_method == "automatic",
        description=payment.description,
        card=charge.card,
        return_url=charge.return_to,
        payer_present=channel == "page",
        language=charge.language or payment.language,
    )
    result: ProviderResult = _call("authorize", provider.name, provider.authorize, request)
    _record_health(gw, provider.name, result)
    return result


def return_late_capture(gw: Gateway, attempt: Attempt, currency: str) -> None:
    """A scheme's callback names an attempt the gateway already closed without a capture (the
    payer paid on a page opened from their history long after, say): ask the scheme, and if it
    did take the money, give it straight back and raise the alarm. The payment keeps its final
    status; the capture and its refund reach finance through the settlement file."""
    provider = gw.providers.get(attempt.provider)
    key = attempt.action_key or attempt.id
    result = _call("status", provider.name, provider.status, key, attempt.provider_reference)
    captured = result.amount_captured_minor
    if result.outcome is not Outcome.APPROVED or not captured or result.reference is None:
        return
    log.error(
        "a scheme captured a payment the gateway had closed: refunding it",
        extra={"provider": provider.name, "attempt": attempt.id, "amount_minor": captured},
    )
    request = RefundRequest(f"{attempt.id}-late", result.reference, captured, currency)
    refunded = _call("refund", provider.name, provider.refund, request)
    log.error(
        "late capture refund answered",
        extra={"attempt": attempt.id, "outcome": refunded.outcome.value},
    )


def _lock_with_attempt(
    session: Session, principal: Principal | None, payment_id: str, attempt_id: str
) -> tuple[Payment, Attempt]:
    """The payment and one of its attempts, locked in one statement."""
    found = store.payment_with_attempt(session, payment_id, attempt_id, scope_of(principal))
    if found is None:
        raise NotFound(f"no payment {payment_id}", param="id")
    return found


def _agency_of(session: Session, principal: Principal | None, payment: Payment) -> AgencyFacts:
    """The payment's agency for routing: read with the caller's key, or (the hosted page)
    from the database."""
    if principal is not None and principal.agency is not None:
        return principal.agency
    agency = session.get(Agency, payment.agency_id)
    assert agency is not None
    return agency


def _claim(gw: Gateway, remaining: list[str], payment: Payment) -> str | None:
    """The next acquirer whose circuit breaker lets a call through, noting those it skipped
    on the payment's routing record."""
    while remaining:
        name = remaining.pop(0)
        if gw.breakers.for_name(name).allow():
            return name
        routing = dict(payment.routing or {})
        routing["skipped"] = {**routing.get("skipped", {}), name: "circuit breaker open"}
        routing["providers"] = [p for p in routing.get("providers", []) if p != name]
        payment.routing = routing
    return None


def _record_health(gw: Gateway, provider: str, result: ProviderResult) -> None:
    """Tell the acquirer's circuit breaker how the call went: only `unavailable` counts
    against it; an unknown outcome says nothing about whether it is down."""
    breaker = gw.breakers.for_name(provider)
    if result.outcome is Outcome.UNAVAILABLE:
        breaker.record_unavailable()
    elif result.outcome is not Outcome.UNKNOWN:
        breaker.record_success()


def _pending_authorisation(session: Session, payment: Payment) -> Attempt:
    attempt = session.execute(
        select(Attempt)
        .where(
            Attempt.payment_id == payment.id,
            Attempt.status == AttemptStatus.REQUIRES_CAPTURE.value,
        )
        .with_for_update()
    ).scalar_one()
    return attempt


def _authorisation_action(
    gw: Gateway, principal: Principal, payment_id: str, action: str, amount_minor: int | None
) -> Payment:
    """Capture or void an authorisation with the money-safe sequence."""
    if idempotency.recovered() == payment_id:
        return get_payment(gw, principal, payment_id)  # a dead request under this key began it
    with gw.db.transaction() as session:
        payment = load_payment(session, principal, payment_id, lock=True)
        if payment.status != PaymentStatus.REQUIRES_CAPTURE:
            raise Conflict(
                f"a {payment.status} payment cannot be {PAST[action]}",
                code="payment_invalid_state",
            )
        if action == "capture":
            amount_minor = payment.amount_minor if amount_minor is None else amount_minor
            if amount_minor > payment.amount_minor:
                raise ValidationFailed(
                    "amount exceeds the authorised amount",
                    code="amount_exceeds_authorized",
                    param="amount",
                    details={"amount": [f"Must be at most {payment.amount_minor}."]},
                )
        attempt = _pending_authorisation(session, payment)
        check_transition(PaymentStatus(payment.status), PaymentStatus.PROCESSING)
        payment.status = PaymentStatus.PROCESSING.value
        payment.updated_at = clock.now()
        metrics.payment_moved(session, payment.status, payment.provider)
        attempt.pending_action = action
        attempt.action_key = f"{attempt.id}-{action}"
        attempt.action_amount_minor = amount_minor
        attempt.next_check_at = clock.now() + dt.timedelta(seconds=OPEN_ATTEMPT_GRACE_S)
        idempotency.committed(session, payment_id)
        reference = attempt.provider_reference or ""
    provider = gw.providers.get(attempt.provider)
    key = attempt.action_key
    if action == "capture":
        assert amount_minor is not None
        result = _call(
            action, provider.name, provider.capture, key, reference, amount_minor, payment.currency
        )
    else:
        result = _call(action, provider.name, provider.cancel, key, reference)
    with gw.db.transaction() as session:
        payment = load_payment(session, principal, payment_id, lock=True)
        attempt_row = session.get(Attempt, attempt.id, with_for_update=True)
        assert attempt_row is not None
        if attempt_row.pending_action != action:
            return payment
        apply_result(session, payment, attempt_row, result)
    if result.outcome in (Outcome.DECLINED, Outcome.UNAVAILABLE):
        raise ProviderFailed(
            f"the acquirer refused to {action}: {result.message or result.decline_code}; "
            "the payment is unchanged",
            code=f"{action}_failed",
        )
    return payment


def capture_payment(
    gw: Gateway, principal: Principal, payment_id: str, amount_minor: int | None
) -> Payment:
    return _authorisation_action(gw, principal, payment_id, "capture", amount_minor)


def cancel_payment(gw: Gateway, principal: Principal, payment_id: str) -> Payment:
    if idempotency.recovered() == payment_id:
        return get_payment(gw, principal, payment_id)  # a dead request under this key began it
    with gw.db.transaction() as session:
        payment = load_payment(session, principal, payment_id, lock=True)
        if payment.status == PaymentStatus.CREATED:
            move(session, payment, PaymentStatus.CANCELLED)
            idempotency.committed(session, payment_id)
            return payment
    return _authorisation_action(gw, principal, payment_id, "cancel", None)
