"""Matching a staged settlement file against the gateway's captures, refunds and disputes in
one set-based pass: a query over the staging table, joined to payments, refunds and the lines
of earlier files, whose result is a second temporary table of the import's transaction.

Each line of the file is judged by the rules of API.md §5, in this order:

1. a line whose key an earlier file stated already is that file's line, counted here as a
   `duplicate` and not stored again (it never reaches the result);
2. no captured payment or succeeded refund of the acquirer has its reference:
   `missing_in_gateway` (the lowest id wins when several share one); nor when the acquirer's
   tolerance has a date window and the line lies further than it from the days the capture
   or refund was due (day D to D + lag): a line that far off is not that capture's;
3. a payment or refund line whose capture or refund was settled before it, by a settling line
   of an earlier file, by an earlier settling line of this one, or by a break a finance
   officer resolved (its release took the capture or refund out of clearing): `duplicate`;
4. the currency differs: `currency_mismatch`;
5. a payment or refund line equal to the capture (or to minus the refund), on time: `matched`;
   off by no more than the tolerance's amount and window: `matched_within_tolerance`, its
   drift kept; several lines of the file that together equal it, when no one line does, are
   each `matched` and keep how many they are (`parts`); further off: `amount_mismatch`;
6. a chargeback (gross < 0) opens a dispute on its payment: `chargeback` when the payment has
   no open dispute and the amount is at most what is left of the capture after refunds, else
   `duplicate` (a dispute is open) or `amount_mismatch`;
7. a chargeback's reversal pays a dispute back: `chargeback_reversal` when it equals the open
   dispute, or an earlier chargeback of this file that opened one; `amount_mismatch` when a
   dispute is open for another amount, `duplicate` when the dispute was reversed already, and
   `missing_in_gateway` when the payment was never disputed.

A file settles one dispute cycle per payment: a second chargeback after a reversal in the same
file is a `duplicate`, left to a finance officer.
"""

from __future__ import annotations

import collections

from sqlalchemy import text
from sqlalchemy.orm import Session

from config.tolerance import EXACT, Tolerance
from payments.settlement import staging
from payments.settlement.statuses import ItemStatus
from payments.suspense import PAIRED

TABLE = "settlement_matches"

# A resolved break of these statuses released its capture or refund out of clearing: settled.
_PAIRED = ", ".join(f"'{status}'" for status in PAIRED)
_SETTLING = f"'{ItemStatus.MATCHED}', '{ItemStatus.MATCHED_WITHIN_TOLERANCE}'"


def _made_on(dialect: str, moment: str) -> str:
    """The UTC day of a stored moment, in SQL."""
    if dialect == "postgresql":
        return f"CAST(timezone('UTC', {moment}) AS date)"
    return f"date({moment})"


def _days(dialect: str, later: str, earlier: str) -> str:
    """Whole days from the date `earlier` to the date `later`, in SQL."""
    if dialect == "postgresql":
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def _query(dialect: str, dated: bool) -> str:
    """The judging query; `dated` when the tolerance has a date window (the captures' and
    refunds' days are then read from their ledger transactions)."""
    if dated:
        made = _made_on(dialect, "mt.effective_at")
        made_on = f"{made} AS made_on"
        payment_made = "LEFT JOIN ledger_transactions mt ON mt.external_id = 'capture:' || p.id"
        refund_made = "LEFT JOIN ledger_transactions mt ON mt.external_id = 'refund:' || r.id"
        after = _days(dialect, "t.settlement_date", "t.made_on")
        drift_days = (
            f"CASE WHEN t.made_on IS NULL OR t.type NOT IN ('payment', 'refund') THEN 0 "
            f"WHEN {after} < 0 THEN {after} "
            f"WHEN {after} > :lag THEN {after} - :lag ELSE 0 END"
        )
    else:
        made_on = "NULL AS made_on"
        payment_made = refund_made = ""
        drift_days = "0"
    in_window = "abs(d.drift_days) <= :days" if dated else "1 = 1"
    return (
        "\nWITH fresh AS ("  # nosec B608: constants only
        f"""
    SELECT s.* FROM {staging.TABLE} s
    WHERE NOT EXISTS (
        SELECT 1 FROM settlement_lines l
        WHERE l.provider = :provider AND l.line_key = s.line_key
    )
),
payment_targets AS (
    SELECT p.provider_reference, p.id, p.agency_id, p.livemode, p.currency,
        p.amount_captured_minor AS expected,
        p.amount_captured_minor - p.amount_refunded_minor AS disputable,
        p.dispute_status, p.dispute_amount_minor, {made_on},
        row_number() OVER (PARTITION BY p.provider_reference ORDER BY p.id) AS rank
    FROM payments p {payment_made}
    WHERE p.provider = :provider AND p.amount_captured_minor > 0
        AND p.provider_reference IN (
            SELECT provider_reference FROM fresh WHERE type <> 'refund'
        )
),
refund_targets AS (
    SELECT r.provider_reference, r.id, r.payment_id, r.agency_id, r.livemode, r.currency,
        -r.amount_minor AS expected, {made_on},
        row_number() OVER (PARTITION BY r.provider_reference ORDER BY r.id) AS rank
    FROM refunds r {refund_made}
    WHERE r.provider = :provider AND r.status = 'succeeded'
        AND r.provider_reference IN (
            SELECT provider_reference FROM fresh WHERE type = 'refund'
        )
),
targeted AS (
    SELECT f.*,
        COALESCE(pt.id, rt.id) AS target_id,
        COALESCE(pt.id, rt.payment_id) AS payment_id,
        rt.id AS refund_id,
        COALESCE(pt.agency_id, rt.agency_id) AS agency_id,
        COALESCE(pt.livemode, rt.livemode) AS livemode,
        COALESCE(pt.currency, rt.currency) AS target_currency,
        COALESCE(pt.expected, rt.expected) AS expected,
        COALESCE(pt.made_on, rt.made_on) AS made_on,
        pt.disputable, pt.dispute_status, pt.dispute_amount_minor
    FROM fresh f
    LEFT JOIN payment_targets pt
        ON f.type <> 'refund' AND pt.provider_reference = f.provider_reference AND pt.rank = 1
    LEFT JOIN refund_targets rt
        ON f.type = 'refund' AND rt.provider_reference = f.provider_reference AND rt.rank = 1
),
drifted AS (
    SELECT t.*, {drift_days} AS drift_days FROM targeted t
),
windowed AS (
    SELECT d.line_no, d.line_key, d.settlement_date, d.provider_reference, d.type,
        d.currency, d.gross_minor, d.fee_minor, d.net_minor, d.drift_days,
        CASE WHEN {in_window} THEN d.target_id END AS target_id,
        CASE WHEN {in_window} THEN d.payment_id END AS payment_id,
        CASE WHEN {in_window} THEN d.refund_id END AS refund_id,
        CASE WHEN {in_window} THEN d.agency_id END AS agency_id,
        CASE WHEN {in_window} THEN d.livemode END AS livemode,
        d.target_currency, d.expected, d.disputable, d.dispute_status, d.dispute_amount_minor,
        d.currency = d.target_currency AND abs(d.gross_minor - d.expected) <= :amount
            AS fits,
        d.type = 'chargeback' AND d.currency = d.target_currency
            AND -d.gross_minor <= d.disputable AS charge_fits
    FROM drifted d
),
judged AS (
    SELECT w.*,
        CASE WHEN w.type = 'payment' THEN EXISTS (
            SELECT 1 FROM settlement_lines l
            WHERE l.payment_id = w.target_id AND l.type = 'payment'
                AND l.status IN ({_SETTLING})
        ) OR EXISTS (
            SELECT 1 FROM settlement_lines l
            JOIN reconciliation_resolutions r ON r.settlement_line_id = l.id
            WHERE l.payment_id = w.target_id AND l.type = 'payment'
                AND l.batch_id IS NOT NULL AND r.status IN ({_PAIRED})
        ) WHEN w.type = 'refund' THEN EXISTS (
            SELECT 1 FROM settlement_lines l
            WHERE l.refund_id = w.target_id AND l.status IN ({_SETTLING})
        ) OR EXISTS (
            SELECT 1 FROM settlement_lines l
            JOIN reconciliation_resolutions r ON r.settlement_line_id = l.id
            WHERE l.refund_id = w.target_id AND l.batch_id IS NOT NULL
                AND r.status IN ({_PAIRED})
        ) ELSE FALSE END AS settled_before,
        min(CASE WHEN w.type IN ('payment', 'refund') AND w.fits THEN w.line_no END)
            OVER (PARTITION BY w.type, w.target_id) AS first_match,
        sum(CASE WHEN w.type IN ('payment', 'refund') AND w.currency = w.target_currency
            THEN w.gross_minor END) OVER (PARTITION BY w.type, w.target_id) AS parts_total,
        count(CASE WHEN w.type IN ('payment', 'refund') AND w.currency = w.target_currency
            THEN 1 END) OVER (PARTITION BY w.type, w.target_id) AS parts,
        COALESCE(w.dispute_status, '') = 'open' AS open_before,
        min(CASE WHEN w.charge_fits THEN w.line_no END)
            OVER (PARTITION BY w.target_id) AS first_charge,
        min(CASE WHEN w.charge_fits THEN w.line_no END)
            OVER (PARTITION BY w.target_id, abs(w.gross_minor)) AS first_charge_of_amount
    FROM windowed w
),
reversing AS (
    SELECT j.*,
        j.type = 'chargeback_reversal' AND j.currency = j.target_currency AND (
            (j.open_before AND j.gross_minor = j.dispute_amount_minor)
            OR (NOT j.open_before AND j.first_charge < j.line_no
                AND j.first_charge_of_amount = j.first_charge)
        ) AS reversal_fits
    FROM judged j
),
reversals AS (
    SELECT v.*,
        min(CASE WHEN v.reversal_fits THEN v.line_no END)
            OVER (PARTITION BY v.target_id) AS first_reversal
    FROM reversing v
)
SELECT line_no, line_key, settlement_date, provider_reference, type, currency, gross_minor,
    fee_minor, net_minor, payment_id, refund_id, agency_id, livemode, status,
    CASE WHEN status = '{ItemStatus.MATCHED_WITHIN_TOLERANCE}'
        THEN gross_minor - expected END AS drift_minor,
    CASE WHEN status = '{ItemStatus.MATCHED_WITHIN_TOLERANCE}'
        THEN drift_days END AS drift_days,
    CASE WHEN status = '{ItemStatus.MATCHED}' AND first_match IS NULL THEN parts END AS parts
FROM (
    SELECT v.*, CASE
        WHEN v.target_id IS NULL THEN '{ItemStatus.MISSING_IN_GATEWAY}'
        WHEN v.currency <> v.target_currency THEN (
            CASE WHEN v.settled_before OR v.first_match < v.line_no
                THEN '{ItemStatus.DUPLICATE}' ELSE '{ItemStatus.CURRENCY_MISMATCH}' END
        )
        WHEN v.type = 'chargeback' THEN (
            CASE WHEN v.open_before OR v.first_charge < v.line_no
                THEN '{ItemStatus.DUPLICATE}'
            WHEN v.charge_fits THEN '{ItemStatus.CHARGEBACK}'
            ELSE '{ItemStatus.AMOUNT_MISMATCH}' END
        )
        WHEN v.type = 'chargeback_reversal' THEN (
            CASE WHEN v.first_reversal = v.line_no THEN '{ItemStatus.CHARGEBACK_REVERSAL}'
            WHEN v.reversal_fits THEN '{ItemStatus.DUPLICATE}'
            WHEN v.open_before OR v.first_charge < v.line_no
                THEN '{ItemStatus.AMOUNT_MISMATCH}'
            WHEN COALESCE(v.dispute_status, '') = 'reversed' THEN '{ItemStatus.DUPLICATE}'
            ELSE '{ItemStatus.MISSING_IN_GATEWAY}' END
        )
        WHEN v.settled_before OR v.first_match < v.line_no THEN '{ItemStatus.DUPLICATE}'
        WHEN v.gross_minor = v.expected AND v.drift_days = 0 THEN '{ItemStatus.MATCHED}'
        WHEN v.first_match IS NULL AND v.parts > 1 AND v.parts_total = v.expected
            THEN '{ItemStatus.MATCHED}'
        WHEN v.fits THEN '{ItemStatus.MATCHED_WITHIN_TOLERANCE}'
        ELSE '{ItemStatus.AMOUNT_MISMATCH}'
    END AS status
    FROM reversals v
) judged_lines
"""
    )


def judge(
    session: Session, provider: str, tolerance: Tolerance = EXACT, lag_days: int = 0
) -> collections.Counter[str]:
    """Judge every staged line into the matches table, by the acquirer's `tolerance` and the
    settlement lag; return how many lines got each status, the lines another file stated
    already counted as duplicates."""
    dialect = session.get_bind().dialect.name
    dated = tolerance.days is not None
    params: dict[str, object] = {"provider": provider, "amount": tolerance.amount}
    if dated:
        params |= {"days": tolerance.days, "lag": lag_days}
    staging.temporary(session, TABLE, f"AS {_query(dialect, dated)}", params)
    return summary(session)


def summary(session: Session) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for status, count in session.execute(
        text(f"SELECT status, count(*) FROM {TABLE} GROUP BY status")  # nosec B608
    ):
        counts[status] = int(count)
    staged = int(session.execute(text(f"SELECT count(*) FROM {staging.TABLE}")).scalar_one())  # nosec B608
    counts[ItemStatus.DUPLICATE] += staged - sum(counts.values())
    return counts
