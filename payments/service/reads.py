"""Read-only use cases: events, the agency's balance and the trial balance."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

import ledger
from payments.errors import NotFound, PermissionDenied
from payments.gateway import Gateway
from payments.models import Event
from payments.postings import payable_code
from payments.service.access import Principal
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


def trial_balance(gw: Gateway, principal: Principal) -> dict[str, Any]:
    if not principal.is_finance:
        raise PermissionDenied("the trial balance is read with a finance key")
    with gw.db.read() as session:
        totals, accounts = ledger.trial_balance(session)
    return {
        "currencies": {ccy: {"debits": d, "credits": c} for ccy, (d, c) in totals.items()},
        "accounts": [
            {
                "account": a.code,
                "currency": a.currency,
                "kind": a.kind.value,
                "balance": a.balance_minor,
            }
            for a in accounts
        ],
    }
