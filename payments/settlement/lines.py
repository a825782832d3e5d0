"""Reading one imported settlement file's lines back, a page at a time in file order, each with
the status it was given at import and the resolution of its break, if a finance officer wrote
one."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select

from payments.gateway import Gateway
from payments.models import ReconciliationResolution, SettlementLine
from payments.settlement.reconcile import line_item_id
from payments.settlement.statuses import NOT_BREAKS

# The most lines one read returns: a file may hold millions.
MAX_LINES = 500


@dataclasses.dataclass(frozen=True)
class LineRecord:
    """One settlement line as the file stated it, amounts in minor units (refunds negative)."""

    item_id: str  # `stl_…:N`, the line's id in the reconciliation report
    line_no: int
    settlement_date: dt.date
    provider_reference: str
    type: str
    currency: str
    gross_minor: int
    fee_minor: int
    net_minor: int
    payment_id: str | None
    refund_id: str | None
    agency_id: str | None
    status: str
    resolution_note: str | None
    resolved_by: str | None

    @property
    def is_break(self) -> bool:
        return self.status not in NOT_BREAKS


def read_lines(
    gw: Gateway,
    settlement_id: str,
    *,
    after_line_no: int = 0,
    limit: int = 100,
    breaks_only: bool = False,
) -> tuple[list[LineRecord], bool]:
    """Up to `limit` lines of the file after line `after_line_no`, in file order; and whether
    more follow."""
    limit = max(1, min(limit, MAX_LINES))
    line = SettlementLine
    resolution = ReconciliationResolution
    query = (
        select(line, resolution.note, resolution.resolved_by)
        .outerjoin(resolution, resolution.settlement_line_id == line.id)
        .where(line.settlement_id == settlement_id, line.line_no > after_line_no)
        .order_by(line.line_no)
        .limit(limit + 1)
    )
    if breaks_only:
        query = query.where(line.status.not_in([status.value for status in NOT_BREAKS]))
    with gw.db.read() as session:
        rows = session.execute(query).all()
    found = [
        LineRecord(
            item_id=line_item_id(settlement_id, row.line_no),
            line_no=row.line_no,
            settlement_date=row.settlement_date,
            provider_reference=row.provider_reference,
            type=row.type,
            currency=row.currency,
            gross_minor=row.gross_minor,
            fee_minor=row.fee_minor,
            net_minor=row.net_minor,
            payment_id=row.payment_id,
            refund_id=row.refund_id,
            agency_id=row.agency_id,
            status=row.status,
            resolution_note=note,
            resolved_by=resolved_by,
        )
        for row, note, resolved_by in rows[:limit]
    ]
    return found, len(rows) > limit
