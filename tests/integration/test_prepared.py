"""Statements on the driver's cursor (statements/prepared.py, statements/driver.py), on both
databases: values go in and come back as the ORM writes and reads them, a driver error is
SQLAlchemy's and leaves nothing written, and a statement the driver cannot take as it is is
refused rather than run without its defaults."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from payments.gateway import Gateway
from payments.models import Event, Payment
from payments.store import rows
from statements import prepared
from tests.conftest import PAYMENT, auth

WRITTEN = dt.datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=dt.UTC)


@pytest.fixture
def payment_id(client: FlaskClient, agency_key: str) -> str:
    created = client.post(
        "/v1/payments",
        json={**PAYMENT, "metadata": {"file": "ملف-7", "desk": "3"}},
        headers=auth(agency_key),
    )
    assert created.status_code == 201, created.json
    return str(created.json["id"])  # type: ignore[index]


def test_values_come_back_as_the_orm_reads_them(gw: Gateway, payment_id: str) -> None:
    columns = select(
        Payment.livemode, Payment.amount_minor, Payment.extra, Payment.payer, Payment.created_at
    ).where(Payment.id == payment_id)
    with gw.db.read() as session:
        through_orm = tuple(session.execute(columns).one())
        through_driver = prepared.run(session.connection(), columns, {}).rows
    assert through_driver == [through_orm]
    livemode, amount, extra, payer, created_at = through_driver[0]
    assert livemode is False and amount == PAYMENT["amount"] and payer is None
    assert extra == {"file": "ملف-7", "desk": "3"}
    assert created_at.tzinfo is not None and created_at.utcoffset() == dt.timedelta(0)


def test_an_update_writes_each_type_as_the_orm_would(gw: Gateway, payment_id: str) -> None:
    method = {"type": "card", "brand": "visa", "last4": "4242"}
    with gw.db.transaction() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        payment.payment_method = method
        payment.updated_at = WRITTEN
        payment.extra = {}
        rows.write_changes(session)
    with gw.db.read() as session:
        stored = session.get(Payment, payment_id)
        assert stored is not None
        assert (stored.payment_method, stored.updated_at, stored.extra) == (method, WRITTEN, {})


def test_a_driver_error_is_sqlalchemys_and_nothing_is_written(gw: Gateway, payment_id: str) -> None:
    def event(event_id: str) -> Event:
        return Event(
            id=event_id,
            agency_id="om-moh",
            livemode=False,
            type="payment.updated",
            object_id=payment_id,
            body="{}",
            created_at=WRITTEN,
        )

    with pytest.raises(IntegrityError), gw.db.transaction() as session:
        rows.insert(session, event("evt_prepared00000000000001"))
        rows.insert(session, event("evt_prepared00000000000001"))
    with gw.db.read() as session:
        assert session.get(Event, "evt_prepared00000000000001") is None
    with gw.db.transaction() as session:  # the connection went back to the pool usable
        rows.insert(session, event("evt_prepared00000000000002"))
    with gw.db.read() as session:
        assert session.get(Event, "evt_prepared00000000000002") is not None


def test_a_column_left_to_its_python_default_is_refused(gw: Gateway) -> None:
    # amount_captured_minor has a Python-side default, which only SQLAlchemy's execution fills in.
    with pytest.raises(ValueError, match="amount_captured_minor"):
        prepared.prepare(rows.insert_into(Payment), gw.db.engine.dialect, ("id", "agency_id"))


def _event(event_id: str, payment_id: str) -> dict[str, object]:
    return {
        "id": event_id,
        "agency_id": "om-moh",
        "livemode": False,
        "type": "payment.updated",
        "object_id": payment_id,
        "body": "{}",
        "created_at": WRITTEN,
    }


def test_a_writes_returned_values_come_back_as_the_orm_reads_them(
    gw: Gateway, payment_id: str
) -> None:
    returning = rows.insert_into(Event).returning(Event.id, Event.livemode, Event.created_at)
    with gw.db.transaction() as session:
        ran = prepared.run(
            session.connection(), returning, _event("evt_prepared00000000000003", payment_id)
        )
    assert ran.rows == [("evt_prepared00000000000003", False, WRITTEN)]
    assert ran.rowcount == 1


def test_many_values_are_one_statement_and_each_row_is_written(
    gw: Gateway, payment_id: str
) -> None:
    ids = [f"evt_prepared0000000000001{n}" for n in range(3)]
    heard: list[str] = []

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if sql.startswith("INSERT"):
            heard.append(sql)

    event.listen(gw.db.engine, "before_cursor_execute", statement)
    try:
        with gw.db.transaction() as session:
            written = prepared.run_many(
                session.connection(),
                rows.insert_into(Event),
                [_event(event_id, payment_id) for event_id in ids],
            )
    finally:
        event.remove(gw.db.engine, "before_cursor_execute", statement)
    assert written == 3 and len(heard) == 1
    with gw.db.read() as session:
        stored = session.scalars(select(Event).where(Event.id.in_(ids)).order_by(Event.id)).all()
    assert [(e.id, e.created_at, e.livemode) for e in stored] == [
        (event_id, WRITTEN, False) for event_id in ids
    ]


def test_many_values_of_a_failing_write_raise_sqlalchemys_error_and_write_nothing(
    gw: Gateway, payment_id: str
) -> None:
    twice = _event("evt_prepared00000000000020", payment_id)
    with pytest.raises(IntegrityError), gw.db.transaction() as session:
        prepared.run_many(session.connection(), rows.insert_into(Event), [twice, twice])
    with gw.db.read() as session:
        assert session.get(Event, "evt_prepared00000000000020") is None


def test_a_statement_returning_rows_is_refused_for_many_values(
    gw: Gateway, payment_id: str
) -> None:
    returning = rows.insert_into(Event).returning(Event.id)
    event_id = "evt_prepared00000000000030"
    with pytest.raises(ValueError, match="returns rows"), gw.db.transaction() as session:
        prepared.run_many(session.connection(), returning, [_event(event_id, payment_id)])
    with gw.db.read() as session:
        assert session.get(Event, event_id) is None


def test_statements_share_one_cursor_until_their_connection_is_replaced(
    gw: Gateway, payment_id: str
) -> None:
    amount = select(Payment.amount_minor).where(Payment.id == payment_id)

    def cursors() -> list[Any]:
        seen: list[Any] = []  # the cursors themselves: a freed one's id may be reused

        def note(_conn: Any, cursor: Any, sql: str, *_args: Any) -> None:
            if "amount_minor" in sql and not any(cursor is c for c in seen):
                seen.append(cursor)

        event.listen(gw.db.engine, "before_cursor_execute", note)
        try:
            with gw.db.read() as session:
                for _ in range(3):
                    assert prepared.run(session.connection(), amount, {}).rows == [
                        (PAYMENT["amount"],)
                    ]
                session.connection().invalidate()  # as when the database went away
            with gw.db.read() as session:
                assert prepared.run(session.connection(), amount, {}).rows
        finally:
            event.remove(gw.db.engine, "before_cursor_execute", note)
        return seen

    # One cursor for the three statements; the replacement connection makes its own.
    assert len(cursors()) == 2
