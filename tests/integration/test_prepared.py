"""Statements on the driver's cursor (payments/prepared.py, ledger/driver.py), on both
databases: values go in and come back as the ORM writes and reads them, a driver error is
SQLAlchemy's and leaves nothing written, and a statement the driver cannot take as it is is
refused rather than run without its defaults."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from payments import prepared, rows
from payments.gateway import Gateway
from payments.models import Event, Payment
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
        rows.flush(session)
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
