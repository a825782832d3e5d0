"""Refund use cases: create (money-safe sequence around the acquirer call), read, list."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import func, select

from payments import clock, idempotency, metrics
from payments.errors import Conflict, NotFound, ValidationFailed
from payments.gateway import Gateway
from payments.ids import is_id, new_id
from payments.models import Refund
from payments.principal import Principal
from payments.service.outcomes import OPEN_ATTEMPT_GRACE_S, apply_refund_result
from payments.service.payments import Page, load_payment, paginate, scoped
from payments.states import PaymentStatus, RefundStatus
from providers import RefundOutcome, RefundRequest, RefundResult


def create_refund(
    gw: Gateway,
    principal: Principal,
    payment_id: str,
    amount_minor: int | None,
    reason: str | None,
) -> Refund:
    done = idempotency.recovered()
    if done is not None and is_id(done, "re"):
        return get_refund(gw, principal, done)  # a dead request under this key made it
    now = clock.now()
    with gw.db.transaction() as session:
        payment = load_payment(session, principal, payment_id, lock=True)
        if payment.status != PaymentStatus.SUCCEEDED:
            raise Conflict(
                f"only a succeeded payment can be refunded; this one is {payment.status}",
                code="payment_invalid_state",
            )
        if payment.dispute_status == "open":
            # The acquirer took the money back already: a refund would return it twice.
            raise Conflict(
                f"the payment is disputed: a chargeback of {payment.dispute_amount_minor} is "
                "open, so it cannot be refunded until the chargeback is reversed",
                code="payment_disputed",
            )
        committed = session.execute(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.payment_id == payment.id,
                Refund.status != RefundStatus.FAILED.value,
            )
        ).scalar_one()
        refundable = payment.amount_captured_minor - int(committed)
        amount_minor = refundable if amount_minor is None else amount_minor
        if amount_minor <= 0 or amount_minor > refundable:
            raise ValidationFailed(
                f"at most {refundable} can still be refunded",
                code="amount_exceeds_refundable",
                param="amount",
                details={"amount": [f"Must be at most {refundable}."]},
            )
        assert payment.provider is not None and payment.provider_reference is not None
        refund = Refund(
            id=new_id("re"),
            payment_id=payment.id,
            agency_id=payment.agency_id,
            livemode=payment.livemode,
            amount_minor=amount_minor,
            currency=payment.currency,
            status=RefundStatus.PENDING.value,
            reason=reason,
            provider=payment.provider,
            checks=0,
            next_check_at=now + dt.timedelta(seconds=OPEN_ATTEMPT_GRACE_S),
            created_at=now,
            updated_at=now,
        )
        session.add(refund)
        idempotency.committed(session, refund.id)
        request = RefundRequest(
            idempotency_key=refund.id,
            payment_reference=payment.provider_reference,
            amount_minor=amount_minor,
            currency=payment.currency,
        )
    provider = gw.providers.get(refund.provider)
    started = time.perf_counter()
    error: str | None = None
    try:
        result = provider.refund(request)
    except Exception:
        result = RefundResult(RefundOutcome.UNKNOWN, message="the acquirer did not answer")
        error = "exception"
    if error is None and result.outcome in (RefundOutcome.UNAVAILABLE, RefundOutcome.UNKNOWN):
        error = result.outcome.value
    metrics.acquirer_call(provider.name, "refund", time.perf_counter() - started, error)
    with gw.db.transaction() as session:
        payment = load_payment(session, principal, payment_id, lock=True)
        locked = session.get(Refund, refund.id, with_for_update=True)
        assert locked is not None
        if locked.status == RefundStatus.PENDING:
            apply_refund_result(session, payment, locked, result)
    return locked


def get_refund(gw: Gateway, principal: Principal, refund_id: str) -> Refund:
    if not is_id(refund_id, "re"):
        raise NotFound(f"no refund {refund_id[:40]!r}", param="id")
    with gw.db.read() as session:
        refund: Refund | None = session.execute(
            scoped(select(Refund).where(Refund.id == refund_id), Refund, principal)
        ).scalar_one_or_none()
    if refund is None:
        raise NotFound(f"no refund {refund_id}", param="id")
    return refund


def list_refunds(
    gw: Gateway, principal: Principal, payment_id: str, page: Page
) -> tuple[list[Refund], bool]:
    with gw.db.read() as session:
        load_payment(session, principal, payment_id)
        query = select(Refund).where(Refund.payment_id == payment_id)
        return paginate(session, query, Refund, page)
