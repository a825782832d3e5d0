"""Property-based, stateful tests of the book on SQLite and PostgreSQL (whose postings take
another path, the `ledger_post` function): random postings, batches mixing new transactions
and repeats, reversals, duplicates and refused transactions always keep conservation, balances
= fold of postings, an append-only history, no trace of refusals, and reversals that net to
zero."""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

import ledger
from ledger import AccountRef, Direction, Entry, Kind, LedgerError, TransactionSpec
from payments import clock
from payments.db import Database, make_engine
from payments.migrate import upgrade
from tests.conftest import _truncate_postgres

ACCOUNTS = [
    AccountRef("cash", "OMR", Kind.ASSET),
    AccountRef("bank", "OMR", Kind.ASSET),
    AccountRef("owed", "OMR", Kind.LIABILITY),
    AccountRef("fees", "OMR", Kind.EXPENSE),
    AccountRef("cash", "SAR", Kind.ASSET),
    AccountRef("owed", "SAR", Kind.LIABILITY),
]


@functools.cache
def _template() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ledger-template-")) / "book.db"
    upgrade(f"sqlite:///{path}")
    return path


@st.composite
def balanced_entries(draw: st.DrawFn) -> tuple[Entry, ...]:
    currency = draw(st.sampled_from(["OMR", "SAR"]))
    accounts = [a for a in ACCOUNTS if a.currency == currency]
    debits = draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=3))
    entries = [Entry(draw(st.sampled_from(accounts)), Direction.DEBIT, x) for x in debits]
    total = sum(debits)
    cut = draw(st.integers(0, total - 1)) if total > 1 else 0
    credits = [total - cut, cut] if cut else [total]
    entries += [Entry(draw(st.sampled_from(accounts)), Direction.CREDIT, x) for x in credits]
    return tuple(entries)


class Book(RuleBasedStateMachine):
    def __init__(self, postgres_url: str | None = None) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-"))
        if postgres_url:
            _truncate_postgres(postgres_url)
            self.db = Database(make_engine(postgres_url))
        else:
            shutil.copy(_template(), self.dir / "book.db")
            self.db = Database(make_engine(f"sqlite:///{self.dir / 'book.db'}"))
        self.model: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.posted: dict[str, tuple[Entry, ...]] = {}
        self.reversible: list[str] = []
        self.history: list[tuple[str, str]] = []
        self.counter = 0

    def _apply(self, entries: tuple[Entry, ...]) -> None:
        for entry in entries:
            side = 0 if entry.direction is Direction.DEBIT else 1
            self.model[(entry.account.code, entry.account.currency)][side] += entry.amount_minor

    def _spec(self, external_id: str, entries: tuple[Entry, ...]) -> TransactionSpec:
        return TransactionSpec(external_id, "property", entries, clock.now())

    @rule(entries=balanced_entries())
    def post_balanced(self, entries: tuple[Entry, ...]) -> None:
        self.counter += 1
        external_id = f"t{self.counter}"
        with self.db.transaction() as session:
            posted = ledger.post(session, self._spec(external_id, entries), clock.now())
        assert not posted.replayed
        self._apply(entries)
        self.posted[external_id] = entries
        self.reversible.append(external_id)

    @rule(batch=st.lists(balanced_entries(), min_size=1, max_size=4), data=st.data())
    def post_a_batch(self, batch: list[tuple[Entry, ...]], data: st.DataObject) -> None:
        specs = []
        for entries in batch:
            self.counter += 1
            specs.append(self._spec(f"t{self.counter}", entries))
        earlier = st.sets(st.sampled_from(sorted(self.posted)), max_size=2)
        repeats = data.draw(earlier) if self.posted else set()
        specs += [self._spec(external_id, self.posted[external_id]) for external_id in repeats]
        order = data.draw(st.permutations(range(len(specs))))
        with self.db.transaction() as session:
            posted = ledger.post_many(session, [specs[i] for i in order], clock.now())
        assert {p.external_id for p in posted if p.replayed} == repeats
        for spec in specs[: len(batch)]:
            self._apply(spec.entries)
            self.posted[spec.external_id] = spec.entries
            self.reversible.append(spec.external_id)

    @rule(entries=balanced_entries(), extra=st.integers(1, 1000))
    def refused_unbalanced(self, entries: tuple[Entry, ...], extra: int) -> None:
        first = entries[0]
        broken = (Entry(first.account, first.direction, first.amount_minor + extra), *entries[1:])
        with pytest.raises(LedgerError), self.db.transaction() as session:
            ledger.post(session, self._spec("never", broken), clock.now())

    @precondition(lambda self: bool(self.posted))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        external_id = data.draw(st.sampled_from(sorted(self.posted)))
        entries = self.posted[external_id]
        with self.db.transaction() as session:
            assert ledger.post(session, self._spec(external_id, entries), clock.now()).replayed
        changed = (
            Entry(entries[0].account, entries[0].direction, entries[0].amount_minor + 1),
            *entries[1:],
        )
        with pytest.raises(LedgerError), self.db.transaction() as session:
            ledger.post(session, self._spec(external_id, changed), clock.now())

    @precondition(lambda self: bool(self.reversible))
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        external_id = data.draw(st.sampled_from(self.reversible))
        self.reversible.remove(external_id)
        with self.db.transaction() as session:
            original = session.execute(
                select(ledger.JournalTransaction.id).where(
                    ledger.JournalTransaction.external_id == external_id
                )
            ).scalar_one()
            ledger.reverse(session, original, clock.now())
        mirrored = tuple(
            Entry(e.account, e.direction.opposite, e.amount_minor) for e in self.posted[external_id]
        )
        self._apply(mirrored)
        self.posted[f"reversal:{external_id}"] = mirrored

    @invariant()
    def book_matches_the_model(self) -> None:
        with self.db.read() as session:
            book = ledger.trial_balance(session)
            links = session.execute(
                select(
                    ledger.JournalTransaction.external_id, ledger.JournalTransaction.content_hash
                )
                .join(
                    ledger.ChainLink,
                    ledger.ChainLink.transaction_id == ledger.JournalTransaction.id,
                )
                .order_by(ledger.ChainLink.seq)
            ).all()
        assert book.balanced  # conservation per currency
        actual = {(a.code, a.currency): [a.debits_minor, a.credits_minor] for a in book.accounts}
        assert actual == {k: v for k, v in self.model.items() if v != [0, 0]}
        journal = [(row.external_id, row.content_hash) for row in links]
        assert journal[: len(self.history)] == self.history  # the past never changes
        assert {external_id for external_id, _ in journal} == set(self.posted)
        self.history = journal

    def teardown(self) -> None:
        with self.db.read() as session:
            report = ledger.verify(session)
        assert report.ok, report.problems
        self.db.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


SETTINGS = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestBook = Book.TestCase
TestBook.settings = SETTINGS


def test_the_book_on_postgresql(postgres_url: str) -> None:
    class BookOnPostgres(Book):
        def __init__(self) -> None:
            super().__init__(postgres_url)

    run_state_machine_as_test(BookOnPostgres, settings=SETTINGS)
