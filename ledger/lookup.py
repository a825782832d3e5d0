"""Looking journal transactions up by their external ids, each with its postings and with the
transactions that reverse it, from the caller's session."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Collection

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ledger.book import Direction
from ledger.models import Account, JournalTransaction, Posting

MAX_EXTERNAL_IDS = 500  # one look-up names at most this many transactions
MAX_TRANSACTIONS = 1000  # and answers at most this many, reversals included


@dataclasses.dataclass(frozen=True)
class PostingLine:
    account_code: str
    currency: str
    direction: Direction
    amount_minor: int


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    """One journal transaction as it was posted; `reverses` is the external id of the
    transaction it mirrors, if it is a reversal."""

    id: int
    external_id: str
    description: str
    effective_at: dt.datetime
    created_at: dt.datetime
    reverses: str | None
    postings: tuple[PostingLine, ...]


def by_external_ids(session: Session, external_ids: Collection[str]) -> list[JournalEntry]:
    """The transactions with these external ids, and any reversal of them, oldest first."""
    wanted = sorted(set(external_ids))
    if not wanted:
        return []
    if len(wanted) > MAX_EXTERNAL_IDS:
        raise ValueError(f"at most {MAX_EXTERNAL_IDS} external ids in one look-up")
    named = select(JournalTransaction.id).where(JournalTransaction.external_id.in_(wanted))
    journals = list(
        session.execute(
            select(JournalTransaction)
            .where(
                or_(
                    JournalTransaction.external_id.in_(wanted),
                    JournalTransaction.reverses_id.in_(named),
                )
            )
            .order_by(JournalTransaction.id)
            .limit(MAX_TRANSACTIONS)
        ).scalars()
    )
    if not journals:
        return []
    ids = [journal.id for journal in journals]
    names = {journal.id: journal.external_id for journal in journals}
    postings: dict[int, list[PostingLine]] = defaultdict(list)
    rows = session.execute(
        select(
            Posting.transaction_id,
            Account.code,
            Account.currency,
            Posting.direction,
            Posting.amount_minor,
        )
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.transaction_id.in_(ids))
        .order_by(Posting.id)
    ).all()
    for transaction_id, code, currency, direction, amount in rows:
        postings[transaction_id].append(
            PostingLine(code, currency, Direction(direction), int(amount))
        )
    return [
        JournalEntry(
            id=journal.id,
            external_id=journal.external_id,
            description=journal.description,
            effective_at=journal.effective_at,
            created_at=journal.created_at,
            reverses=names.get(journal.reverses_id) if journal.reverses_id else None,
            postings=tuple(postings[journal.id]),
        )
        for journal in journals
    ]
