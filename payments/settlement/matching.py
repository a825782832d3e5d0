"""Matching a staged settlement file against the gateway's captures and refunds in one
set-based pass: a query over the staging table, joined to payments, refunds and the lines of
earlier files, whose result is a second temporary table of the import's transaction.

Each line of the file is judged by the rules of API.md §5, in this order:

1. a line whose key an earlier file stated already is that file's line, counted here as a
   `duplicate` and not stored again (it never reaches the result);
2. no captured payment or succeeded refund of the acquirer has its reference: `missing_in_gateway`
   (the lowest id wins when several share one);
3. its payment or refund was settled before it, by a matched line of an earlier file, by an
   earlier matched line of this one, or by a break a finance officer resolved (its release
   took the capture or refund out of clearing): `duplicate`;
4. the currency differs: `currency_mismatch`; the gross differs from the capture (or from minus
   the refund): `amount_mismatch`;
5. otherwise `matched`.
"""

from __future__ import annotations

import collections

from sqlalchemy import text
from sqlalchemy.orm import Session

from payments.settlement import staging
from payments.settlement.statuses import ItemStatus
from payments.suspense import PAIRED

TABLE = "settlement_matches"
# A resolved break of these statuses released its capture or refund out of clearing: settled.
_PAIRED = ", ".join(f"'{status}'" for status in PAIRED)
_JUDGED = (
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
        row_number() OVER (PARTITION BY p.provider_reference ORDER BY p.id) AS rank
    FROM payments p
    WHERE p.provider = :provider AND p.amount_captured_minor > 0
        AND p.provider_reference IN (
            SELECT provider_reference FROM fresh WHERE type = 'payment'
        )
),
refund_targets AS (
    SELECT r.provider_reference, r.id, r.payment_id, r.agency_id, r.livemode, r.currency,
        -r.amount_minor AS expected,
        row_number() OVER (PARTITION BY r.provider_reference ORDER BY r.id) AS rank
    FROM refunds r
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
        COALESCE(pt.expected, rt.expected) AS expected
    FROM fresh f
    LEFT JOIN payment_targets pt
        ON f.type = 'payment' AND pt.provider_reference = f.provider_reference AND pt.rank = 1
    LEFT JOIN refund_targets rt
        ON f.type = 'refund' AND rt.provider_reference = f.provider_reference AND rt.rank = 1
),
judged AS (
    SELECT t.*,
        CASE WHEN t.type = 'payment' THEN EXISTS (
            SELECT 1 FROM settlement_lines l
            WHERE l.payment_id = t.target_id AND l.type = 'payment' AND l.status = 'matched'
        ) OR EXISTS (
            SELECT 1 FROM settlement_lines l
            JOIN reconciliation_resolutions r ON r.settlement_line_id = l.id
            WHERE l.payment_id = t.target_id AND l.type = 'payment'
                AND l.batch_id IS NOT NULL AND r.status IN ({_PAIRED})
        ) ELSE EXISTS (
            SELECT 1 FROM settlement_lines l
            WHERE l.refund_id = t.target_id AND l.status = 'matched'
        ) OR EXISTS (
            SELECT 1 FROM settlement_lines l
            JOIN reconciliation_resolutions r ON r.settlement_line_id = l.id
            WHERE l.refund_id = t.target_id AND l.batch_id IS NOT NULL
                AND r.status IN ({_PAIRED})
        ) END AS settled_before,
        min(CASE WHEN t.currency = t.target_currency AND t.gross_minor = t.expected
            THEN t.line_no END) OVER (PARTITION BY t.type, t.target_id) AS first_match
    FROM targeted t
)
SELECT line_no, line_key, settlement_date, provider_reference, type, currency, gross_minor,
    fee_minor, net_minor, payment_id, refund_id, agency_id, livemode,
    CASE
        WHEN target_id IS NULL THEN '{ItemStatus.MISSING_IN_GATEWAY}'
        WHEN settled_before OR first_match < line_no THEN '{ItemStatus.DUPLICATE}'
        WHEN currency <> target_currency THEN '{ItemStatus.CURRENCY_MISMATCH}'
        WHEN gross_minor <> expected THEN '{ItemStatus.AMOUNT_MISMATCH}'
        ELSE '{ItemStatus.MATCHED}'
    END AS status
FROM judged
"""
)


def judge(session: Session, provider: str) -> collections.Counter[str]:
    """Judge every staged line into the matches table; return how many lines got each
    status, the lines another file stated already counted as duplicates."""
    staging.temporary(session, TABLE, f"AS {_JUDGED}", {"provider": provider})
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
