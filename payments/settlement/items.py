"""The reconciliation report's lines, its header, and the totals that must add up across them.

Amounts here are integers of minor units in the item's currency, refunds negative; formatting
into major units happens only in the report writers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from payments.settlement.statuses import STATUSES, ItemStatus

# The keys of each currency's entry in the report's "totals": the number of items, the sum of
# the gateway's captures and refunds, the sum of the settlement file's gross amounts, and the
# sum of its fees.
TOTAL_FIELDS = ("count", "gateway_amount", "settled_amount", "fee")

# An item for which the gateway has no capture or refund, or the file has no line.
_NO_GATEWAY_SIDE = frozenset({ItemStatus.MISSING_IN_GATEWAY})
_NO_SETTLEMENT_SIDE = frozenset({ItemStatus.MISSING_IN_SETTLEMENT, ItemStatus.PENDING_SETTLEMENT})


@dataclass(frozen=True, slots=True)
class ReconItem:
    """One line of the report: a capture or refund, a settlement line, or the pair of them."""

    status: str
    item_id: str  # `stl_…:line` for a settlement line, else the payment's or refund's id
    payment_id: str | None
    refund_id: str | None
    provider_reference: str | None
    currency: str  # the gateway's currency (the line's, when the gateway has no side)
    settled_currency: str | None  # the line's currency; differs only in a currency_mismatch
    gateway_amount: int | None  # minor units, refunds negative
    settled_amount: int | None  # minor units, gross as the acquirer settled it
    fee: int | None  # minor units
    agency: str | None
    gateway_date: date | None  # the day of the capture or refund
    settlement_date: date | None
    resolution_note: str | None  # set when a finance officer marked the break resolved
    resolved_by: str | None
    # A line within the acquirer's tolerance: its gross less the gateway's amount, and the days
    # its date lies outside the days it was due (negative: early).
    drift_amount: int | None = None
    drift_days: int | None = None
    # The items of every line that settles this capture or refund together with this one.
    settled_with: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown reconciliation status {self.status!r}")
        if (self.resolution_note is None) != (self.resolved_by is None):
            raise ValueError("a resolution needs both its note and who resolved it")
        if self.status in _NO_GATEWAY_SIDE and self.gateway_amount is not None:
            raise ValueError(f"a {self.status} item has no gateway amount")
        if self.status in _NO_SETTLEMENT_SIDE and self.settled_amount is not None:
            raise ValueError(f"a {self.status} item has no settled amount")
        if self.status in _NO_SETTLEMENT_SIDE and self.settled_currency is not None:
            raise ValueError(f"a {self.status} item has no settled currency")
        if self.settled_currency not in (None, self.currency) and self.status != (
            ItemStatus.CURRENCY_MISMATCH
        ):
            raise ValueError("only a currency_mismatch item is settled in another currency")
        if self.status == ItemStatus.MATCHED and (
            self.gateway_amount is None or self.gateway_amount != self.settled_amount
        ):
            raise ValueError("a matched item has equal gateway and settled amounts")
        drifted = self.drift_amount is not None or self.drift_days is not None
        if drifted != (self.status == ItemStatus.MATCHED_WITHIN_TOLERANCE):
            raise ValueError("only an item matched within tolerance has a drift")


@dataclass(frozen=True)
class ReportHeader:
    """What the report covers and when it was made."""

    provider: str
    date_from: date
    date_to: date
    generated_at: datetime  # UTC
    settlement_lag_days: int

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise ValueError("the report's period ends before it starts")
        if self.generated_at.utcoffset() != timedelta(0):
            raise ValueError("generated_at must be an aware UTC datetime")
        if self.settlement_lag_days < 0:
            raise ValueError("the settlement lag cannot be negative")


@dataclass(frozen=True)
class ReportDetails:
    """What a full report states beside its summary and per-currency totals: totals per agency
    ("" for lines no agency owns) and the ledger's side of the three-way match."""

    agencies: Mapping[str, Mapping[str, Mapping[str, int]]]
    # currency -> captured, captured_posted, refunded, refunded_posted, settled, settled_posted
    ledger: Mapping[str, Mapping[str, int]]
    ledger_agrees: bool


@dataclass
class Bucket:
    """A running count and the sums of one group of items, in minor units."""

    count: int = 0
    gateway_amount: int = 0
    settled_amount: int = 0
    fee: int = 0

    def add(self, item: ReconItem) -> None:
        self.count += 1
        self.gateway_amount += item.gateway_amount or 0
        self.settled_amount += item.settled_amount or 0
        self.fee += item.fee or 0

    def merge(self, other: Bucket) -> None:
        self.count += other.count
        self.gateway_amount += other.gateway_amount
        self.settled_amount += other.settled_amount
        self.fee += other.fee

    def as_dict(self) -> dict[str, int]:
        return {
            "count": self.count,
            "gateway_amount": self.gateway_amount,
            "settled_amount": self.settled_amount,
            "fee": self.fee,
        }


@dataclass
class ReconTotals:
    """Totals accumulated while the items stream past, checked against what the report's
    summary and totals (counted beforehand) promised.

    `expected_summary` is status -> count; `expected_totals` is currency -> TOTAL_FIELDS, where
    `settled_amount` is the settlement file's total over all its lines and `gateway_amount`
    the gateway's total over all its captures and refunds in the period.
    """

    expected_summary: Mapping[str, int]
    expected_totals: Mapping[str, Mapping[str, int]]
    # agency ("" for none) -> currency -> TOTAL_FIELDS, when the report states them
    expected_agencies: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None
    by_currency_status: dict[tuple[str, str], Bucket] = field(default_factory=dict)
    by_agency_currency: dict[tuple[str | None, str], Bucket] = field(default_factory=dict)

    def add(self, item: ReconItem) -> None:
        """Count the item under its currency; its settled side under the settled currency."""
        settled_currency = item.settled_currency or item.currency
        if settled_currency == item.currency:
            self._by_status(item.currency, item.status).add(item)
            self._by_agency(item.agency, item.currency).add(item)
            return
        gateway_side = Bucket(1, item.gateway_amount or 0, 0, 0)
        settled_side = Bucket(0, 0, item.settled_amount or 0, item.fee or 0)
        self._by_status(item.currency, item.status).merge(gateway_side)
        self._by_agency(item.agency, item.currency).merge(gateway_side)
        self._by_status(settled_currency, item.status).merge(settled_side)
        self._by_agency(item.agency, settled_currency).merge(settled_side)

    def _by_status(self, currency: str, status: str) -> Bucket:
        found = self.by_currency_status.get((currency, status))
        if found is None:
            found = self.by_currency_status[currency, status] = Bucket()
        return found

    def _by_agency(self, agency: str | None, currency: str) -> Bucket:
        found = self.by_agency_currency.get((agency, currency))
        if found is None:
            found = self.by_agency_currency[agency, currency] = Bucket()
        return found

    def summary(self) -> dict[str, int]:
        """Status -> count over the items added so far, every status present."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for (_, status), bucket in self.by_currency_status.items():
            counts[status] += bucket.count
        return counts

    def totals_by_currency(self) -> dict[str, dict[str, int]]:
        """Currency -> TOTAL_FIELDS: matched plus every break plus pending, per currency."""
        totals: dict[str, Bucket] = {}
        for (currency, _), bucket in self.by_currency_status.items():
            totals.setdefault(currency, Bucket()).merge(bucket)
        return {currency: totals[currency].as_dict() for currency in sorted(totals)}

    def check(self) -> None:
        """Raise AssertionError unless the items add up to the promised summary and totals."""
        counted = self.summary()
        promised = {status: self.expected_summary.get(status, 0) for status in STATUSES}
        if counted != promised:
            raise AssertionError(
                f"items by status {counted} differ from the report's summary {promised}"
            )
        totals = self.totals_by_currency()
        for currency in sorted(set(totals) | set(self.expected_totals)):
            got = totals.get(currency, Bucket().as_dict())
            want = {key: self.expected_totals.get(currency, {}).get(key, 0) for key in got}
            if got["settled_amount"] != want["settled_amount"]:
                raise AssertionError(
                    f"{currency}: matched and breaks settle {got['settled_amount']} minor "
                    f"units but the settlement file totals {want['settled_amount']}"
                )
            if got["gateway_amount"] != want["gateway_amount"]:
                raise AssertionError(
                    f"{currency}: matched and breaks hold {got['gateway_amount']} minor units "
                    f"of the gateway's but its captures and refunds total "
                    f"{want['gateway_amount']}"
                )
            if got != want:
                raise AssertionError(f"{currency}: items total {got}, the report says {want}")
        by_agency: dict[str, Bucket] = {}
        for (_, currency), bucket in self.by_agency_currency.items():
            by_agency.setdefault(currency, Bucket()).merge(bucket)
        regrouped = {currency: by_agency[currency].as_dict() for currency in sorted(by_agency)}
        if regrouped != totals:
            raise AssertionError(f"totals by agency {regrouped} differ from by status {totals}")
        if self.expected_agencies is not None:
            counted_agencies: dict[str, dict[str, dict[str, int]]] = {}
            for (agency, currency), bucket in sorted(
                self.by_agency_currency.items(), key=lambda entry: (entry[0][0] or "", entry[0][1])
            ):
                counted_agencies.setdefault(agency or "", {})[currency] = bucket.as_dict()
            promised_agencies = {
                agency: {currency: dict(fields) for currency, fields in by_currency.items()}
                for agency, by_currency in self.expected_agencies.items()
            }
            if counted_agencies != promised_agencies:
                raise AssertionError(
                    f"items by agency {counted_agencies} differ from the report's "
                    f"{promised_agencies}"
                )
