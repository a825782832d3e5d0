"""Reading the book: balances, the trial balance, statements with running balances, and
balances as of a past time, all from the caller's session."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from ledger.book import Direction, Kind
from ledger.models import Account, JournalTransaction, Posting


@dataclasses.dataclass(frozen=True)
class AccountBalance:
    code: str
    currency: str
    kind: Kind
    debits_minor: int
    credits_minor: int

    @property
    def balance_minor(self) -> int:
        """The balance on the account's normal side (assets and expenses: debits - credits)."""
        return self.kind.balance(self.debits_minor, self.credits_minor)


@dataclasses.dataclass(frozen=True)
class TrialBalance:
    totals: dict[str, tuple[int, int]]  # currency -> (debits, credits)
    accounts: list[AccountBalance]

    @property
    def balanced(self) -> bool:
        return all(debits == credits for debits, credits in self.totals.values())


@dataclasses.dataclass(frozen=True)
class StatementLine:
    posting_id: int
    transaction_id: int
    external_id: str
    description: str
    effective_at: dt.datetime
    direction: Direction
    amount_minor: int
    balance_after_minor: int


def _balance(account: Account) -> AccountBalance:
    return AccountBalance(
        code=account.code,
        currency=account.currency,
        kind=Kind(account.kind),
        debits_minor=account.debits_minor,
        credits_minor=account.credits_minor,
    )


def account_balance(session: Session, code: str, currency: str) -> AccountBalance | None:
    account = session.execute(
        select(Account).where(Account.code == code, Account.currency == currency)
    ).scalar_one_or_none()
    return None if account is None else _balance(account)


def balances(session: Session, code: str) -> list[AccountBalance]:
    """The account `code` in every currency it holds, by currency."""
    rows = session.execute(
        select(Account).where(Account.code == code).order_by(Account.currency)
    ).scalars()
    return [_balance(account) for account in rows]


DEBITS = case((Posting.direction == "debit", Posting.amount_minor), else_=0)
CREDITS = case((Posting.direction == "credit", Posting.amount_minor), else_=0)


def trial_balance(session: Session, as_of: dt.datetime | None = None) -> TrialBalance:
    """Per currency total debits and credits, and every account, from the postings (as of a
    time if given: postings of transactions effective at or before it)."""
    query = (
        select(
            Account.code,
            Account.currency,
            Account.kind,
            func.coalesce(func.sum(DEBITS), 0),
            func.coalesce(func.sum(CREDITS), 0),
        )
        .join(Posting, Posting.account_id == Account.id)
        .group_by(Account.id, Account.code, Account.currency, Account.kind)
        .order_by(Account.code, Account.currency)
    )
    if as_of is not None:
        query = query.join(
            JournalTransaction, JournalTransaction.id == Posting.transaction_id
        ).where(JournalTransaction.effective_at <= as_of)
    accounts = [
        AccountBalance(code, ccy, Kind(kind), int(debits), int(credits))
        for code, ccy, kind, debits, credits in session.execute(query).all()
    ]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for account in accounts:
        totals[account.currency][0] += account.debits_minor
        totals[account.currency][1] += account.credits_minor
    return TrialBalance({ccy: (d, c) for ccy, (d, c) in sorted(totals.items())}, accounts)


def balance_as_of(session: Session, code: str, currency: str, as_of: dt.datetime) -> int:
    """The account's balance counting only transactions effective at or before `as_of`."""
    account = session.execute(
        select(Account.id, Account.kind).where(Account.code == code, Account.currency == currency)
    ).first()
    if account is None:
        return 0
    debits, credits = session.execute(
        select(func.coalesce(func.sum(DEBITS), 0), func.coalesce(func.sum(CREDITS), 0))
        .join(JournalTransaction, JournalTransaction.id == Posting.transaction_id)
        .where(Posting.account_id == account.id, JournalTransaction.effective_at <= as_of)
    ).one()
    return Kind(account.kind).balance(int(debits), int(credits))


def statement(
    session: Session,
    code: str,
    currency: str,
    *,
    limit: int,
    starting_after: int | None = None,
) -> tuple[list[StatementLine], bool] | None:
    """The account's postings, newest first, each with the balance right after it.
    None when there is no such account."""
    account = session.execute(
        select(Account).where(Account.code == code, Account.currency == currency)
    ).scalar_one_or_none()
    if account is None:
        return None
    query = (
        select(Posting, JournalTransaction)
        .join(JournalTransaction, JournalTransaction.id == Posting.transaction_id)
        .where(Posting.account_id == account.id)
        .order_by(Posting.id.desc())
        .limit(limit + 1)
    )
    if starting_after is not None:
        query = query.where(Posting.id < starting_after)
    rows = session.execute(query).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    kind = Kind(account.kind)
    sign = 1 if kind.debit_normal else -1
    if not rows:
        return [], False
    # The balance after the newest posting on this page: everything up to and including it.
    debits, credits = session.execute(
        select(func.coalesce(func.sum(DEBITS), 0), func.coalesce(func.sum(CREDITS), 0)).where(
            Posting.account_id == account.id, Posting.id <= rows[0][0].id
        )
    ).one()
    running = sign * (int(debits) - int(credits))
    lines = []
    for posting, journal in rows:
        lines.append(
            StatementLine(
                posting_id=posting.id,
                transaction_id=journal.id,
                external_id=journal.external_id,
                description=journal.description,
                effective_at=journal.effective_at,
                direction=Direction(posting.direction),
                amount_minor=posting.amount_minor,
                balance_after_minor=running,
            )
        )
        change = posting.amount_minor if posting.direction == "debit" else -posting.amount_minor
        running -= sign * change
    return lines, has_more
