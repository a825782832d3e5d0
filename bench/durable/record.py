"""Recording, in-process, the gateway's statements for one payment, for a replay to read."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from bench.durable.errors import RecordingError
from bench.durable.link import key_lookup, linked, request_tokens, shape
from bench.durable.recorder import Acquirer, Recorded, Recorder, Transaction, keep_rows
from bench.durable.tags import encode

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from payments.gateway import Gateway
    from providers import AuthorizeRequest, Provider

# What bench/payment.lua sends, but for the reference and the Idempotency-Keys.
CREATE_BODY = {
    "amount": 12500,
    "currency": "OMR",
    "description": "Benchmark fee",
    "return_url": "https://moh.example.om/done",
}
CONFIRM_BODY = {
    "payment_method": {
        "type": "card",
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
    }
}
SQLITE_SESSION = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
ACQUIRER_CALLS = 300  # timed calls of the acquirer's authorize, after a few untimed
SHAPE_TRIES = 5  # payments recorded at most until two in a row ran the same statements


@dataclasses.dataclass
class Payment:
    """A payment's two requests, as recorded."""

    create: Recorded
    confirm: Recorded


def pay(client: FlaskClient, recorder: Recorder, key: str, label: str) -> Payment:
    """One payment through the gateway's test client, as bench/payment.lua makes it."""
    tag = secrets.token_hex(4)
    reference = f"DURABLE-{label.upper()}-{tag}"
    made: list[Recorded] = []
    for step, path, body in (
        ("create", "/v1/payments", {**CREATE_BODY, "reference": reference}),
        ("confirm", "/v1/payments/{}/confirm", CONFIRM_BODY),
    ):
        idempotency_key = f"durable-{label}-{tag}-{step}"
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
        with recorder.request(idempotency_key, reference if step == "create" else None) as seen:
            url = path.format(json.loads(made[0].body)["id"]) if made else path
            answer = client.post(url, json=body, headers=headers)
        seen.status, seen.body = answer.status_code, answer.get_data(as_text=True)
        made.append(seen)
    create, confirm = made
    if create.status != 201 or confirm.status != 200 or '"succeeded"' not in confirm.body:
        raise RecordingError(f"the gateway refused a payment: {create.body} {confirm.body}")
    for done in made:
        for taken in done.steps:
            if isinstance(taken, Transaction) and taken.end is None:
                sql = [" ".join(r.sql.split())[:80] for r in taken.statements]
                raise RecordingError(f"a transaction neither committed nor rolled back: {sql}")
    return Payment(create, confirm)


def steps_json(recorded: Recorded, parameters: list[Any]) -> list[dict[str, Any]]:
    flat = iter(parameters)
    steps: list[dict[str, Any]] = []
    for step in recorded.steps:
        if isinstance(step, Acquirer):
            steps.append({"acquirer": step.provider})
            continue
        statements = [
            {"sql": r.sql, "parameters": encode(next(flat)), "many": r.many}
            for r in step.statements
        ]
        steps.append({"transaction": statements, "end": step.end})
    return steps


def time_acquirer(provider: Provider, order: AuthorizeRequest) -> float:
    """Seconds one `authorize` of `provider` takes for `order` (each call a fresh key), in
    this process: the mean of ACQUIRER_CALLS timed calls."""
    for n in range(10):
        provider.authorize(dataclasses.replace(order, idempotency_key=f"{uuid.uuid4().hex}-{n}"))
    orders = [
        dataclasses.replace(order, idempotency_key=f"{uuid.uuid4().hex}-{n}")
        for n in range(ACQUIRER_CALLS)
    ]
    started = time.perf_counter()
    for each in orders:
        provider.authorize(each)
    return (time.perf_counter() - started) / ACQUIRER_CALLS


def session_settings(gw: Gateway) -> list[str]:
    """What the gateway sets on each SQLite connection it opens, read back from one."""
    if gw.db.dialect != "sqlite":
        return []
    with gw.db.engine.connect() as conn:
        return [
            f"PRAGMA {name}={conn.exec_driver_sql(f'PRAGMA {name}').scalar()}"
            for name in SQLITE_SESSION
        ]


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a recording holds: (statements, transactions) per request, the acquirer's time."""

    create: tuple[int, int]
    confirm: tuple[int, int]
    acquirer_s: float


def gateway(env: Mapping[str, str]) -> tuple[Gateway, FlaskClient]:
    """The gateway of `env` in this process, and a test client of its app."""
    from config import load_settings
    from payments.api.app import create_app
    from payments.gateway import build_gateway

    gw = build_gateway(load_settings(env))
    event.listen(gw.db.engine, "do_connect", keep_rows)
    gw.db.engine.dispose()
    return gw, create_app(gw=gw).test_client()


def prepare(env: Mapping[str, str], key: str) -> None:
    """The gateway's first payment on the database of `env`, to open its ledger accounts as
    it did on the database the recording was made on."""
    gw, client = gateway(env)
    recorder = Recorder(gw)
    try:
        pay(client, recorder, key, "opening")
    finally:
        recorder.close()
        gw.db.dispose()


def record(env: Mapping[str, str], key: str, path: Path) -> Summary:
    """Record, in this process, the gateway of `env` (on a migrated and seeded database of its
    own) creating and confirming a payment with Idempotency-Keys, after one payment to warm
    it; write the recording to `path`. Two payments in a row are recorded, and must run the
    same statements: what differs between them is what a replay makes afresh."""
    from payments.service.access import digest

    gw, client = gateway(env)
    recorder = Recorder(gw)
    try:
        history = [pay(client, recorder, key, "warm-up")]
        first = pay(client, recorder, key, "recording")
        for _ in range(SHAPE_TRIES):
            second = pay(client, recorder, key, "recording")
            if [shape(first.create), shape(first.confirm)] == [
                shape(second.create),
                shape(second.confirm),
            ]:
                break
            history.append(first)
            first = second
        else:
            raise RecordingError("no two payments in a row ran the same statements")
        history.append(first)
        session = session_settings(gw)
    finally:
        recorder.close()
    try:
        if not recorder.called:
            raise RecordingError("the confirm called no acquirer")
        provider, order = recorder.called[-1]
        acquirer_s = time_acquirer(provider, order)
    finally:
        gw.db.dispose()
    create, confirm = second.create, second.confirm
    seen = set().union(*(request_tokens(r) for p in history for r in (p.create, p.confirm)))
    payment_id = json.loads(create.body)["id"]
    made = request_tokens(create) - seen
    unknown = (request_tokens(confirm) & made) - {payment_id}
    if unknown:
        raise RecordingError(f"the confirm uses identifiers its create made: {sorted(unknown)}")
    existing = (request_tokens(create) | request_tokens(confirm)) & seen
    recording = {
        "format": 1,
        "dialect": gw.db.dialect,
        "session": session,
        "acquirer": {"provider": provider.name, "seconds": acquirer_s},
        "lookup": key_lookup([p.create for p in history], existing, digest(key)),
        "payment_id": payment_id,
        "requests": {
            name: {
                "key": recorded.key,
                "reference": recorded.reference,
                "started": encode(recorded.started),
                "steps": steps_json(recorded, linked(recorded, before)),
                "status": recorded.status,
                "body": recorded.body,
            }
            for name, recorded, before in (
                ("create", create, first.create),
                ("confirm", confirm, first.confirm),
            )
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recording, ensure_ascii=False, indent=1), encoding="utf-8")
    return Summary(create.counts(), confirm.counts(), acquirer_s)
