"""The sandbox acquirer's settlement file for one day, as a real acquirer would send it: every
capture and succeeded refund made through a sandbox instance that UTC day, one line each.

A capture's day is the effective time of its ledger capture transaction (`capture:{payment}`),
a refund's that of its `refund:{refund}` transaction: both are written once, in the same
transaction as the status change, while a payment's `updated_at` moves again on each refund.
The sandbox's fee on a payment is 1.5% of the gross, rounded half up to the minor unit, plus a
fixed 0.10 (two-decimal currencies) or 0.100 (three-decimal ones), never more than the gross;
refunds carry no fee. Integer arithmetic throughout.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import TextIO

from sqlalchemy import and_, select

from ledger import JournalTransaction
from payments import postings
from payments.gateway import Gateway
from payments.models import Payment, Refund
from payments.money import CURRENCY_EXPONENTS, format_major
from payments.settlement.sandbox_file import COLUMNS
from payments.states import RefundStatus

FEE_RATE_PER_MILLE = 15  # 1.5%
FIXED_FEE_MINOR: dict[str, int] = {
    currency: 10 ** max(exp - 1, 0) for currency, exp in CURRENCY_EXPONENTS.items()
}
ROWS_PER_FETCH = 1000


def sandbox_fee(gross_minor: int, currency: str) -> int:
    """The sandbox's fee on a payment of `gross_minor`: 1.5% half up, plus the fixed part."""
    variable = (gross_minor * FEE_RATE_PER_MILLE + 500) // 1000
    return min(gross_minor, variable + FIXED_FEE_MINOR[currency])


def export_day(gw: Gateway, provider: str, day: dt.date, out: TextIO) -> int:
    """Write `provider`'s settlement file for `day` to `out`; return the number of lines."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    in_day = and_(JournalTransaction.effective_at >= start, JournalTransaction.effective_at < end)
    captures = (
        select(Payment.provider_reference, Payment.currency, Payment.amount_captured_minor)
        .join(
            JournalTransaction,
            JournalTransaction.external_id == postings.capture_id_of(Payment.id),
        )
        .where(
            Payment.provider == provider,
            Payment.provider_reference.is_not(None),
            Payment.amount_captured_minor > 0,
            in_day,
        )
        .order_by(JournalTransaction.id)
    )
    refunds = (
        select(Refund.provider_reference, Refund.currency, Refund.amount_minor)
        .join(
            JournalTransaction,
            JournalTransaction.external_id == postings.refund_id_of(Refund.id),
        )
        .where(
            Refund.provider == provider,
            Refund.provider_reference.is_not(None),
            Refund.status == RefundStatus.SUCCEEDED.value,
            in_day,
        )
        .order_by(JournalTransaction.id)
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    lines = 0
    date = day.isoformat()
    with gw.db.read() as session:
        rows = session.execute(captures.execution_options(yield_per=ROWS_PER_FETCH))
        for reference, currency, gross in rows:
            fee = sandbox_fee(gross, currency)
            writer.writerow(
                (
                    date,
                    reference,
                    "payment",
                    currency,
                    format_major(gross, currency),
                    format_major(fee, currency),
                    format_major(gross - fee, currency),
                )
            )
            lines += 1
        rows = session.execute(refunds.execution_options(yield_per=ROWS_PER_FETCH))
        for reference, currency, amount in rows:
            gross_text = format_major(-amount, currency)
            zero = format_major(0, currency)
            writer.writerow((date, reference, "refund", currency, gross_text, zero, gross_text))
            lines += 1
    return lines
