"""Settlement as the finance console uses it: one object over the same use cases the API calls
(import, the imports, the reconciliation report, resolving a break), handed to the console by
the app's composition root so that the console never imports this room."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import IO, BinaryIO

from payments.errors import PermissionDenied
from payments.gateway import Gateway
from payments.models import Settlement
from payments.principal import Principal
from payments.service.payments import Page
from payments.settlement import imports, reconcile, reports
from payments.settlement.formats import FORMATS as FILE_FORMATS
from payments.settlement.items import ReconItem
from payments.settlement.lines import LineRecord, read_lines
from payments.settlement.statuses import LINE_STATUSES, NOT_BREAKS, STATUSES
from providers.sandbox import SandboxProvider

# The most imports one page lists, and breaks one reconciliation view carries.
MAX_PAGE = 100
MAX_BREAKS = 1000


@dataclasses.dataclass(frozen=True)
class ImportRecord:
    id: str
    provider: str
    filename: str
    line_count: int
    summary: Mapping[str, int]
    imported_by: str
    created_at: dt.datetime

    @classmethod
    def of(cls, settlement: Settlement) -> ImportRecord:
        return cls(
            id=settlement.id,
            provider=settlement.provider,
            filename=settlement.filename,
            line_count=settlement.line_count,
            summary=dict(settlement.summary),
            imported_by=settlement.imported_by,
            created_at=settlement.created_at,
        )


@dataclasses.dataclass(frozen=True)
class ImportOutcome:
    settlement: ImportRecord
    created: bool


@dataclasses.dataclass(frozen=True)
class ImportDetail:
    settlement: ImportRecord
    lines: tuple[LineRecord, ...]
    has_more: bool


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    provider: str
    date_from: dt.date
    date_to: dt.date
    generated_at: dt.datetime
    lag_days: int
    summary: Mapping[str, int]
    totals: Mapping[str, Mapping[str, int]]
    break_count: int
    breaks: tuple[ReconItem, ...]
    ledger_agrees: bool


def _finance_only(principal: Principal) -> None:
    if not principal.is_finance:
        raise PermissionDenied("reconciliation is for finance staff")


def reconciliation(
    gw: Gateway,
    principal: Principal,
    provider: str,
    date_from: dt.date,
    date_to: dt.date,
    *,
    max_breaks: int,
) -> Reconciliation:
    """The report's figures and its first `max_breaks` breaks, read in one snapshot as the
    report itself is (the items are not read at all when the figures count no break)."""
    _finance_only(principal)
    span = reports.period(gw, provider, date_from, date_to)
    max_breaks = max(0, min(max_breaks, MAX_BREAKS))
    found: list[ReconItem] = []
    with gw.db.snapshot() as session:
        figures = reconcile.figures(session, span)
        wanted = min(max_breaks, figures.breaks)
        if wanted:
            # Read to the end even past the last break wanted: the items' server-side cursor
            # closes only when they run out.
            for item in reconcile.items(session, span):  # bounded by the period's items
                if item.status not in NOT_BREAKS and len(found) < wanted:
                    found.append(item)
    return Reconciliation(
        provider=span.provider,
        date_from=span.date_from,
        date_to=span.date_to,
        generated_at=span.as_of,
        lag_days=span.lag_days,
        summary=dict(figures.summary),
        totals={currency: dict(fields) for currency, fields in figures.totals.items()},
        break_count=figures.breaks,
        breaks=tuple(found),
        ledger_agrees=figures.ledger_agrees,
    )


class GatewaySettlementDesk:
    """The console's settlement desk over one `Gateway`."""

    statuses: tuple[str, ...] = tuple(STATUSES)
    line_statuses: tuple[str, ...] = tuple(LINE_STATUSES)
    not_breaks: tuple[str, ...] = tuple(status for status in STATUSES if status in NOT_BREAKS)
    report_formats: Mapping[str, str] = {
        fmt: media.split(";")[0] for fmt, (media, _writer) in reports.FORMATS.items()
    }
    max_period_days: int = reports.MAX_PERIOD_DAYS
    max_note_chars: int = reports.MAX_NOTE_CHARS

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def providers(self) -> list[str]:
        return self.gw.providers.names()

    def importable_providers(self) -> list[str]:
        return [
            name
            for name in self.gw.providers.names()
            if name in FILE_FORMATS or isinstance(self.gw.providers.get(name), SandboxProvider)
        ]

    def import_file(
        self, principal: Principal, provider: str, stream: IO[bytes], filename: str
    ) -> ImportOutcome:
        result = imports.import_for(self.gw, principal, provider, stream, filename)
        return ImportOutcome(ImportRecord.of(result.settlement), result.created)

    def list_imports(
        self, principal: Principal, *, limit: int, starting_after: str | None
    ) -> tuple[list[ImportRecord], bool]:
        page = Page(limit=max(1, min(limit, MAX_PAGE)), starting_after=starting_after)
        found, has_more = imports.list_settlements(self.gw, principal, page)
        return [ImportRecord.of(settlement) for settlement in found], has_more

    def get_import(
        self,
        principal: Principal,
        settlement_id: str,
        *,
        after_line_no: int,
        limit: int,
        breaks_only: bool,
    ) -> ImportDetail:
        settlement = ImportRecord.of(imports.get_settlement(self.gw, principal, settlement_id))
        lines, has_more = read_lines(
            self.gw,
            settlement.id,
            after_line_no=after_line_no,
            limit=limit,
            breaks_only=breaks_only,
        )
        return ImportDetail(settlement, tuple(lines), has_more)

    def reconciliation(
        self,
        principal: Principal,
        provider: str,
        date_from: dt.date,
        date_to: dt.date,
        *,
        max_breaks: int,
    ) -> Reconciliation:
        return reconciliation(
            self.gw, principal, provider, date_from, date_to, max_breaks=max_breaks
        )

    def write_report(
        self,
        principal: Principal,
        provider: str,
        *,
        date_from: dt.date,
        date_to: dt.date,
        fmt: str,
        out: BinaryIO,
    ) -> None:
        reports.report_for(
            self.gw, principal, provider, date_from=date_from, date_to=date_to, fmt=fmt, out=out
        )

    def resolve(
        self, principal: Principal, provider: str, item: str, note: str
    ) -> reports.Resolution:
        return reports.resolve_for(self.gw, principal, provider, item, note)
