"""Reading payments and their attempts on the hot path: each read a statement built once and run
on the driver's cursor, after the session's pending changes are written, giving the session's
own objects."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from payments.models import Attempt, Payment
from payments.store import rows
from statements import prepared


@dataclasses.dataclass(frozen=True)
class Scope:
    """The objects a caller may see: one agency's in one mode."""

    agency_id: str
    livemode: bool


def _owned(query: Select[Any], scoped: bool) -> Select[Any]:
    """`query` restricted, when `scoped`, to the payment of the agency and mode bound as
    `agency_id` and `livemode`."""
    if not scoped:
        return query
    return query.where(
        Payment.agency_id == bindparam("agency_id"), Payment.livemode == bindparam("livemode")
    )


def _payment(scoped: bool, lock: bool) -> Select[Any]:
    query = _owned(
        select(*rows.columns_of(Payment)).where(Payment.id == bindparam("payment_id")), scoped
    )
    return query.with_for_update() if lock else query


# Built once each: (scoped, locked).
_PAYMENT = {
    (scoped, lock): _payment(scoped, lock) for scoped in (False, True) for lock in (False, True)
}
# The payment and one of its attempts, locked in one statement: payment first, as everywhere
# (PostgreSQL locks a join's rows in the order of its FROM list). By whether it is scoped.
_WITH_ATTEMPT = {
    scoped: _owned(
        select(*rows.columns_of(Payment), *rows.columns_of(Attempt))
        .select_from(Payment)
        .join(Attempt, Attempt.payment_id == Payment.id)
        .where(Payment.id == bindparam("payment_id"), Attempt.id == bindparam("attempt_id")),
        scoped,
    ).with_for_update()
    for scoped in (False, True)
}
_PAYMENT_COLUMNS = len(rows.columns_of(Payment))


def _bound(scope: Scope | None) -> dict[str, Any]:
    return {} if scope is None else {"agency_id": scope.agency_id, "livemode": scope.livemode}


def payment(
    session: Session, payment_id: str, scope: Scope | None, *, lock: bool = False
) -> Payment | None:
    """The payment `payment_id` if `scope` may see it (any, with no scope); `lock`: locked
    for update until the transaction ends."""
    rows.write_changes(session)
    found = prepared.run(
        session.connection(),
        _PAYMENT[scope is not None, lock],
        {"payment_id": payment_id, **_bound(scope)},
    ).rows
    return rows.loaded(session, Payment, found[0]) if found else None


def payment_with_attempt(
    session: Session, payment_id: str, attempt_id: str, scope: Scope | None
) -> tuple[Payment, Attempt] | None:
    """The payment and one of its attempts, both locked, in one statement; None if `scope`
    may not see the payment or the attempt is not its."""
    rows.write_changes(session)
    found = prepared.run(
        session.connection(),
        _WITH_ATTEMPT[scope is not None],
        {"payment_id": payment_id, "attempt_id": attempt_id, **_bound(scope)},
    ).rows
    if not found:
        return None
    (row,) = found
    return (
        rows.loaded(session, Payment, row[:_PAYMENT_COLUMNS]),
        rows.loaded(session, Attempt, row[_PAYMENT_COLUMNS:]),
    )
