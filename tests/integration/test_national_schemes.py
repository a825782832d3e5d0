"""KNET, BENEFIT and OmanNet through the hosted page and their simulators, over HTTP alone:
success, decline, payer cancel, a lost callback resolved by the worker, tampered and replayed
callbacks, refunds, and the ledger verifying afterwards, on both databases."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from payments import clock
from payments.gateway import Gateway
from payments.models import Attempt, Event
from payments.service import resolution
from payments.service.audit import audit
from providers import RefundOutcome
from tests.conftest import auth, new_agency
from tests.integration.test_checkout_pages import csrf_of, local, open_page, page_path, see_other


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    button: str
    agency: str
    currency: str
    state: str
    amount: int
    # The callback field that carries the scheme's encrypted or signed result.
    result_field: str


SCHEMES = [
    Scheme("knet", "KNET", "kw-moi", "KWD", "KW", 1250, "trandata"),
    Scheme("benefit", "BENEFIT", "bh-lmra", "BHD", "BH", 7500, "trandata"),
    Scheme("omannet", "OmanNet", "om-rop", "OMR", "OM", 12500, "vpc_SecureHash"),
]


@pytest.fixture(params=SCHEMES, ids=[s.name for s in SCHEMES])
def scheme(request: pytest.FixtureRequest) -> Scheme:
    chosen: Scheme = request.param
    return chosen


@pytest.fixture
def key(gw: Gateway, scheme: Scheme) -> str:
    return new_agency(gw, scheme.agency, scheme.currency, scheme.state)


def _create(client: FlaskClient, key: str, scheme: Scheme, **overrides: Any) -> dict[str, Any]:
    body = {
        "amount": scheme.amount,
        "currency": scheme.currency,
        "reference": f"{scheme.agency.upper()}-2026-0001",
        "description": "Residence permit fee",
        "return_url": f"https://{scheme.agency}.example/done",
        "language": "en",
        **overrides,
    }
    created = client.post("/v1/payments", json=body, headers=auth(key))
    assert created.status_code == 201, created.json
    payment: dict[str, Any] = created.json  # type: ignore[assignment]
    return payment


def _payment(client: FlaskClient, key: str, payment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/v1/payments/{payment_id}", headers=auth(key)).json  # type: ignore[assignment]
    return found


def _to_scheme(client: FlaskClient, scheme: Scheme, path: str) -> str:
    """Press the scheme's button on the hosted page: the simulator's page address."""
    page = open_page(client, path)
    assert f">{scheme.button}</button>" in page, "the page offers the scheme by its own name"
    sent = client.post(
        f"{path}/scheme/{scheme.name}", data={"csrf_token": csrf_of(page), "lang": "en"}
    )
    address = local(see_other(sent))
    assert address.startswith(f"/sandbox/{scheme.name}/pay?"), address
    return address


def _choose(client: FlaskClient, simulator_page: str, choice: str) -> str:
    """Press Approve, Decline or Cancel on the simulator: the callback address."""
    page = client.get(simulator_page)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert all(word in body for word in ("Approve", "Decline", "Cancel"))
    action = re.search(r'<form class="panel" method="post" action="([^"]+)"', body)
    assert action is not None
    answered = client.post(
        action.group(1), data={"csrf_token": csrf_of(body), "choice": choice, "lang": "en"}
    )
    return local(see_other(answered))


def _tampered(callback: str, field: str) -> str:
    """The callback with one character of its encrypted or signed result changed."""
    parts = urlsplit(callback)
    fields = dict(parse_qsl(parts.query, keep_blank_values=True))
    value = fields[field]
    fields[field] = value[:-1] + ("0" if value[-1] != "0" else "1")
    return f"{parts.path}?{urlencode(fields)}"


def _events(gw: Gateway, kind: str) -> int:
    with gw.db.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(Event).where(Event.type == kind)
            ).scalar_one()
        )


def test_the_payer_pays_on_the_scheme_s_page_and_comes_back(
    client: FlaskClient, gw: Gateway, key: str, scheme: Scheme
) -> None:
    payment = _create(client, key, scheme)
    path = page_path(payment)
    callback = _choose(client, _to_scheme(client, scheme, path), "approve")
    assert callback.startswith(f"{path}/return?"), callback
    assert see_other(client.get(callback)) == payment["return_url"]
    paid = _payment(client, key, payment["id"])
    assert paid["status"] == "succeeded" and paid["provider"] == scheme.name
    assert paid["payment_method"] == {"type": scheme.name}
    assert paid["amount_captured"] == scheme.amount and paid["provider_reference"]

    # The same callback again (a reload, a replay) changes nothing.
    assert see_other(client.get(callback)) == payment["return_url"]
    assert _events(gw, "payment.succeeded") == 1

    refund = client.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 250}, headers=auth(key)
    )
    assert refund.status_code == 201 and (refund.json or {})["status"] == "succeeded"
    balance = client.get("/v1/balance", headers=auth(key)).json or {}
    assert balance["balances"] == [{"currency": scheme.currency, "payable": scheme.amount - 250}]
    assert audit(gw).ok


def test_a_decline_and_a_cancel_leave_the_payment_for_another_try(
    client: FlaskClient, gw: Gateway, key: str, scheme: Scheme
) -> None:
    payment = _create(client, key, scheme)
    path = page_path(payment)
    declined = _choose(client, _to_scheme(client, scheme, path), "decline")
    assert local(see_other(client.get(declined))).startswith(path)
    assert _payment(client, key, payment["id"])["status"] == "created"
    assert "2 tries left" in open_page(client, path)

    cancelled = _choose(client, _to_scheme(client, scheme, path), "cancel")
    assert local(see_other(client.get(cancelled))).startswith(path)
    again = _payment(client, key, payment["id"])
    assert again["status"] == "created" and again["amount_captured"] == 0

    approved = _choose(client, _to_scheme(client, scheme, path), "approve")
    assert see_other(client.get(approved)) == payment["return_url"]
    assert _payment(client, key, payment["id"])["status"] == "succeeded"
    assert audit(gw).ok


def test_an_amount_ending_in_13_is_declined(client: FlaskClient, key: str, scheme: Scheme) -> None:
    payment = _create(client, key, scheme, amount=scheme.amount // 100 * 100 + 13)
    path = page_path(payment)
    callback = _choose(client, _to_scheme(client, scheme, path), "approve")
    see_other(client.get(callback))
    assert _payment(client, key, payment["id"])["status"] == "created"
    assert "not accepted" in open_page(client, path)


def test_a_lost_callback_is_resolved_by_the_worker_s_inquiry(
    client: FlaskClient, gw: Gateway, key: str, scheme: Scheme
) -> None:
    payment = _create(client, key, scheme)
    path = page_path(payment)
    callback = _choose(client, _to_scheme(client, scheme, path), "approve")
    # The payer closes the window: the callback never reaches the gateway.
    assert _payment(client, key, payment["id"])["status"] == "processing"
    later = clock.now() + dt.timedelta(minutes=2)
    clock.set_clock(lambda: later)
    report = resolution.run_pass(gw)
    assert report.attempts_resolved == 1
    assert _payment(client, key, payment["id"])["status"] == "succeeded"
    # The callback arriving after the worker resolved the attempt is a no-op.
    assert see_other(client.get(callback)) == payment["return_url"]
    assert _events(gw, "payment.succeeded") == 1
    assert audit(gw).ok


def test_a_payer_who_never_reaches_the_scheme_is_given_up_and_a_late_payment_returned(
    client: FlaskClient,
    gw: Gateway,
    key: str,
    scheme: Scheme,
    caplog: pytest.LogCaptureFixture,
) -> None:
    payment = _create(client, key, scheme)
    path = page_path(payment)
    address = _to_scheme(client, scheme, path)  # sent to the scheme, never opens its page
    start = clock.now()
    for minutes in (2, 8):
        clock.set_clock(functools.partial(lambda at: at, start + dt.timedelta(minutes=minutes)))
        resolution.run_pass(gw)
        assert _payment(client, key, payment["id"])["status"] == "processing"
    late = start + dt.timedelta(minutes=40)
    clock.set_clock(lambda: late)
    resolution.run_pass(gw)
    failed = _payment(client, key, payment["id"])
    assert failed["status"] == "failed" and failed["failure"]["code"] == "abandoned"

    # Long after, the payer opens the scheme's page from their history and pays: the gateway
    # hears of it by the callback, finds the money taken, and gives it straight back.
    callback = _choose(client, address, "approve")
    with caplog.at_level(logging.ERROR):
        assert see_other(client.get(callback)) == payment["return_url"]
    assert "a scheme captured a payment the gateway had closed" in caplog.text
    with gw.db.read() as session:
        (attempt_id,) = session.execute(
            select(Attempt.id).where(Attempt.payment_id == payment["id"])
        ).one()
    refund = gw.providers.get(scheme.name).refund_status(f"{attempt_id}-late")
    assert refund.outcome is RefundOutcome.SUCCEEDED
    assert _payment(client, key, payment["id"])["status"] == "failed"
    assert audit(gw).ok


def test_a_tampered_callback_is_refused_and_changes_nothing(
    client: FlaskClient, gw: Gateway, key: str, scheme: Scheme, caplog: pytest.LogCaptureFixture
) -> None:
    payment = _create(client, key, scheme)
    path = page_path(payment)
    callback = _choose(client, _to_scheme(client, scheme, path), "approve")
    with gw.db.read() as session:
        before = session.execute(select(Attempt.pending_action, Attempt.status)).all()
    for forged in (
        _tampered(callback, scheme.result_field),
        f"{callback}&{scheme.result_field}=again",  # a field sent twice
        f"{urlsplit(callback).path}?{scheme.result_field}=not-even-close",
    ):
        refused = client.get(forged)
        assert refused.status_code == 400, forged
        assert "could not be checked" in refused.get_data(as_text=True)
    assert _payment(client, key, payment["id"])["status"] == "processing"
    with gw.db.read() as session:
        assert session.execute(select(Attempt.pending_action, Attempt.status)).all() == before
    assert "scheme callback refused" in caplog.text
    assert see_other(client.get(callback)) == payment["return_url"]


def test_another_payment_s_callback_is_refused(
    client: FlaskClient, gw: Gateway, key: str, scheme: Scheme
) -> None:
    first = _create(client, key, scheme)
    second = _create(client, key, scheme, reference="SECOND-0002")
    callback = _choose(client, _to_scheme(client, scheme, page_path(first)), "approve")
    _to_scheme(client, scheme, page_path(second))
    query = urlsplit(callback).query
    borrowed = client.get(f"{page_path(second)}/return?{query}")
    assert borrowed.status_code == 400
    assert _payment(client, key, second["id"])["status"] == "processing"
    assert _payment(client, key, first["id"])["status"] == "processing"


def test_the_simulator_is_absent_in_production_and_schemes_are_not_offered(
    gw: Gateway, scheme: Scheme
) -> None:
    """Production has no simulators: their addresses answer a plain 404."""
    from payments.api.app import create_app
    from payments.gateway import build_gateway

    production = dataclasses.replace(gw.settings, env="production")
    built = build_gateway(production)
    try:
        client = create_app(gw=built).test_client()
        assert client.get(f"/sandbox/{scheme.name}/pay?param=paymentInit").status_code == 404
        assert scheme.name not in built.providers
    finally:
        built.db.dispose()


def test_a_scheme_the_payment_is_not_offered_changes_nothing(
    client: FlaskClient, gw: Gateway
) -> None:
    """OmanNet pressed on a Kuwaiti payment (a stale page, a hand-made request)."""
    kuwaiti = new_agency(gw, "kw-moi", "KWD", "KW")
    payment = _create(client, kuwaiti, SCHEMES[0])
    path = page_path(payment)
    token = csrf_of(open_page(client, path))
    refused = client.post(f"{path}/scheme/omannet", data={"csrf_token": token, "lang": "en"})
    assert local(see_other(refused)).startswith(path)
    assert _payment(client, kuwaiti, payment["id"])["status"] == "created"
    with gw.db.read() as session:
        assert session.execute(select(func.count()).select_from(Attempt)).scalar_one() == 0


def test_reloading_the_return_never_pushes_the_worker_s_inquiry_back(
    client: FlaskClient, gw: Gateway, key: str, scheme: Scheme
) -> None:
    payment = _create(client, key, scheme)
    path = page_path(payment)
    _to_scheme(client, scheme, path)
    with gw.db.read() as session:
        before = session.execute(select(Attempt.checks, Attempt.next_check_at)).one()
    for _ in range(7):  # the payer, or anyone holding the link, reloads the return address
        client.get(f"{path}/return")
    with gw.db.read() as session:
        after = session.execute(select(Attempt.checks, Attempt.next_check_at)).one()
    assert after.checks == before.checks
    assert after.next_check_at <= before.next_check_at


def test_a_late_payment_the_payer_never_returns_from_is_found_and_returned(
    client: FlaskClient,
    gw: Gateway,
    key: str,
    scheme: Scheme,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given up as abandoned, then paid on the scheme's page after all, and the window closed:
    the worker looks again an hour later, finds the money taken, and gives it back."""
    payment = _create(client, key, scheme)
    address = _to_scheme(client, scheme, page_path(payment))
    start = clock.now()
    given_up = start + dt.timedelta(minutes=40)
    clock.set_clock(lambda: given_up)
    resolution.run_pass(gw)
    assert _payment(client, key, payment["id"])["status"] == "failed"
    _choose(client, address, "approve")  # paid late; the callback never reaches the gateway
    assert resolution.run_pass(gw).late_captures_checked == 0  # not yet due
    an_hour_on = given_up + dt.timedelta(hours=1, minutes=1)
    clock.set_clock(lambda: an_hour_on)
    with caplog.at_level(logging.ERROR):
        assert resolution.run_pass(gw).late_captures_checked == 1
    assert "a scheme captured a payment the gateway had closed" in caplog.text
    with gw.db.read() as session:
        attempt_id, due = session.execute(
            select(Attempt.id, Attempt.next_check_at).where(Attempt.payment_id == payment["id"])
        ).one()
    refund = gw.providers.get(scheme.name).refund_status(f"{attempt_id}-late")
    assert refund.outcome is RefundOutcome.SUCCEEDED
    assert due is not None  # and once more a day on, then no more
    a_day_on = an_hour_on + dt.timedelta(days=1, minutes=1)
    clock.set_clock(lambda: a_day_on)
    assert resolution.run_pass(gw).late_captures_checked == 1
    assert resolution.run_pass(gw).late_captures_checked == 0
    assert _payment(client, key, payment["id"])["status"] == "failed"
    assert audit(gw).ok
