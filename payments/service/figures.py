"""The finance dashboard's figures: payments counted and captured per member state, agency,
acquirer and status, per currency (never two currencies in one sum), day by day over a chosen
range, and what is waiting (webhooks, ledger sealing, settlement).

Periods are whole UTC days. A payment counts in the period its `created_at` falls in; its value
is what it captured (`amount_captured_minor`) if it succeeded, before any refund.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, case, exists, func, literal_column, select
from sqlalchemy.orm import Session

from payments.errors import PermissionDenied
from payments.gateway import Gateway
from payments.metrics import Backlog
from payments.models import Agency, Payment, SettlementLine
from payments.principal import Principal
from payments.service.backlog import read_backlog
from payments.states import PaymentStatus

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
# Dates a range may name: far enough either side of any payment, and no overflow at the end.
EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2099, 12, 31)
DIMENSIONS = ("state", "agency", "provider", "status")
NOT_ROUTED = ""  # the acquirer of a payment no acquirer has taken yet

QueryT = TypeVar("QueryT", bound=Select[*tuple[Any, ...]])


class Mode(enum.StrEnum):
    """Which payments count: live and test together (the default), or one of them."""

    ALL = "all"
    LIVE = "live"
    TEST = "test"


class RangeProblem(enum.StrEnum):
    """Why a chosen range was refused (the page says so and shows the default range)."""

    BAD_DATE = "bad_date"
    OUT_OF_BOUNDS = "out_of_bounds"
    REVERSED = "reversed"
    TOO_LONG = "too_long"
    BAD_MODE = "bad_mode"


@dataclasses.dataclass(frozen=True)
class Period:
    """Whole UTC days from `first` to `last`, both included."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        assert self.first <= self.last, "a period runs forward"

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(), dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """The first moment after the period."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), dt.UTC)

    @property
    def days(self) -> list[dt.date]:
        count = (self.last - self.first).days + 1
        return [self.first + dt.timedelta(days=n) for n in range(count)]


@dataclasses.dataclass(frozen=True)
class Cell:
    """Payments counted and the value they captured, in one currency."""

    count: int = 0
    value_minor: int = 0

    def __add__(self, other: Cell) -> Cell:
        return Cell(self.count + other.count, self.value_minor + other.value_minor)


@dataclasses.dataclass(frozen=True)
class PeriodFigures:
    """One period's figures: `totals[currency]`, and `by[dimension][(key, currency)]`."""

    totals: dict[str, Cell]
    by: dict[str, dict[tuple[str, str], Cell]]


@dataclasses.dataclass(frozen=True)
class AwaitingSettlement:
    """Succeeded payments no imported settlement line names yet, in one currency; `overdue`
    are those created on a day the settlement lag has passed since."""

    waiting: Cell
    overdue: Cell


@dataclasses.dataclass(frozen=True)
class AgencyName:
    name: str
    name_ar: str
    state: str


@dataclasses.dataclass(frozen=True)
class Dashboard:
    today: Period
    month: Period
    chosen: Period
    mode: Mode
    periods: dict[str, PeriodFigures]  # "today", "month", "range"
    agencies: dict[str, AgencyName]
    daily: dict[str, list[Cell]]  # currency -> one cell per day of `chosen`
    awaiting_settlement: dict[str, AwaitingSettlement]
    lag_days: int
    backlog: Backlog | None  # None when the database did not answer its query

    def keys(self, dimension: str) -> list[tuple[str, str]]:
        """Every (key, currency) any period has for `dimension`, in order."""
        found: set[tuple[str, str]] = set()
        for figures in self.periods.values():
            found.update(figures.by[dimension])
        return sorted(found)

    def total(self, period: str, currency: str) -> Cell:
        return self.periods[period].totals.get(currency, Cell())

    def cell(self, period: str, dimension: str, key: str, currency: str) -> Cell:
        return self.periods[period].by[dimension].get((key, currency), Cell())

    @property
    def currencies(self) -> list[str]:
        """The currencies of any payment in any of the periods."""
        found: set[str] = set()
        for figures in self.periods.values():
            found.update(figures.totals)
        return sorted(found)


def default_range(today: dt.date) -> Period:
    return Period(today - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1), today)


def choose_range(
    first_text: str | None, last_text: str | None, today: dt.date
) -> tuple[Period, RangeProblem | None]:
    """The range the form asked for (`YYYY-MM-DD`, both days included; an empty `to` is today,
    an empty `from` the default span before `to`), or the default range and why not."""
    first_text, last_text = (first_text or "").strip(), (last_text or "").strip()
    fallback = default_range(today)
    try:
        last = _date(last_text) if last_text else today
        first = (
            _date(first_text) if first_text else last - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
        )
    except ValueError:
        return fallback, RangeProblem.BAD_DATE
    if not (EARLIEST <= first <= LATEST and EARLIEST <= last <= LATEST):
        return fallback, RangeProblem.OUT_OF_BOUNDS
    if first > last:
        return fallback, RangeProblem.REVERSED
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        return fallback, RangeProblem.TOO_LONG
    return Period(first, last), None


def _date(text: str) -> dt.date:
    """A calendar date written `YYYY-MM-DD` in ASCII digits, nothing else."""
    if len(text) != 10 or not text.isascii() or text[4] != "-" or text[7] != "-":
        raise ValueError(text)
    return dt.date.fromisoformat(text)


def choose_mode(text: str | None) -> tuple[Mode, RangeProblem | None]:
    if not text:
        return Mode.ALL, None
    try:
        return Mode(text), None
    except ValueError:
        return Mode.ALL, RangeProblem.BAD_MODE


def read_dashboard(
    gw: Gateway, principal: Principal, today: dt.date, chosen: Period, mode: Mode
) -> Dashboard:
    """Every figure of the dashboard, read in one snapshot so that they agree."""
    if not principal.is_finance:
        raise PermissionDenied("the dashboard is read by finance staff")
    assert (chosen.last - chosen.first).days < MAX_RANGE_DAYS, "the range is bounded"
    periods = {
        "today": Period(today, today),
        "month": _month_of(today),
        "range": chosen,
    }
    agencies: dict[str, AgencyName] = {}
    with gw.db.snapshot() as session:
        figures = {
            name: _period_figures(session, period, mode, agencies)
            for name, period in periods.items()
        }
        daily = _daily(session, chosen, mode)
        awaiting = _awaiting_settlement(session, mode, today, gw.settings.settlement_lag_days)
    return Dashboard(
        today=periods["today"],
        month=periods["month"],
        chosen=chosen,
        mode=mode,
        periods=figures,
        agencies=agencies,
        daily=daily,
        awaiting_settlement=awaiting,
        lag_days=gw.settings.settlement_lag_days,
        backlog=read_backlog(gw),
    )


def _month_of(day: dt.date) -> Period:
    first = day.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return Period(first, following - dt.timedelta(days=1))


def _in_mode(query: QueryT, mode: Mode) -> QueryT:
    if mode is Mode.ALL:
        return query
    return query.where(Payment.livemode == (mode is Mode.LIVE))


def _captured() -> ColumnElement[int]:
    """The value a payment counts for: what it captured, if it succeeded."""
    return func.coalesce(
        func.sum(
            case(
                (Payment.status == PaymentStatus.SUCCEEDED.value, Payment.amount_captured_minor),
                else_=0,
            )
        ),
        0,
    )


def _period_figures(
    session: Session, period: Period, mode: Mode, agencies: dict[str, AgencyName]
) -> PeriodFigures:
    """One grouped query (its rows are bounded by agencies x acquirers x statuses x
    currencies), folded into each dimension's figures."""
    groups = (
        Agency.state,
        Payment.agency_id,
        Agency.name,
        Agency.name_ar,
        Payment.provider,
        Payment.status,
        Payment.currency,
    )
    query = (
        select(*groups, func.count(), _captured())
        .join(Agency, Agency.id == Payment.agency_id)
        .where(Payment.created_at >= period.start, Payment.created_at < period.end)
        .group_by(*groups)
    )
    totals: dict[str, Cell] = {}
    by: dict[str, dict[tuple[str, str], Cell]] = {d: {} for d in DIMENSIONS}
    for (
        state,
        agency_id,
        name,
        name_ar,
        provider,
        status,
        currency,
        count,
        value,
    ) in session.execute(_in_mode(query, mode)):
        agencies[agency_id] = AgencyName(name=name, name_ar=name_ar, state=state)
        cell = Cell(int(count), int(value))
        totals[currency] = totals.get(currency, Cell()) + cell
        keys = {
            "state": state,
            "agency": agency_id,
            "provider": provider or NOT_ROUTED,
            "status": status,
        }
        for dimension, key in keys.items():
            found = by[dimension]
            found[(key, currency)] = found.get((key, currency), Cell()) + cell
    return PeriodFigures(totals=totals, by=by)


def _day(session: Session) -> ColumnElement[str]:
    """The UTC day a payment was created on, as `YYYY-MM-DD`, in this database's dialect.
    The format strings are inline literals so that PostgreSQL sees the SELECT's expression
    and the GROUP BY's as the same."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), Payment.created_at)
        return func.to_char(utc, literal_column("'YYYY-MM-DD'"))
    return func.strftime(literal_column("'%Y-%m-%d'"), Payment.created_at)


def _daily(session: Session, period: Period, mode: Mode) -> dict[str, list[Cell]]:
    day = _day(session)
    query = (
        select(day, Payment.currency, func.count(), _captured())
        .where(Payment.created_at >= period.start, Payment.created_at < period.end)
        .group_by(day, Payment.currency)
    )
    days = period.days
    index = {d.isoformat(): n for n, d in enumerate(days)}
    daily: dict[str, list[Cell]] = {}
    for day_text, currency, count, value in session.execute(_in_mode(query, mode)):
        series = daily.setdefault(currency, [Cell()] * len(days))
        series[index[str(day_text)]] = Cell(int(count), int(value))
    return dict(sorted(daily.items()))


def _awaiting_settlement(
    session: Session, mode: Mode, today: dt.date, lag_days: int
) -> dict[str, AwaitingSettlement]:
    """Succeeded payments with money captured that no settlement line names: one created on
    day D is due in the file of day D + lag, so from that day on it is overdue."""
    due_before = dt.datetime.combine(today - dt.timedelta(days=lag_days - 1), dt.time(), dt.UTC)
    overdue = Payment.created_at < due_before
    query = (
        select(
            Payment.currency,
            func.count(),
            func.coalesce(func.sum(Payment.amount_captured_minor), 0),
            func.coalesce(func.sum(case((overdue, 1), else_=0)), 0),
            func.coalesce(func.sum(case((overdue, Payment.amount_captured_minor), else_=0)), 0),
        )
        .where(
            Payment.status == PaymentStatus.SUCCEEDED.value,
            Payment.amount_captured_minor > 0,
            ~exists().where(SettlementLine.payment_id == Payment.id),
        )
        .group_by(Payment.currency)
    )
    return {
        currency: AwaitingSettlement(
            waiting=Cell(int(count), int(value)),
            overdue=Cell(int(late_count), int(late_value)),
        )
        for currency, count, value, late_count, late_value in sorted(
            session.execute(_in_mode(query, mode))
        )
    }
