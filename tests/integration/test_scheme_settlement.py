"""The national schemes' settlement files end to end, on both databases: payments made with
KNET, BENEFIT and OmanNet through the hosted page and each scheme's simulator, a partial refund,
the day's file exported by `gateway settlements export-sandbox --provider <scheme>`, imported
by the API and by the CLI, every line matched, the ledger verified and the reconciliation
report without a break."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from config import Settings
from payments.gateway import Gateway
from payments.models import Payment, Refund, SettlementLine
from payments.service.audit import audit
from tests.conftest import PAYMENT, auth, new_agency
from tests.integration.ledger_support import gateway_cli

HOST = "http://gateway.test"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_ACTION_RE = re.compile(r'<form class="panel" method="post" action="([^"]+)"')


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    agency: str
    currency: str
    state: str


SCHEMES = (
    Scheme("knet", "kw-moi", "KWD", "KW"),
    Scheme("benefit", "bh-moi", "BHD", "BH"),
    Scheme("omannet", "om-rop", "OMR", "OM"),
)
AMOUNTS = (1_250, 40_500)  # minor units: 1.250 and 40.500 of the scheme's currency
REFUND_MINOR = 500


def _path(url: str) -> str:
    assert url.startswith(HOST), url
    return url.removeprefix(HOST)


def _csrf(page: str) -> str:
    found = CSRF_RE.search(page)
    assert found is not None, page[:500]
    return found.group(1)


def _pay_with_scheme(client: FlaskClient, key: str, scheme: Scheme, amount: int) -> str:
    """A payment made as a payer makes it: the hosted page, the scheme's button, Approve on the
    scheme's page, and back to the gateway's callback."""
    created = client.post(
        "/v1/payments",
        json={**PAYMENT, "amount": amount, "currency": scheme.currency, "language": "en"},
        headers=auth(key),
    )
    assert created.status_code == 201, created.json
    assert created.json is not None
    payment_id = str(created.json["id"])
    page_path = _path(created.json["next_url"])
    page = client.get(page_path)
    assert page.status_code == 200
    to_scheme = client.post(
        f"{page_path}/scheme/{scheme.name}",
        data={"csrf_token": _csrf(page.get_data(as_text=True)), "lang": "en"},
    )
    assert to_scheme.status_code == 303, to_scheme.get_data(as_text=True)[:500]
    simulator = client.get(_path(to_scheme.headers["Location"]))
    assert simulator.status_code == 200
    body = simulator.get_data(as_text=True)
    action = FORM_ACTION_RE.search(body)
    assert action is not None, body[:500]
    answered = client.post(
        action.group(1), data={"csrf_token": _csrf(body), "choice": "approve", "lang": "en"}
    )
    assert answered.status_code == 303
    back = client.get(_path(answered.headers["Location"]))
    assert back.status_code == 303 and back.headers["Location"] == PAYMENT["return_url"]
    paid = client.get(f"/v1/payments/{payment_id}", headers=auth(key)).json
    assert paid is not None and paid["status"] == "succeeded", paid
    assert paid["provider"] == scheme.name and paid["provider_reference"]
    return payment_id


def _refund(client: FlaskClient, key: str, payment: str) -> str:
    made = client.post(
        f"/v1/payments/{payment}/refunds", json={"amount": REFUND_MINOR}, headers=auth(key)
    )
    assert made.status_code in (200, 201), made.json
    assert made.json is not None and made.json["status"] == "succeeded", made.json
    return str(made.json["id"])


def _references(gw: Gateway, payments: list[str], refund: str) -> set[str]:
    with gw.db.read() as session:
        paid = session.execute(
            select(Payment.provider_reference).where(Payment.id.in_(payments))
        ).scalars()
        refunded = session.execute(
            select(Refund.provider_reference).where(Refund.id == refund)
        ).scalar_one()
        return {str(reference) for reference in [*paid, refunded]}


def _lines(gw: Gateway, settlement: str) -> list[tuple[str, str, str | None, str | None]]:
    with gw.db.read() as session:
        rows = session.execute(
            select(
                SettlementLine.status,
                SettlementLine.provider_reference,
                SettlementLine.payment_id,
                SettlementLine.refund_id,
            )
            .where(SettlementLine.settlement_id == settlement)
            .order_by(SettlementLine.line_no)
        ).all()
    return [(status, reference, payment, refund) for status, reference, payment, refund in rows]


def _export_cli(settings: Settings, provider: str, day: str, out: Path) -> CompletedProcess[str]:
    return gateway_cli(
        settings,
        "settlements",
        "export-sandbox",
        "--date",
        day,
        "-o",
        str(out),
        "--provider",
        provider,
    )


def _export(settings: Settings, scheme: Scheme, day: dt.date, out: Path) -> str:
    done = _export_cli(settings, scheme.name, day.isoformat(), out)
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(AMOUNTS) + 1} lines" in done.stdout, done.stdout
    return out.read_text(encoding="utf-8")


def _no_breaks(client: FlaskClient, finance_key: str, scheme: Scheme, day: dt.date) -> None:
    report = client.get(
        "/v1/reports/reconciliation",
        query_string={
            "provider": scheme.name,
            "from": day.isoformat(),
            "to": day.isoformat(),
            "format": "json",
        },
        headers=auth(finance_key),
    )
    assert report.status_code == 200, report.json
    assert report.json is not None
    items = report.json["items"]
    assert len(items) == len(AMOUNTS) + 1
    assert {item["status"] for item in items} == {"matched"}, items
    assert report.json["summary"]["matched"] == len(AMOUNTS) + 1


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_a_schemes_day_settles_and_reconciles(
    gw: Gateway, client: FlaskClient, finance_key: str, tmp_path: Path, scheme: Scheme
) -> None:
    # The simulators keep their own time: the gateway's capture day and the file's day are
    # both the day of the wall clock, so a test straddling midnight UTC has nothing to compare.
    day = dt.datetime.now(dt.UTC).date()
    key = new_agency(gw, scheme.agency, scheme.currency, scheme.state)
    payments = [_pay_with_scheme(client, key, scheme, amount) for amount in AMOUNTS]
    refund = _refund(client, key, payments[1])
    content = _export(gw.settings, scheme, day, tmp_path / f"{scheme.name}.csv")
    if dt.datetime.now(dt.UTC).date() != day:
        pytest.skip("the UTC day turned during the test")
    # The file names the payments and the refund by what the gateway kept as their reference.
    assert all(reference in content for reference in _references(gw, payments, refund))
    imported = client.post(
        "/v1/settlements",
        data={"provider": scheme.name, "file": (io.BytesIO(content.encode()), "day.csv")},
        headers=auth(finance_key),
        content_type="multipart/form-data",
    )
    assert imported.status_code == 201, imported.json
    assert imported.json is not None
    assert imported.json["provider"] == scheme.name
    assert imported.json["lines"] == len(AMOUNTS) + 1
    assert imported.json["summary"]["matched"] == len(AMOUNTS) + 1, imported.json
    lines = _lines(gw, imported.json["id"])
    assert [status for status, *_ in lines] == ["matched"] * (len(AMOUNTS) + 1)
    assert {payment for _, _, payment, _ in lines} == set(payments)
    assert [r for *_, r in lines if r is not None] == [refund]
    report = audit(gw)
    assert report.ok, report
    verified = gateway_cli(gw.settings, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    _no_breaks(client, finance_key, scheme, day)


def test_the_cli_imports_a_schemes_file(
    gw: Gateway, client: FlaskClient, finance_key: str, tmp_path: Path
) -> None:
    scheme = SCHEMES[0]
    day = dt.datetime.now(dt.UTC).date()
    key = new_agency(gw, scheme.agency, scheme.currency, scheme.state)
    payments = [_pay_with_scheme(client, key, scheme, amount) for amount in AMOUNTS]
    _refund(client, key, payments[0])
    out = tmp_path / "knet.csv"
    _export(gw.settings, scheme, day, out)
    if dt.datetime.now(dt.UTC).date() != day:
        pytest.skip("the UTC day turned during the test")
    done = gateway_cli(gw.settings, "settlements", "import", str(out), "--provider", "knet")
    assert done.returncode == 0, done.stderr
    assert "imported stl_" in done.stdout and "3 lines (matched 3," in done.stdout, done.stdout
    again = gateway_cli(gw.settings, "settlements", "import", str(out), "--provider", "knet")
    assert again.returncode == 0 and "already imported as stl_" in again.stdout
    # The gateway refuses another scheme's file as this one's, naming the header.
    wrong = gateway_cli(gw.settings, "settlements", "import", str(out), "--provider", "benefit")
    assert wrong.returncode == 1
    assert "line 1: the header must be exactly 'SETTLEMENT_DATE,TRANSACTION_ID," in wrong.stderr
    assert audit(gw).ok
    _no_breaks(client, finance_key, scheme, day)


@pytest.mark.parametrize("provider", ["nope", "stripe"])
def test_export_refuses_a_provider_without_a_file(
    gw: Gateway, tmp_path: Path, provider: str
) -> None:
    out = tmp_path / "x.csv"
    done = _export_cli(gw.settings, provider, "2026-11-03", out)
    assert done.returncode == 1, done.stdout
    assert f"no simulated settlement file for provider '{provider}'" in done.stderr
    assert not out.exists()


def test_export_keeps_writing_the_sandbox_csv_for_mada(
    gw: Gateway, client: FlaskClient, finance_key: str, tmp_path: Path
) -> None:
    day = dt.datetime.now(dt.UTC).date()
    key = new_agency(gw, "sa-moi", "SAR", "SA")
    created = client.post(
        "/v1/payments", json={**PAYMENT, "amount": 15_000, "currency": "SAR"}, headers=auth(key)
    )
    assert created.json is not None
    mada = {"number": "4464040000000007", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    paid = client.post(
        f"/v1/payments/{created.json['id']}/confirm",
        json={"payment_method": {"type": "card", "card": mada}},
        headers=auth(key),
    ).json
    assert paid is not None and paid["status"] == "succeeded" and paid["provider"] == "mada"
    out = tmp_path / "mada.csv"
    done = _export_cli(gw.settings, "mada", day.isoformat(), out)
    if dt.datetime.now(dt.UTC).date() != day:
        pytest.skip("the UTC day turned during the test")
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == [
        "settlement_date,provider_reference,type,currency,gross,fee,net",
        f"{day.isoformat()},{paid['provider_reference']},payment,SAR,150.00,2.35,147.65",
    ]
    imported = gateway_cli(gw.settings, "settlements", "import", str(out), "--provider", "mada")
    assert imported.returncode == 0 and "(matched 1," in imported.stdout, imported.stdout
