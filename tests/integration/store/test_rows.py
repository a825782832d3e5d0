"""Core writes outside the unit of work (payments/store/rows.py), on both databases: a change to a
loaded object is one UPDATE, the object is left with nothing pending, a later change is still
written, and anything the Core writes cannot do alone is handed whole to the ORM's flush; a row
read on the driver's cursor becomes the object the ORM would have loaded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from payments.gateway import Gateway
from payments.models import Event, Payment
from payments.store import rows
from statements import prepared
from tests.conftest import PAYMENT, auth

EVENT_ID = "evt_rows000000000000000000"
LATER_EVENT_ID = "evt_rows000000000000000001"


@contextlib.contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(" ".join(sql.split()).upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def an_event(payment: Payment, event_id: str) -> Event:
    return Event(
        id=event_id,
        agency_id=payment.agency_id,
        livemode=False,
        type="payment.updated",
        object_id=payment.id,
        body="{}",
        created_at=payment.created_at,
    )


@pytest.fixture
def payment_id(client: FlaskClient, agency_key: str) -> str:
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key))
    assert created.status_code == 201, created.json
    return str(created.json["id"])  # type: ignore[index]


def test_a_changed_object_is_one_update_and_then_clean(gw: Gateway, payment_id: str) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.description = "Renewed certificate fee"
        payment.extra = {"file": "A-17"}  # the attribute of the column `metadata`
        payment.reference = payment.reference  # set to what it was: no change to write
        with statements(gw.db.engine) as seen:
            rows.write_changes(session)
            assert not session.dirty
            session.flush()  # the unit of work finds nothing left to write
        updates = [s for s in seen if s.startswith("UPDATE")]
        assert len(updates) == 1 and len(seen) == 1, seen
        assert "DESCRIPTION" in updates[0] and "METADATA" in updates[0]
        assert "REFERENCE" not in updates[0]
        payment.status = "canceled"  # a change after the Core write is still the ORM's to write
    with gw.db.read() as session:
        stored = session.execute(select(Payment).where(Payment.id == payment_id)).scalar_one()
        assert (stored.description, stored.extra, stored.status) == (
            "Renewed certificate fee",
            {"file": "A-17"},
            "canceled",
        )


def test_with_a_new_object_pending_the_unit_of_work_writes_everything_now(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.description = "Changed beside a new object"
        session.add(an_event(payment, EVENT_ID))
        with statements(gw.db.engine) as seen:
            rows.write_changes(session)
        assert sorted(s.split()[0] for s in seen) == ["INSERT", "UPDATE"]
        assert not session.dirty and not session.new
    with gw.db.read() as session:
        stored = session.get(Payment, payment_id)
        assert stored is not None and stored.description == "Changed beside a new object"
        assert session.get(Event, EVENT_ID) is not None


def test_an_insert_writes_pending_changes_first(gw: Gateway, payment_id: str) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.description = "Written before the insert"
        with statements(gw.db.engine) as seen:
            rows.insert(session)  # nothing to insert: only the pending change
        assert [s.split()[0] for s in seen] == ["UPDATE"] and not session.dirty


def test_an_insert_after_an_object_added_to_the_session_comes_after_it(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        session.add(an_event(payment, EVENT_ID))
        following = an_event(payment, LATER_EVENT_ID)
        with statements(gw.db.engine) as seen:
            rows.insert(session, following)
        assert [s.split()[0] for s in seen] == ["INSERT", "INSERT"] and not session.new
    with gw.db.read() as session:
        found = session.execute(select(Event.id).where(Event.object_id == payment_id)).scalars()
        assert {EVENT_ID, LATER_EVENT_ID} <= set(found)


def _read(session: Session, payment_id: str) -> tuple[Any, ...]:
    (row,) = prepared.run(
        session.connection(),
        select(*rows.columns_of(Payment)).where(Payment.id == payment_id),
        {},
    ).rows
    return tuple(row)


def _attributes(payment: Payment) -> dict[str, Any]:
    return {key: getattr(payment, key) for key in [a.key for a in inspect(Payment).column_attrs]}


def test_a_loaded_row_is_the_object_the_orm_would_load(gw: Gateway, payment_id: str) -> None:
    with gw.db.read() as session:
        through_orm = _attributes(session.get(Payment, payment_id))  # type: ignore[arg-type]
    with gw.db.transaction() as session:
        payment = rows.loaded(session, Payment, _read(session, payment_id))
        state = inspect(payment)
        assert state.persistent and payment in session and not session.dirty
        assert _attributes(payment) == through_orm
        assert session.get(Payment, payment_id) is payment  # the session's own, by its key


def test_a_change_to_a_loaded_object_is_written_by_either_flush(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        payment = rows.loaded(session, Payment, _read(session, payment_id))
        payment.description = "written by rows.flush"
        with statements(gw.db.engine) as seen:
            rows.write_changes(session)
        assert [s.split(" SET ")[0] for s in seen] == ["UPDATE PAYMENTS"]
    with gw.db.transaction() as session:
        payment = rows.loaded(session, Payment, _read(session, payment_id))
        assert payment.description == "written by rows.flush"
        payment.description = "written by the unit of work"
        session.flush()
    with gw.db.read() as session:
        stored = session.get(Payment, payment_id)
        assert stored is not None and stored.description == "written by the unit of work"


def test_a_row_of_an_object_the_session_holds_gives_the_held_object_unchanged(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        held = session.get(Payment, payment_id)
        assert held is not None
        row = _read(session, payment_id)
        held.description = "changed in the session, not yet written"
        assert rows.loaded(session, Payment, row) is held
        assert held.description == "changed in the session, not yet written"


def test_an_inserted_object_stays_the_sessions_and_a_later_change_is_written(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        added = an_event(payment, EVENT_ID)
        with statements(gw.db.engine) as seen:
            rows.insert(session, added)
            assert inspect(added).persistent and added in session
            assert session.get(Event, EVENT_ID) is added  # no second look-up
        assert [s.split()[0] for s in seen] == ["INSERT"]
        added.type = "payment.succeeded"
    with gw.db.read() as session:
        stored = session.get(Event, EVENT_ID)
        assert stored is not None and stored.type == "payment.succeeded"


def test_a_written_change_leaves_the_object_the_sessions_and_clean(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.description = "first change"
        rows.write_changes(session)
        assert inspect(payment).persistent and not session.dirty
        assert session.get(Payment, payment_id) is payment
        payment.description = "second change"
    with gw.db.read() as session:
        stored = session.get(Payment, payment_id)
        assert stored is not None and stored.description == "second change"


def test_appended_rows_are_written_from_their_values_and_make_no_object(
    gw: Gateway, payment_id: str
) -> None:
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.description = "changed before the append"
        values = {
            "id": EVENT_ID,
            "agency_id": payment.agency_id,
            "livemode": False,
            "type": "payment.updated",
            "object_id": payment.id,
            "body": "{}",
            "created_at": payment.created_at,
        }
        with statements(gw.db.engine) as seen:
            rows.append(session, Event, values, {**values, "id": LATER_EVENT_ID})
        assert [s.split()[0] for s in seen] == ["UPDATE", "INSERT", "INSERT"]
        assert not session.new and not session.dirty
    with gw.db.read() as session:
        assert {EVENT_ID, LATER_EVENT_ID} <= set(
            session.execute(select(Event.id).where(Event.object_id == payment_id)).scalars()
        )
