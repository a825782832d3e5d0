"""The reconciliation report and its breaks' resolutions, as use cases over the `Gateway`.

A report is counted and streamed inside one snapshot of the database, so an import committing
meanwhile cannot make its items disagree with the summary it wrote first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import ledger
from payments import clock, db, outbox, postings, suspense
from payments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from payments.gateway import Gateway
from payments.ids import is_id, new_id
from payments.models import Payment, ReconciliationResolution, Refund, Settlement, SettlementLine
from payments.principal import Principal
from payments.settlement import reconcile
from payments.settlement.items import ReconItem, ReportDetails
from payments.settlement.reconcile import Figures, Period
from payments.settlement.report_writers import write_csv, write_json
from payments.settlement.statuses import NOT_BREAKS, ItemStatus
from payments.settlement.xlsx_report import write_xlsx

FORMATS = {
    "json": ("application/json", write_json),
    "csv": ("text/csv; charset=utf-8", write_csv),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", write_xlsx),
}
# The longest period one report covers: a quarter and a bit, so a report stays a batch job.
MAX_PERIOD_DAYS = 100
MAX_NOTE_CHARS = 1000
_LINE_ITEM = re.compile(r"^(stl_[0-9a-z]{1,36}):([1-9][0-9]{0,9})$")
# A note is text a finance officer wrote: any script, punctuation, line breaks and tabs. Control
# characters, lone surrogates and U+FFFE/U+FFFF are refused: a break is resolved only once, so
# a note is in every report of its provider from then on, and a spreadsheet cannot hold them.
_NOT_NOTE_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# The note's rule as JSON Schema says it, for the API's document (CR is let through there:
# line breaks are made LF before the check).
NOTE_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufffe\uffff]*$"
# Who resolved a break is one line: no line break or tab either.
_NOT_NAME_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_LINE_BREAK = re.compile(r"\r\n?")


def period(gw: Gateway, provider: str, date_from: dt.date, date_to: dt.date) -> Period:
    """The report's period, refused if it is backwards or too long, for a known acquirer."""
    if date_from > date_to:
        raise ValidationFailed("`from` is after `to`", param="from")
    if (date_to - date_from).days >= MAX_PERIOD_DAYS:
        raise ValidationFailed(
            f"a report covers at most {MAX_PERIOD_DAYS} days; ask for several", param="to"
        )
    if provider not in gw.providers:
        raise ValidationFailed(f"no acquirer named {provider[:40]!r}", param="provider")
    return Period(
        provider=provider,
        date_from=date_from,
        date_to=date_to,
        as_of=clock.now(),
        lag_days=gw.settings.settlement_lag_days,
    )


def details(figures: Figures) -> ReportDetails:
    return ReportDetails(
        agencies=figures.agencies, ledger=figures.ledger, ledger_agrees=figures.ledger_agrees
    )


def write_report(
    gw: Gateway,
    span: Period,
    fmt: str,
    out: BinaryIO,
    *,
    counted: Callable[[Figures], None] | None = None,
    progress: Callable[[ReconItem], None] | None = None,
) -> Figures:
    """Write the report for `span` as `fmt` to `out`; return what it counted.

    `counted` hears the figures before the first item is written (a progress bar's length);
    `progress` hears each item as it is written.
    """
    if fmt not in FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}", param="format")
    _, writer = FORMATS[fmt]
    with gw.db.snapshot() as session:
        db.batch_job(session)
        figures = reconcile.figures(session, span)
        if counted is not None:
            counted(figures)
        writer(
            span.header(),
            figures.summary,
            figures.totals,
            reconcile.items(session, span, progress=progress),
            out,
            details=details(figures),
        )
    return figures


def announce(gw: Gateway, span: Period, figures: Figures) -> str:
    """Tell finance keys' endpoints that a reconciliation ran: a `reconciliation.completed`
    event with the report's period, summary and totals (never its items). Returns its id."""
    report_id = new_id("rcn")
    livemode = gw.providers.get(span.provider).capabilities.livemode
    data: dict[str, object] = {
        "id": report_id,
        "object": "reconciliation",
        "livemode": livemode,
        "provider": span.provider,
        "from": span.date_from.isoformat(),
        "to": span.date_to.isoformat(),
        "generated_at": clock.rfc3339(span.as_of),
        "settlement_lag_days": span.lag_days,
        "summary": dict(figures.summary),
        "totals": {currency: dict(fields) for currency, fields in figures.totals.items()},
        "breaks": figures.breaks,
        "ledger_agrees": figures.ledger_agrees,
    }
    with gw.db.transaction() as session:
        outbox.finance_event(
            session,
            "reconciliation.completed",
            object_id=report_id,
            livemode=livemode,
            data=data,
        )
    return report_id


def _finance_only(principal: Principal) -> None:
    if not principal.is_finance:
        raise PermissionDenied("reconciliation reports are for finance keys")


def report_for(
    gw: Gateway,
    principal: Principal,
    provider: str,
    *,
    date_from: dt.date,
    date_to: dt.date,
    fmt: str,
    out: BinaryIO,
) -> Figures:
    """`write_report` on behalf of an API key, which must be a finance key."""
    _finance_only(principal)
    return write_report(gw, period(gw, provider, date_from, date_to), fmt, out)


@dataclasses.dataclass(frozen=True)
class Resolution:
    provider: str
    item: str
    status: str
    note: str
    resolved_by: str
    created_at: dt.datetime


def resolve(gw: Gateway, provider: str, item: str, note: str, *, resolved_by: str) -> Resolution:
    """Mark one break resolved with a finance officer's note; a break is resolved once.

    `item` is an item's `id` in the report: `stl_…:N` (line N of a settlement file) or the id of
    a payment or refund that no settlement line explains.
    """
    # Line breaks as a browser or a Windows terminal sends them (CR LF, or CR) are kept as LF.
    # Checked before stripping: str.strip() would silently drop a control character at an end.
    note = _LINE_BREAK.sub("\n", note)
    _refuse_control_characters(note, _NOT_NOTE_TEXT, "note", "the note", "text, line breaks, tabs")
    note = note.strip()
    if not note:
        raise ValidationFailed("a resolution needs a note saying why", param="note")
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationFailed(f"the note is over {MAX_NOTE_CHARS} characters", param="note")
    _refuse_control_characters(
        resolved_by, _NOT_NAME_TEXT, "resolved_by", "the resolver's name", "one line of text"
    )
    resolved_by = resolved_by.strip()[:120]
    if not resolved_by:
        raise ValidationFailed("say who resolved the break", param="resolved_by")
    now = clock.now()
    try:
        with gw.db.transaction() as session:
            row = ReconciliationResolution(
                provider=provider,
                note=note,
                resolved_by=resolved_by,
                created_at=now,
                status="",
            )
            line_item = _LINE_ITEM.match(item)
            if line_item is not None:
                line = session.execute(
                    select(SettlementLine)
                    .join(Settlement, Settlement.id == SettlementLine.settlement_id)
                    .where(
                        Settlement.id == line_item.group(1),
                        Settlement.provider == provider,
                        SettlementLine.line_no == int(line_item.group(2)),
                    )
                ).scalar_one_or_none()
                if line is None:
                    raise NotFound(f"no settlement line {item[:60]!r}", param="item")
                status = reconcile.line_status(session, line)
                if status in NOT_BREAKS:
                    raise ValidationFailed(f"a {status} line is not a break", param="item")
                row.settlement_line_id, row.status = line.id, status
                freed = suspense.release(session, line, status)
                if freed is not None:
                    session.add(row)
                    session.flush()  # a second resolution of the line fails here, first
                    spec = postings.suspense_release(
                        freed,
                        description=f"settlement line {item} out of suspense: {status}",
                        effective_at=now,
                    )
                    ledger.post(session, spec, now)
            else:
                row.target_id, row.status = _unsettled_target(
                    session, provider, item, now=now, lag_days=gw.settings.settlement_lag_days
                )
            session.add(row)
    except IntegrityError:
        raise Conflict(
            f"the break {item[:60]!r} is resolved already", code="already_resolved"
        ) from None
    return Resolution(provider, item, row.status, note, resolved_by, now)


def _refuse_control_characters(
    text: str, refused: re.Pattern[str], param: str, what: str, allowed: str
) -> None:
    found = refused.search(text)
    if found is not None:
        raise ValidationFailed(
            f"{what} holds a control character (U+{ord(found.group()):04X} at character "
            f"{found.start() + 1}); it may hold {allowed} only",
            param=param,
        )


def _unsettled_target(
    session: Session, provider: str, item: str, *, now: dt.datetime, lag_days: int
) -> tuple[str, str]:
    """The payment or refund `item` names, if no line pairs with it: a settlement break."""
    target: Payment | Refund | None = None
    if is_id(item, "pay"):
        target = session.get(Payment, item)
    elif is_id(item, "re"):
        target = session.get(Refund, item)
    if target is None or target.provider != provider:
        raise NotFound(f"no payment or refund {item[:60]!r} for {provider!r}", param="item")
    paired = session.execute(
        select(SettlementLine.id).where(
            SettlementLine.provider == provider,
            SettlementLine.status.in_(reconcile.PAIRING),
            (SettlementLine.refund_id == target.id)
            if isinstance(target, Refund)
            else ((SettlementLine.payment_id == target.id) & (SettlementLine.type == "payment")),
        )
    ).first()
    if paired is not None:
        raise ValidationFailed(
            "a settlement line explains it: resolve that line's break instead", param="item"
        )
    status = reconcile.unsettled_status(
        session, target.id, refund=isinstance(target, Refund), as_of=now, lag_days=lag_days
    )
    if status is None:
        raise NotFound(f"{item[:60]!r} was never captured or refunded", param="item")
    if status == ItemStatus.PENDING_SETTLEMENT:
        raise ValidationFailed(
            "it is within the settlement lag: not a break until the acquirer's file is due",
            param="item",
        )
    return target.id, status


def resolve_for(
    gw: Gateway, principal: Principal, provider: str, item: str, note: str
) -> Resolution:
    _finance_only(principal)
    return resolve(gw, provider, item, note, resolved_by=principal.key_id)


__all__ = [
    "FORMATS",
    "NOT_BREAKS",
    "Figures",
    "Resolution",
    "announce",
    "period",
    "report_for",
    "resolve",
    "write_report",
]
