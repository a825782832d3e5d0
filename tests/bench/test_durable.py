"""The durable yardstick's recording and replay (bench/durable/): values survive the JSON
file, a replay substitutes what a request makes afresh, and a recording of the gateway replays
on a database of its own, writing the gateway's rows."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Json, Jsonb

from bench import durable
from bench.api import gateway_env, seeded_key
from bench.webhooks import database
from tests.conftest import postgres_available

STARTED = dt.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=dt.UTC)
PAYMENT = "pay_01kabcdefghjkmnpqrstvwxyz0"
ATTEMPT = "att_01kabcdefghjkmnpqrstvwxyz1"
CHARGE = "sbx_ch_0123456789abcdef01234567"
API_KEY = "key_01kabcdefghjkmnpqrstvwxyz2"


def test_values_keep_their_types_through_the_json_file() -> None:
    values = (
        STARTED,
        dt.datetime(2026, 1, 2, 3, 4, 5),
        dt.date(2026, 1, 2),
        decimal.Decimal("1.250"),
        b"\x00\xff",
        [1, "two", None, True, 2.5],
        {"a": (1, 2)},
        durable.Returned(3, 0, 1),
    )
    assert durable.decode(json.loads(json.dumps(durable.encode(values)))) == values
    for wrapper in (Json, Jsonb):
        back = durable.decode(json.loads(json.dumps(durable.encode(wrapper({"id": PAYMENT})))))
        assert type(back) is wrapper and back.obj == {"id": PAYMENT}
    with pytest.raises(TypeError):
        durable.encode(object())


def context(**extra: Any) -> durable.Context:
    return durable.Context(
        now=STARTED + dt.timedelta(days=30),
        key="bench-1-1-1-create",
        reference="BENCH-1-1-1",
        payment_id="pay_01knewnewnewnewnewnewnewnew",
        existing={API_KEY: "key_01kthisdatabasesownkey000"},
        **extra,
    )


def test_a_replay_makes_afresh_what_the_request_made() -> None:
    compiler = durable.Compiler(PAYMENT, "recorded-key", "RECORDED-REF", STARTED)
    body = json.dumps(
        {
            "id": PAYMENT,
            "attempt": ATTEMPT,
            "charge": CHARGE,
            "reference": "RECORDED-REF",
            "at": "2026-01-02T03:04:05.700Z",
        }
    )
    recorded = (
        PAYMENT,
        ATTEMPT,
        f"capture:{ATTEMPT}",
        CHARGE,
        API_KEY,
        "recorded-key",
        "2026-01-02 03:04:06.600000",
        body,
        STARTED + dt.timedelta(minutes=90),
        Json({"payment": PAYMENT, "fixed": 1}),
        durable.Returned(0, 0, 1),
        12500,
        "om-moh",
    )
    fill = durable.template(compiler.value(recorded))
    ctx = context(results={0: [(7, 42)]})
    (
        payment,
        attempt,
        external,
        charge,
        api_key,
        key,
        moment,
        text,
        expires,
        doc,
        returned,
        amount,
        agency,
    ) = fill(ctx)
    assert payment == ctx.payment_id
    assert attempt != ATTEMPT and re.fullmatch(r"att_[0-9a-z]{26}", attempt)
    assert external == f"capture:{attempt}"  # the same fresh id within the request
    assert charge != CHARGE and re.fullmatch(r"sbx_ch_[0-9a-f]{24}", charge)
    assert api_key == "key_01kthisdatabasesownkey000"
    assert key == ctx.key
    assert moment == "2026-02-01 03:04:06.600000"
    assert json.loads(text) == {
        "id": ctx.payment_id,
        "attempt": attempt,
        "charge": charge,
        "reference": ctx.reference,
        "at": "2026-02-01T03:04:05.700Z",
    }
    assert expires == ctx.now + dt.timedelta(minutes=90)
    assert type(doc) is Json and doc.obj == {"payment": ctx.payment_id, "fixed": 1}
    assert (returned, amount, agency) == (42, 12500, "om-moh")
    again = fill(context(results={0: [(7, 42)]}))
    assert again[1] != attempt  # and afresh for every request


def ran(sql: str, parameters: Any, rows: list[Any] | None = None, many: bool = False) -> Any:
    return durable.Ran(sql, parameters, many, rows or [])


def request(*statements: Any) -> durable.Recorded:
    recorded = durable.Recorded("key", None, STARTED)
    recorded.steps.append(durable.Transaction(list(statements), "commit"))
    return recorded


def test_numbers_that_differ_per_payment_are_linked_to_the_rows_that_returned_them() -> None:
    def payment(journal: int) -> durable.Recorded:
        return request(
            ran("INSERT ... RETURNING id", ("capture",), [(journal, "capture")]),
            ran("SELECT id FROM accounts", (), [(1,), (2,)]),
            ran("INSERT postings", [(journal, 1, 12500), (journal, 2, 12500)], many=True),
        )

    linked = durable.linked(payment(3), payment(2))
    assert linked[2] == [
        (durable.Returned(0, 0, 0), 1, 12500),
        (durable.Returned(0, 0, 0), 2, 12500),
    ]
    with pytest.raises(durable.RecordingError, match="differs per payment"):
        durable.linked(request(ran("UPDATE t SET n = ?", (5,))), request(ran("UPDATE", (4,))))


def count(url: str, sql: str) -> int:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute(sql).fetchone()[0])
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        found = conn.execute(sql).fetchone()
        assert found is not None
        return int(found[0])


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_recording_of_the_gateway_replays_on_a_database_of_its_own(db: str) -> None:
    if db == "postgresql" and not postgres_available():
        pytest.skip("PostgreSQL does not answer")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "recording").mkdir()
        (tmp / "replay").mkdir()
        with (
            database(db, str(tmp / "recording")) as recording_url,
            database(db, str(tmp / "replay")) as url,
        ):
            key = seeded_key(gateway_env(tmp, recording_url), tmp)
            assert seeded_key(gateway_env(tmp, url), tmp) == key
            summary = durable.record(gateway_env(tmp, recording_url), key, tmp / "rec.json")
            durable.prepare(gateway_env(tmp, url), key)
            replay = durable.Replay(tmp / "rec.json")
            assert (replay.create.counts(), replay.confirm.counts()) == (
                summary.create,
                summary.confirm,
            )
            assert summary.acquirer_s > 0
            conn = durable.connect(url, replay.session)
            try:
                replay.resolve(conn)
                paid = []
                for n in range(3):
                    status, body = replay.create_payment(conn, f"k{n}-create", f"REF-{n}")
                    payment_id = json.loads(body)["id"]
                    assert status == 201 and payment_id.startswith("pay_")
                    status, body = replay.confirm_payment(conn, f"k{n}-confirm", payment_id)
                    assert status == 200 and json.loads(body)["status"] == "succeeded"
                    paid.append(payment_id)
            finally:
                conn.close()
            listed = ", ".join(f"'{p}'" for p in paid)
            where = f"WHERE id IN ({listed}) AND status = 'succeeded'"
            assert count(url, f"SELECT COUNT(*) FROM payments {where}") == 3
            assert count(url, "SELECT COUNT(*) FROM ledger_postings") == 2 * (1 + 3)
