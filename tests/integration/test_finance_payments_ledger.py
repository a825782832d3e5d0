"""The finance console's payments and ledger pages through the Flask test client, on both
databases: searching payments of every agency (reference, id, agency, status, dates, amount),
bad input answered with a message, one payment with its attempts, refunds, events, webhook
deliveries and ledger postings (never a card number), the trial balance equal to the API's,
an account's statement with running balances, and the ledger's verification."""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.test import TestResponse

from config import Settings
from payments import clock
from payments.finance import ledger_pages, payment_pages
from payments.gateway import Gateway
from payments.models import Attempt
from payments.money import format_major
from payments.webhooks.delivery import deliver_due
from tests.conftest import PAYMENT, auth, card, make_settings, new_agency
from tests.integration.finance_support import csrf, signed_in_client
from tests.integration.webhook_support import Receiver

GOOD_CARD = "4242424242424242"
PAYABLE = "test:agency:om-moh:payable"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Loopback webhook receivers allowed, so that a payment's deliveries can be shown."""
    return make_settings(
        database_url,
        tmp_path,
        webhook_allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        webhook_timeout_s=2.0,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


# --------------------------------------------------------------------------- helpers


def page_text(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def paid(client: FlaskClient, key: str, **overrides: Any) -> dict[str, Any]:
    """A payment made and confirmed with a good card (captured at once)."""
    created = client.post("/v1/payments", json={**PAYMENT, **overrides}, headers=auth(key))
    assert created.status_code == 201, created.json
    payment_id = created.json["id"]  # type: ignore[index]
    confirmed = client.post(
        f"/v1/payments/{payment_id}/confirm", json=card(GOOD_CARD), headers=auth(key)
    )
    assert confirmed.status_code == 200, confirmed.json
    body: dict[str, Any] = confirmed.json  # type: ignore[assignment]
    assert body["status"] == "succeeded", body
    return body


def refunded(client: FlaskClient, key: str, payment_id: str, amount: int) -> dict[str, Any]:
    answer = client.post(
        f"/v1/payments/{payment_id}/refunds", json={"amount": amount}, headers=auth(key)
    )
    assert answer.status_code == 201, answer.json
    body: dict[str, Any] = answer.json  # type: ignore[assignment]
    return body


def in_english(console: FlaskClient) -> FlaskClient:
    """Switch the signed-in user's pages to English (through the language form)."""
    answer = console.post(
        "/finance/language",
        data={"lang": "en", "back": "/finance/", "csrf_token": csrf(console, "/finance/ledger")},
    )
    assert answer.status_code == 303
    return console


def search(console: FlaskClient, **query: str) -> TestResponse:
    return console.get("/finance/payments", query_string=query)


def listed_ids(response: TestResponse) -> list[str]:
    """The payment ids in the results table, in order."""
    return re.findall(r'href="/finance/payments/(pay_[0-9a-z]{26})"', response.get_data(True))


def row_of(body: str, marker: str) -> str:
    """The table row holding `marker`."""
    at = body.index(marker)
    return body[body.rindex("<tr", 0, at) : body.index("</tr>", at)]


@pytest.fixture
def console(app: Flask, gw: Gateway) -> FlaskClient:
    return in_english(signed_in_client(app, gw))


# --------------------------------------------------------------------------- sign-in


def test_every_page_sends_the_signed_out_to_sign_in(client: FlaskClient) -> None:
    for path in (
        "/finance/payments",
        "/finance/payments?reference=x",
        "/finance/payments/pay_00000000000000000000000000",
        "/finance/ledger",
        f"/finance/ledger/accounts?code={PAYABLE}&currency=OMR",
        "/finance/ledger/verify",
    ):
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/finance/sign-in?next="), path


# --------------------------------------------------------------------------- search


def test_search_by_reference_status_dates_and_amount(
    client: FlaskClient, console: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    mine = paid(client, agency_key, reference="MOH-FIND-1", amount=12500)
    refunded(client, agency_key, mine["id"], 2500)
    other_key = new_agency(gw, "sa-moi", "SAR", "SA")
    other = paid(client, other_key, reference="MOI-FIND-2", amount=12500, currency="SAR")

    found = search(console, reference="MOH-FIND-1")
    assert found.status_code == 200
    assert listed_ids(found) == [mine["id"]]

    everyone = search(console, status="succeeded")
    assert listed_ids(everyone) == [other["id"], mine["id"]]  # newest first, every agency
    assert listed_ids(search(console, status="failed")) == []

    assert listed_ids(search(console, agency="sa-moi")) == [other["id"]]
    assert listed_ids(search(console, payment_id=mine["id"])) == [mine["id"]]

    today = clock.now().date().isoformat()
    within = search(console, date_from=today, date_to=today, reference="MOH-FIND-1")
    assert listed_ids(within) == [mine["id"]]
    before = search(console, date_from="2020-01-01", date_to="2020-12-31")
    assert before.status_code == 200
    assert listed_ids(before) == []
    assert "Nothing found." in page_text(before)

    by_amount = search(console, amount="12.500", currency="OMR")
    assert listed_ids(by_amount) == [mine["id"]]  # the SAR payment of 12500 minor units is not
    assert listed_ids(search(console, amount="12.5", currency="OMR")) == [mine["id"]]
    assert listed_ids(search(console, amount="125.00", currency="SAR")) == [other["id"]]
    assert listed_ids(search(console, amount="12.499", currency="OMR")) == []
    assert "12.500 OMR" in page_text(by_amount)


def test_the_search_pages_carry_the_filters(
    client: FlaskClient,
    console: FlaskClient,
    agency_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = [paid(client, agency_key, reference="PAGED")["id"] for _ in range(3)]
    paid(client, agency_key, reference="ELSEWHERE")
    monkeypatch.setattr(payment_pages, "PAGE_SIZE", 2)
    first = search(console, reference="PAGED")
    assert listed_ids(first) == [made[2], made[1]]
    link = re.search(r'<a rel="next" href="([^"]+)"', first.get_data(True))
    assert link is not None
    url = html.unescape(link.group(1))
    assert "reference=PAGED" in url and f"starting_after={made[1]}" in url
    second = console.get(url)
    assert listed_ids(second) == [made[0]]
    assert 'rel="next"' not in second.get_data(True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"amount": "1.23456", "currency": "OMR"}, "with at most 3 decimals for OMR"),
        ({"amount": "1.234", "currency": "SAR"}, "with at most 2 decimals for SAR"),
        ({"amount": "-5", "currency": "OMR"}, "Type a positive amount"),
        ({"amount": "0", "currency": "OMR"}, "Type a positive amount"),
        ({"amount": "1e3", "currency": "OMR"}, "Type a positive amount"),
        ({"amount": "9" * 5000, "currency": "OMR"}, "Type a positive amount"),
        ({"amount": "12.5"}, "Choose the currency of the amount."),
        ({"currency": "XXX"}, "Choose a currency from the list."),
        ({"date_from": "2026-13-45"}, "Write the date as 2026-03-31."),
        ({"date_to": "yesterday"}, "Write the date as 2026-03-31."),
        ({"date_from": "2026-03-02", "date_to": "2026-03-01"}, "The from date is after"),
        ({"payment_id": "pay_1"}, "A payment id starts with pay_"),
        ({"status": "bogus"}, "Choose a status from the list."),
        ({"reference": "x" * 5000}, "at most 255 characters"),
        ({"reference": "a\x00b"}, "at most 255 characters"),
        ({"agency": "a" * 65}, "at most 64 characters"),
        ({"starting_after": "pay_1; DROP TABLE"}, "The page link is not valid"),
    ],
)
def test_bad_search_input_is_a_message_with_422(
    console: FlaskClient, query: dict[str, str], message: str
) -> None:
    """Bad input answers 422 with the message on the page, the form kept, and no results."""
    answer = search(console, **query)
    body = page_text(answer)
    assert answer.status_code == 422
    assert message in body
    assert 'class="error-summary"' in body
    assert listed_ids(answer) == []


def test_a_bad_amount_is_refused_in_arabic_too(app: Flask, gw: Gateway) -> None:
    arabic = signed_in_client(app, gw)  # a new user reads Arabic
    answer = search(arabic, amount="1.23456", currency="OMR")
    assert answer.status_code == 422
    assert "منازل عشرية لعملة OMR" in page_text(answer)


# --------------------------------------------------------------------------- one payment


def test_the_payment_page_shows_everything_about_it(
    client: FlaskClient,
    console: FlaskClient,
    agency_key: str,
    gw: Gateway,
    receiver: Receiver,
) -> None:
    endpoint = client.post(
        "/v1/webhook-endpoints",
        json={"url": receiver.url(), "events": ["*"]},
        headers=auth(agency_key),
    )
    assert endpoint.status_code == 201, endpoint.json
    payment = paid(client, agency_key, reference="MOH-PAGE-1")
    refund = refunded(client, agency_key, payment["id"], 2500)
    deliver_due(gw)
    with gw.db.read() as session:
        attempt_ids = list(
            session.scalars(select(Attempt.id).where(Attempt.payment_id == payment["id"]))
        )
    events = client.get("/v1/events", headers=auth(agency_key)).json["data"]  # type: ignore[index]
    mine = [e["id"] for e in events if e["data"]["id"] in (payment["id"], refund["id"])]
    assert len(mine) >= 2

    answer = console.get(f"/finance/payments/{payment['id']}")
    body = page_text(answer)
    assert answer.status_code == 200
    assert "12.500 OMR" in body and "om-moh" in body and "MOH-PAGE-1" in body
    assert attempt_ids and all(a in body for a in attempt_ids)
    assert "ending 4242" in body
    assert GOOD_CARD not in body and "4242 4242" not in body
    # its ledger postings: the capture and the refund, each account linked
    capture = row_of(body, 'href="/finance/ledger/accounts?code=test:acquirer:')
    assert "12.500 OMR" in capture
    assert f"capture:{payment['id']}" in body
    assert f"refund:{refund['id']}" in body and refund["id"] in body
    assert f"/finance/ledger/accounts?code={PAYABLE}&amp;currency=OMR" in answer.get_data(True)
    # its events (the payment's and the refund's), and their webhook deliveries
    assert all(event_id in body for event_id in mine)
    assert "payment.succeeded" in body and "refund.succeeded" in body
    deliveries = body[body.index("Delivery log") :]
    assert all(event_id in deliveries for event_id in mine)
    assert "Delivered" in deliveries and ">200<" in deliveries
    # the search links to it
    assert f'href="/finance/payments/{payment["id"]}"' in search(
        console, reference="MOH-PAGE-1"
    ).get_data(True)


def test_another_agencys_payment_is_visible_to_finance(
    client: FlaskClient, console: FlaskClient, gw: Gateway
) -> None:
    key = new_agency(gw, "kw-moi", "KWD", "KW")
    payment = paid(client, key, amount=1250, currency="KWD", reference="KW-1")
    answer = console.get(f"/finance/payments/{payment['id']}")
    body = page_text(answer)
    assert answer.status_code == 200
    assert "kw-moi" in body and "1.250 KWD" in body


@pytest.mark.parametrize(
    "path",
    [
        "/finance/payments/pay_00000000000000000000000000",
        "/finance/payments/nonsense",
        "/finance/payments/" + "p" * 3000,
        "/finance/payments/re_00000000000000000000000000",
    ],
)
def test_an_unknown_payment_is_a_404_page(console: FlaskClient, path: str) -> None:
    answer = console.get(path)
    assert answer.status_code == 404
    assert "There is no such page." in page_text(answer)


# --------------------------------------------------------------------------- the ledger


def test_the_trial_balance_equals_the_apis(
    client: FlaskClient, console: FlaskClient, agency_key: str, finance_key: str, gw: Gateway
) -> None:
    payment = paid(client, agency_key)
    refunded(client, agency_key, payment["id"], 2500)
    sar = new_agency(gw, "sa-moi", "SAR", "SA")
    paid(client, sar, amount=9999, currency="SAR")
    api = client.get("/v1/ledger/trial-balance", headers=auth(finance_key)).json
    assert api is not None and set(api["currencies"]) == {"OMR", "SAR"}

    answer = console.get("/finance/ledger")
    raw = answer.get_data(True)
    body = page_text(answer)
    assert answer.status_code == 200
    for currency, totals in api["currencies"].items():
        row = row_of(raw, f'id="currency-{currency}"')
        assert f'data-debits="{totals["debits"]}"' in row
        assert f'data-credits="{totals["credits"]}"' in row
        assert f"{format_major(totals['debits'], currency)} {currency}" in row
        assert "Balanced" in row
    assert len(api["accounts"]) >= 4
    for account in api["accounts"]:
        link = (
            f'href="/finance/ledger/accounts?code={account["account"]}'
            f'&amp;currency={account["currency"]}"'
        )
        row = row_of(raw, link)
        assert f'data-balance="{account["balance"]}"' in row
        assert f"{format_major(account['balance'], account['currency'])} " in row
    assert "Trial balance" in body


def test_an_account_page_shows_running_balances(
    client: FlaskClient,
    console: FlaskClient,
    agency_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payment = paid(client, agency_key)  # 12.500 OMR owed to the agency
    refund = refunded(client, agency_key, payment["id"], 2500)  # then 10.000
    second = paid(client, agency_key, amount=1000)  # then 11.000

    answer = console.get(
        "/finance/ledger/accounts", query_string={"code": PAYABLE, "currency": "OMR"}
    )
    raw = answer.get_data(True)
    assert answer.status_code == 200
    after = re.findall(r'data-balance-after="(-?[0-9]+)"', raw)
    assert after == ["11000", "10000", "12500"]  # newest first
    assert "11.000 OMR" in page_text(answer)  # the current balance
    assert f"capture:{second['id']}" in raw and f"refund:{refund['id']}" in raw
    assert f'href="/finance/payments/{payment["id"]}"' in raw  # a capture links to its payment

    monkeypatch.setattr(ledger_pages, "PAGE_SIZE", 2)
    first = console.get(
        "/finance/ledger/accounts", query_string={"code": PAYABLE, "currency": "OMR"}
    )
    assert re.findall(r'data-balance-after="(-?[0-9]+)"', first.get_data(True)) == [
        "11000",
        "10000",
    ]
    link = re.search(r'<a rel="next" href="([^"]+)"', first.get_data(True))
    assert link is not None
    rest = console.get(html.unescape(link.group(1)))
    assert re.findall(r'data-balance-after="(-?[0-9]+)"', rest.get_data(True)) == ["12500"]


@pytest.mark.parametrize(
    "query",
    [
        {"code": "test:agency:nobody:payable", "currency": "OMR"},
        {"code": PAYABLE, "currency": "SAR"},
        {"code": PAYABLE, "currency": "XXX"},
        {"code": PAYABLE},
        {"currency": "OMR"},
        {"code": "x" * 5000, "currency": "OMR"},
        {"code": "a\x00b", "currency": "OMR"},
    ],
)
def test_an_unknown_account_is_a_404_page(
    client: FlaskClient, console: FlaskClient, agency_key: str, query: dict[str, str]
) -> None:
    paid(client, agency_key)
    answer = console.get("/finance/ledger/accounts", query_string=query)
    assert answer.status_code == 404
    assert "There is no such page." in page_text(answer)


def test_a_bad_statement_page_link_is_a_message(
    client: FlaskClient, console: FlaskClient, agency_key: str
) -> None:
    paid(client, agency_key)
    answer = console.get(
        "/finance/ledger/accounts",
        query_string={"code": PAYABLE, "currency": "OMR", "starting_after": "pst_x"},
    )
    assert answer.status_code == 422
    assert "The page link is not valid" in page_text(answer)
    huge = console.get(
        "/finance/ledger/accounts",
        query_string={"code": PAYABLE, "currency": "OMR", "starting_after": "pst_" + "9" * 18},
    )
    assert huge.status_code == 200  # past every posting: from the newest, as the API does
    assert re.findall(r'data-balance-after="(-?[0-9]+)"', huge.get_data(True)) == ["12500"]


def test_the_verify_page_says_it_passed_and_then_what_broke(
    client: FlaskClient, console: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = paid(client, agency_key)
    refunded(client, agency_key, payment["id"], 2500)
    answer = console.get("/finance/ledger/verify")
    body = page_text(answer)
    assert answer.status_code == 200
    assert 'data-verdict="passed"' in body
    assert "Verification passed" in body
    assert "Debits equal credits in every currency" in body  # what was checked

    with gw.db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE ledger_accounts SET debits_minor = debits_minor + 1 "
                "WHERE code = :code AND currency = 'OMR'"
            ),
            {"code": PAYABLE},
        )
    broken = page_text(console.get("/finance/ledger/verify"))
    assert 'data-verdict="failed"' in broken
    assert "Verification FAILED" in broken
    assert f"account {PAYABLE} OMR" in broken
    assert "its postings sum to" in broken
