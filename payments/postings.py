"""The gateway's chart of accounts and posting rules, as data handed to the ledger.

Each rule lists its legs: account template, account kind, side, and which amount of the event
the leg carries. Test-mode money lives in `test:`-prefixed accounts, apart from live money.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import ColumnElement, literal
from sqlalchemy.orm import QueryableAttribute

from ledger import AccountRef, Direction, Entry, Kind, TransactionSpec

CLEARING = ("acquirer:{provider}:clearing", Kind.ASSET)
SETTLEMENT = ("bank:{provider}:settlement", Kind.ASSET)
PAYABLE = ("agency:{agency}:payable", Kind.LIABILITY)
FEES = ("expense:{provider}:fees", Kind.EXPENSE)

D, C = Direction.DEBIT, Direction.CREDIT
Leg = tuple[tuple[str, Kind], Direction, str]

RULES: dict[str, tuple[Leg, ...]] = {
    "capture": ((CLEARING, D, "amount"), (PAYABLE, C, "amount")),
    "refund": ((PAYABLE, D, "amount"), (CLEARING, C, "amount")),
    # A settlement line for a payment: the bank receives the net, the fee is borne by the
    # agency (taken from what it is owed) or by the gateway (an expense).
    "settlement_fee_agency": (
        (SETTLEMENT, D, "net"),
        (PAYABLE, D, "fee"),
        (CLEARING, C, "gross"),
    ),
    "settlement_fee_gateway": (
        (SETTLEMENT, D, "net"),
        (FEES, D, "fee"),
        (CLEARING, C, "gross"),
    ),
    # A settlement line for a refund: the acquirer takes the refunded amount back.
    "settlement_refund": ((CLEARING, D, "gross"), (SETTLEMENT, C, "gross")),
    "payout": ((PAYABLE, D, "amount"), (SETTLEMENT, C, "amount")),
}


# External ids: what names the ledger transaction of a capture, a refund and a settlement line.
# Built only here, in Python or (for reconciliation's joins) in SQL.
CAPTURE = "capture"
REFUND = "refund"
SETTLEMENT_LINE = "settlement"


def capture_id(payment_id: str) -> str:
    return f"{CAPTURE}:{payment_id}"


def refund_id(refund: str) -> str:
    return f"{REFUND}:{refund}"


def settlement_id(provider: str, line_key: str) -> str:
    return f"{settlement_prefix(provider)}{line_key}"


def settlement_prefix(provider: str) -> str:
    return f"{SETTLEMENT_LINE}:{provider}:"


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
