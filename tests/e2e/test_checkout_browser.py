"""The hosted payment page in a real browser against `gateway serve`: a payer pays, is
declined, authenticates with 3-D Secure and cancels, driving the page by its visible labels
with JavaScript switched off; then every page state, in Arabic and English, is checked with
axe-core (WCAG 2.1 A and AA) and photographed at desktop width and at 375 px.

The agency's site that the payer returns to is a small server on loopback. Playwright does
not intercept the hop of a redirect (by design), so a `route` on an unreachable
`https://agency.example` would only be met after Chromium reloads its own error page.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import update

from payments import clock
from payments.checkout import texts
from payments.db import make_engine
from payments.models import Payment
from tests.e2e.browser import (
    DESKTOP,
    PHONE,
    axe_violations,
    bound,
    describe,
    expect,
    overflows,
    screenshots,
    unavailable,
)
from tests.e2e.conftest import LiveGateway, gateway_with
from tests.e2e.webhook_support import WEBHOOK_ENV, wait_until
from tests.integration.webhook_support import Answer, Receiver

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

MISSING = unavailable()
# CI installs Chromium (.ci/run), so there a missing browser fails the run instead.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING is not None and not os.environ.get("CI"), reason=MISSING or ""),
]

BACKENDS = ("sqlite", "postgresql")
AGENCY = "om-moh"  # OMR, three decimals: 12500 is 12.500
AGENCY_PAGE = (
    b"<!doctype html><html lang='en'><head><title>Agency</title></head>"
    b"<body><main><h1>Back at the agency</h1></main></body></html>"
)
GOOD = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"
NO_FUNDS = "4000 0000 0000 9995"
TIMEOUT = "4000 0000 0000 5126"
NEEDS_3DS = "4000 0000 0000 3220"
ALL_CARDS = (GOOD, DECLINED, NO_FUNDS, TIMEOUT, NEEDS_3DS)
LABELS = {
    "en": {
        "number": "Card number",
        "exp_month": "Expiry month",
        "exp_year": "Expiry year",
        "cvc": "Security code",
        "name": "Name on card",
        "pay": "Pay",
        "cancel": "Cancel and return",
        "complete": "Complete authentication",
        "fail": "Fail authentication",
        "stop": "Stop checking automatically",
        "currency": "OMR",
    },
    "ar": {
        "number": "رقم البطاقة",
        "exp_month": "شهر الانتهاء",
        "exp_year": "سنة الانتهاء",
        "cvc": "رمز الأمان",
        "name": "الاسم على البطاقة",
        "pay": "ادفع",
        "cancel": "إلغاء والعودة",
        "complete": "إتمام التحقق",
        "fail": "إفشال التحقق",
        "stop": "أوقف التحقق التلقائي",
        "currency": "ريال عماني",
    },
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    """`gateway serve` on a fresh database, allowed to deliver webhooks to loopback."""
    with gateway_with(request.param, tmp_path_factory, "checkout", WEBHOOK_ENV) as live:
        yield live


@pytest.fixture(scope="module")
def agency_site() -> Iterator[Receiver]:
    """The agency's own site, where the payer lands after a final outcome."""
    with Receiver() as site:
        site.default = Answer(body=AGENCY_PAGE, headers={"Content-Type": "text/html"})
        yield site


@pytest.fixture(scope="module")
def return_url(agency_site: Receiver) -> str:
    return agency_site.url("/done")


def _page(browser: Browser, *, javascript: bool) -> Iterator[Page]:
    context = browser.new_context(java_script_enabled=javascript, viewport=DESKTOP, locale="en-US")
    try:
        yield bound(context.new_page())
    finally:
        context.close()


@pytest.fixture
def payer(browser: Browser) -> Iterator[Page]:
    """A payer's browser with JavaScript switched off: the pages must not need it."""
    yield from _page(browser, javascript=False)


@pytest.fixture
def inspector(browser: Browser) -> Iterator[Page]:
    """A browser with JavaScript on, only so that axe-core can run inside the page."""
    yield from _page(browser, javascript=True)


# --------------------------------------------------------------------------- helpers


def new_payment(server: LiveGateway, return_url: str, **fields: Any) -> dict[str, Any]:
    payment = server.api(AGENCY).create_payment(return_url=return_url, **fields)
    assert payment["next_url"].startswith(f"{server.base_url}/pay/"), payment["next_url"]
    return payment


def status_of(server: LiveGateway, payment: dict[str, Any]) -> dict[str, Any]:
    return server.api(AGENCY).ok(f"/v1/payments/{payment['id']}")


def open_page(page: Page, payment: dict[str, Any], **query: str) -> None:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    response = page.goto(payment["next_url"] + suffix)
    assert response is not None and response.status == 200


def fill_card(page: Page, lang: str, number: str, *, name: str = "Test Payer") -> None:
    labels = LABELS[lang]
    page.get_by_label(labels["number"], exact=True).fill(number)
    page.get_by_label(labels["exp_month"], exact=True).fill("12")
    page.get_by_label(labels["exp_year"], exact=True).fill("2034")
    page.get_by_label(labels["cvc"], exact=True).fill("737")
    page.get_by_label(labels["name"], exact=True).fill(name)


def pay(page: Page, lang: str, number: str) -> None:
    fill_card(page, lang, number)
    page.get_by_role("button", name=LABELS[lang]["pay"], exact=True).click()


def at_agency(page: Page, return_url: str) -> None:
    page.wait_for_url(return_url)
    assert page.get_by_role("heading", name="Back at the agency").is_visible()


def back_on_page(page: Page, payment: dict[str, Any], lang: str) -> None:
    """After a POST from the page opened without a query: back on it, in `lang`."""
    page.wait_for_url(f"{payment['next_url']}?lang={lang}")


def declined(page: Page, lang: str, code: str, tries_left: int) -> None:
    """The decline notice beside the form, with the reason and the tries left."""
    notice = page.locator("#decline")
    expect(notice).to_contain_text(texts.tries_left(lang, tries_left))
    expect(notice).to_contain_text(texts.failure_reason(lang, code))


# --------------------------------------------------------------------------- journeys


def test_a_payer_pays_by_the_english_labels_and_lands_on_the_return_url(
    server: LiveGateway, payer: Page, return_url: str
) -> None:
    agency = server.api(AGENCY)
    with Receiver() as receiver:
        endpoint = agency.post(
            "/v1/webhook-endpoints", {"url": receiver.url(), "events": ["payment.succeeded"]}
        )
        assert endpoint.status_code == 201, endpoint.text
        payment = new_payment(server, return_url, language="en")
        open_page(payer, payment)
        assert payer.locator("html").get_attribute("lang") == "en"
        assert "12.500 OMR" in payer.locator(".amount").inner_text()
        pay(payer, "en", GOOD)
        at_agency(payer, return_url)
        paid = status_of(server, payment)
        assert paid["status"] == "succeeded"
        assert paid["payment_method"]["last4"] == "4242"

        server.cli("worker", "--once")
        wait_until(
            lambda: any(
                json.loads(post.body)["data"]["id"] == payment["id"] for post in receiver.posts()
            )
        )
        sent = [json.loads(post.body) for post in receiver.posts()]
        assert [e["type"] for e in sent if e["data"]["id"] == payment["id"]] == [
            "payment.succeeded"
        ]
        agency.request("DELETE", f"/v1/webhook-endpoints/{endpoint.json()['id']}")


def test_the_arabic_page_takes_another_card_after_a_decline(
    server: LiveGateway, payer: Page, return_url: str
) -> None:
    payment = new_payment(server, return_url)  # Arabic by default
    open_page(payer, payment)
    html = payer.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    for key in ("number", "exp_month", "exp_year", "cvc", "name"):
        assert payer.get_by_label(LABELS["ar"][key], exact=True).is_visible(), key
    amount = " ".join(payer.locator(".amount").inner_text().split())
    assert amount == "12.500 ريال عماني", amount

    pay(payer, "ar", DECLINED)
    back_on_page(payer, payment, "ar")
    declined(payer, "ar", "card_declined", 2)
    assert payer.get_by_label(LABELS["ar"]["number"], exact=True).input_value() == ""
    assert status_of(server, payment)["status"] == "created"

    pay(payer, "ar", GOOD)
    at_agency(payer, return_url)
    assert status_of(server, payment)["status"] == "succeeded"


def test_the_third_decline_fails_the_payment(
    server: LiveGateway, payer: Page, return_url: str
) -> None:
    payment = new_payment(server, return_url, language="en")
    open_page(payer, payment)
    pay(payer, "en", DECLINED)
    back_on_page(payer, payment, "en")
    declined(payer, "en", "card_declined", 2)
    pay(payer, "en", NO_FUNDS)
    declined(payer, "en", "insufficient_funds", 1)
    assert status_of(server, payment)["status"] == "created"
    pay(payer, "en", DECLINED)
    at_agency(payer, return_url)
    failed = status_of(server, payment)
    assert failed["status"] == "failed"
    assert failed["failure"]["code"] == "card_declined"
    open_page(payer, payment)
    assert payer.get_by_role("heading", name="Payment failed").is_visible()
    assert payer.get_by_role("link", name=re.compile("^Return to")).get_attribute("href") == (
        return_url
    )


@pytest.mark.parametrize("outcome", ["complete", "fail"])
def test_3d_secure_on_the_sandbox_challenge_page(
    server: LiveGateway, payer: Page, return_url: str, outcome: str
) -> None:
    payment = new_payment(server, return_url, language="en")
    open_page(payer, payment)
    pay(payer, "en", NEEDS_3DS)
    payer.wait_for_url(re.compile(r"/sandbox/3ds/[^/?]+\?lang=en$"))
    assert "Sandbox simulator" in payer.locator(".sim-banner").inner_text()
    assert status_of(server, payment)["status"] == "processing"
    payer.get_by_role("button", name=LABELS["en"][outcome], exact=True).click()
    if outcome == "complete":
        at_agency(payer, return_url)
        assert status_of(server, payment)["status"] == "succeeded"
    else:
        back_on_page(payer, payment, "en")
        declined(payer, "en", "authentication_failed", 2)
        assert status_of(server, payment)["status"] == "created"


def test_cancel_and_return(server: LiveGateway, payer: Page, return_url: str) -> None:
    payment = new_payment(server, return_url, language="en")
    open_page(payer, payment)
    payer.get_by_role("button", name="Cancel and return", exact=True).click()
    at_agency(payer, return_url)
    assert status_of(server, payment)["status"] == "cancelled"


def test_a_tampered_token_is_a_plain_not_found_page(
    server: LiveGateway, payer: Page, return_url: str
) -> None:
    payment = new_payment(server, return_url, language="en")
    url = payment["next_url"]
    tampered = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
    response = payer.goto(tampered)
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert payer.get_by_role("heading", name="Page not found").is_visible()


# --------------------------------------------------------------------------- every state


def expire(server: LiveGateway, payment: dict[str, Any]) -> None:
    """Move the payment's expiry into the past, as if the payer had left the page for hours."""
    engine = make_engine(server.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(Payment)
                .where(Payment.id == payment["id"])
                .values(expires_at=clock.now().replace(year=clock.now().year - 1))
            )
    finally:
        engine.dispose()


def check_state(
    page: Page, server: LiveGateway, state: str, lang: str, *, skip_rules: tuple[str, ...] = ()
) -> None:
    """No WCAG 2.1 A/AA violation, no sideways scrolling at 375 px, and the screenshots."""
    assert page.locator("html").get_attribute("lang") == lang, state
    violations = axe_violations(page, skip_rules=skip_rules)
    assert violations == [], f"{state} ({lang}):\n{describe(violations)}"
    page.set_viewport_size(PHONE)
    assert not overflows(page), f"{state} ({lang}) scrolls sideways at 375 px"
    page.set_viewport_size(DESKTOP)
    if server.backend == BACKENDS[0]:  # the pages are the same on both databases
        screenshots(page, f"{state}-{lang}")


@pytest.mark.parametrize("lang", ["ar", "en"])
def test_every_page_state_passes_axe_and_is_photographed(
    server: LiveGateway, inspector: Page, return_url: str, lang: str
) -> None:
    page, labels = inspector, LABELS[lang]

    first = new_payment(server, return_url, language=lang)
    open_page(page, first)
    check_state(page, server, "form", lang)

    page.get_by_role("button", name=labels["pay"], exact=True).click()
    page.wait_for_url(f"{first['next_url']}/card")
    assert page.locator(".error-summary").is_visible()
    assert page.get_by_label(labels["number"], exact=True).get_attribute("aria-invalid") == "true"
    check_state(page, server, "form-errors", lang)

    pay(page, lang, DECLINED)
    declined(page, lang, "card_declined", 2)
    check_state(page, server, "declined", lang)
    pay(page, lang, DECLINED)
    declined(page, lang, "card_declined", 1)
    pay(page, lang, DECLINED)
    at_agency(page, return_url)
    open_page(page, first)
    check_state(page, server, "failed", lang)

    in_flight = new_payment(server, return_url, language=lang)
    open_page(page, in_flight)
    pay(page, lang, TIMEOUT)
    back_on_page(page, in_flight, lang)
    assert page.locator('meta[http-equiv="refresh"]').count() == 1
    # axe counts any timed refresh as a failure of WCAG 2.2.1; the page meets it by the
    # criterion's "turn off" option, the link checked right after, which axe cannot see.
    check_state(page, server, "processing", lang, skip_rules=("meta-refresh",))
    page.get_by_role("link", name=labels["stop"], exact=True).click()
    page.wait_for_url(re.compile(r"refresh=off"))
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    check_state(page, server, "processing-paused", lang)

    paid = new_payment(server, return_url, language=lang)
    open_page(page, paid)
    pay(page, lang, GOOD)
    at_agency(page, return_url)
    open_page(page, paid)
    check_state(page, server, "succeeded", lang)
    expire(server, paid)  # its link outlives the payment's time to pay: it only says so
    open_page(page, paid)
    assert page.locator("form").count() == 0
    check_state(page, server, "link-expired", lang)

    cancelled = new_payment(server, return_url, language=lang)
    open_page(page, cancelled)
    page.get_by_role("button", name=labels["cancel"], exact=True).click()
    at_agency(page, return_url)
    open_page(page, cancelled)
    check_state(page, server, "cancelled", lang)

    expired = new_payment(server, return_url, language=lang)
    expire(server, expired)
    open_page(page, expired)
    assert page.locator("form").count() == 0
    check_state(page, server, "expired", lang)

    challenged = new_payment(server, return_url, language=lang)
    open_page(page, challenged)
    pay(page, lang, NEEDS_3DS)
    page.wait_for_url(re.compile(rf"/sandbox/3ds/[^/?]+\?lang={lang}$"))
    check_state(page, server, "challenge", lang)
    open_page(page, challenged)
    check_state(page, server, "processing-3ds", lang, skip_rules=("meta-refresh",))

    response = page.goto(f"{server.base_url}/pay/not-a-token?lang={lang}")
    assert response is not None and response.status == 404
    violations = axe_violations(page)
    assert violations == [], describe(violations)
    if server.backend == BACKENDS[0]:
        screenshots(page, "not-found")


# --------------------------------------------------------------------------- national schemes

# Each scheme's demo agency (gateway demo seed), its button, and the simulator's three buttons.
SCHEMES = {
    "knet": ("kw-moi", "KNET"),
    "benefit": ("bh-lmra", "BENEFIT"),
    "omannet": ("om-moh", "OmanNet"),
}
SIMULATOR_BUTTONS = {
    "en": {"approve": "Approve", "decline": "Decline", "cancel": "Cancel"},
    "ar": {"approve": "موافقة", "decline": "رفض", "cancel": "إلغاء"},
}


def to_scheme(page: Page, scheme: str) -> None:
    """Press the scheme's button: on to its simulated page."""
    page.get_by_role("button", name=SCHEMES[scheme][1], exact=True).click()
    page.wait_for_url(re.compile(rf"/sandbox/{scheme}/pay\?"))


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_a_payer_pays_with_the_national_scheme_and_returns(
    server: LiveGateway, payer: Page, return_url: str, scheme: str
) -> None:
    agency, _button = SCHEMES[scheme]
    api = server.api(agency)
    payment = api.create_payment(return_url=return_url, language="en")
    open_page(payer, payment)
    to_scheme(payer, scheme)
    expect(payer.get_by_role("heading", level=1)).to_contain_text(SCHEMES[scheme][1])
    payer.get_by_role("button", name="Approve", exact=True).click()
    at_agency(payer, return_url)
    paid = api.ok(f"/v1/payments/{payment['id']}")
    assert paid["status"] == "succeeded" and paid["provider"] == scheme
    assert paid["payment_method"] == {"type": scheme}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_an_arabic_payer_cancels_on_the_scheme_s_page_and_may_pay_by_card(
    server: LiveGateway, payer: Page, return_url: str, scheme: str
) -> None:
    agency, _button = SCHEMES[scheme]
    api = server.api(agency)
    payment = api.create_payment(return_url=return_url, language="ar")
    open_page(payer, payment)
    to_scheme(payer, scheme)
    payer.get_by_role("button", name=SIMULATOR_BUTTONS["ar"]["cancel"], exact=True).click()
    payer.wait_for_url(re.compile(r"/pay/[^/]+(\?.*)?$"))
    expect(payer.locator("#decline")).to_contain_text(texts.failure_reason("ar", "abandoned"))
    assert api.ok(f"/v1/payments/{payment['id']}")["status"] == "created"
    pay(payer, "ar", GOOD)
    at_agency(payer, return_url)
    assert api.ok(f"/v1/payments/{payment['id']}")["provider"] == "sandbox"


def test_a_mada_card_always_authenticates_with_3d_secure(
    server: LiveGateway, payer: Page, return_url: str
) -> None:
    api = server.api("sa-moj")
    payment = api.create_payment(return_url=return_url, language="en")
    open_page(payer, payment)
    pay(payer, "en", "4464 0400 0000 0007")  # a sandbox mada card (API.md)
    payer.wait_for_url(re.compile(r"/sandbox/3ds/[^/?]+\?lang=en$"))
    payer.get_by_role("button", name=LABELS["en"]["complete"], exact=True).click()
    at_agency(payer, return_url)
    paid = api.ok(f"/v1/payments/{payment['id']}")
    assert paid["status"] == "succeeded" and paid["provider"] == "mada"
    assert paid["payment_method"]["brand"] == "mada"


@pytest.mark.parametrize("lang", ["ar", "en"])
def test_the_scheme_pages_pass_axe_and_are_photographed(
    server: LiveGateway, inspector: Page, return_url: str, lang: str
) -> None:
    payment = server.api("kw-moi").create_payment(return_url=return_url, language=lang)
    open_page(inspector, payment)
    check_state(inspector, server, "scheme-choice", lang)
    to_scheme(inspector, "knet")
    check_state(inspector, server, "scheme-simulator", lang)
    omannet = server.api("om-moh").create_payment(return_url=return_url, language=lang)
    open_page(inspector, omannet)
    to_scheme(inspector, "omannet")
    inspector.get_by_role("button", name=SIMULATOR_BUTTONS[lang]["decline"], exact=True).click()
    inspector.wait_for_url(re.compile(r"/pay/[^/]+(\?.*)?$"))
    check_state(inspector, server, "scheme-declined", lang)


def test_no_card_number_reaches_the_server_log(server: LiveGateway) -> None:
    """Runs after the journeys above on the same server: the access log shows paths only."""
    log = server.server_log()
    assert "/pay/" in log, "the access log records the page's requests"
    for number in ALL_CARDS:
        assert number.replace(" ", "") not in log and number not in log, number
    for field in ("exp_month", "exp_year", "cvc", "card_number"):
        assert f"{field}=" not in log and f'"{field}"' not in log, field
