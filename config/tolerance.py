"""Each acquirer's settlement tolerance as data: how far a settlement line may drift from the
capture or refund it names and still settle it (`matched_within_tolerance`, API.md §5).

`GATEWAY_SETTLEMENT_TOLERANCES` is a comma-separated list of `acquirer=AMOUNT` or
`acquirer=AMOUNT/DAYS`: AMOUNT in minor units of the line's currency either way (0 to
1,000,000), DAYS the days a line may lie outside the days its capture or refund was due (day D
to D + the settlement lag; 0 to 60). Without DAYS the acquirer's dates are not judged; a line
further off than DAYS pairs with nothing. An acquirer not listed settles exactly.
For example `knet=5/1,stripe=0/2`.
"""

from __future__ import annotations

import dataclasses
import re

MAX_AMOUNT_MINOR = 1_000_000
MAX_DAYS = 60
_ENTRY_RE = re.compile(r"^([a-z0-9][a-z0-9_-]{0,39})=([0-9]{1,7})(?:/([0-9]{1,2}))?\Z")


class ToleranceError(ValueError):
    """The tolerance list is not one the gateway can follow."""


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """`amount` minor units either way; `days` outside the due days (None: not judged)."""

    amount: int = 0
    days: int | None = None


EXACT = Tolerance()


def parse_tolerances(raw: str) -> dict[str, Tolerance]:
    """The acquirers' tolerances from `GATEWAY_SETTLEMENT_TOLERANCES`'s value."""
    found: dict[str, Tolerance] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        match = _ENTRY_RE.fullmatch(entry)
        if match is None:
            raise ToleranceError(f"{entry[:60]!r} is not acquirer=AMOUNT or acquirer=AMOUNT/DAYS")
        name, amount_text, days_text = match.groups()
        amount = int(amount_text)
        days = None if days_text is None else int(days_text)
        if amount > MAX_AMOUNT_MINOR:
            raise ToleranceError(f"{name}: an amount of at most {MAX_AMOUNT_MINOR} minor units")
        if days is not None and days > MAX_DAYS:
            raise ToleranceError(f"{name}: a window of at most {MAX_DAYS} days")
        if name in found:
            raise ToleranceError(f"{name} is listed twice")
        found[name] = Tolerance(amount, days)
    return found
