"""Read-only use cases: events, the agency's balance, the trial balance and account statements."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

import ledger
from payments.errors import NotFound, PermissionDenied
from payments.gateway import Gateway
from payments.ids import is_id
from payments.models import Event
from payments.postings import payable_code
from payments.principal import Principal
from payments.schemas import unstorable
from payments.service.payments import Page, paginate, scoped


def event_json(event: Event) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(event.body)
    return body


def list_events(
    gw: Gateway, principal: Principal, type_: str | None, page: Page
) -> tuple[list[Event], bool]:
    query = scoped(select(Event), Event, principal)
    if type_:
        query = query.where(Event.type == type_)
    with gw.db.read() as session:
        return paginate(session, query, Event, page)


def get_event(gw: Gateway, principal: Principal, event_id: str) -> Event:
    if not is_id(event_id, "evt"):
        raise NotFound(f"no event {event_id[:40]!r}", param="id")
    with gw.db.read() as session:
        event: Event | None = session.execute(
            scoped(select(Event).where(Event.id == event_id), Event, principal)
        ).scalar_one_or_none()
    if event is None:
        raise NotFound(f"no event {event_id}", param="id")
    return event


def agency_balance(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """What the gateway owes the calling agency, per currency, in the key's mode."""
    if principal.agency_id is None:
        raise PermissionDenied("the balance is read with an agency key")
    code = payable_code(principal.agency_id, livemode=principal.livemode)
    with gw.db.read() as session:
        balances = ledger.balances(session, code)
    return [{"currency": b.currency, "payable": b.balance_minor} for b in balances]


def _finance_only(principal: Principal, what: str) -> None:
    if not principal.is_finance:
        raise PermissionDenied(f"{what} is read with a finance key")


def trial_balance(
    gw: Gateway, principal: Principal, as_of: dt.datetime | None = None
) -> dict[str, Any]:
    _finance_only(principal, "the trial balance")
    with gw.db.read() as session:
        book = ledger.trial_balance(session, as_of)
    return {
        "currencies": {ccy: {"debits": d, "credits": c} for ccy, (d, c) in book.totals.items()},
        "accounts": [
            {
                "account": a.code,
                "currency": a.currency,
                "kind": a.kind.value,
                "balance": a.balance_minor,
            }
            for a in book.accounts
        ],
    }


STATEMENT_LINE_PREFIX = "pst_"


def account_statement(
    gw: Gateway, principal: Principal, code: str, currency: str, page: Page
) -> dict[str, Any]:
    """An account's postings, newest first, each with the running balance after it."""
    _finance_only(principal, "an account statement")
    if unstorable(code):  # no account can have such a code: do not ask the database
        raise NotFound(f"no account {code!r} in {currency}", param="code")
    after = None  # the query schema let through only a statement line id
    if page.starting_after is not None:
        after = int(page.starting_after.removeprefix(STATEMENT_LINE_PREFIX))
    with gw.db.read() as session:
        found = ledger.statement(session, code, currency, limit=page.limit, starting_after=after)
        balance = ledger.account_balance(session, code, currency)
    if found is None or balance is None:
        raise NotFound(f"no account {code} in {currency}", param="code")
    lines, has_more = found
    return {
        "object": "list",
        "account": code,
        "currency": currency,
        "kind": balance.kind.value,
        "balance": balance.balance_minor,
        "data": [
            {
                "id": f"{STATEMENT_LINE_PREFIX}{line.posting_id}",
                "transaction": line.external_id,
                "description": line.description,
                "effective_at": line.effective_at,
                "direction": line.direction.value,
                "amount": line.amount_minor,
                "balance_after": line.balance_after_minor,
            }
            for line in lines
        ],
        "has_more": has_more,
    }
