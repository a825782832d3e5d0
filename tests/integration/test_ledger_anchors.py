"""Anchors: chain heads kept outside the database catch what the chain alone cannot, a chain
rebuilt from scratch or cut short by someone who knows the algorithm and can bypass the
append-only guard; the anchor log is written and read by the `gateway` command."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

import ledger
from ledger.encoding import content_hash, link_hash
from ledger.models import GENESIS_HASH, Account, JournalTransaction, Posting
from payments.gateway import Gateway
from payments.service import anchors
from tests.integration.ledger_support import gateway_cli, post, spec, tamper


def _rebuild_chain(gw: Gateway) -> None:
    """Recompute every content hash and link from the rows as they now stand, as a forger
    would after changing them."""
    statements = []
    previous = GENESIS_HASH
    with gw.db.read() as session:
        journal = session.execute(select(JournalTransaction).order_by(JournalTransaction.id))
        for seq, row in enumerate(journal.scalars(), start=1):
            postings = session.execute(
                select(Account.code, Account.currency, Posting.direction, Posting.amount_minor)
                .join(Account, Account.id == Posting.account_id)
                .where(Posting.transaction_id == row.id)
            )
            digest = content_hash(
                external_id=row.external_id,
                description=row.description,
                effective_at=row.effective_at,
                metadata=row.extra,
                reverses=None,
                postings=[(code, ccy, d, int(amount)) for code, ccy, d, amount in postings],
            )
            previous = link_hash(previous, digest)
            statements += [
                f"UPDATE ledger_transactions SET content_hash = '{digest}' WHERE id = {row.id}",
                f"UPDATE ledger_chain SET hash = '{previous}' WHERE seq = {seq}",
            ]
    statements.append(f"UPDATE ledger_chain_head SET hash = '{previous}' WHERE id = 1")
    tamper(gw, *statements)


def _verify(gw: Gateway, held: list[ledger.Anchor]) -> ledger.Report:
    with gw.db.read() as session:
        return ledger.verify(session, anchors=held)


def _head(gw: Gateway) -> ledger.Anchor:
    with gw.db.read() as session:
        return ledger.head(session)


def test_a_chain_rebuilt_after_an_edit_passes_alone_but_not_against_its_anchor(
    gw: Gateway,
) -> None:
    for index in (1, 2, 3):
        post(gw, spec(f"t{index}", index))
    held = [ledger.Anchor(0, GENESIS_HASH), _head(gw)]
    assert held[1].seq == 3 and _verify(gw, held).ok
    tamper(
        gw,
        "UPDATE ledger_postings SET amount_minor = 999 WHERE transaction_id = 2",
        "UPDATE ledger_accounts SET debits_minor = debits_minor + 997 WHERE code = 'cash'",
        "UPDATE ledger_accounts SET credits_minor = credits_minor + 997 WHERE code = 'owed'",
    )
    _rebuild_chain(gw)
    assert _verify(gw, []).ok  # consistent throughout: the chain alone cannot tell
    report = _verify(gw, held)
    assert [(p.check, p.where) for p in report.problems] == [("anchor", "anchor of link 3")]


def test_a_chain_cut_short_is_caught_by_its_anchor(gw: Gateway) -> None:
    for index in (1, 2, 3):
        post(gw, spec(f"t{index}", index))
    held = [_head(gw)]
    with gw.db.read() as session:
        link_2 = session.get(ledger.ChainLink, 2)
        assert link_2 is not None
        previous = link_2.hash
    tamper(  # the last transaction removed with every trace of it, the head moved back
        gw,
        "DELETE FROM ledger_chain WHERE seq = 3",
        "DELETE FROM ledger_postings WHERE transaction_id = 3",
        "DELETE FROM ledger_transactions WHERE id = 3",
        "UPDATE ledger_accounts SET debits_minor = debits_minor - 3 WHERE code = 'cash'",
        "UPDATE ledger_accounts SET credits_minor = credits_minor - 3 WHERE code = 'owed'",
        f"UPDATE ledger_chain_head SET seq = 2, hash = '{previous}' WHERE id = 1",
    )
    assert _verify(gw, []).ok
    problems = _verify(gw, held).problems
    assert [(p.check, p.where) for p in problems] == [("anchor", "anchor of link 3")]
    assert "links were removed" in problems[0].detail


def test_the_gateway_command_anchors_and_verifies_against_the_log(gw: Gateway) -> None:
    post(gw, spec("t1", 1))
    post(gw, spec("t2", 2))
    anchored = gateway_cli(gw.settings, "ledger", "anchor")
    assert anchored.returncode == 0, anchored.stderr
    assert f"anchored link 2: {_head(gw).hash}" in anchored.stdout
    log = anchors.default_path(gw)
    assert anchors.read(log) == [_head(gw)]
    good = gateway_cli(gw.settings, "ledger", "verify")
    assert good.returncode == 0, good.stderr
    assert "2 accounts, 1 anchors" in good.stdout
    tamper(gw, "UPDATE ledger_postings SET amount_minor = 5 WHERE transaction_id = 2")
    tamper(gw, "UPDATE ledger_accounts SET debits_minor = 6 WHERE code = 'cash'")
    tamper(gw, "UPDATE ledger_accounts SET credits_minor = 6 WHERE code = 'owed'")
    _rebuild_chain(gw)
    bad = gateway_cli(gw.settings, "ledger", "verify")
    assert bad.returncode == 1
    assert "first broken: anchor: anchor of link 2: the chain was rewritten" in bad.stderr


def test_a_broken_anchor_log_is_refused_by_line(gw: Gateway, tmp_path: Path) -> None:
    post(gw, spec("t1", 1))
    log = tmp_path / "anchors.jsonl"
    anchors.anchor(gw, log)
    with log.open("a") as out:
        out.write('{"seq": 1, "hash": "not hex"}\n')
    refused = gateway_cli(gw.settings, "ledger", "verify", "--anchors", str(log))
    assert refused.returncode != 0
    assert f"line 2 of {log} is not an anchor" in refused.stderr
    missing = gateway_cli(gw.settings, "ledger", "verify", "--anchors", str(tmp_path / "none"))
    assert missing.returncode != 0 and "cannot read the anchor log" in missing.stderr
