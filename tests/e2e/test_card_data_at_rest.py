"""The full card number and the security code are never stored or logged (API.md section 3).

Runs after every other e2e test of its backend, so what it reads is everything the server and
the worker wrote during the run: the gateway's database, the sandbox acquirer's store and the
logs. It first sends every sandbox card itself, with and without spaces, so that it does not
depend on what the other tests did.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import _libpq
from tests.e2e.conftest import (
    CVC,
    SANDBOX_CARDS,
    LiveGateway,
    card_body,
    expect_error,
    json_of,
    spaced,
    unique,
)

pytestmark = [pytest.mark.e2e, pytest.mark.after_all_flows]

# The security code next to a name that says what it is, in JSON, a repr or a form.
CVC_IN_CONTEXT = re.compile(
    rb"(?i)(cvc|cvv|cvc2|security[ _-]?code)[\"'\s]*[:=,>]\s*[\"'(]?\s*" + CVC.encode()
)


def card_patterns() -> dict[str, bytes]:
    patterns: dict[str, bytes] = {}
    for number in SANDBOX_CARDS:
        patterns[number] = number.encode()
        patterns[spaced(number)] = spaced(number).encode()
        patterns[spaced(number).replace(" ", "-")] = spaced(number).replace(" ", "-").encode()
    return patterns


def find_card_data(blob: bytes) -> list[str]:
    found = [shown for shown, pattern in card_patterns().items() if pattern in blob]
    found += [match.group(0).decode(errors="replace") for match in CVC_IN_CONTEXT.finditer(blob)]
    return found


def read_with_wal(path: Path) -> bytes:
    """A SQLite file and its write-ahead log, where the newest pages live until a checkpoint."""
    assert path.exists(), path
    blob = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        blob += wal.read_bytes()
    return blob


def postgres_dump(database_url: str) -> bytes:
    """Every row of every table of the gateway's database, as JSON text."""
    lines: list[str] = []
    with psycopg.connect(_libpq(database_url), connect_timeout=5) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                " ORDER BY table_name"
            )
        ]
        assert "payments" in tables and "events" in tables, tables
        for table in tables:
            query = sql.SQL("SELECT row_to_json(t)::text FROM {} AS t").format(
                sql.Identifier(table)
            )
            lines.extend(f"{table}: {row[0]}" for row in conn.execute(query))
    return "\n".join(lines).encode()


def exercise_every_card(gateway: LiveGateway) -> list[dict[str, object]]:
    """Every sandbox card, once as digits and once with spaces, through every entry point."""
    agency, other = gateway.api("om-moh"), gateway.api("ae-icp")
    payments = []
    for number in SANDBOX_CARDS:
        for shown in (number, spaced(number)):
            pid = agency.create_payment(amount=1000)["id"]
            headers = {"Idempotency-Key": unique("card")}
            body = card_body(shown, name="Card Holder")
            response = agency.post(f"/v1/payments/{pid}/confirm", body, headers=headers)
            assert response.status_code == 200, response.text
            payments.append(json_of(response))
            # A repeat (replayed), a refused repeat and another agency's try carry it too.
            replay = agency.post(f"/v1/payments/{pid}/confirm", body, headers=headers)
            assert replay.headers.get("Idempotent-Replayed") == "true"
            expect_error(agency.post(f"/v1/payments/{pid}/confirm", body), 409, "conflict")
            expect_error(other.post(f"/v1/payments/{pid}/confirm", body), 404, "not_found")
    manual = agency.create_payment(amount=1000, capture_method="manual")["id"]
    agency.confirm(manual, spaced("5555555555554444"))
    assert agency.post(f"/v1/payments/{manual}/capture", {"amount": 600}).status_code == 200
    gateway.cli("worker", "--once")
    return payments


def test_no_card_number_or_security_code_at_rest(gateway: LiveGateway) -> None:
    payments = exercise_every_card(gateway)
    payment_ids = [str(p["id"]) for p in payments]
    charge = agency_charge_reference(gateway, payment_ids)

    # The gateway's database: the rows are there (so the scan can see data) and clean.
    if gateway.sqlite_path is not None:
        store = read_with_wal(gateway.sqlite_path)
    else:
        store = postgres_dump(gateway.database_url)
    assert all(pid.encode() in store for pid in payment_ids), "the scan must see the payments"
    assert b"5126" in store, "the last four digits are kept"
    assert find_card_data(store) == []

    # The sandbox acquirer's own store.
    sandbox = read_with_wal(gateway.var_dir / "sandbox.db")
    assert charge.encode() in sandbox, "the scan must see the sandbox's charges"
    assert find_card_data(sandbox) == []

    # What the server and the CLI (worker included) wrote to their logs.
    logs = gateway.log_path.read_bytes() + gateway.cli_log_path.read_bytes()
    assert payment_ids[0].encode() in logs, "the server logs the payments it creates"
    assert b"/confirm" in logs, "the access log shows the confirm requests"
    assert find_card_data(logs) == []


def agency_charge_reference(gateway: LiveGateway, payment_ids: list[str]) -> str:
    agency = gateway.api("om-moh")
    for pid in payment_ids:
        reference = agency.ok(f"/v1/payments/{pid}")["provider_reference"]
        if reference:
            return str(reference)
    raise AssertionError("no payment reached the sandbox acquirer")


def test_the_scan_finds_what_it_looks_for() -> None:
    """The detector itself: a test that cannot fail would prove nothing."""
    assert find_card_data(b'{"number": "4242424242424242"}') == ["4242424242424242"]
    assert find_card_data(b"card 4000 0000 0000 0002 declined") == ["4000 0000 0000 0002"]
    assert find_card_data(b'{"cvc": "' + CVC.encode() + b'"}') != []
    assert find_card_data(b"cvc=" + CVC.encode()) != []
    assert find_card_data(b"Card(cvc='" + CVC.encode() + b"')") != []
    assert find_card_data(b'{"last4": "4242", "brand": "visa", "id": "pay_7370"}') == []
