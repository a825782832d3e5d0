"""Schemathesis against `/openapi.json`: every operation, with an agency key and with a finance
key, on each database. No answer is a 5xx, and every answer's status, content type, headers
and body are the ones the document gives for that operation; a request the document calls
invalid is refused, and one it calls valid is not refused as malformed.

The run is seeded (derandomised) and bounded: `GATEWAY_FUZZ_EXAMPLES` examples per operation
and generation mode (default 8). Every example of an operation that writes, and the first of
one that reads, starts from the same freshly seeded database (a payment in each interesting
status, a refund, events, webhook endpoints, a settlement file, ledger accounts), so no
example sees what another wrote; path parameters that look like ids are now and then swapped
for a seeded object's id, so the views answer from real objects and not only 404. Any
disagreement fails the test, listing every operation that disagrees."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import socket
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from config import Settings
from payments.gateway import Gateway
from payments.money import CURRENCY_EXPONENTS
from payments.settlement.sandbox_file import HEADER
from payments.webhooks import guard
from tests.conftest import PAYMENT, _truncate_postgres, auth, card, make_settings

AnyCase = Case[Any]
AnyOperation = APIOperation[Any, Any, Any, Any]
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "8"))
# Far above what the fuzzer sends: a 429 would depend on the wall clock, not on the request.
NO_RATE_LIMIT = "1000000/second"
# Every host name a webhook URL names resolves to this public address: no DNS is asked, so
# the run is the same offline and on every machine.
PUBLIC_ADDRESS = "93.184.215.14"


# The request rules of API.md that JSON Schema cannot state, by field and message: a time
# range whose end is not after its start, and an offset that takes a time past year 1 or 9999.
_RANGE = "Must be an RFC 3339 time between years 1 and 9999."
BEYOND_THE_SCHEMA = {
    ("created_lt", "Must be later than created_gte."),
    *((name, _RANGE) for name in ("created_gte", "created_lt", "as_of", "since")),
}


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def schema_valid_request_accepted(ctx: Any, response: Response, case: AnyCase) -> bool | None:
    """A request the document calls valid is never refused as malformed: not with 400 or 413,
    and not with a 422 from the request's schema (`Invalid request: ...`). A 422 for what
    no schema can say (an expired card, a currency the agency does not take, a webhook URL
    that resolves nowhere) is the contract's own answer. JSON Schema's `integer` admits
    `97.0`, which API.md refuses, so a body holding a float is let be."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status in (400, 413, 415):
        raise AssertionError(f"a schema-valid request was refused with {status}: {response.text}")
    if status == 422 and not _has_float(case.body):
        error = (response.json() or {}).get("error", {})
        details: dict[str, list[str]] = error.get("details") or {}
        beyond = {(param, m) for param, messages in details.items() for m in messages}
        if str(error.get("message", "")).startswith("Invalid request:") and not (
            beyond <= BEYOND_THE_SCHEMA
        ):
            raise AssertionError(f"a schema-valid request failed the view's schema: {error}")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    schema_valid_request_accepted,
]
CURRENCIES = sorted(CURRENCY_EXPONENTS)
# A drawn path parameter of this shape may be swapped for a seeded object's id.
ID_PATTERN = re.compile(r"^[a-z]{2,4}_[0-9a-z]{26}\Z")


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "generation": {
                "mode": "all",
                "database": "none",
                # The key is the fixture's: a drawn Authorization header would test the draw.
                "with-security-parameters": False,
            },
        }
    )


@dataclasses.dataclass
class Seeded:
    """The objects every operation's examples may reach, by path parameter name."""

    key: str
    ids: dict[str, list[str]]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:  # replaces conftest's
    return make_settings(
        database_url,
        tmp_path,
        rate_limit=NO_RATE_LIMIT,
        rate_limit_unauthenticated=NO_RATE_LIMIT,
    )


@pytest.fixture
def offline_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(host: str, port: int) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_ADDRESS, port))]

    monkeypatch.setattr(guard, "_getaddrinfo", resolve)


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def _seed_agency(client: FlaskClient, key: str) -> dict[str, list[str]]:
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _created(client.post(path, json=body, headers=auth(key)))

    paid = post("/v1/payments", PAYMENT)
    post(f"/v1/payments/{paid['id']}/confirm", card())
    refund = post(f"/v1/payments/{paid['id']}/refunds", {"amount": 100})
    fresh = post("/v1/payments", {**PAYMENT, "reference": "FRESH-1"})
    held = post("/v1/payments", {**PAYMENT, "reference": "HELD-1", "capture_method": "manual"})
    post(f"/v1/payments/{held['id']}/confirm", card())
    endpoint = post(
        "/v1/webhook-endpoints", {"url": "https://hooks.example.om/gateway", "events": ["*"]}
    )
    events = client.get("/v1/events", headers=auth(key)).get_json()["data"]
    return {
        "payment_id": [paid["id"], fresh["id"], held["id"]],
        "refund_id": [refund["id"]],
        "event_id": [e["id"] for e in events[:2]],
        "endpoint_id": [endpoint["id"]],
    }


def _seed_finance(client: FlaskClient, key: str, agency: dict[str, list[str]]) -> dict[str, Any]:
    paid = client.get(f"/v1/payments/{agency['payment_id'][0]}", headers=auth(key)).get_json()
    day = paid["created_at"][:10]
    line = f"{day},{paid['provider_reference']},payment,OMR,12.500,0.250,12.250"
    upload = {
        "provider": "sandbox",
        "file": (io.BytesIO(f"{HEADER}\n{line}\n".encode()), "sandbox.csv"),
    }
    settlement = _created(client.post("/v1/settlements", data=upload, headers=auth(key)))
    endpoint = _created(
        client.post(
            "/v1/webhook-endpoints",
            json={"url": "https://finance.example.om/events", "events": ["settlement.imported"]},
            headers=auth(key),
        )
    )
    balance = client.get("/v1/ledger/trial-balance", headers=auth(key)).get_json()
    return {
        **agency,
        "settlement_id": [settlement["id"]],
        "endpoint_id": [endpoint["id"], *agency["endpoint_id"]],
        "code": sorted({a["account"] for a in balance["accounts"]})[:2],
    }


class Fuzz:
    """The app under test, its database reset and reseeded at the start of every operation."""

    def __init__(self, app: Flask, gw: Gateway, role: str, reset: Callable[[], None]) -> None:
        self.app = app
        self.gw = gw
        self.role = role
        self._reset = reset
        self._operation: str | None = None
        self.statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.seeded = Seeded(key="", ids={})

    def begin(self, operation: AnyOperation) -> Seeded:
        """The seeded objects for the next example: a fresh database before every example of
        an operation that writes, and before the first of one that only reads, so that no
        example sees what another wrote and a failing one fails again when replayed."""
        writes = operation.method.upper() != "GET"
        if writes or operation.label != self._operation:
            self._operation = operation.label
            self._reset()
            self.seeded = self._seed()
        return self.seeded

    def _seed(self) -> Seeded:
        from payments.service import access

        client = self.app.test_client()
        # An agency that takes every currency, so a drawn currency is not refused for that.
        access.create_agency(
            self.gw, "om-moh", name="MOH", name_ar="وزارة", state="OM", currencies=CURRENCIES
        )
        agency_key = access.create_key(self.gw, agency_id="om-moh", role="agency", mode="test")[1]
        agency = _seed_agency(client, agency_key)
        if self.role == "agency":
            return Seeded(key=agency_key, ids=agency)
        finance_key = access.create_key(self.gw, agency_id=None, role="finance")[1]
        return Seeded(key=finance_key, ids=_seed_finance(client, finance_key, agency))


def _resetter(gw: Gateway, database_url: str, request: pytest.FixtureRequest) -> Callable[[], None]:
    """Empty the database back to what the migrations leave, quickly: the SQLite file is
    copied back; PostgreSQL's tables are emptied with their triggers and foreign keys off
    (session_replication_role), cheaper than TRUNCATE for a few rows and ran hundreds of times."""
    if database_url.startswith("sqlite"):
        template: Path = request.getfixturevalue("sqlite_template")
        path = make_url(database_url).database
        assert path is not None

        def reset_sqlite() -> None:
            gw.db.dispose()
            shutil.copy(template, path)

        return reset_sqlite

    _truncate_postgres(database_url)  # the fixture's own reset, once
    tables = [t for t in inspect(gw.db.engine).get_table_names() if t != "alembic_version"]
    with gw.db.engine.connect() as conn:
        seeded = {t: conn.execute(text(f"SELECT * FROM {t}")).mappings().all() for t in tables}
    seeded = {t: rows for t, rows in seeded.items() if rows}  # the ledger's chain head

    def reset_postgres() -> None:
        with gw.db.engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
            for table, rows in seeded.items():
                columns = ", ".join(rows[0].keys())
                values = ", ".join(f":{c}" for c in rows[0])
                conn.execute(
                    text(f"INSERT INTO {table} ({columns}) VALUES ({values})"),
                    [dict(r) for r in rows],
                )

    return reset_postgres


@pytest.fixture(params=["agency", "finance"])
def fuzz(
    request: pytest.FixtureRequest,
    app: Flask,
    gw: Gateway,
    database_url: str,
    offline_dns: None,
) -> Iterator[Fuzz]:
    yield Fuzz(app, gw, request.param, _resetter(gw, database_url, request))


def _swap_ids(case: AnyCase, seeded: Seeded) -> None:
    """Now and then (by a stable hash of the drawn value) send a seeded object's id instead of
    a drawn one that has the shape of an id, so the views answer from real objects."""
    for name, value in list((case.path_parameters or {}).items()):
        choices = seeded.ids.get(name)
        if not choices or not isinstance(value, str):
            continue
        if name != "code" and ID_PATTERN.match(value) is None:
            continue  # a malformed id stays malformed: negative cases must stay negative
        digest = zlib.crc32(value.encode())
        if digest % 3 != 0:
            case.path_parameters[name] = choices[digest % len(choices)]


def _fuzz_operation(fuzz: Fuzz, operation: AnyOperation) -> None:
    """Draw and send `EXAMPLES` cases of each generation mode; raise on the first (shrunk)
    disagreement."""
    documented_query = {parameter.name for parameter in operation.query}
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        *operation.schema.get_strategies_from_examples(operation),  # the documented examples
    )

    @hypothesis_settings(
        max_examples=2 * EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    @given(case=strategy)
    def run(case: AnyCase) -> None:
        if set(case.query or {}) - documented_query:
            # Unknown query parameters are ignored, as at Stripe (tests/integration/
            # test_bad_input_queries.py); OpenAPI has no way to say so, so none is sent.
            reject()
        seeded = fuzz.begin(operation)
        _swap_ids(case, seeded)
        headers = auth(seeded.key)
        response = case.call(headers=headers)
        fuzz.statuses[operation.label][response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()


def test_every_answer_is_the_documented_one(
    fuzz: Fuzz, report_counts: Callable[[str], None]
) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz.app, config=_config())
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the document does not load: {result.err()}")
            continue
        operation = result.ok()
        operations += 1
        try:
            _fuzz_operation(fuzz, operation)
        except (Exception, BaseExceptionGroup) as exc:  # every operation runs, every failure shown
            failures.append(f"{operation.label} ({fuzz.role} key):\n{exc}")
    for label, counts in fuzz.statuses.items():
        print(f"  {label}: " + " ".join(f"{code}x{n}" for code, n in sorted(counts.items())))
    answers = Counter(
        f"{code // 100}xx" for counts in fuzz.statuses.values() for code in counts.elements()
    )
    report_counts(
        f"openapi fuzz ({fuzz.role} key): {operations} operations, {EXAMPLES} examples per "
        f"mode, answers {dict(sorted(answers.items()))}"
    )
    assert operations >= 28, "the document lost operations"
    assert not failures, f"{len(failures)} operations disagree with /openapi.json:\n\n" + (
        "\n\n".join(failures)
    )


def test_a_statement_cursor_past_every_posting_is_a_page_not_a_500(
    client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    """Found by the fuzzer: `starting_after=pst_88714406859` reached PostgreSQL as an integer
    out of range and answered 500. A cursor past every posting id starts from the newest."""
    paid = client.post("/v1/payments", json=PAYMENT, headers=auth(agency_key)).get_json()
    client.post(f"/v1/payments/{paid['id']}/confirm", json=card(), headers=auth(agency_key))
    balance = client.get("/v1/ledger/trial-balance", headers=auth(finance_key)).get_json()
    account = balance["accounts"][0]
    path = f"/v1/ledger/accounts/{account['account']}/statement"
    query = {"currency": account["currency"]}
    newest = client.get(path, query_string=query, headers=auth(finance_key))
    assert newest.status_code == 200
    for cursor in ("pst_2147483648", "pst_88714406859", "pst_999999999999999999"):
        response = client.get(
            path, query_string={**query, "starting_after": cursor}, headers=auth(finance_key)
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["data"] == newest.get_json()["data"]


def test_a_time_before_year_1000_is_answered_in_rfc_3339(
    client: FlaskClient, agency_key: str, offline_dns: None
) -> None:
    """Found by the fuzzer: `since` of year 134 came back as `134-10-02T…`, not RFC 3339."""
    endpoint = client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://hooks.example.om/gateway", "events": ["*"]},
        headers=auth(agency_key),
    ).get_json()
    response = client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/recover",
        json={"since": "0134-10-02T21:23:23Z"},
        headers=auth(agency_key),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["since"] == "0134-10-02T21:23:23.000Z"
