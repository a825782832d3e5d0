"""The book: reversals, limits, append-only rows, statements and balances as of a time."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

import ledger
from ledger import AccountRef, Kind, LimitExceeded
from payments import clock
from payments.gateway import Gateway
from tests.integration.ledger_support import CASH, OWED, post, spec, verify


def _count(gw: Gateway, model: type) -> int:
    with gw.db.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_a_reversal_mirrors_the_original_and_nets_to_zero(gw: Gateway) -> None:
    original = post(gw, spec("sale-1", 700))
    with gw.db.transaction() as session:
        reversal = ledger.reverse(session, original.transaction_id, clock.now())
    with gw.db.transaction() as session:
        again = ledger.reverse(session, original.transaction_id, clock.now())
    assert again.replayed and again.transaction_id == reversal.transaction_id
    with gw.db.read() as session:
        row = session.get(ledger.JournalTransaction, reversal.transaction_id)
        assert row is not None and row.reverses_id == original.transaction_id
        assert row.external_id == "reversal:sale-1"
        cash = ledger.account_balance(session, "cash", "OMR")
        assert cash is not None and cash.balance_minor == 0
        assert cash.debits_minor == cash.credits_minor == 700
    with pytest.raises(ledger.LedgerError, match="itself a reversal"), gw.db.transaction() as s:
        ledger.reverse(s, reversal.transaction_id, clock.now())
    assert verify(gw).ok


def test_long_external_ids_that_differ_at_the_end_are_each_reversed(gw: Gateway) -> None:
    first, second = (post(gw, spec("x" * 195 + tail, 5)) for tail in ("-a", "-b"))
    with gw.db.transaction() as session:
        reversals = [
            ledger.reverse(session, p.transaction_id, clock.now()) for p in (first, second)
        ]
    assert [r.replayed for r in reversals] == [False, False]
    assert [r.external_id for r in reversals] == [
        f"reversal:#{first.transaction_id}",
        f"reversal:#{second.transaction_id}",
    ]
    assert verify(gw).ok


def test_a_limit_refuses_the_posting_and_leaves_no_trace(gw: Gateway) -> None:
    till = AccountRef("till", "OMR", Kind.ASSET, min_balance_minor=0)
    post(gw, spec("fill", 100, debit=till))
    before = (_count(gw, ledger.JournalTransaction), _count(gw, ledger.Posting))
    overdraw = spec("overdraw", 101, debit=OWED, credit=till)
    with pytest.raises(LimitExceeded, match="below 0"), gw.db.transaction() as session:
        ledger.post(session, overdraw, clock.now())
    assert (_count(gw, ledger.JournalTransaction), _count(gw, ledger.Posting)) == before
    post(gw, spec("empty", 100, debit=OWED, credit=till))  # down to exactly the limit
    with gw.db.read() as session:
        balance = ledger.account_balance(session, "till", "OMR")
    assert balance is not None and balance.balance_minor == 0
    assert verify(gw).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_postings SET amount_minor = amount_minor + 1",
        "DELETE FROM ledger_postings",
        "UPDATE ledger_transactions SET description = 'changed'",
        "DELETE FROM ledger_chain",
    ],
)
def test_the_database_refuses_changes_to_the_journal(gw: Gateway, statement: str) -> None:
    post(gw, spec("kept", 5))
    with pytest.raises(DBAPIError, match="append-only"), gw.db.engine.begin() as conn:
        conn.execute(text(statement))
    assert verify(gw).ok


def test_statement_runs_balances_newest_first_across_pages(gw: Gateway) -> None:
    for index, amount in enumerate((100, 250, 50)):
        post(gw, spec(f"in-{index}", amount))
    post(gw, spec("out", 120, debit=OWED, credit=CASH))
    with gw.db.read() as session:
        first = ledger.statement(session, "cash", "OMR", limit=2)
        assert first is not None
        lines, has_more = first
        assert has_more
        assert [(line.amount_minor, line.balance_after_minor) for line in lines] == [
            (120, 280),
            (50, 400),
        ]
        rest = ledger.statement(
            session, "cash", "OMR", limit=2, starting_after=lines[-1].posting_id
        )
        assert rest is not None
        assert [(line.amount_minor, line.balance_after_minor) for line in rest[0]] == [
            (250, 350),
            (100, 100),
        ]
        assert rest[1] is False
        assert ledger.statement(session, "nothing", "OMR", limit=2) is None


def test_balances_as_of_a_past_time(gw: Gateway) -> None:
    start = clock.now()
    for hours, amount in ((0, 100), (1, 200), (2, 400)):
        moment = start + dt.timedelta(hours=hours)
        clock.set_clock(lambda moment=moment: moment)  # type: ignore[misc]
        post(gw, spec(f"h{hours}", amount))
    with gw.db.read() as session:
        as_of = start + dt.timedelta(minutes=90)
        assert ledger.balance_as_of(session, "cash", "OMR", as_of) == 300
        assert ledger.balance_as_of(session, "owed", "OMR", as_of) == 300
        assert ledger.balance_as_of(session, "cash", "OMR", start - dt.timedelta(seconds=1)) == 0
        past = ledger.trial_balance(session, as_of)
        assert past.totals == {"OMR": (300, 300)} and past.balanced
        now = ledger.trial_balance(session)
        assert now.totals == {"OMR": (700, 700)}


def test_the_chain_follows_commit_order(gw: Gateway) -> None:
    posted = [post(gw, spec(f"c{i}", i + 1)) for i in range(5)]
    with gw.db.read() as session:
        links = session.execute(select(ledger.ChainLink).order_by(ledger.ChainLink.seq)).scalars()
        assert [link.transaction_id for link in links] == [p.transaction_id for p in posted]
        head = session.get(ledger.ChainHead, 1)
        assert head is not None and head.seq == 5
    report = verify(gw)
    assert report.ok and report.transactions == 5 and report.postings == 10


def test_a_batch_posts_in_order_and_repeats_are_no_ops(gw: Gateway) -> None:
    batch = [spec(f"b{i}", i + 1) for i in range(50)]
    with gw.db.transaction() as session:
        posted = ledger.post_many(session, batch[:30], clock.now())
    assert [p.replayed for p in posted] == [False] * 30
    with gw.db.transaction() as session:  # the first 30 again, then 20 new ones
        posted = ledger.post_many(session, batch, clock.now())
    assert [p.replayed for p in posted] == [True] * 30 + [False] * 20
    with gw.db.read() as session:
        cash = ledger.account_balance(session, "cash", "OMR")
        links = session.execute(
            select(ledger.ChainLink.transaction_id).order_by(ledger.ChainLink.seq)
        )
        assert [row[0] for row in links] == [p.transaction_id for p in posted]
    assert cash is not None and cash.balance_minor == sum(range(1, 51))
    assert verify(gw).ok


def test_a_repeat_in_a_batch_leaves_its_own_accounts_alone(gw: Gateway) -> None:
    # The repeat's accounts sort before and after the new transaction's: each must keep its
    # place in the batch's account list though nothing new moves it.
    first = AccountRef("aaa", "OMR", Kind.ASSET)
    last = AccountRef("zzz", "OMR", Kind.LIABILITY)
    old = spec("old", 7, debit=first, credit=last)
    post(gw, old)
    with gw.db.transaction() as session:
        posted = ledger.post_many(session, [old, spec("new", 5)], clock.now())
    assert [p.replayed for p in posted] == [True, False]
    with gw.db.read() as session:
        book = ledger.trial_balance(session)
    balances = {(a.code, a.debits_minor, a.credits_minor) for a in book.accounts}
    assert balances == {("aaa", 7, 0), ("zzz", 0, 7), ("cash", 5, 0), ("owed", 0, 5)}
    assert verify(gw).ok


def test_a_batch_checks_limits_after_every_transaction(gw: Gateway) -> None:
    till = AccountRef("till", "OMR", Kind.ASSET, min_balance_minor=0)
    # Ends at +50, but dips to -50 after the second transaction: refused whole.
    batch = [
        spec("fill", 100, debit=till),
        spec("take", 150, debit=OWED, credit=till),
        spec("refill", 100, debit=till),
    ]
    with pytest.raises(LimitExceeded, match="take"), gw.db.transaction() as session:
        ledger.post_many(session, batch, clock.now())
    assert _count(gw, ledger.JournalTransaction) == 0
    with pytest.raises(ledger.LedgerError, match="twice"), gw.db.transaction() as session:
        ledger.post_many(session, [spec("x", 1), spec("x", 2)], clock.now())
    assert _count(gw, ledger.JournalTransaction) == 0


def test_a_seal_takes_at_most_its_limit_oldest_first_and_leaves_the_rest_queued(
    gw: Gateway,
) -> None:
    with gw.db.transaction() as session:
        posted = ledger.post_many(
            session, [spec(f"queued-{n}", 10 + n) for n in range(3)], clock.now(), seal=False
        )
    ids = [p.transaction_id for p in posted]

    def queued() -> list[int]:
        with gw.db.read() as session:
            found = session.scalars(select(ledger.Unsealed.transaction_id))
            return sorted(found)

    assert queued() == ids
    with gw.db.transaction() as session:
        assert ledger.seal(session, limit=2) == 2
    assert queued() == ids[2:]
    with gw.db.transaction() as session:
        assert ledger.seal(session, limit=2) == 1
    assert queued() == []
    assert verify(gw).ok
