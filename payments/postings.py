"""The gateway's chart of accounts and posting rules, as data handed to the ledger.

Each rule lists its legs: account template, account kind, side, and which amount of the event
the leg carries. Test-mode money lives in `test:`-prefixed accounts, apart from live money.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from sqlalchemy import ColumnElement, literal
from sqlalchemy.orm import QueryableAttribute

from ledger import AccountRef, Direction, Entry, Kind, TransactionSpec

CLEARING = ("acquirer:{provider}:clearing", Kind.ASSET)
SETTLEMENT = ("bank:{provider}:settlement", Kind.ASSET)
PAYABLE = ("agency:{agency}:payable", Kind.LIABILITY)
FEES = ("expense:{provider}:fees", Kind.EXPENSE)
SUSPENSE = ("suspense:{provider}:settlement", Kind.ASSET)
# Where a resolved break's money goes when it is not the capture or refund it claims to be.
DIFFERENCES = ("expense:{provider}:settlement_differences", Kind.EXPENSE)

D, C = Direction.DEBIT, Direction.CREDIT
Leg = tuple[tuple[str, Kind], Direction, str]

RULES: dict[str, tuple[Leg, ...]] = {
    "capture": ((CLEARING, D, "amount"), (PAYABLE, C, "amount")),
    "refund": ((PAYABLE, D, "amount"), (CLEARING, C, "amount")),
    "payout": ((PAYABLE, D, "amount"), (SETTLEMENT, C, "amount")),
    # A chargeback the acquirer took back is the agency's loss, as a refund is; its reversal
    # gives it back. The batch of the line moves the money between clearing and the bank.
    "dispute": ((PAYABLE, D, "amount"), (CLEARING, C, "amount")),
    "dispute_reversal": ((CLEARING, D, "amount"), (PAYABLE, C, "amount")),
}


# External ids: what names the ledger transaction of a capture, a refund and a settlement line.
# Built only here, in Python or (for reconciliation's joins) in SQL.
CAPTURE = "capture"
REFUND = "refund"
SETTLEMENT_LINE = "settlement"  # one line, as imported before batches
SETTLEMENT_BATCH = "settlement_batch"
RELEASE = "settlement_release"
DISPUTE = "dispute"


def capture_id(payment_id: str) -> str:
    return f"{CAPTURE}:{payment_id}"


def refund_id(refund: str) -> str:
    return f"{REFUND}:{refund}"


def settlement_id(provider: str, line_key: str) -> str:
    return f"{settlement_prefix(provider)}{line_key}"


def settlement_prefix(provider: str) -> str:
    return f"{SETTLEMENT_LINE}:{provider}:"


def batch_id(batch: str) -> str:
    return f"{SETTLEMENT_BATCH}:{batch}"


def release_id(line_id: int) -> str:
    """The transaction that takes a resolved line's money out of suspense."""
    return f"{RELEASE}:{line_id}"


def dispute_id(line_id: int) -> str:
    """The transaction of the dispute, or its reversal, that settlement line `line_id` stated."""
    return f"{DISPUTE}:{line_id}"


def prefix_of(kind: str) -> str:
    """What every external id of a capture's or a refund's transaction starts with."""
    assert kind in (CAPTURE, REFUND), kind
    return f"{kind}:"


Ids = ColumnElement[str] | QueryableAttribute[str] | QueryableAttribute[str | None]


def capture_id_of(payment_ids: Ids) -> ColumnElement[str]:
    """`capture_id`, built in SQL from a column of payment ids (a join's condition)."""
    return literal(prefix_of(CAPTURE)).concat(payment_ids)


def refund_id_of(refund_ids: Ids) -> ColumnElement[str]:
    """`refund_id`, built in SQL from a column of refund ids."""
    return literal(prefix_of(REFUND)).concat(refund_ids)


def batch_id_of(batch_ids: Ids) -> ColumnElement[str]:
    """`batch_id`, built in SQL from a column of settlement batch ids."""
    return literal(f"{SETTLEMENT_BATCH}:").concat(batch_ids)


def account_code(template: str, *, livemode: bool, agency: str = "", provider: str = "") -> str:
    code = template.format(agency=agency, provider=provider)
    return code if livemode else f"test:{code}"


def payable_code(agency: str, *, livemode: bool) -> str:
    return account_code(PAYABLE[0], livemode=livemode, agency=agency)


def transaction(
    rule: str,
    *,
    external_id: str,
    description: str,
    amounts: Mapping[str, int],
    currency: str,
    livemode: bool,
    agency: str,
    provider: str,
    effective_at: dt.datetime,
    metadata: dict[str, str],
) -> TransactionSpec:
    """The balanced transaction that `rule` posts; legs whose amount is zero are left out."""
    entries = tuple(
        Entry(
            AccountRef(
                account_code(template, livemode=livemode, agency=agency, provider=provider),
                currency,
                kind,
            ),
            side,
            amounts[role],
        )
        for (template, kind), side, role in RULES[rule]
        if amounts[role]
    )
    return TransactionSpec(
        external_id=external_id,
        description=description,
        entries=entries,
        effective_at=effective_at,
        metadata=metadata,
    )


@dataclasses.dataclass(frozen=True)
class Batch:
    """A settlement batch's figures, in minor units of `currency`, as the ledger books them."""

    external_id: str
    provider: str
    agency: str  # "" for the lines nothing explains
    livemode: bool
    currency: str
    captured: int  # gross of the matched payment lines
    refunded: int  # gross of the matched refund lines, unsigned
    fees: int
    fee_bearer: str | None  # who bears `fees`: `agency`, or the gateway
    chargebacks: int  # gross the acquirer took back for disputes, unsigned
    reversals: int  # gross it paid back when disputes were reversed
    differences: int  # drift of lines matched within tolerance; positive: paid more
    suspense_in: int  # net of the unexplained lines that paid in
    suspense_out: int  # net of those that took out, unsigned
    net: int  # the bank credit; negative when the acquirer took more than it paid


def settlement_batch(
    batch: Batch, *, description: str, effective_at: dt.datetime, metadata: dict[str, str]
) -> TransactionSpec:
    """One batch's transaction: the captures' gross out of clearing, the refunds' and the
    chargebacks' gross back in and the reversals' out, each a leg of its own, the fees to the
    agency or the gateway, the drift of lines within tolerance to settlement differences, the
    unexplained lines to suspense, and the net to the bank. Legs of zero are left out."""
    fees = PAYABLE if batch.fee_bearer == "agency" else FEES
    legs: list[tuple[tuple[str, Kind], Direction, int]] = [
        (CLEARING, C, batch.captured),
        (CLEARING, D, batch.refunded),
        (CLEARING, D, batch.chargebacks),
        (CLEARING, C, batch.reversals),
        (fees, D, batch.fees),
        (DIFFERENCES, C if batch.differences > 0 else D, abs(batch.differences)),
        (SUSPENSE, C, batch.suspense_in),
        (SUSPENSE, D, batch.suspense_out),
        (SETTLEMENT, D if batch.net > 0 else C, abs(batch.net)),
    ]
    return TransactionSpec(
        external_id=batch.external_id,
        description=description,
        entries=tuple(
            Entry(
                _ref(template, batch.livemode, batch.currency, batch.agency, batch.provider),
                side,
                amount,
            )
            for template, side, amount in legs
            if amount
        ),
        effective_at=effective_at,
        metadata=metadata,
    )


@dataclasses.dataclass(frozen=True)
class Release:
    """A resolved settlement line's money, leaving suspense: its net in its currency, and what
    the gateway expected of the capture or refund it pairs with, if it pairs with one."""

    line_id: int
    provider: str
    agency: str
    livemode: bool
    currency: str
    net: int  # signed as in the file
    fee: int
    fee_bearer: str | None
    expected_currency: str | None = None  # None: it pairs with nothing the gateway made
    expected: int = 0  # the capture, or minus the refund


def suspense_release(
    release: Release, *, description: str, effective_at: dt.datetime
) -> TransactionSpec:
    """The transaction that empties a resolved line out of suspense. A line that pairs with a
    capture or refund in its own currency settles it: clearing gives up the gateway's amount,
    the fee goes by its bearer, and what the line stated beyond that is a settlement
    difference. Otherwise the whole net is a difference, and a capture or refund it pairs with
    in another currency leaves clearing through the differences account too."""
    entries: list[Entry] = []

    def leg(template: tuple[str, Kind], currency: str, signed: int) -> None:
        """Debit a positive amount, credit a negative one."""
        if signed:
            ref = _ref(template, release.livemode, currency, release.agency, release.provider)
            entries.append(Entry(ref, D if signed > 0 else C, abs(signed)))

    leg(SUSPENSE, release.currency, release.net)
    if release.expected_currency == release.currency:
        leg(CLEARING, release.currency, -release.expected)
        leg(PAYABLE if release.fee_bearer == "agency" else FEES, release.currency, release.fee)
        leg(DIFFERENCES, release.currency, release.expected - release.net - release.fee)
    else:
        leg(DIFFERENCES, release.currency, -release.net)
        if release.expected_currency is not None:
            leg(CLEARING, release.expected_currency, -release.expected)
            leg(DIFFERENCES, release.expected_currency, release.expected)
    return TransactionSpec(
        external_id=release_id(release.line_id),
        description=description,
        entries=tuple(entries),
        effective_at=effective_at,
        metadata={"settlement_line": str(release.line_id)},
    )


def _ref(
    template: tuple[str, Kind], livemode: bool, currency: str, agency: str, provider: str
) -> AccountRef:
    code, kind = template
    return AccountRef(
        account_code(code, livemode=livemode, agency=agency, provider=provider), currency, kind
    )
