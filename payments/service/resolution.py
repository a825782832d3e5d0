"""The worker's use cases: ask acquirers about unknown outcomes, expire abandoned payments,
forget old idempotency keys, seal the ledger's queued transactions into its hash chain,
deliver webhooks. Each item is its own transaction; acquirer calls and webhook POSTs sit
outside."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from sqlalchemy import ColumnElement, delete, select

import ledger
from payments import clock
from payments.gateway import Gateway
from payments.models import Attempt, IdempotencyRecord, Payment, Refund
from payments.service.outcomes import (
    OPEN_ATTEMPT_GRACE_S,
    REDIRECT_WAIT_S,
    apply_refund_result,
    apply_result,
    ask_refund_status,
    ask_status,
    expire,
    no_acquirer,
    send_action,
)
from payments.service.payments import return_late_capture
from payments.states import AttemptStatus, FailureCode, PaymentStatus, RefundStatus
from payments.webhooks.delivery import deliver_due
from providers import (
    Outcome,
    Provider,
    ProviderResult,
    RedirectProvider,
    RefundOutcome,
    RefundResult,
)

log = logging.getLogger(__name__)
BATCH = 100
# When the worker asks a scheme again about an attempt it gave up as abandoned.
LATE_CAPTURE_CHECKS_S = (3600, 86400)


@dataclasses.dataclass
class PassReport:
    attempts_resolved: int = 0
    attempts_waiting: int = 0
    refunds_resolved: int = 0
    payments_expired: int = 0
    idempotency_keys_purged: int = 0
    ledger_transactions_sealed: int = 0
    webhooks_delivered: int = 0
    webhooks_retrying: int = 0
    webhooks_failed: int = 0
    late_captures_checked: int = 0


def _give_up_authentication(provider: Provider, attempt: Attempt) -> ProviderResult:
    """The payer left the acquirer's page unanswered past REDIRECT_WAIT_S: void the charge
    at the acquirer (idempotently) and count the authentication as failed. Should the payer
    have finished it meanwhile, the acquirer's answer says so and stands."""
    cancelled = send_action(
        provider,
        "cancel",
        lambda: provider.cancel(f"{attempt.id}-abandon", attempt.provider_reference or ""),
    )
    if cancelled.outcome in (Outcome.CANCELLED, Outcome.DECLINED):
        return ProviderResult(
            Outcome.DECLINED,
            reference=cancelled.reference or attempt.provider_reference,
            decline_code="authentication_failed",
            message="the payer did not complete authentication in time",
        )
    if cancelled.outcome in (Outcome.APPROVED, Outcome.REQUIRES_CAPTURE):
        return cancelled
    return ProviderResult(Outcome.UNKNOWN, message=cancelled.message)


def _never_reached(result: ProviderResult, waited: dt.timedelta) -> ProviderResult:
    """A scheme that has no record of a payment whose payer it was sent to: the payer may
    still be on the way to its page, so no proof of anything for the time a payer is given;
    after that the attempt is given up as abandoned, with nothing charged so far. Should the
    payer still pay on that page later (opened from their history), the scheme's callback
    names the closed attempt and the money is given back (`return_late_capture`)."""
    if waited < dt.timedelta(seconds=REDIRECT_WAIT_S):
        return ProviderResult(Outcome.UNKNOWN, message=result.message)
    return ProviderResult(
        Outcome.DECLINED,
        decline_code="abandoned",
        message="the payer never reached the scheme's page",
    )


def _ask(gw: Gateway, attempt: Attempt, currency: str) -> ProviderResult:
    """The acquirer's truth about an attempt; re-send a capture or void it has not applied."""
    provider = gw.providers.get(attempt.provider)
    try:
        result = ask_status(provider, attempt.id, attempt.provider_reference)
        waited = clock.now() - attempt.created_at
        if (
            result.outcome is Outcome.REDIRECT
            and attempt.pending_action == "authorize"
            and waited >= dt.timedelta(seconds=REDIRECT_WAIT_S)
        ):
            return _give_up_authentication(provider, attempt)
        if (
            result.outcome is Outcome.UNAVAILABLE
            and attempt.pending_action == "authorize"
            and attempt.redirect_url
        ):
            return _never_reached(result, waited)
        if (
            result.outcome is Outcome.UNAVAILABLE
            and attempt.provider_reference is None
            and waited < dt.timedelta(seconds=OPEN_ATTEMPT_GRACE_S)
        ):
            # Found by its key alone, through a search that can trail the acquirer's writes
            # (Stripe's by up to a minute): "no charge" this early is no proof; ask again later.
            return ProviderResult(Outcome.UNKNOWN, message=result.message)
        key, reference = attempt.action_key or "", result.reference or ""
        unapplied = result.outcome is Outcome.REQUIRES_CAPTURE and key and reference
        if unapplied and attempt.pending_action == "capture":  # re-send, same key: idempotent
            amount_minor = attempt.action_amount_minor or 0
            result = send_action(
                provider,
                "capture",
                lambda: provider.capture(key, reference, amount_minor, currency),
            )
        elif unapplied and attempt.pending_action == "cancel":
            result = send_action(provider, "cancel", lambda: provider.cancel(key, reference))
    except Exception:
        log.exception("status query failed", extra={"attempt": attempt.id})
        return ProviderResult(Outcome.UNKNOWN)
    return result


def _due_attempts(
    gw: Gateway, now: dt.datetime, *which: ColumnElement[bool]
) -> list[tuple[Attempt, str]]:
    """The attempts `which` selects whose next check is due, soonest first, a batch at most,
    each with its payment's currency."""
    with gw.db.read() as session:
        return [
            (attempt, currency)
            for attempt, currency in session.execute(
                select(Attempt, Payment.currency)
                .join(Payment, Payment.id == Attempt.payment_id)
                .where(*which, Attempt.next_check_at <= now)
                .order_by(Attempt.next_check_at)
                .limit(BATCH)
            )
        ]


def resolve_attempts(gw: Gateway, report: PassReport) -> None:
    for attempt, currency in _due_attempts(gw, clock.now(), Attempt.pending_action.is_not(None)):
        resolve_attempt(gw, attempt, currency, report)


def resolve_attempt(
    gw: Gateway,
    attempt: Attempt,
    currency: str,
    report: PassReport,
    *,
    payer_may_retry: bool = False,
) -> None:
    """Ask the acquirer about one open attempt and record its answer. `payer_may_retry`
    when an acquirer's notification (not the worker's schedule) prompted the question, so
    a payer still on the hosted page may follow a decline with another card."""
    action = attempt.pending_action
    result = _ask(gw, attempt, currency)
    with gw.db.transaction() as session:
        payment = session.get(Payment, attempt.payment_id, with_for_update=True)
        row = session.get(Attempt, attempt.id, with_for_update=True)
        assert payment is not None and row is not None
        if row.pending_action != action:
            return  # answered meanwhile
        if apply_result(session, payment, row, result, payer_may_retry=payer_may_retry):
            no_acquirer(session, payment, row)  # the acquirer never charged
        if _given_up_at_a_scheme(gw, row):
            row.checks = 0
            row.next_check_at = clock.now() + dt.timedelta(seconds=LATE_CAPTURE_CHECKS_S[0])
        if row.pending_action is None:
            report.attempts_resolved += 1
            log.info("attempt resolved", extra={"attempt": row.id, "status": payment.status})
        else:
            report.attempts_waiting += 1


def _given_up_at_a_scheme(gw: Gateway, attempt: Attempt) -> bool:
    """An attempt at a national scheme closed as abandoned: the payer may still pay on the
    scheme's page later, so the worker looks again (`watch_late_captures`)."""
    return (
        attempt.pending_action is None
        and attempt.status == AttemptStatus.DECLINED
        and attempt.decline_code == FailureCode.ABANDONED
        and attempt.provider in gw.providers
        and isinstance(gw.providers.get(attempt.provider), RedirectProvider)
    )


def watch_late_captures(gw: Gateway, report: PassReport) -> None:
    """Ask the scheme again about attempts given up as abandoned, an hour and a day after: money
    a payer paid on the scheme's page after all is given straight back (`return_late_capture`),
    whether or not they ever came back to the gateway."""
    now = clock.now()
    abandoned = (
        Attempt.pending_action.is_(None),
        Attempt.status == AttemptStatus.DECLINED.value,
        Attempt.decline_code == FailureCode.ABANDONED.value,
    )
    for attempt, currency in _due_attempts(gw, now, *abandoned):
        return_late_capture(gw, attempt, currency)
        with gw.db.transaction() as session:
            row = session.get(Attempt, attempt.id, with_for_update=True)
            assert row is not None
            row.checks += 1
            row.next_check_at = (
                now + dt.timedelta(seconds=LATE_CAPTURE_CHECKS_S[row.checks])
                if row.checks < len(LATE_CAPTURE_CHECKS_S)
                else None
            )
        report.late_captures_checked += 1


def resolve_refunds(gw: Gateway, report: PassReport) -> None:
    now = clock.now()
    with gw.db.read() as session:
        due = list(
            session.execute(
                select(Refund)
                .where(Refund.status == RefundStatus.PENDING.value, Refund.next_check_at <= now)
                .order_by(Refund.next_check_at)
                .limit(BATCH)
            ).scalars()
        )
    for refund in due:
        try:
            result = ask_refund_status(gw.providers.get(refund.provider), refund.id)
        except Exception:
            log.exception("refund status query failed", extra={"refund": refund.id})
            result = RefundResult(RefundOutcome.UNKNOWN)
        if result.outcome is RefundOutcome.UNAVAILABLE:
            result = RefundResult(RefundOutcome.FAILED, message="the acquirer has no such refund")
        with gw.db.transaction() as session:
            payment = session.get(Payment, refund.payment_id, with_for_update=True)
            row = session.get(Refund, refund.id, with_for_update=True)
            assert payment is not None and row is not None
            if row.status != RefundStatus.PENDING:
                continue
            apply_refund_result(session, payment, row, result)
            if row.status != RefundStatus.PENDING:
                report.refunds_resolved += 1


def expire_payments(gw: Gateway, report: PassReport) -> None:
    now = clock.now()
    with gw.db.transaction() as session:
        stale = list(
            session.execute(
                select(Payment)
                .where(Payment.status == PaymentStatus.CREATED.value, Payment.expires_at <= now)
                .order_by(Payment.expires_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).scalars()
        )
        for payment in stale:
            expire(session, payment)
            report.payments_expired += 1


def purge_idempotency_keys(gw: Gateway, report: PassReport) -> None:
    cutoff = clock.now() - dt.timedelta(seconds=gw.settings.idempotency_ttl_s)
    with gw.db.transaction() as session:
        result = session.execute(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
        )
        report.idempotency_keys_purged += int(getattr(result, "rowcount", 0) or 0)


def seal_ledger(gw: Gateway, report: PassReport) -> None:
    """Chain the ledger transactions whose postings left them queued (another transaction
    held the chain head), a bounded batch per transaction, until the queue is drained."""
    while True:
        with gw.db.transaction() as session:
            sealed = ledger.seal(session)
        report.ledger_transactions_sealed += sealed
        if sealed < ledger.SEAL_LIMIT:
            return


def run_pass(gw: Gateway) -> PassReport:
    """One pass of every worker duty."""
    report = PassReport()
    resolve_attempts(gw, report)
    resolve_refunds(gw, report)
    watch_late_captures(gw, report)
    expire_payments(gw, report)
    purge_idempotency_keys(gw, report)
    seal_ledger(gw, report)
    delivered = deliver_due(gw)  # last: it sends the events the duties above just wrote
    report.webhooks_delivered = delivered.delivered
    report.webhooks_retrying = delivered.retrying
    report.webhooks_failed = delivered.failed
    return report
