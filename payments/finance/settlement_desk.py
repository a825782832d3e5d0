"""What the settlement and reconciliation pages need of settlement, as a protocol: the console
may not import the settlement room, so the app's composition root hands it an object that
keeps this protocol (`app.extensions["settlement_desk"]`).

Every operation takes the console user as a finance `Principal` (named by their user id in what
they import and resolve) and raises the gateway's own errors (`payments.errors`): a malformed
file or a bad period is `ValidationFailed`, an unknown import `NotFound`, a break resolved
before `Conflict`. Amounts are integers of minor units beside their currency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import IO, BinaryIO, Protocol

from payments.principal import Principal


class ImportView(Protocol):
    """One imported settlement file and what its lines matched."""

    @property
    def id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def line_count(self) -> int: ...
    @property
    def summary(self) -> Mapping[str, int]: ...  # a line status -> how many lines
    @property
    def imported_by(self) -> str: ...
    @property
    def created_at(self) -> dt.datetime: ...


class ImportOutcomeView(Protocol):
    @property
    def settlement(self) -> ImportView: ...
    @property
    def created(self) -> bool: ...  # False: the same file was imported before, and this is it


class LineView(Protocol):
    """One line of a settlement file, with the status it was given at import."""

    @property
    def item_id(self) -> str: ...  # its id in the reconciliation report
    @property
    def line_no(self) -> int: ...
    @property
    def settlement_date(self) -> dt.date: ...
    @property
    def provider_reference(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def gross_minor(self) -> int: ...
    @property
    def fee_minor(self) -> int: ...
    @property
    def net_minor(self) -> int: ...
    @property
    def payment_id(self) -> str | None: ...
    @property
    def refund_id(self) -> str | None: ...
    @property
    def agency_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def is_break(self) -> bool: ...
    @property
    def resolution_note(self) -> str | None: ...
    @property
    def resolved_by(self) -> str | None: ...


class ImportDetailView(Protocol):
    """One import and a page of its lines in file order."""

    @property
    def settlement(self) -> ImportView: ...
    @property
    def lines(self) -> Sequence[LineView]: ...
    @property
    def has_more(self) -> bool: ...


class BreakView(Protocol):
    """One break of the reconciliation report (an item neither matched nor pending)."""

    @property
    def status(self) -> str: ...
    @property
    def item_id(self) -> str: ...  # `stl_…:N` for a settlement line, else a payment or refund
    @property
    def payment_id(self) -> str | None: ...
    @property
    def refund_id(self) -> str | None: ...
    @property
    def provider_reference(self) -> str | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def settled_currency(self) -> str | None: ...
    @property
    def gateway_amount(self) -> int | None: ...
    @property
    def settled_amount(self) -> int | None: ...
    @property
    def fee(self) -> int | None: ...
    @property
    def agency(self) -> str | None: ...
    @property
    def gateway_date(self) -> dt.date | None: ...
    @property
    def settlement_date(self) -> dt.date | None: ...
    @property
    def resolution_note(self) -> str | None: ...
    @property
    def resolved_by(self) -> str | None: ...


class ReconciliationView(Protocol):
    """The report's figures for one acquirer and period, and its first breaks."""

    @property
    def provider(self) -> str: ...
    @property
    def date_from(self) -> dt.date: ...
    @property
    def date_to(self) -> dt.date: ...
    @property
    def generated_at(self) -> dt.datetime: ...
    @property
    def lag_days(self) -> int: ...
    @property
    def summary(self) -> Mapping[str, int]: ...  # every status -> how many items
    @property
    def totals(self) -> Mapping[str, Mapping[str, int]]: ...  # currency -> count and sums
    @property
    def break_count(self) -> int: ...
    @property
    def breaks(self) -> Sequence[BreakView]: ...  # at most the number asked for
    @property
    def ledger_agrees(self) -> bool: ...


class ResolutionView(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def item(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def note(self) -> str: ...


class SettlementDesk(Protocol):
    """The settlement operations the console's pages take, each one use case."""

    @property
    def statuses(self) -> Sequence[str]: ...  # every report status, in the report's order

    @property
    def line_statuses(self) -> Sequence[str]: ...  # a line's statuses at import
    @property
    def not_breaks(self) -> Sequence[str]: ...  # the statuses no finance officer need look at

    @property
    def report_formats(self) -> Mapping[str, str]: ...  # csv, xlsx, ... -> media type

    @property
    def max_period_days(self) -> int: ...

    @property
    def max_note_chars(self) -> int: ...

    def providers(self) -> list[str]:
        """The acquirers the gateway knows, for reports."""
        ...

    def importable_providers(self) -> list[str]:
        """The acquirers whose settlement files can be imported."""
        ...

    def import_file(
        self, principal: Principal, provider: str, stream: IO[bytes], filename: str
    ) -> ImportOutcomeView:
        """Import a settlement file, or answer the import of the same file before."""
        ...

    def list_imports(
        self, principal: Principal, *, limit: int, starting_after: str | None
    ) -> tuple[Sequence[ImportView], bool]:
        """A page of imports, newest first, and whether more follow."""
        ...

    def get_import(
        self,
        principal: Principal,
        settlement_id: str,
        *,
        after_line_no: int,
        limit: int,
        breaks_only: bool,
    ) -> ImportDetailView:
        """One import with a page of its lines after `after_line_no`."""
        ...

    def reconciliation(
        self,
        principal: Principal,
        provider: str,
        date_from: dt.date,
        date_to: dt.date,
        *,
        max_breaks: int,
    ) -> ReconciliationView:
        """The report's summary, totals per currency, and its first `max_breaks` breaks."""
        ...

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
        """Write the report, as the API writes it, in `fmt` to `out`."""
        ...

    def resolve(self, principal: Principal, provider: str, item: str, note: str) -> ResolutionView:
        """Mark one break resolved with the user's note."""
        ...
