"""The gateway's chart of accounts and posting rules, as data handed to the ledger."""

from __future__ import annotations

import datetime as dt

from ledger import AccountRef, Direction, Entry, Kind, TransactionSpec

# event -> (account template, kind, side). Test-mode money lives in `test:`-prefixed accounts.
RULES: dict[str, tuple[tuple[str, Kind, Direction], ...]] = {
    "capture": (
        ("acquirer:{provider}:clearing", Kind.ASSET, Direction.DEBIT),
        ("agency:{agency}:payable", Kind.LIABILITY, Direction.CREDIT),
    ),
    "refund": (
        ("agency:{agency}:payable", Kind.LIABILITY, Direction.DEBIT),
        ("acquirer:{provider}:clearing", Kind.ASSET, Direction.CREDIT),
    ),
    "payout": (
        ("agency:{agency}:payable", Kind.LIABILITY, Direction.DEBIT),
        ("bank:{provider}:settlement", Kind.ASSET, Direction.CREDIT),
    ),
}


def account_code(template: str, *, livemode: bool, **names: str) -> str:
    code = template.format(**names)
    return code if livemode else f"test:{code}"


def payable_code(agency: str, *, livemode: bool) -> str:
    return account_code("agency:{agency}:payable", livemode=livemode, agency=agency)


def transaction(
    rule: str,
    *,
    external_id: str,
    description: str,
    amount_minor: int,
    currency: str,
    livemode: bool,
    agency: str,
    provider: str,
    effective_at: dt.datetime,
    metadata: dict[str, str],
) -> TransactionSpec:
    """The balanced transaction that `rule` posts for one amount."""
    entries = tuple(
        Entry(
            AccountRef(
                account_code(template, livemode=livemode, agency=agency, provider=provider),
                currency,
                kind,
            ),
            side,
            amount_minor,
        )
        for template, kind, side in RULES[rule]
    )
    return TransactionSpec(
        external_id=external_id,
        description=description,
        entries=entries,
        effective_at=effective_at,
        metadata=metadata,
    )
