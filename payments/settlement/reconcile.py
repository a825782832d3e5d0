"""Three-way reconciliation of one acquirer over a period: the gateway's captures and refunds,
the acquirer's settlement lines, and the ledger's postings to the acquirer's clearing account.

The report covers every settlement line dated in the period and every capture or refund made in
it (its day is that of its ledger transaction, as in the settlement export), each in exactly one
item with one status of API.md §5:

- a line keeps the status it was given at import (`matched`, `matched_within_tolerance`,
  `amount_mismatch`, `currency_mismatch`, `duplicate`, `missing_in_gateway`, `chargeback`,
  `chargeback_reversal`), except that a payment or refund is paired with one line only: the
  settling one, or else its first mismatched one; any other line claiming it is a `duplicate`
  and carries no gateway amount; a chargeback or its reversal carries its own gross as the
  gateway's amount (the dispute the gateway booked from it);
- a capture or refund that no line pairs with is `pending_settlement` while it is younger than
  the settlement lag and `missing_in_settlement` after;
- a line dated outside the period whose payment or refund was made in it is reported too, so
  that every capture of the period lands somewhere.

Everything is counted in SQL first (the summary, the totals per currency and per agency, and
the ledger's side), then the items stream from the database, a few thousand rows at a time, to
a writer that checks they add up to what it already wrote.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy.orm import Session, aliased

from ledger import Account, JournalTransaction, Posting
from payments import postings
from payments.models import (
    Payment,
    ReconciliationResolution,
    Refund,
    SettlementBatch,
    SettlementLine,
)
from payments.postings import CLEARING, account_code
from payments.settlement.items import TOTAL_FIELDS, Bucket, ReconItem, ReportHeader
from payments.settlement.statuses import DISPUTES, NOT_BREAKS, SETTLES, STATUSES, ItemStatus
from payments.states import RefundStatus

ROWS_PER_FETCH = 2000
# A line of one of these statuses pairs with the payment or refund it names: it settles it, or
# it claims to and differs.
MISMATCHED = (ItemStatus.AMOUNT_MISMATCH, ItemStatus.CURRENCY_MISMATCH)
PAIRING = (*SETTLES, *MISMATCHED)
LEDGER_FIELDS = (
    "captured",
    "captured_posted",
    "refunded",
    "refunded_posted",
    "settled",
    "settled_posted",
)


@dataclasses.dataclass(frozen=True)
class Period:
    """The report's acquirer and days, and the moment it is made."""

    provider: str
    date_from: dt.date
    date_to: dt.date
    as_of: dt.datetime  # UTC
    lag_days: int

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.date_from, dt.time(), tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.combine(self.date_to + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    @property
    def missing_before(self) -> dt.datetime:
        """A capture or refund made before this moment is due by now: a break if unsettled.
        One of day D is due in the file of day D + lag, so it is missing from that day on:
        today that is every day up to and including today - lag."""
        today = self.as_of.astimezone(dt.UTC).date()
        return dt.datetime.combine(
            today - dt.timedelta(days=self.lag_days - 1), dt.time(), tzinfo=dt.UTC
        )

    def header(self) -> ReportHeader:
        return ReportHeader(
            provider=self.provider,
            date_from=self.date_from,
            date_to=self.date_to,
            generated_at=self.as_of.astimezone(dt.UTC),
            settlement_lag_days=self.lag_days,
        )


@dataclasses.dataclass(frozen=True)
class Figures:
    """What the report promises before its items are written, all in minor units."""

    summary: dict[str, int]  # status -> count, every status present
    totals: dict[str, dict[str, int]]  # currency -> TOTAL_FIELDS
    agencies: dict[str, dict[str, dict[str, int]]]  # agency ("" if none) -> currency -> fields
    ledger: dict[str, dict[str, int]]  # currency -> LEDGER_FIELDS

    @property
    def ledger_agrees(self) -> bool:
        """The ledger posted to clearing exactly what the gateway captured, refunded and had
        settled, in every currency."""
        return all(
            fields["captured"] == fields["captured_posted"]
            and fields["refunded"] == fields["refunded_posted"]
            and fields["settled"] == fields["settled_posted"]
            for fields in self.ledger.values()
        )

    @property
    def breaks(self) -> int:
        return sum(count for status, count in self.summary.items() if status not in NOT_BREAKS)


def line_item_id(settlement_id: str, line_no: int) -> str:
    """The public id of a settlement line's item: its file and line number."""
    return f"{settlement_id}:{line_no}"


# -- the two halves of the report, as SQL --------------------------------------------------------


def line_status(session: Session, line: SettlementLine) -> str:
    """The status a settlement line has in every report: its import status, except that a
    mismatched line is a `duplicate` when another line pairs with its payment or refund."""
    if line.status not in MISMATCHED or line.type not in ("payment", "refund"):
        return line.status
    other = SettlementLine
    same_target = (
        (other.refund_id == line.refund_id)
        if line.type == "refund"
        else and_(other.type == "payment", other.payment_id == line.payment_id)
    )
    earlier = session.execute(
        select(other.id).where(
            other.provider == line.provider,
            same_target,
            other.status.in_(PAIRING),
            or_(other.status.in_(SETTLES), other.id < line.id),
        )
    ).first()
    return ItemStatus.DUPLICATE if earlier is not None else line.status


def unsettled_status(
    session: Session, target_id: str, *, refund: bool, as_of: dt.datetime, lag_days: int
) -> str | None:
    """`missing_in_settlement` or `pending_settlement` for a capture or refund that no line
    pairs with, by the settlement lag; None if the gateway never posted it."""
    external_id = postings.refund_id(target_id) if refund else postings.capture_id(target_id)
    made_at = session.execute(
        select(JournalTransaction.effective_at).where(JournalTransaction.external_id == external_id)
    ).scalar_one_or_none()
    if made_at is None:
        return None
    span = Period(
        provider="", date_from=as_of.date(), date_to=as_of.date(), as_of=as_of, lag_days=lag_days
    )
    return (
        ItemStatus.MISSING_IN_SETTLEMENT
        if made_at < span.missing_before
        else ItemStatus.PENDING_SETTLEMENT
    )


def _line_rows(period: Period) -> Select[Any]:
    """Each settlement line in the report, with its report status and its gateway side."""
    line = SettlementLine
    other = aliased(SettlementLine)
    payment = aliased(Payment)
    refund = aliased(Refund)
    capture_tx = aliased(JournalTransaction)
    refund_tx = aliased(JournalTransaction)
    same_target = or_(
        and_(line.type == "payment", other.type == "payment", other.payment_id == line.payment_id),
        and_(line.type == "refund", other.refund_id == line.refund_id),
    )
    pairs = or_(
        line.status.in_(SETTLES),
        and_(
            line.status.in_(MISMATCHED),
            ~exists().where(
                other.provider == line.provider,
                same_target,
                other.status.in_(PAIRING),
                or_(other.status.in_(SETTLES), other.id < line.id),
            ),
        ),
    )
    status = case(
        (
            line.status.in_(
                (ItemStatus.DUPLICATE.value, ItemStatus.MISSING_IN_GATEWAY.value, *DISPUTES)
            ),
            line.status,
        ),
        (line.type.not_in(("payment", "refund")), line.status),
        (pairs, line.status),
        else_=literal(ItemStatus.DUPLICATE.value),
    )
    gateway_amount = case(
        # A chargeback's is the dispute the gateway booked from it; a line that settles a
        # capture or refund with others of its file settles its own share of it.
        (or_(line.status.in_(DISPUTES), line.parts.is_not(None)), line.gross_minor),
        (
            and_(line.status.in_(PAIRING), line.type.in_(("payment", "refund")), pairs),
            case(
                (line.type == "payment", payment.amount_captured_minor),
                else_=-refund.amount_minor,
            ),
        ),
        else_=null(),
    )
    gateway_currency = case(
        (
            line.status == ItemStatus.CURRENCY_MISMATCH.value,
            func.coalesce(refund.currency, payment.currency),
        ),
        else_=line.currency,
    )
    gateway_at = func.coalesce(refund_tx.effective_at, capture_tx.effective_at)
    sibling = aliased(SettlementLine)
    settled_with = case(
        (
            line.parts.is_not(None),
            select(
                func.aggregate_strings(
                    sibling.settlement_id.concat(":").concat(sibling.line_no.cast(String)), " "
                )
            )
            .where(
                sibling.settlement_id == line.settlement_id,
                sibling.type == line.type,
                sibling.parts.is_not(None),
                sibling.id != line.id,
                or_(
                    and_(line.type == "payment", sibling.payment_id == line.payment_id),
                    and_(line.type == "refund", sibling.refund_id == line.refund_id),
                ),
            )
            .scalar_subquery(),
        ),
        else_=null(),
    )
    in_period = or_(
        line.settlement_date.between(period.date_from, period.date_to),
        and_(
            line.status.in_(PAIRING),
            gateway_at >= period.start,
            gateway_at < period.end,
            pairs,
        ),
    )
    resolution = ReconciliationResolution
    return (
        select(
            status.label("status"),
            line.settlement_id,
            line.line_no,
            line.payment_id,
            line.refund_id,
            line.provider_reference,
            gateway_currency.label("currency"),
            line.currency.label("settled_currency"),
            gateway_amount.label("gateway_amount"),
            line.gross_minor.label("settled_amount"),
            line.fee_minor.label("fee"),
            line.agency_id.label("agency"),
            gateway_at.label("gateway_at"),
            line.settlement_date,
            resolution.note,
            resolution.resolved_by,
            line.drift_minor,
            line.drift_days,
            settled_with.label("settled_with"),
        )
        .select_from(line)
        .outerjoin(payment, and_(line.type == "payment", payment.id == line.payment_id))
        .outerjoin(refund, and_(line.type == "refund", refund.id == line.refund_id))
        .outerjoin(
            capture_tx,
            and_(
                line.type == "payment",
                capture_tx.external_id == postings.capture_id_of(line.payment_id),
            ),
        )
        .outerjoin(
            refund_tx,
            and_(
                line.type == "refund",
                refund_tx.external_id == postings.refund_id_of(line.refund_id),
            ),
        )
        .outerjoin(resolution, resolution.settlement_line_id == line.id)
        .where(line.provider == period.provider, in_period)
    )


def _gateway_rows(period: Period) -> Select[Any]:
    """Each capture and refund of the period that no settlement line pairs with."""
    captured_tx = aliased(JournalTransaction)
    refunded_tx = aliased(JournalTransaction)
    line = SettlementLine
    paired = line.status.in_(PAIRING)
    captures = (
        select(
            Payment.id.label("target_id"),
            Payment.id.label("payment_id"),
            null().cast(String).label("refund_id"),
            Payment.provider_reference,
            Payment.currency,
            Payment.amount_captured_minor.label("gateway_amount"),
            Payment.agency_id.label("agency"),
            captured_tx.effective_at.label("gateway_at"),
        )
        .join(
            captured_tx,
            captured_tx.external_id == postings.capture_id_of(Payment.id),
        )
        .where(
            Payment.provider == period.provider,
            Payment.amount_captured_minor > 0,
            captured_tx.effective_at >= period.start,
            captured_tx.effective_at < period.end,
            ~exists().where(line.type == "payment", line.payment_id == Payment.id, paired),
        )
    )
    refunds = (
        select(
            Refund.id.label("target_id"),
            Refund.payment_id,
            Refund.id.label("refund_id"),
            Refund.provider_reference,
            Refund.currency,
            (-Refund.amount_minor).label("gateway_amount"),
            Refund.agency_id.label("agency"),
            refunded_tx.effective_at.label("gateway_at"),
        )
        .join(
            refunded_tx,
            refunded_tx.external_id == postings.refund_id_of(Refund.id),
        )
        .where(
            Refund.provider == period.provider,
            Refund.status == RefundStatus.SUCCEEDED.value,
            refunded_tx.effective_at >= period.start,
            refunded_tx.effective_at < period.end,
            ~exists().where(line.type == "refund", line.refund_id == Refund.id, paired),
        )
    )
    unpaired = captures.union_all(refunds).subquery("unpaired")
    resolution = ReconciliationResolution
    status = case(
        (
            unpaired.c.gateway_at < period.missing_before,
            literal(ItemStatus.MISSING_IN_SETTLEMENT.value),
        ),
        else_=literal(ItemStatus.PENDING_SETTLEMENT.value),
    )
    return (
        select(
            status.label("status"),
            unpaired.c.target_id,
            unpaired.c.payment_id,
            unpaired.c.refund_id,
            unpaired.c.provider_reference,
            unpaired.c.currency,
            unpaired.c.gateway_amount,
            unpaired.c.agency,
            unpaired.c.gateway_at,
            resolution.note,
            resolution.resolved_by,
        )
        .select_from(unpaired)
        .outerjoin(
            resolution,
            and_(
                resolution.provider == period.provider,
                resolution.target_id == unpaired.c.target_id,
            ),
        )
    )


# -- counting first ------------------------------------------------------------------------------


def figures(session: Session, period: Period) -> Figures:
    """The summary, totals per currency and per agency, and the ledger's side, from SQL."""
    by_currency: dict[str, Bucket] = {}
    by_agency: dict[tuple[str, str], Bucket] = {}
    summary: dict[str, int] = dict.fromkeys(STATUSES, 0)

    def fold(
        status: str, agency: str | None, currency: str, settled_currency: str, row: Any
    ) -> None:
        count, gateway, settled, fee = (int(value or 0) for value in row)
        summary[status] += count
        for key, bucket_map in (
            ((currency,), by_currency),
            ((agency or "", currency), by_agency),
        ):
            _bucket(bucket_map, key).merge(Bucket(count, gateway, 0, 0))
        for key, bucket_map in (
            ((settled_currency,), by_currency),
            ((agency or "", settled_currency), by_agency),
        ):
            _bucket(bucket_map, key).merge(Bucket(0, 0, settled, fee))

    lines = _line_rows(period).subquery("report_lines")
    grouped = select(
        lines.c.status,
        lines.c.agency,
        lines.c.currency,
        lines.c.settled_currency,
        func.count(),
        func.sum(lines.c.gateway_amount),
        func.sum(lines.c.settled_amount),
        func.sum(lines.c.fee),
    ).group_by(lines.c.status, lines.c.agency, lines.c.currency, lines.c.settled_currency)
    for status, agency, currency, settled_currency, *sums in session.execute(grouped):
        fold(status, agency, currency, settled_currency, sums)
    unpaired = _gateway_rows(period).subquery("report_unpaired")
    grouped = select(
        unpaired.c.status,
        unpaired.c.agency,
        unpaired.c.currency,
        func.count(),
        func.sum(unpaired.c.gateway_amount),
    ).group_by(unpaired.c.status, unpaired.c.agency, unpaired.c.currency)
    for status, agency, currency, count, gateway in session.execute(grouped):
        fold(status, agency, currency, currency, (count, gateway, 0, 0))

    agencies: dict[str, dict[str, dict[str, int]]] = {}
    for agency, currency in sorted(by_agency):
        agencies.setdefault(agency, {})[currency] = by_agency[agency, currency].as_dict()
    return Figures(
        summary=summary,
        totals={currency: by_currency[currency].as_dict() for currency in sorted(by_currency)},
        agencies=agencies,
        ledger=_ledger_side(session, period),
    )


def _bucket(buckets: dict[Any, Bucket], key: tuple[str, ...]) -> Bucket:
    found = buckets.get(key[0] if len(key) == 1 else key)
    if found is None:
        found = buckets[key[0] if len(key) == 1 else key] = Bucket()
    return found


def _ledger_side(session: Session, period: Period) -> dict[str, dict[str, int]]:
    """Per currency: what the gateway captured, refunded and had settled in the period, beside
    what the ledger posted to the acquirer's clearing account for the same transactions."""
    clearing = [
        account_code(CLEARING[0], livemode=livemode, provider=period.provider)
        for livemode in (True, False)
    ]
    tx = JournalTransaction
    in_period = and_(tx.effective_at >= period.start, tx.effective_at < period.end)
    result: dict[str, dict[str, int]] = {}

    def put(currency: str, field: str, value: Any) -> None:
        fields = result.setdefault(currency, dict.fromkeys(LEDGER_FIELDS, 0))
        fields[field] += int(value or 0)

    captured = (
        select(Payment.currency, func.sum(Payment.amount_captured_minor))
        .join(tx, tx.external_id == postings.capture_id_of(Payment.id))
        .where(Payment.provider == period.provider, in_period)
        .group_by(Payment.currency)
    )
    refunded = (
        select(Refund.currency, func.sum(Refund.amount_minor))
        .join(tx, tx.external_id == postings.refund_id_of(Refund.id))
        .where(
            Refund.provider == period.provider,
            Refund.status == RefundStatus.SUCCEEDED.value,
            in_period,
        )
        .group_by(Refund.currency)
    )
    for query, field in ((captured, "captured"), (refunded, "refunded")):
        for currency, total in session.execute(query):
            put(currency, field, total)

    def posted(kind: str, direction: str) -> Select[str, int]:
        return (
            select(Account.currency, func.sum(Posting.amount_minor))
            .join(Posting, Posting.account_id == Account.id)
            .join(tx, tx.id == Posting.transaction_id)
            .where(
                Account.code.in_(clearing),
                Posting.direction == direction,
                tx.external_id.startswith(postings.prefix_of(kind), autoescape=True),
                in_period,
            )
            .group_by(Account.currency)
        )

    for query, field in (
        (posted(postings.CAPTURE, "debit"), "captured_posted"),
        (posted(postings.REFUND, "credit"), "refunded_posted"),
    ):
        for currency, total in session.execute(query):
            put(currency, field, total)

    # Settled: matched lines dated in the period, and the clearing legs of their transactions
    # (a refund line's gross is negative and its clearing leg a debit).
    line = SettlementLine
    # A line within tolerance settled the gateway's amount (its drift is a difference); a
    # chargeback or its reversal moved its gross through clearing.
    matched_in_period = and_(
        line.provider == period.provider,
        line.status.in_((*SETTLES, *DISPUTES)),
        line.settlement_date.between(period.date_from, period.date_to),
    )
    settled = (
        select(line.currency, func.sum(line.gross_minor - func.coalesce(line.drift_minor, 0)))
        .where(matched_in_period)
        .group_by(line.currency)
    )
    for currency, total in session.execute(settled):
        put(currency, "settled", total)
    signed = case(
        (Posting.direction == "credit", Posting.amount_minor), else_=-Posting.amount_minor
    )
    batch = SettlementBatch
    by_batch = (
        select(Account.currency, func.sum(signed))
        .select_from(batch)
        .join(tx, tx.external_id == postings.batch_id_of(batch.id))
        .join(Posting, Posting.transaction_id == tx.id)
        .join(Account, Account.id == Posting.account_id)
        .where(
            batch.provider == period.provider,
            batch.value_date.between(period.date_from, period.date_to),
            Account.code.in_(clearing),
        )
        .group_by(Account.currency)
    )
    # Lines imported before batches were posted one transaction each.
    by_line = (
        select(Account.currency, func.sum(signed))
        .select_from(line)
        .join(
            tx,
            tx.external_id
            == literal(postings.settlement_prefix(period.provider)).concat(line.line_key),
        )
        .join(Posting, Posting.transaction_id == tx.id)
        .join(Account, Account.id == Posting.account_id)
        .where(matched_in_period, line.batch_id.is_(None), Account.code.in_(clearing))
        .group_by(Account.currency)
    )
    for settled_posted in (by_batch, by_line):
        for currency, total in session.execute(settled_posted):
            put(currency, "settled_posted", total)
    return {currency: result[currency] for currency in sorted(result)}


# -- then streaming ------------------------------------------------------------------------------


def items(
    session: Session, period: Period, *, progress: Callable[[ReconItem], None] | None = None
) -> Iterator[ReconItem]:
    """Every item of the report, lines first (in file order), then the unpaired captures and
    refunds (oldest first), fetched `ROWS_PER_FETCH` at a time."""
    lines = _line_rows(period).order_by(SettlementLine.id)
    for row in session.execute(lines.execution_options(yield_per=ROWS_PER_FETCH)):
        item = ReconItem(
            status=row.status,
            item_id=line_item_id(row.settlement_id, row.line_no),
            payment_id=row.payment_id,
            refund_id=row.refund_id,
            provider_reference=row.provider_reference,
            currency=row.currency,
            settled_currency=row.settled_currency,
            gateway_amount=row.gateway_amount,
            settled_amount=row.settled_amount,
            fee=row.fee,
            agency=row.agency,
            gateway_date=_day(row.gateway_at) if row.gateway_amount is not None else None,
            settlement_date=row.settlement_date,
            resolution_note=row.note,
            resolved_by=row.resolved_by,
            drift_amount=row.drift_minor,
            drift_days=row.drift_days,
            settled_with=tuple(sorted((row.settled_with or "").split(), key=_line_order)),
        )
        if progress is not None:
            progress(item)
        yield item
    unpaired = _gateway_rows(period).order_by("gateway_at", "target_id")
    for row in session.execute(unpaired.execution_options(yield_per=ROWS_PER_FETCH)):
        item = ReconItem(
            status=row.status,
            item_id=row.target_id,
            payment_id=row.payment_id,
            refund_id=row.refund_id,
            provider_reference=row.provider_reference,
            currency=row.currency,
            settled_currency=None,
            gateway_amount=row.gateway_amount,
            settled_amount=None,
            fee=None,
            agency=row.agency,
            gateway_date=_day(row.gateway_at),
            settlement_date=None,
            resolution_note=row.note,
            resolved_by=row.resolved_by,
        )
        if progress is not None:
            progress(item)
        yield item


def _line_order(item_id: str) -> tuple[str, int]:
    settlement, _, line_no = item_id.rpartition(":")
    return settlement, int(line_no)


def _day(moment: dt.datetime | None) -> dt.date | None:
    return None if moment is None else moment.astimezone(dt.UTC).date()


__all__ = [
    "LEDGER_FIELDS",
    "TOTAL_FIELDS",
    "Figures",
    "Period",
    "figures",
    "items",
    "line_item_id",
]
