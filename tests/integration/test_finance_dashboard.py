"""The finance dashboard through the Flask test client, on both databases: its figures per
period, member state, agency, acquirer, status and currency agree with what the API lists for
the same payments; currencies are never added together; a bad range is refused with a message
and the default period; a signed-out visitor is sent to sign in. And the charts' SVG itself."""

from __future__ import annotations

import datetime as dt
import html
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from payments import clock
from payments.finance import charts
from payments.gateway import Gateway
from tests.conftest import PAYMENT, auth, card, new_agency
from tests.integration.finance_support import csrf, signed_in_client

GOOD = "4242424242424242"
GOOD_MASTERCARD = "5555555555554444"
DECLINED = "4000000000000002"
# The dashboard's "today" in these tests: its month began 14 days before, and its default
# range (the last 30 days) reaches back into the month before.
TODAY = dt.datetime(2026, 3, 15, 10, 0, tzinfo=dt.UTC)
EARLIER_THIS_MONTH = dt.datetime(2026, 3, 2, 0, 0, 1, tzinfo=dt.UTC)
LAST_MONTH = dt.datetime(2026, 2, 27, 23, 59, 59, tzinfo=dt.UTC)
STATES = {"om-moh": "OM", "sa-mol": "SA"}
FIGURE = re.compile(r'data-figure="([^"]+)" data-amount="(-?\d+)"')
SVG = "{http://www.w3.org/2000/svg}"


# --------------------------------------------------------------------------- helpers


def at(moment: dt.datetime) -> None:
    """Move the gateway's clock to `moment`, running on from there."""
    started = dt.datetime.now(dt.UTC)
    clock.set_clock(lambda: moment + (dt.datetime.now(dt.UTC) - started))


def pay(
    client: FlaskClient, key: str, amount: int, currency: str, number: str | None
) -> dict[str, Any]:
    """A payment made through the API, confirmed with `number` (None: left `created`)."""
    created = client.post(
        "/v1/payments",
        json={**PAYMENT, "amount": amount, "currency": currency},
        headers=auth(key),
    )
    assert created.status_code == 201, created.json
    body: dict[str, Any] = created.json  # type: ignore[assignment]
    if number is None:
        return body
    confirmed = client.post(
        f"/v1/payments/{body['id']}/confirm", json=card(number), headers=auth(key)
    )
    assert confirmed.status_code == 200, confirmed.json
    answer: dict[str, Any] = confirmed.json  # type: ignore[assignment]
    return answer


def listed(client: FlaskClient, finance_key: str) -> list[dict[str, Any]]:
    """Every payment, as the API lists them to finance, page by page."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(100):
        query = {"limit": "3", **({"starting_after": after} if after else {})}
        page = client.get("/v1/payments", query_string=query, headers=auth(finance_key))
        assert page.status_code == 200, page.json
        body: dict[str, Any] = page.json  # type: ignore[assignment]
        found.extend(body["data"])
        if not body["has_more"]:
            return found
        after = body["data"][-1]["id"]
    raise AssertionError("the listing never ended")


def created_on(payment: dict[str, Any]) -> dt.date:
    return dt.datetime.fromisoformat(payment["created_at"].replace("Z", "+00:00")).date()


def expected_figures(
    payments: list[dict[str, Any]], periods: dict[str, tuple[dt.date, dt.date]]
) -> dict[str, int]:
    """What the dashboard should show, worked out from the API's payments alone."""
    figures: Counter[str] = Counter()
    for payment in payments:
        value = payment["amount_captured"] if payment["status"] == "succeeded" else 0
        ccy = payment["currency"]
        keys = {
            "total": "all",
            "state": STATES[payment["agency"]],
            "agency": payment["agency"],
            "provider": payment["provider"] or "",
            "status": payment["status"],
        }
        for period, (first, last) in periods.items():
            if not first <= created_on(payment) <= last:
                continue
            for dimension, key in keys.items():
                figures[f"count:{period}:{dimension}:{key}:{ccy}"] += 1
                figures[f"value:{period}:{dimension}:{key}:{ccy}"] += value
    return dict(figures)


def shown(page: str) -> dict[str, int]:
    """The figures a page shows, by their `data-figure` names."""
    found: dict[str, int] = {}
    for name, amount in FIGURE.findall(page):
        assert name not in found, f"{name} shown twice"
        found[name] = int(amount)
    return found


def period_figures(figures: dict[str, int]) -> dict[str, int]:
    """The per-period figures (not days, backlogs), the zeros left out."""
    return {
        name: amount
        for name, amount in figures.items()
        if name.split(":")[0] in ("count", "value")
        and name.split(":")[1] in ("today", "month", "range")
        and amount != 0
    }


@pytest.fixture
def payments_made(client: FlaskClient, gw: Gateway, agency_key: str) -> Iterator[None]:
    """Payments in OMR (om-moh, Oman) and SAR (sa-mol, Saudi Arabia) on three days, in every
    outcome: succeeded, declined, left created and left awaiting capture."""
    sar_key = new_agency(gw, "sa-mol", currency="SAR", state="SA")
    at(LAST_MONTH)
    pay(client, agency_key, 7000, "OMR", GOOD)
    at(EARLIER_THIS_MONTH)
    pay(client, agency_key, 3250, "OMR", GOOD)
    pay(client, sar_key, 9900, "SAR", DECLINED)
    at(TODAY)
    pay(client, agency_key, 12500, "OMR", GOOD)
    pay(client, agency_key, 1500, "OMR", GOOD_MASTERCARD)
    pay(client, agency_key, 2000, "OMR", DECLINED)
    pay(client, agency_key, 4000, "OMR", None)
    pay(client, sar_key, 50000, "SAR", GOOD)
    pay(client, sar_key, 2575, "SAR", GOOD)
    manual = client.post(
        "/v1/payments",
        json={**PAYMENT, "amount": 800, "currency": "SAR", "capture_method": "manual"},
        headers=auth(sar_key),
    )
    assert manual.status_code == 201
    held = client.post(
        f"/v1/payments/{manual.json['id']}/confirm",  # type: ignore[index]
        json=card(GOOD),
        headers=auth(sar_key),
    )
    assert held.json is not None and held.json["status"] == "requires_capture"
    yield


DEFAULT_PERIODS = {
    "today": (dt.date(2026, 3, 15), dt.date(2026, 3, 15)),
    "month": (dt.date(2026, 3, 1), dt.date(2026, 3, 31)),
    "range": (dt.date(2026, 2, 14), dt.date(2026, 3, 15)),
}


# --------------------------------------------------------------------------- the figures


@pytest.mark.usefixtures("payments_made")
def test_the_figures_agree_with_the_api(
    app: Flask, gw: Gateway, client: FlaskClient, finance_key: str
) -> None:
    payments = listed(client, finance_key)
    assert len(payments) == 10
    console = signed_in_client(app, gw)
    page = console.get("/finance/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    figures = shown(text)
    expected = expected_figures(payments, DEFAULT_PERIODS)
    assert period_figures(figures) == {k: v for k, v in expected.items() if v != 0}
    # Spot checks a person would make, by hand, from the payments above.
    assert figures["count:today:total:all:OMR"] == 4
    assert figures["value:today:total:all:OMR"] == 12500 + 1500
    assert figures["value:month:total:all:OMR"] == 12500 + 1500 + 3250
    assert figures["value:range:total:all:OMR"] == 12500 + 1500 + 3250 + 7000
    assert figures["count:month:total:all:SAR"] == 4
    assert figures["value:today:state:SA:SAR"] == 50000 + 2575
    assert figures["count:today:status:requires_capture:SAR"] == 1
    assert figures["value:today:status:requires_capture:SAR"] == 0
    assert figures["count:today:provider::OMR"] == 1  # the one left `created`
    # The day-by-day table: each payment on the day it was made, nothing on other days.
    assert figures["count:day:2026-02-27:OMR"] == 1
    assert figures["value:day:2026-03-02:OMR"] == 3250
    assert figures["count:day:2026-03-02:SAR"] == 1
    assert figures["value:day:2026-03-15:SAR"] == 50000 + 2575
    assert figures["count:day:2026-02-14:OMR"] == 0
    days = {n for n in figures if n.startswith("count:day:") and n.endswith(":OMR")}
    assert len(days) == 30
    # What awaits settlement: every succeeded payment (no settlement file imported); the
    # one of 2026-02-27 and the one of 2026-03-02 are past the two-day lag.
    assert figures["awaiting:count:OMR"] == 4
    assert figures["awaiting:value:OMR"] == 7000 + 3250 + 12500 + 1500
    assert figures["overdue:count:OMR"] == 2
    assert figures["overdue:value:OMR"] == 7000 + 3250
    assert figures["awaiting:count:SAR"] == 2
    assert figures["overdue:count:SAR"] == 0
    assert figures["backlog:webhooks"] == 0
    assert "backlog:ledger" in figures
    # Words a person reads: what is counted, the mode, money in its currency.
    assert "المبلغ المحصَّل من المدفوعات الناجحة" in text
    assert "الحية والتجريبية معًا" in text
    assert "14.000 ريال عماني" in text
    assert "525.75 ريال سعودي" in text


@pytest.mark.usefixtures("payments_made")
def test_two_currencies_are_never_added_together(app: Flask, gw: Gateway) -> None:
    figures = shown(signed_in_client(app, gw).get("/finance/").get_data(as_text=True))
    for name in figures:
        if name.startswith(("count:", "value:", "awaiting:", "overdue:")):
            assert name.rsplit(":", 1)[1] in ("OMR", "SAR"), name
    # Each currency's total is its own payments' sum: were the two mixed anywhere, the
    # dimension tables would not add up to their currency's total.
    for period in ("today", "month", "range"):
        for currency in ("OMR", "SAR"):
            total = figures[f"value:{period}:total:all:{currency}"]
            for dimension in ("state", "agency", "provider", "status"):
                parts = [
                    amount
                    for name, amount in figures.items()
                    if name.startswith(f"value:{period}:{dimension}:")
                    and name.endswith(f":{currency}")
                ]
                assert sum(parts) == total, (period, currency, dimension)
    assert figures["value:range:total:all:OMR"] == 24250
    assert figures["value:range:total:all:SAR"] == 52575


@pytest.mark.usefixtures("payments_made")
def test_a_chosen_range_and_mode(app: Flask, gw: Gateway) -> None:
    console = signed_in_client(app, gw)
    page = console.get("/finance/", query_string={"from": "2026-02-27", "to": "2026-03-02"})
    assert page.status_code == 200
    figures = shown(page.get_data(as_text=True))
    assert figures["count:range:total:all:OMR"] == 2
    assert figures["value:range:total:all:OMR"] == 7000 + 3250
    assert figures["count:range:total:all:SAR"] == 1
    assert figures["value:range:total:all:SAR"] == 0
    assert len([n for n in figures if n.startswith("count:day:") and n.endswith(":OMR")]) == 4
    # Today and this month do not move with the range.
    assert figures["count:today:total:all:OMR"] == 4
    # Every payment here is a test payment: `live` shows none of them, `test` all.
    live = shown(console.get("/finance/", query_string={"mode": "live"}).get_data(as_text=True))
    assert period_figures(live) == {}
    assert not any(n.startswith("awaiting:") for n in live)
    test = console.get("/finance/", query_string={"mode": "test"}).get_data(as_text=True)
    assert period_figures(shown(test)) == period_figures(shown(console.get("/finance/").text))
    assert "التجريبية فقط" in test


@pytest.mark.usefixtures("payments_made")
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"from": "2026-13-01", "to": "2026-03-15"}, "Write both dates as YYYY-MM-DD."),
        ({"from": "15/03/2026"}, "Write both dates as YYYY-MM-DD."),
        ({"from": "2026-03-10", "to": "2026-03-01"}, "The start date is after the end date."),
        ({"from": "2025-01-01", "to": "2026-03-15"}, "The range is longer than 366 days."),
        ({"from": "1999-12-31", "to": "2000-01-05"}, "Both dates must fall between"),
        ({"to": "9999-12-31"}, "Both dates must fall between"),
        ({"mode": "both"}, "Unknown kind of payments"),
    ],
)
def test_a_bad_range_shows_a_message_and_the_default_period(
    app: Flask, gw: Gateway, query: dict[str, str], message: str
) -> None:
    console = signed_in_client(app, gw)
    _to_english(console)
    page = console.get("/finance/", query_string=query)
    assert page.status_code == 422
    text = html.unescape(page.get_data(as_text=True))
    assert 'class="error-summary"' in text
    assert message in text
    if "mode" not in query:
        assert "The default period is shown instead: 2026-02-14 to 2026-03-15." in text
    assert 'value="2026-02-14"' in text and 'value="2026-03-15"' in text
    figures = shown(text)
    assert figures["value:range:total:all:OMR"] == 24250  # the default period's figures


def test_a_year_and_a_day_is_accepted(app: Flask, gw: Gateway) -> None:
    at(TODAY)
    page = signed_in_client(app, gw).get(
        "/finance/", query_string={"from": "2025-03-15", "to": "2026-03-15"}
    )
    assert page.status_code == 200
    assert "لا توجد مدفوعات في هذه الفترات." in page.get_data(as_text=True)


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    answer = client.get("/finance/?from=2026-03-01")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/finance/sign-in?next=")
    assert "/finance/sign-in" in answer.headers["Location"]


@pytest.mark.usefixtures("payments_made")
def test_the_page_in_english_with_its_charts(app: Flask, gw: Gateway) -> None:
    console = signed_in_client(app, gw)
    _to_english(console)
    page = console.get("/finance/")
    text = page.get_data(as_text=True)
    assert 'lang="en"' in text
    assert "Value: the amount captured by payments that succeeded, before any refund." in text
    assert "Payments shown: Live and test together." in text
    assert "14.000 OMR" in text and "525.75 SAR" in text
    assert "<script" not in text
    assert text.count('role="img"') == 1 + 2 + 1 + 2  # statuses, agencies x2, daily x(1+2)
    for svg in re.findall(r"<svg.*?</svg>", text, flags=re.S):
        root = ET.fromstring(svg)
        assert root.get("role") == "img" and root.get("aria-label")
        assert root.find(f"{SVG}title") is not None
    assert "Value captured per agency in OMR" in text
    assert "Payments per day, one line per currency" in text
    assert "script-src" not in page.headers.get("Content-Security-Policy", "")


def _to_english(console: FlaskClient) -> None:
    answer = console.post(
        "/finance/language",
        data={"lang": "en", "back": "/finance/", "csrf_token": csrf(console, "/finance/account")},
    )
    assert answer.status_code == 303


# --------------------------------------------------------------------------- the charts


def test_a_bar_chart_is_an_image_with_its_labels_and_no_script() -> None:
    svg = charts.bar_chart(
        "Value per agency",
        [
            charts.BarGroup("وزارة الصحة", (charts.Bar(12500, "12.500 OMR"),)),
            charts.BarGroup("<script>alert(1)</script>", (charts.Bar(0, "0.000 OMR", 1),)),
            charts.BarGroup("Ministry", (charts.Bar(3, "OMR: 3"), charts.Bar(9, "SAR: 9", 1))),
        ],
        summary="One bar per agency",
    )
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Value per agency. One bar per agency"
    assert root.get("viewBox", "").startswith(f"0 0 {charts.WIDTH} ")
    assert root.findtext(f"{SVG}title") == "Value per agency"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "وزارة الصحة" in texts and "12.500 OMR" in texts and "SAR: 9" in texts
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "<script>alert(1)</script>" in titles  # as text, escaped, never an element
    assert "<script>alert(1…" in texts  # a long label cut short, whole in its title
    assert not any(e.tag.endswith("script") for e in root.iter())
    assert "href" not in str(svg)
    widths = [float(r.get("width", "0")) for r in root.iter(f"{SVG}rect")]
    assert widths[0] == max(widths) and widths[1] == 0
    assert widths[2] < widths[3]


def test_a_line_chart_draws_one_line_per_series_on_a_nice_scale() -> None:
    days = [f"2026-03-{d:02d}" for d in range(1, 11)]
    svg = charts.line_chart(
        "Payments per day",
        days,
        [
            charts.Line("OMR", tuple(range(10)), 0),
            charts.Line("SAR", tuple(10 - n for n in range(10)), 1),
        ],
        summary="From 2026-03-01 to 2026-03-10",
    )
    root = ET.fromstring(str(svg))
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == "Payments per day"
    assert root.findtext(f"{SVG}desc") == "From 2026-03-01 to 2026-03-10"
    assert len(list(root.iter(f"{SVG}polyline"))) == 2
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"OMR", "SAR", "2026-03-01", "2026-03-10"} <= set(texts)
    assert {"0", "5", "10", "15", "20"} <= set(texts)  # 10 in four steps of 5
    assert not any(e.tag.endswith("script") for e in root.iter())
    empty = ET.fromstring(str(charts.line_chart("Nothing", ["2026-03-01"], [])))
    assert empty.findtext(f"{SVG}title") == "Nothing"


def test_the_scale_steps() -> None:
    assert [charts.nice_step(n) for n in (0, 1, 4, 5, 8, 9, 40, 41, 1999, 2001)] == [
        1,
        1,
        1,
        2,
        2,
        5,
        10,
        20,
        500,
        1000,
    ]
