"""Read-only use cases of the finance console: payments searched across agencies, everything
the gateway holds about one payment (its attempts, refunds, events, their webhook deliveries
and its ledger transactions), and the ledger's verification as `gateway ledger verify` runs it.
Each reads in one transaction and changes nothing; finance principals only."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import or_, select

import ledger
from ledger.lookup import JournalEntry, by_external_ids
from payments import postings
from payments.errors import PermissionDenied
from payments.gateway import Gateway
from payments.models import Attempt, Event, Payment, Refund, SettlementLine
from payments.principal import Principal
from payments.service import anchors, audit
from payments.service.payments import Page, load_payment, paginate
from payments.webhooks.models import Delivery, DeliveryJob

# Bounds on what one payment's page reads (TigerStyle: a limit on everything).
MAX_ATTEMPTS = 100
MAX_REFUNDS = 100
MAX_EVENTS = 200
MAX_DELIVERIES = 200
MAX_SETTLEMENT_LINES = 100


@dataclasses.dataclass(frozen=True)
class PaymentSearch:
    """What finance looks payments up by; every field is optional and they all must hold.
    `created_gte`/`created_lt` bound `created_at`; `amount_minor` is exact, in `currency`."""

    reference: str | None = None
    payment_id: str | None = None
    agency_id: str | None = None
    status: str | None = None
    created_gte: dt.datetime | None = None
    created_lt: dt.datetime | None = None
    amount_minor: int | None = None
    currency: str | None = None


@dataclasses.dataclass(frozen=True)
class PaymentDossier:
    """One payment and everything that hangs off it, each list oldest first."""

    payment: Payment
    attempts: list[Attempt]
    refunds: list[Refund]
    events: list[Event]
    jobs: list[DeliveryJob]
    deliveries: list[Delivery]
    journal: list[JournalEntry]


@dataclasses.dataclass(frozen=True)
class Verification:
    """The ledger's verification: the report, and how many anchors it was held to."""

    report: ledger.Report
    anchors: int


def _finance_only(principal: Principal) -> None:
    if not principal.is_finance:
        raise PermissionDenied("the finance console's reads are for finance staff")


def search_payments(
    gw: Gateway, principal: Principal, search: PaymentSearch, page: Page
) -> tuple[list[Payment], bool]:
    """Payments of every agency and mode that match `search`, newest first; and whether more
    follow."""
    _finance_only(principal)
    query = select(Payment)
    if search.reference is not None:
        query = query.where(Payment.reference == search.reference)
    if search.payment_id is not None:
        query = query.where(Payment.id == search.payment_id)
    if search.agency_id is not None:
        query = query.where(Payment.agency_id == search.agency_id)
    if search.status is not None:
        query = query.where(Payment.status == search.status)
    if search.created_gte is not None:
        query = query.where(Payment.created_at >= search.created_gte)
    if search.created_lt is not None:
        query = query.where(Payment.created_at < search.created_lt)
    if search.amount_minor is not None:
        query = query.where(Payment.amount_minor == search.amount_minor)
    if search.currency is not None:
        query = query.where(Payment.currency == search.currency)
    with gw.db.read() as session:
        return paginate(session, query, Payment, page)


def payment_dossier(gw: Gateway, principal: Principal, payment_id: str) -> PaymentDossier:
    """The payment with its attempts, refunds, events (its own and its refunds'), the webhook
    jobs and deliveries of those events, and its ledger transactions: the capture, each
    refund, the settlement lines matched to either, and any reversal of them."""
    _finance_only(principal)
    with gw.db.read() as session:
        payment = load_payment(session, principal, payment_id)
        attempts = list(
            session.scalars(
                select(Attempt)
                .where(Attempt.payment_id == payment.id)
                .order_by(Attempt.created_at, Attempt.id)
                .limit(MAX_ATTEMPTS)
            )
        )
        refunds = list(
            session.scalars(
                select(Refund)
                .where(Refund.payment_id == payment.id)
                .order_by(Refund.id)
                .limit(MAX_REFUNDS)
            )
        )
        refund_ids = [refund.id for refund in refunds]
        events = list(
            session.scalars(
                select(Event)
                .where(Event.object_id.in_([payment.id, *refund_ids]))
                .order_by(Event.id)
                .limit(MAX_EVENTS)
            )
        )
        event_ids = [event.id for event in events]
        jobs = list(
            session.scalars(
                select(DeliveryJob)
                .where(DeliveryJob.event_id.in_(event_ids))
                .order_by(DeliveryJob.created_at, DeliveryJob.id)
                .limit(MAX_DELIVERIES)
            )
        )
        # The newest tries when there are more than the page shows, listed oldest first.
        deliveries = list(
            session.scalars(
                select(Delivery)
                .where(Delivery.event_id.in_(event_ids))
                .order_by(Delivery.id.desc())
                .limit(MAX_DELIVERIES)
            )
        )[::-1]
        lines = session.execute(
            select(
                SettlementLine.id,
                SettlementLine.provider,
                SettlementLine.line_key,
                SettlementLine.batch_id,
            )
            .where(
                or_(
                    SettlementLine.payment_id == payment.id,
                    SettlementLine.refund_id.in_(refund_ids),
                )
            )
            .order_by(SettlementLine.id)
            .limit(MAX_SETTLEMENT_LINES)
        ).all()
        external_ids = [
            postings.capture_id(payment.id),
            *(postings.refund_id(refund_id) for refund_id in refund_ids),
            # The batch each line is booked in (a line imported before batches, its own
            # transaction), and the release of a resolved line out of suspense.
            *dict.fromkeys(
                postings.batch_id(batch) if batch else postings.settlement_id(provider, key)
                for _line, provider, key, batch in lines
            ),
            *(postings.release_id(line) for line, *_ in lines),
        ]
        journal = by_external_ids(session, external_ids)
    return PaymentDossier(
        payment=payment,
        attempts=attempts,
        refunds=refunds,
        events=events,
        jobs=jobs,
        deliveries=deliveries,
        journal=journal,
    )


def verify_ledger(gw: Gateway, principal: Principal) -> Verification:
    """What `gateway ledger verify` checks: every ledger invariant and the hash chain, held to
    the anchor log if there is one, and the gateway's own invariants over the book. An anchor
    log that cannot be read is itself a failure of the verification (the chain could not be
    held to it), reported beside the rest."""
    _finance_only(principal)
    path = anchors.default_path(gw)
    held: list[ledger.Anchor] = []
    unreadable: str | None = None
    if path.exists():
        try:
            held = anchors.read(path)
        except anchors.AnchorLogError as exc:
            unreadable = str(exc)
    report = audit.audit(gw, held)
    if unreadable is not None:
        report.add("anchor", "anchor log", unreadable)
    return Verification(report=report, anchors=len(held))
