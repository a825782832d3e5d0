"""Booking a judged settlement file as accountants book one: a batch per currency, agency, mode
and value date, each one ledger transaction equal to what the acquirer paid into the bank for
it (DESIGN.md, the chart of accounts), and the file's lines stored as detail rows naming their
batch. Before the transaction commits, the stored lines are summed again per batch and held to
the postings the ledger recorded: a file whose lines do not add up is refused whole."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, String, bindparam, insert, select, text
from sqlalchemy.orm import Session

import ledger
from ledger.types import UTCDateTime
from payments import postings
from payments.errors import ValidationFailed
from payments.ids import new_id
from payments.models import Agency, Settlement, SettlementBatch
from payments.settlement import matching
from payments.settlement.statuses import DISPUTES, SETTLES, ItemStatus

UNBALANCED = "settlement_file_unbalanced"
_SETTLES = ", ".join(f"'{status}'" for status in SETTLES)
_EXPLAINED = ", ".join(f"'{status}'" for status in (*SETTLES, *DISPUTES))


# A line's share of its batch, by what it is: the figures of `postings.Batch`, summed over the
# lines of table alias `t`. A line within tolerance settles the gateway's amount (its gross
# less its drift); the drift is a difference of its own.
def _figures(t: str) -> str:
    payment = f"{t}.status IN ({_SETTLES}) AND {t}.type = 'payment'"
    refund = f"{t}.status IN ({_SETTLES}) AND {t}.type = 'refund'"
    made = f"({t}.gross_minor - COALESCE({t}.drift_minor, 0))"
    unexplained = f"{t}.status NOT IN ({_EXPLAINED})"
    return f"""
    count(*) AS line_count,
    sum(CASE WHEN {payment} THEN {made} ELSE 0 END) AS captured_minor,
    sum(CASE WHEN {refund} THEN -{made} ELSE 0 END) AS refunded_minor,
    sum(CASE WHEN {payment} THEN {t}.fee_minor ELSE 0 END) AS fees_minor,
    sum(CASE WHEN {t}.status = '{ItemStatus.CHARGEBACK}' THEN -{t}.gross_minor ELSE 0 END)
        AS chargebacks_minor,
    sum(CASE WHEN {t}.status = '{ItemStatus.CHARGEBACK_REVERSAL}' THEN {t}.gross_minor ELSE 0 END)
        AS reversals_minor,
    sum(COALESCE({t}.drift_minor, 0)) AS differences_minor,
    sum(CASE WHEN {unexplained} AND {t}.net_minor > 0 THEN {t}.net_minor ELSE 0 END)
        AS suspense_in_minor,
    sum(CASE WHEN {unexplained} AND {t}.net_minor < 0 THEN -{t}.net_minor ELSE 0 END)
        AS suspense_out_minor,
    sum({t}.net_minor) AS net_minor
"""


_FIGURE_TYPES: dict[str, Any] = {
    name: BigInteger()
    for name in (
        "line_count",
        "captured_minor",
        "refunded_minor",
        "fees_minor",
        "chargebacks_minor",
        "reversals_minor",
        "differences_minor",
        "suspense_in_minor",
        "suspense_out_minor",
        "net_minor",
    )
}

# The one file-level rule the batches rest on, whatever the parser checked: a line's net is
# its gross less its fee, and only a payment line carries a fee.
_FIRST_UNBALANCED = text(
    f"SELECT min(line_no) FROM {matching.TABLE} "  # nosec B608
    "WHERE net_minor <> gross_minor - fee_minor OR (type <> 'payment' AND fee_minor <> 0)"
)

_BATCHES = text(
    "SELECT m.currency, m.agency_id, m.livemode, m.settlement_date AS value_date, "  # nosec B608
    f"{_figures('m')} FROM {matching.TABLE} m "
    "GROUP BY m.currency, m.agency_id, m.livemode, m.settlement_date "
    "ORDER BY m.settlement_date, m.currency, m.agency_id, m.livemode"
).columns(
    currency=String(),
    agency_id=String(),
    livemode=Boolean(),
    value_date=Date(),
    **_FIGURE_TYPES,
)

_STORE_LINES = text(
    "\nINSERT INTO settlement_lines"  # nosec B608: constants only
    f""" (settlement_id, provider, line_no, line_key, settlement_date,
    provider_reference, type, currency, gross_minor, fee_minor, net_minor, payment_id,
    refund_id, agency_id, livemode, status, drift_minor, drift_days, parts, fee_bearer,
    batch_id, created_at)
SELECT :settlement_id, :provider, m.line_no, m.line_key, m.settlement_date,
    m.provider_reference, m.type, m.currency, m.gross_minor, m.fee_minor, m.net_minor,
    m.payment_id, m.refund_id, m.agency_id, m.livemode, m.status, m.drift_minor,
    m.drift_days, m.parts,
    CASE WHEN m.status IN ({_SETTLES}) AND m.type = 'payment' THEN b.fee_bearer END,
    b.id, :now
FROM {matching.TABLE} m
JOIN settlement_batches b
    ON b.settlement_id = :settlement_id AND b.currency = m.currency
    AND COALESCE(b.agency_id, '') = COALESCE(m.agency_id, '')
    AND b.livemode = COALESCE(m.livemode, :livemode) AND b.value_date = m.settlement_date
ORDER BY m.line_no
"""
).bindparams(bindparam("livemode", type_=Boolean()), bindparam("now", type_=UTCDateTime()))

# The stored detail rows, summed again per batch.
_DETAIL = text(
    "\nSELECT"  # nosec B608: constants only
    f""" b.id, b.currency, b.agency_id, b.livemode, b.fee_bearer, {_figures("l")}
FROM settlement_lines l JOIN settlement_batches b ON b.id = l.batch_id
WHERE b.settlement_id = :settlement_id
GROUP BY b.id, b.currency, b.agency_id, b.livemode, b.fee_bearer
"""
).columns(
    id=String(),
    currency=String(),
    agency_id=String(),
    livemode=Boolean(),
    fee_bearer=String(),
    **_FIGURE_TYPES,
)


def book(
    session: Session,
    settlement: Settlement,
    *,
    livemode: bool,
    now: dt.datetime,
) -> int:
    """Store the judged lines under their batches and post each batch's transaction (queued
    for sealing); return how many batches. `livemode` is the acquirer's, for the lines no
    payment or refund explains."""
    bad = session.execute(_FIRST_UNBALANCED).scalar_one_or_none()
    if bad is not None:
        raise _refused(
            f"line {bad}: its net is not its gross less its fee (a refund carries no fee), "
            "so its batch cannot equal the bank credit"
        )
    figures = session.execute(_BATCHES).mappings().all()
    bearers = _fee_bearers(session, {row["agency_id"] for row in figures if row["agency_id"]})
    rows: list[dict[str, Any]] = []
    for row in figures:
        agency = row["agency_id"]
        rows.append(
            dict(row)
            | {
                "id": new_id("stb"),
                "settlement_id": settlement.id,
                "provider": settlement.provider,
                "livemode": livemode if row["livemode"] is None else bool(row["livemode"]),
                "fee_bearer": bearers.get(agency, "gateway") if agency else None,
                "created_at": now,
            }
        )
    if not rows:
        return 0
    session.execute(insert(SettlementBatch), rows)
    session.execute(
        _STORE_LINES,
        {
            "settlement_id": settlement.id,
            "provider": settlement.provider,
            "livemode": livemode,
            "now": now,
        },
    )
    specs = [_spec(settlement, row, now) for row in rows]
    ledger.post_many(session, specs, now, seal=False)  # chained after the commit
    _held_to_detail(session, settlement, specs)
    return len(rows)


def _spec(
    settlement: Settlement, row: Mapping[str, Any], now: dt.datetime
) -> ledger.TransactionSpec:
    batch = _batch(settlement.provider, row)
    return postings.settlement_batch(
        batch,
        description=(
            f"settlement batch {row['id']} of {settlement.id}: {row['line_count']} lines, "
            f"value date {row['value_date'].isoformat()}"
        ),
        effective_at=now,
        metadata={
            "settlement": settlement.id,
            "batch": row["id"],
            "value_date": row["value_date"].isoformat(),
            "lines": str(row["line_count"]),
        },
    )


def _batch(provider: str, row: Mapping[str, Any]) -> postings.Batch:
    """A batch's figures from a batch row, as stored or as summed from its lines."""
    return postings.Batch(
        external_id=postings.batch_id(row["id"]),
        provider=provider,
        agency=row["agency_id"] or "",
        livemode=bool(row["livemode"]),
        currency=row["currency"],
        captured=int(row["captured_minor"]),
        refunded=int(row["refunded_minor"]),
        fees=int(row["fees_minor"]),
        fee_bearer=row["fee_bearer"],
        chargebacks=int(row["chargebacks_minor"]),
        reversals=int(row["reversals_minor"]),
        differences=int(row["differences_minor"]),
        suspense_in=int(row["suspense_in_minor"]),
        suspense_out=int(row["suspense_out_minor"]),
        net=int(row["net_minor"]),
    )


def _held_to_detail(
    session: Session, settlement: Settlement, specs: Sequence[ledger.TransactionSpec]
) -> None:
    """Sum the stored lines per batch again, and refuse the file unless every batch's recorded
    postings are exactly what its lines make."""
    wanted: dict[str, list[tuple[str, str, str, int]]] = {}
    stored_lines = 0
    for row in session.execute(_DETAIL, {"settlement_id": settlement.id}).mappings():
        batch = _batch(settlement.provider, dict(row))
        stored_lines += int(row["line_count"])
        spec = postings.settlement_batch(
            batch, description="", effective_at=settlement.created_at, metadata={}
        )
        wanted[batch.external_id] = sorted(entry.key for entry in spec.entries)
    recorded: dict[str, list[tuple[str, str, str, int]]] = {}
    posted = (
        select(
            ledger.JournalTransaction.external_id,
            ledger.Account.code,
            ledger.Account.currency,
            ledger.Posting.direction,
            ledger.Posting.amount_minor,
        )
        .join(ledger.Posting, ledger.Posting.transaction_id == ledger.JournalTransaction.id)
        .join(ledger.Account, ledger.Account.id == ledger.Posting.account_id)
        .join(
            SettlementBatch,
            ledger.JournalTransaction.external_id == postings.batch_id_of(SettlementBatch.id),
        )
        .where(SettlementBatch.settlement_id == settlement.id)
    )
    for external_id, code, currency, direction, amount in session.execute(posted):
        recorded.setdefault(external_id, []).append((code, currency, direction, int(amount)))
    for external_id in set(wanted) | set(recorded) | {spec.external_id for spec in specs}:
        if sorted(recorded.get(external_id, [])) != wanted.get(external_id):
            raise _refused(
                f"the ledger's postings for {external_id} are not what its stored lines add up to"
            )
    staged = session.execute(text(f"SELECT count(*) FROM {matching.TABLE}")).scalar_one()  # nosec B608
    if stored_lines != int(staged):
        raise _refused(f"{stored_lines} lines were stored under batches, not {staged}")


def _refused(reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"the settlement file does not add up: {reason}",
        code=UNBALANCED,
        param="file",
        details={"file": [reason]},
    )


def _fee_bearers(session: Session, agency_ids: set[str]) -> dict[str, str]:
    if not agency_ids:
        return {}
    rows = session.execute(select(Agency.id, Agency.fee_bearer).where(Agency.id.in_(agency_ids)))
    return {agency_id: bearer or "gateway" for agency_id, bearer in rows}


__all__ = ["UNBALANCED", "book"]
