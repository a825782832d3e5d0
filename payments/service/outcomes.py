"""Recording an acquirer's answer: the attempt, the payment, its ledger postings and its event,
all in the caller's one transaction. Shared by the request path and the worker.

Every answer, whether to the gateway's own call or to a status query (the worker's, a
notification's, the payer's return from 3-D Secure), passes through `apply_result`, which
first refuses an answer that cannot be this attempt's truth: one about a charge for another
amount or currency, or a capture that does not say how much it took. Such an answer changes
nothing and is logged; the attempt stays open and the worker asks again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import ledger
from payments import clock, metrics, postings, store
from payments.ids import new_id
from payments.models import Attempt, Payment, Refund
from payments.outbox import payment_event, refund_event
from payments.states import (
    FAILURE_MESSAGES,
    PAYMENT_EVENTS,
    REFUND_EVENTS,
    AttemptStatus,
    FailureCode,
    PaymentStatus,
    RefundStatus,
    check_transition,
)
from providers import Outcome, Provider, ProviderResult, RefundOutcome, RefundResult

log = logging.getLogger(__name__)

# Status queries after an unknown outcome: first at once, then 1 min, 5 min, 30 min, 2 h, daily.
CHECK_BACKOFF_S = (0, 60, 300, 1800, 7200, 86400)
# An attempt opened but never answered (the process died mid-call) is first asked after this.
OPEN_ATTEMPT_GRACE_S = 120
# A payer sent to an acquirer's page (3-D Secure) who has not come back by then is asked
# about; an authentication still pending after that is given up as failed.
REDIRECT_WAIT_S = 15 * 60
# Cards a payer may try on the hosted page: the third decline fails the payment.
MAX_CARD_TRIES = 3


def _unanswered_action(result: ProviderResult) -> str | None:
    """An authorize, capture or cancel the acquirer did not answer, as
    payments.service.payments counts them: `unavailable` (nothing done) or `unknown`."""
    unanswered = result.outcome in (Outcome.UNAVAILABLE, Outcome.UNKNOWN)
    return result.outcome.value if unanswered else None


def _unanswered_inquiry(result: ProviderResult | RefundResult) -> str | None:
    """A status inquiry the acquirer did not answer. `unavailable` is an answer to one: the
    acquirer knows no charge (or refund) under the key."""
    return "unknown" if result.outcome in (Outcome.UNKNOWN, RefundOutcome.UNKNOWN) else None


def ask_status(provider: Provider, idempotency_key: str, reference: str | None) -> ProviderResult:
    """`provider.status`, timed as the acquirer call `status`; an exception propagates."""
    return metrics.timed_acquirer_call(
        provider.name,
        "status",
        lambda: provider.status(idempotency_key, reference),
        _unanswered_inquiry,
    )


def ask_refund_status(provider: Provider, idempotency_key: str) -> RefundResult:
    """`provider.refund_status`, timed as the acquirer call `refund_status`; an exception
    propagates."""
    return metrics.timed_acquirer_call(
        provider.name,
        "refund_status",
        lambda: provider.refund_status(idempotency_key),
        _unanswered_inquiry,
    )


def send_action(
    provider: Provider, call: str, send: Callable[[], ProviderResult]
) -> ProviderResult:
    """A capture or cancel the worker (re-)sends, timed as the acquirer call `call`; an
    exception propagates."""
    return metrics.timed_acquirer_call(provider.name, call, send, _unanswered_action)


def next_check(checks: int, now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=CHECK_BACKOFF_S[min(checks, len(CHECK_BACKOFF_S) - 1)])


def failure_code(decline_code: str | None) -> FailureCode:
    try:
        return FailureCode(decline_code or "card_declined")
    except ValueError:
        return FailureCode.CARD_DECLINED


def move(session: Session, payment: Payment, target: PaymentStatus) -> None:
    """Change a payment's status and write the event the agency hears about, if any."""
    check_transition(PaymentStatus(payment.status), target)
    payment.status = target.value
    payment.updated_at = clock.now()
    metrics.payment_moved(session, target.value, payment.provider)
    event_type = PAYMENT_EVENTS.get(target)
    if event_type is not None:  # written with the change, in the same flush
        payment_event(session, event_type, payment)


def fail(session: Session, payment: Payment, code: FailureCode) -> None:
    payment.failure_code = code.value
    payment.failure_message = FAILURE_MESSAGES[code]
    move(session, payment, PaymentStatus.FAILED)


def expire(session: Session, payment: Payment) -> None:
    """The payer never finished: the payment expires as abandoned."""
    payment.failure_code = FailureCode.ABANDONED.value
    payment.failure_message = FAILURE_MESSAGES[FailureCode.ABANDONED]
    move(session, payment, PaymentStatus.EXPIRED)


def post_capture(session: Session, payment: Payment, provider: str) -> None:
    ledger.post(
        session,
        postings.transaction(
            "capture",
            external_id=postings.capture_id(payment.id),
            description=f"capture of {payment.id}",
            amounts={"amount": payment.amount_captured_minor},
            currency=payment.currency,
            livemode=payment.livemode,
            agency=payment.agency_id,
            provider=provider,
            effective_at=clock.now(),
            metadata={"payment": payment.id, "reference": payment.reference},
        ),
        clock.now(),
    )


def declined_tries(session: Session, payment_id: str) -> int:
    """How many card tries of this payment an acquirer declined."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Attempt)
            .where(
                Attempt.payment_id == payment_id,
                Attempt.status == AttemptStatus.DECLINED.value,
            )
        )
        or 0
    )


def open_attempt(
    session: Session,
    payment: Payment,
    provider: str,
    *,
    now: dt.datetime,
    channel: str = "api",
) -> Attempt:
    attempt_id = new_id("att")
    attempt = Attempt(
        id=attempt_id,
        payment_id=payment.id,
        provider=provider,
        channel=channel,
        status=AttemptStatus.OPEN.value,
        pending_action="authorize",
        action_key=attempt_id,
        action_amount_minor=payment.amount_minor,
        checks=0,
        next_check_at=now + dt.timedelta(seconds=OPEN_ATTEMPT_GRACE_S),
        created_at=now,
        updated_at=now,
    )
    store.add(session, attempt)
    return attempt


def _succeed(session: Session, payment: Payment, attempt: Attempt, captured_minor: int) -> None:
    """The capture, posted last in its transaction: the posting locks the agency's and the
    acquirer's accounts until the commit, which every capture for them waits on."""
    attempt.status = AttemptStatus.SUCCEEDED.value
    payment.amount_captured_minor = captured_minor
    move(session, payment, PaymentStatus.SUCCEEDED)
    post_capture(session, payment, attempt.provider)


def _wait(attempt: Attempt, result: ProviderResult, now: dt.datetime) -> None:
    """Leave the action pending and schedule the next status query: soon after an unknown
    outcome; while the payer is on the acquirer's page, from a minute on and at the latest
    when their allotted time is up."""
    if result.outcome is Outcome.REDIRECT:
        attempt.redirect_url = result.redirect_url or attempt.redirect_url
        # Ask from a minute on, not only once the payer's time is up: a payer who finished on
        # the acquirer's or scheme's page and closed the window is found by the inquiry.
        soon = next_check(max(attempt.checks, 1), now)
        deadline = attempt.created_at + dt.timedelta(seconds=REDIRECT_WAIT_S)
        attempt.next_check_at = min(soon, deadline) if deadline > now else soon
    else:
        attempt.next_check_at = next_check(attempt.checks, now)
    attempt.checks += 1


def _decline(
    session: Session, payment: Payment, attempt: Attempt, code: str | None, *, payer_may_retry: bool
) -> None:
    """A declined authorisation: final, unless the payer on the hosted page has tries left."""
    attempt.status = AttemptStatus.DECLINED.value
    attempt.decline_code = failure_code(code).value
    if payer_may_retry and attempt.channel == "page":
        session.flush()
        if declined_tries(session, payment.id) < MAX_CARD_TRIES:
            check_transition(PaymentStatus(payment.status), PaymentStatus.CREATED)
            payment.status = PaymentStatus.CREATED.value
            payment.updated_at = clock.now()
            metrics.payment_moved(session, payment.status, payment.provider)
            return
    fail(session, payment, failure_code(code))


def _about_another_charge(payment: Payment, result: ProviderResult) -> str | None:
    """What differs between the charge the acquirer describes and the payment, or None. A
    charge the acquirer describes for another amount or currency is not this attempt's, however
    it was found: a payment taken on the same acquirer account outside the gateway (a Payment
    Link, the Dashboard) must not settle an open attempt with its amount."""
    differs: list[str] = []
    if result.amount_minor is not None and result.amount_minor != payment.amount_minor:
        differs.append(f"amount {result.amount_minor} instead of {payment.amount_minor}")
    if result.currency is not None and result.currency != payment.currency:
        differs.append(f"currency {result.currency} instead of {payment.currency}")
    return "; ".join(differs) or None


def _admissible(payment: Payment, attempt: Attempt, result: ProviderResult) -> ProviderResult:
    """`result`, or an unknown outcome in its place when it cannot be this attempt's truth."""
    differs = _about_another_charge(payment, result)
    if differs is not None:
        log.warning(
            "acquirer answer refused: it is about another charge",
            extra={"provider": attempt.provider, "attempt": attempt.id, "differs": differs},
        )
        return ProviderResult(
            Outcome.UNKNOWN, message=f"the answer is about another charge: {differs}"
        )
    captured = result.outcome is Outcome.APPROVED and attempt.pending_action != "authorize"
    if captured and result.amount_captured_minor is None:
        # The acquirer's fault, and an alert: a capture is booked for what the acquirer took,
        # never for a guess. The attempt waits for a status answer that says it.
        log.error(
            "acquirer answered a capture without the amount captured",
            extra={
                "provider": attempt.provider,
                "attempt": attempt.id,
                "action": attempt.pending_action,
            },
        )
        return ProviderResult(
            Outcome.UNKNOWN,
            reference=result.reference,
            message="the acquirer did not say how much it captured",
        )
    return result


def apply_result(
    session: Session,
    payment: Payment,
    attempt: Attempt,
    result: ProviderResult,
    *,
    payer_may_retry: bool = False,
) -> bool:
    """Record `result` for the attempt's pending action. Returns True when the acquirer is
    known not to have charged and the caller may fail over to another acquirer.
    `payer_may_retry`: the payer is on the hosted page and may try another card after a
    decline (up to MAX_CARD_TRIES), so the payment goes back to `created` instead of failing.
    An answer that cannot be this attempt's truth is recorded as an unknown outcome."""
    now = clock.now()
    action = attempt.pending_action
    assert action is not None, "only a pending action takes a result"
    result = _admissible(payment, attempt, result)
    attempt.updated_at = now
    attempt.result = result.outcome.value
    if result.reference:
        attempt.provider_reference = result.reference
        payment.provider_reference = result.reference
    payment.provider = attempt.provider
    outcome = result.outcome
    if outcome in (Outcome.UNKNOWN, Outcome.REDIRECT):
        _wait(attempt, result, now)
        return False
    attempt.pending_action = None
    attempt.next_check_at = None
    attempt.redirect_url = None
    if action == "authorize":
        if outcome is Outcome.APPROVED:
            _succeed(
                session, payment, attempt, result.amount_captured_minor or payment.amount_minor
            )
        elif outcome is Outcome.REQUIRES_CAPTURE:
            attempt.status = AttemptStatus.REQUIRES_CAPTURE.value
            move(session, payment, PaymentStatus.REQUIRES_CAPTURE)
        elif outcome is Outcome.UNAVAILABLE:
            attempt.status = AttemptStatus.UNAVAILABLE.value
            return True
        else:  # declined, or cancelled before anything was taken
            _decline(
                session, payment, attempt, result.decline_code, payer_may_retry=payer_may_retry
            )
        return False
    # capture or cancel of an authorisation
    if outcome is Outcome.APPROVED:
        assert result.amount_captured_minor is not None, "_admissible made it a wait"
        _succeed(session, payment, attempt, result.amount_captured_minor)
    elif outcome is Outcome.CANCELLED:
        attempt.status = AttemptStatus.CANCELLED.value
        move(session, payment, PaymentStatus.CANCELLED)
    else:  # refused, unavailable or still authorised: the authorisation stands as it was
        attempt.status = AttemptStatus.REQUIRES_CAPTURE.value
        check_transition(PaymentStatus(payment.status), PaymentStatus.REQUIRES_CAPTURE)
        payment.status = PaymentStatus.REQUIRES_CAPTURE.value
        payment.updated_at = now
        metrics.payment_moved(session, payment.status, payment.provider)
    return False


def no_acquirer(session: Session, payment: Payment, attempt: Attempt | None) -> None:
    """Every acquirer was unavailable, or none could take the payment: nothing was charged."""
    if attempt is not None:
        attempt.pending_action = None
        attempt.next_check_at = None
    fail(session, payment, FailureCode.PROVIDER_UNAVAILABLE)


def apply_refund_result(
    session: Session, payment: Payment, refund: Refund, result: RefundResult
) -> None:
    now = clock.now()
    refund.updated_at = now
    if result.reference:
        refund.provider_reference = result.reference
    if result.outcome in (RefundOutcome.PENDING, RefundOutcome.UNKNOWN):
        refund.next_check_at = next_check(refund.checks, now)
        refund.checks += 1
        return
    refund.next_check_at = None
    if result.outcome is RefundOutcome.SUCCEEDED:
        refund.status = RefundStatus.SUCCEEDED.value
        payment.amount_refunded_minor += refund.amount_minor
        payment.updated_at = now
        ledger.post(
            session,
            postings.transaction(
                "refund",
                external_id=postings.refund_id(refund.id),
                description=f"refund {refund.id} of {payment.id}",
                amounts={"amount": refund.amount_minor},
                currency=refund.currency,
                livemode=refund.livemode,
                agency=refund.agency_id,
                provider=refund.provider,
                effective_at=now,
                metadata={"payment": payment.id, "refund": refund.id},
            ),
            now,
        )
    else:
        refund.status = RefundStatus.FAILED.value
        refund.failure_message = result.message or "the acquirer refused the refund"
    session.flush()
    refund_event(session, REFUND_EVENTS[RefundStatus(refund.status)], refund)
