"""Verification of the whole book: the hash chain (and any anchors of it kept elsewhere),
every transaction's content and balance, every account's totals and limits, and every
reversal. Streams in batches.

A journal transaction outside the chain is a problem unless it is still queued for sealing
and younger than a grace period: then it is counted as pending, and checked once sealed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.book import Direction, Kind
from ledger.chain import Anchor
from ledger.encoding import PostingKey, content_hash, link_hash
from ledger.models import (
    GENESIS_HASH,
    Account,
    ChainHead,
    ChainLink,
    JournalTransaction,
    Posting,
    Unsealed,
)
from ledger.reports import CREDITS, DEBITS

BATCH = 1000
MAX_PROBLEMS = 100
# How long a posted transaction may wait in the queue before its missing link is a problem.
SEAL_GRACE = dt.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Problem:
    check: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


@dataclasses.dataclass
class Report:
    transactions: int = 0
    postings: int = 0
    accounts: int = 0
    pending: int = 0  # queued for sealing, younger than the grace period
    problems: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, check: str, where: str, detail: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(check, where, detail))


def _links(session: Session) -> Iterator[list[tuple[ChainLink, JournalTransaction | None]]]:
    after = 0
    while True:
        rows = session.execute(
            select(ChainLink, JournalTransaction)
            .outerjoin(JournalTransaction, JournalTransaction.id == ChainLink.transaction_id)
            .where(ChainLink.seq > after)
            .order_by(ChainLink.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        yield [(link, journal) for link, journal in rows]
        after = rows[-1][0].seq


def _postings_of(session: Session, ids: list[int]) -> dict[int, list[PostingKey]]:
    found: dict[int, list[PostingKey]] = defaultdict(list)
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
    ).all()
    for transaction_id, code, ccy, direction, amount in rows:
        found[transaction_id].append((code, ccy, direction, int(amount)))
    return found


def _external_ids(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(
        select(JournalTransaction.id, JournalTransaction.external_id).where(
            JournalTransaction.id.in_(ids)
        )
    ).all()
    return {row.id: row.external_id for row in rows}


def _check_transaction(
    report: Report, journal: JournalTransaction, postings: list[PostingKey], reverses: str | None
) -> None:
    where = f"transaction {journal.id} ({journal.external_id})"
    expected = content_hash(
        external_id=journal.external_id,
        description=journal.description,
        effective_at=journal.effective_at,
        metadata=journal.extra,
        reverses=reverses,
        postings=postings,
    )
    if expected != journal.content_hash:
        report.add("content", where, "its row or its postings were changed after posting")
    totals: dict[str, int] = defaultdict(int)
    for code, ccy, direction, amount in postings:
        if amount <= 0:
            report.add("posting", where, f"non-positive amount {amount} on {code}")
        totals[ccy] += amount if direction == "debit" else -amount
    if not postings:
        report.add("balance", where, "has no postings")
    for ccy, diff in sorted(totals.items()):
        if diff:
            report.add("balance", where, f"debits and credits differ by {diff} {ccy}")


def _check_chain(session: Session, report: Report) -> None:
    previous, expected_seq = GENESIS_HASH, 1
    for batch in _links(session):
        journals = [journal for _, journal in batch if journal is not None]
        postings = _postings_of(session, [j.id for j in journals])
        originals = _external_ids(session, {j.reverses_id for j in journals if j.reverses_id})
        for link, journal in batch:
            where = f"chain link {link.seq}"
            if link.seq != expected_seq:
                report.add("chain", where, f"expected link {expected_seq}: links were removed")
            expected_seq = link.seq + 1
            if journal is None:
                report.add("chain", where, f"transaction {link.transaction_id} is missing")
                previous = link.hash
                continue
            report.transactions += 1
            report.postings += len(postings[journal.id])
            reverses = originals.get(journal.reverses_id) if journal.reverses_id else None
            _check_transaction(report, journal, postings[journal.id], reverses)
            if link_hash(previous, journal.content_hash) != link.hash:
                report.add("chain", where, f"hash does not follow from link {link.seq - 1}")
            previous = link.hash
    head = session.execute(select(ChainHead)).scalar_one_or_none()
    last_seq = expected_seq - 1
    if head is not None and (head.seq != last_seq or head.hash != previous):
        report.add("chain", "chain head", f"names link {head.seq}, the chain ends at {last_seq}")
    if head is None and last_seq:
        report.add("chain", "chain head", "is missing")


def _check_anchors(session: Session, report: Report, anchors: Sequence[Anchor]) -> None:
    """Each anchor's link must still be in the chain with the hash recorded for it."""
    for anchor in sorted(set(anchors), key=lambda a: a.seq):
        where = f"anchor of link {anchor.seq}"
        if anchor.seq == 0:
            found: str | None = GENESIS_HASH
        else:
            found = session.execute(
                select(ChainLink.hash).where(ChainLink.seq == anchor.seq)
            ).scalar_one_or_none()
        if found is None:
            report.add("anchor", where, "the chain no longer reaches it: links were removed")
        elif found != anchor.hash:
            report.add("anchor", where, f"the chain was rewritten: link {anchor.seq} is {found}")


def _check_unsealed(session: Session, report: Report, cutoff: dt.datetime) -> None:
    """Journal transactions outside the chain: pending if queued since `cutoff` or later."""
    journal = JournalTransaction
    queued = Unsealed.transaction_id.is_not(None)
    unsealed = (
        select(journal.id, journal.external_id, journal.created_at, queued.label("queued"))
        .outerjoin(ChainLink, ChainLink.transaction_id == journal.id)
        .outerjoin(Unsealed, Unsealed.transaction_id == journal.id)
        .where(ChainLink.seq.is_(None))
    )
    pending = queued & (journal.created_at >= cutoff)
    report.pending = session.execute(
        select(func.count()).select_from(unsealed.where(pending).subquery())
    ).scalar_one()
    for row in session.execute(unsealed.where(~pending).order_by(journal.id).limit(MAX_PROBLEMS)):
        where = f"transaction {row.id} ({row.external_id})"
        if row.queued:
            report.add("chain", where, f"was never sealed: queued since {row.created_at}")
        else:
            report.add("chain", where, "is neither in the chain nor queued for sealing")


def _check_accounts(session: Session, report: Report) -> None:
    sums = {
        row.account_id: (int(row.debits), int(row.credits))
        for row in session.execute(
            select(
                Posting.account_id,
                func.coalesce(func.sum(DEBITS), 0).label("debits"),
                func.coalesce(func.sum(CREDITS), 0).label("credits"),
            ).group_by(Posting.account_id)
        ).all()
    }
    for account in session.execute(select(Account).order_by(Account.id)).scalars():
        report.accounts += 1
        where = f"account {account.code} {account.currency}"
        debits, credits = sums.get(account.id, (0, 0))
        if (account.debits_minor, account.credits_minor) != (debits, credits):
            report.add(
                "totals",
                where,
                f"holds {account.debits_minor}/{account.credits_minor} (debits/credits), "
                f"its postings sum to {debits}/{credits}",
            )
        balance = Kind(account.kind).balance(debits, credits)
        if account.min_balance_minor is not None and balance < account.min_balance_minor:
            report.add("limit", where, f"balance {balance} is below {account.min_balance_minor}")


def _check_reversals(session: Session, report: Report) -> None:
    reversals = session.execute(
        select(JournalTransaction.id, JournalTransaction.reverses_id).where(
            JournalTransaction.reverses_id.is_not(None)
        )
    ).all()
    for start in range(0, len(reversals), BATCH):
        chunk = reversals[start : start + BATCH]
        pairs = [(int(r.id), int(r.reverses_id)) for r in chunk]
        postings = _postings_of(session, [i for pair in pairs for i in pair])
        for reversal_id, original_id in pairs:
            flipped = sorted(
                (code, ccy, Direction(d).opposite.value, amount)
                for code, ccy, d, amount in postings[original_id]
            )
            if sorted(postings[reversal_id]) != flipped:
                report.add(
                    "reversal",
                    f"transaction {reversal_id}",
                    f"does not mirror transaction {original_id}",
                )


def verify(
    session: Session,
    *,
    now: dt.datetime | None = None,
    grace: dt.timedelta = SEAL_GRACE,
    anchors: Sequence[Anchor] = (),
) -> Report:
    """Check every invariant of the book; a report without problems means it is intact.
    Transactions queued for sealing less than `grace` before `now` are only counted; every
    anchor must still match the chain."""
    report = Report()
    _check_chain(session, report)
    _check_anchors(session, report, anchors)
    _check_unsealed(session, report, (now or dt.datetime.now(dt.UTC)) - grace)
    _check_accounts(session, report)
    _check_reversals(session, report)
    return report
