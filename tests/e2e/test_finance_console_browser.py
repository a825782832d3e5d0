"""The finance console in a real browser against `gateway serve`, JavaScript off: the demo
users sign in (the administrator enrolling in TOTP first), a wrong password, a lock-out, and
the pages, checked with axe-core (WCAG 2.1 A and AA) in Arabic and English and photographed at
desktop width and at 375 px."""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openpyxl
import pyotp
import pytest

from tests.e2e.browser import (
    DESKTOP,
    axe_violations,
    bound,
    describe,
    expect,
    overflows,
    screenshots,
    unavailable,
)
from tests.e2e.conftest import LiveGateway, gateway_with

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

MISSING = unavailable()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(MISSING is not None and not os.environ.get("CI"), reason=MISSING or ""),
]

BACKENDS = ("sqlite", "postgresql")
USER_LINE = re.compile(r"^  (finance|admin)\s+(\S+@\S+)\s+(\S+)\s*$")
LABELS = {
    "ar": {"email": "البريد الإلكتروني", "password": "كلمة المرور", "sign_in": "تسجيل الدخول"},
    "en": {"email": "E-mail address", "password": "Password", "sign_in": "Sign in"},
}


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveGateway]:
    with gateway_with(request.param, tmp_path_factory, "finance") as live:
        yield live


@pytest.fixture(scope="module")
def demo_users(server: LiveGateway) -> dict[str, tuple[str, str]]:
    """role -> (e-mail, password) of the demo console users, as `gateway demo seed` prints."""
    found = {}
    for line in server.cli("demo", "seed").stdout.splitlines():
        match = USER_LINE.match(line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    assert set(found) == {"finance", "admin"}, found
    return found


@pytest.fixture(scope="module")
def admin_secret(server: LiveGateway) -> dict[str, Any]:
    """The demo admin's TOTP secret and recovery codes on `server`, once a test enrolled it."""
    return {"server": server.base_url}


def _page(browser: Browser, *, javascript: bool) -> Iterator[Page]:
    context = browser.new_context(java_script_enabled=javascript, viewport=DESKTOP, locale="en-US")
    try:
        yield bound(context.new_page())
    finally:
        context.close()


@pytest.fixture
def officer(browser: Browser) -> Iterator[Page]:
    """A finance officer's browser, JavaScript off: the console must not need it."""
    yield from _page(browser, javascript=False)


@pytest.fixture
def inspector(browser: Browser) -> Iterator[Page]:
    """JavaScript on, only so that axe-core can run in the page."""
    yield from _page(browser, javascript=True)


def sign_in_form(page: Page, server: LiveGateway, email: str, password: str, lang: str) -> None:
    page.goto(f"{server.base_url}/finance/sign-in")
    page.get_by_label(LABELS[lang]["email"], exact=True).fill(email)
    page.get_by_label(LABELS[lang]["password"], exact=True).fill(password)
    page.get_by_role("button", name=LABELS[lang]["sign_in"], exact=True).click()


def sign_in_finance(page: Page, server: LiveGateway, users: dict[str, tuple[str, str]]) -> None:
    email, password = users["finance"]
    sign_in_form(page, server, email, password, "ar")
    page.wait_for_url(f"{server.base_url}/finance/")


def sign_in_admin(
    page: Page, server: LiveGateway, users: dict[str, tuple[str, str]], secret: dict[str, Any]
) -> None:
    """Sign the demo admin in: enrolling in TOTP the first time; afterwards with the code of
    the next step, once (a code is good once, and the current one was spent at enrolment),
    then with one recovery code after another."""
    email, password = users["admin"]
    sign_in_form(page, server, email, password, "ar")
    if "secret" not in secret:
        page.wait_for_url(re.compile(r".*/finance/account/second-factor$"))
        secret["secret"] = page.locator("[data-secret]").inner_text().strip()
        page.get_by_label("الرمز", exact=True).fill(pyotp.TOTP(secret["secret"]).now())
        page.get_by_role("button", name="تفعيل", exact=True).click()
        page.wait_for_url(re.compile(r".*/finance/account/recovery-codes$"))
        secret["recovery"] = page.locator("[data-recovery-code]").all_inner_texts()
        assert len(secret["recovery"]) == 10
        page.get_by_role("link", name="متابعة", exact=True).click()
    else:
        page.wait_for_url(re.compile(r".*/finance/sign-in/code$"))
        if not secret.get("next_step_used"):
            totp = pyotp.TOTP(secret["secret"])
            code = totp.at(time.time() + totp.interval)
            secret["next_step_used"] = True
        else:
            code = secret["recovery"].pop()
        page.get_by_label("الرمز", exact=True).fill(code)
        page.get_by_role("button", name="تحقّق", exact=True).click()
    page.wait_for_url(f"{server.base_url}/finance/")


def look(page: Page, name: str) -> None:
    """axe-core finds nothing, the page fits a phone, and it is photographed."""
    violations = axe_violations(page)
    assert violations == [], describe(violations)
    page.set_viewport_size({"width": 375, "height": 740})
    assert not overflows(page), f"{name} scrolls sideways at 375 px"
    page.set_viewport_size(DESKTOP)
    screenshots(page, f"finance-{name}")


def test_the_admin_enrols_in_totp_signs_out_and_signs_in_with_a_code(
    server: LiveGateway,
    officer: Page,
    demo_users: dict[str, tuple[str, str]],
    admin_secret: dict[str, Any],
) -> None:
    sign_in_admin(officer, server, demo_users, admin_secret)
    html = officer.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    officer.get_by_role("button", name="تسجيل الخروج", exact=True).click()
    officer.wait_for_url(re.compile(r".*/finance/sign-in\?notice=signed_out$"))
    expect(officer.get_by_role("status")).to_contain_text("سُجّل خروجك")
    sign_in_admin(officer, server, demo_users, admin_secret)
    expect(officer.get_by_role("heading", level=1)).to_have_text("لوحة المتابعة")


def test_a_wrong_password_is_refused_and_a_finance_officer_signs_in_in_english(
    server: LiveGateway, officer: Page, demo_users: dict[str, tuple[str, str]]
) -> None:
    email, password = demo_users["finance"]
    sign_in_form(officer, server, email, password + "x", "ar")
    expect(officer.get_by_role("alert")).to_contain_text("غير صحيحة")
    officer.get_by_role("button", name="تغيير اللغة: English").click()
    html = officer.locator("html")
    expect(html).to_have_attribute("dir", "ltr")
    sign_in_form(officer, server, email, password, "en")
    officer.wait_for_url(f"{server.base_url}/finance/")
    assert officer.locator("html").get_attribute("dir") == "rtl"  # the user's own language
    officer.get_by_role("button", name="تغيير اللغة: English").click()
    expect(officer.locator("html")).to_have_attribute("lang", "en")
    expect(officer.get_by_role("heading", level=1)).to_have_text("Dashboard")
    officer.get_by_role("button", name="Change language: العربية").click()  # back, for others
    expect(officer.locator("html")).to_have_attribute("lang", "ar")


def test_repeated_failures_lock_the_account(server: LiveGateway, officer: Page) -> None:
    for _ in range(5):
        sign_in_form(officer, server, "locked@ministry.gov.om", "not the password", "ar")
        expect(officer.get_by_role("alert")).to_contain_text("غير صحيحة")
    sign_in_form(officer, server, "locked@ministry.gov.om", "not the password", "ar")
    expect(officer.get_by_role("alert")).to_contain_text("محاولات كثيرة")


def test_a_finance_officer_cannot_reach_the_admin_pages(
    server: LiveGateway, officer: Page, demo_users: dict[str, tuple[str, str]]
) -> None:
    sign_in_finance(officer, server, demo_users)
    assert officer.get_by_role("link", name="الإدارة").count() == 0
    answer = officer.goto(f"{server.base_url}/finance/admin")
    assert answer is not None and answer.status == 403
    expect(officer.get_by_role("main")).to_contain_text("للمسؤولين فقط")


@pytest.mark.parametrize("lang", ["ar", "en"])
def test_the_sign_in_pages_pass_axe_and_fit_a_phone(
    server: LiveGateway, inspector: Page, lang: str
) -> None:
    inspector.context.add_cookies([{"name": "finance_lang", "value": lang, "url": server.base_url}])
    inspector.goto(f"{server.base_url}/finance/sign-in")
    look(inspector, f"sign-in-{lang}")
    sign_in_form(inspector, server, "nobody@ministry.gov.om", "wrong password", lang)
    look(inspector, f"sign-in-failed-{lang}")


def nav(page: Page) -> Locator:
    """The console's navigation bar."""
    return page.get_by_role("navigation", name=re.compile("Console sections|أقسام"))


def use_language(page: Page, server: LiveGateway, lang: str) -> None:
    """Switch the signed-in user's console language (remembered for the user)."""
    page.goto(f"{server.base_url}/finance/account")
    if page.locator("html").get_attribute("lang") != lang:
        target = "English" if lang == "en" else "العربية"
        page.locator("form.inline-form button[lang]").filter(has_text=target).click()
        expect(page.locator("html")).to_have_attribute("lang", lang)


def paid_today(server: LiveGateway, amounts: list[int]) -> list[dict[str, Any]]:
    agency = server.api("om-moh")
    made = []
    for amount in amounts:
        payment = agency.create_payment(amount=amount)
        made.append(agency.confirm(payment["id"], "4242424242424242"))
    return made


def listed_today(server: LiveGateway, agency: str) -> list[dict[str, Any]]:
    """Every payment of `agency` the API lists to a finance key, created today (UTC)."""
    finance = server.api("finance")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    found: list[dict[str, Any]] = []
    after = None
    for _ in range(50):
        params = {"limit": 100, **({"starting_after": after} if after else {})}
        page = finance.ok("/v1/payments", params=params)
        found.extend(page["data"])
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    return [p for p in found if p["agency"] == agency and str(p["created_at"]).startswith(today)]


def test_the_dashboard_shows_what_the_api_shows(
    server: LiveGateway, officer: Page, demo_users: dict[str, tuple[str, str]]
) -> None:
    paid_today(server, [12500, 2750])
    sign_in_finance(officer, server, demo_users)
    listed = listed_today(server, "om-moh")
    captured = sum(p["amount_captured"] for p in listed if p["status"] == "succeeded")
    officer.reload()
    count = officer.locator('[data-figure="count:today:agency:om-moh:OMR"]')
    value = officer.locator('[data-figure="value:today:agency:om-moh:OMR"]')
    assert count.get_attribute("data-amount") == str(len(listed))
    assert value.get_attribute("data-amount") == str(captured)
    assert "ريال عماني" in value.inner_text()
    assert officer.locator(".chart svg").count() >= 2  # drawn on the server: no script here


def test_an_officer_imports_a_settlement_file_resolves_a_break_and_downloads_the_report(
    server: LiveGateway,
    officer: Page,
    demo_users: dict[str, tuple[str, str]],
    tmp_path: Path,
) -> None:
    paid = paid_today(server, [5000, 6000, 7000])
    today = dt.datetime.now(dt.UTC).date().isoformat()
    exported = tmp_path / "sandbox.csv"
    server.cli("settlements", "export-sandbox", "--date", today, "-o", str(exported))
    rows = list(csv.reader(exported.read_text(encoding="utf-8").splitlines()))
    header, lines = rows[0], rows[1:]
    reference = header.index("provider_reference")
    tampered = next(r for r in lines if r[reference] == paid[0]["provider_reference"])
    tampered[header.index("gross")] = "4.000"  # the acquirer settled 4.000 of 5.000
    fee = Decimal(tampered[header.index("fee")])
    tampered[header.index("net")] = f"{Decimal('4.000') - fee:.3f}"
    upload = tmp_path / f"sandbox-{today}.csv"
    with upload.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, *lines])

    sign_in_finance(officer, server, demo_users)
    use_language(officer, server, "en")
    nav(officer).get_by_role("link", name="Settlements", exact=True).click()
    officer.get_by_label("Acquirer", exact=True).select_option("sandbox")
    officer.get_by_label("Settlement file", exact=True).set_input_files(str(upload))
    officer.get_by_role("button", name="Import", exact=True).click()
    officer.wait_for_url(re.compile(r".*/finance/settlements/stl_\w+(\?.*)?$"))
    expect(officer.locator("main")).to_contain_text("Amount mismatch")

    nav(officer).get_by_role("link", name="Reconciliation", exact=True).click()
    officer.get_by_label("Acquirer", exact=True).select_option("sandbox")
    officer.get_by_label("From", exact=True).fill(today)
    officer.get_by_label("To", exact=True).fill(today)
    officer.get_by_role("button", name="Show", exact=True).click()
    breaks = officer.locator("form.settlement-resolve")
    before = breaks.count()
    assert before >= 1
    form = officer.locator("tr", has_text=paid[0]["id"]).locator("form.settlement-resolve")
    form.get_by_label("Resolution note").fill(
        "Short-paid by the acquirer; claimed back on ticket 4417."
    )
    form.get_by_role("button", name="Mark resolved").click()
    expect(officer.locator("main")).to_contain_text("The break is marked resolved")
    expect(officer.locator("main")).to_contain_text("ticket 4417")

    with officer.expect_download() as got_csv:
        officer.get_by_role("link", name="Download CSV").click()
    report = list(csv.DictReader(Path(got_csv.value.path()).read_text("utf-8-sig").splitlines()))
    mine = {
        row["payment_id"]: row for row in report if row["payment_id"] in {p["id"] for p in paid}
    }
    assert mine[paid[0]["id"]]["status"] == "amount_mismatch"
    assert mine[paid[1]["id"]]["status"] == "matched"
    with officer.expect_download() as got_xlsx:
        officer.get_by_role("link", name="Download XLSX").click()
    saved = tmp_path / got_xlsx.value.suggested_filename
    assert saved.suffix == ".xlsx"
    got_xlsx.value.save_as(saved)
    workbook = openpyxl.load_workbook(saved, read_only=True)
    assert {"Summary", "Items"} <= set(workbook.sheetnames)
    items = [[str(cell) for cell in row] for row in workbook["Items"].iter_rows(values_only=True)]
    assert any(paid[0]["id"] in row and "amount_mismatch" in row for row in items)
    use_language(officer, server, "ar")


def test_an_admin_creates_a_user_and_revokes_a_key_and_the_audit_log_says_so(
    server: LiveGateway,
    officer: Page,
    demo_users: dict[str, tuple[str, str]],
    admin_secret: dict[str, Any],
) -> None:
    issued = server.cli("keys", "create", "--agency", "om-moh").stdout
    key_id = re.search(r"issued (key_\w+)", issued)
    assert key_id is not None
    sign_in_admin(officer, server, demo_users, admin_secret)
    use_language(officer, server, "en")
    officer.goto(f"{server.base_url}/finance/admin/users")
    new_email = f"officer-{time.time_ns() % 10**9}@mof.gov.om"
    officer.get_by_label("E-mail address", exact=True).fill(new_email)
    officer.get_by_label("Role", exact=True).select_option("finance")
    officer.get_by_label("Initial password", exact=True).fill("a long first password")
    officer.get_by_role("button", name="Create user", exact=True).click()
    expect(officer.locator("main")).to_contain_text(new_email)

    officer.goto(f"{server.base_url}/finance/admin/keys")
    officer.get_by_role("button", name=f"Revoke key {key_id.group(1)}").click()
    secret = issued.strip().splitlines()[-1]
    assert server.with_key(secret).get("/v1/payments").status_code == 401

    nav(officer).get_by_role("link", name="Audit log", exact=True).click()
    log = officer.locator("main table")
    expect(log).to_contain_text("User created")
    expect(log).to_contain_text(new_email)
    expect(log).to_contain_text("API key revoked")
    expect(log).to_contain_text(key_id.group(1))
    use_language(officer, server, "ar")


# Every page of the console, by its path, as an administrator sees it.
TOUR = (
    ("dashboard", "/finance/"),
    ("payments", "/finance/payments"),
    ("settlements", "/finance/settlements"),
    ("reconciliation", "/finance/reconciliation"),
    ("ledger", "/finance/ledger"),
    ("ledger-verify", "/finance/ledger/verify"),
    ("audit", "/finance/audit"),
    ("admin", "/finance/admin"),
    ("admin-users", "/finance/admin/users"),
    ("admin-agencies", "/finance/admin/agencies"),
    ("admin-keys", "/finance/admin/keys"),
    ("account", "/finance/account"),
)


def test_every_page_passes_axe_fits_a_phone_and_is_photographed_in_both_languages(
    server: LiveGateway,
    inspector: Page,
    demo_users: dict[str, tuple[str, str]],
    admin_secret: dict[str, Any],
) -> None:
    paid = paid_today(server, [9750])
    sign_in_admin(inspector, server, demo_users, admin_secret)
    pages = [
        *TOUR,
        ("payment", f"/finance/payments/{paid[0]['id']}"),
        (
            "reconciliation-period",
            f"/finance/reconciliation?provider=sandbox&from={dt.date.today()}&to={dt.date.today()}",
        ),
    ]
    for lang in ("ar", "en"):
        use_language(inspector, server, lang)
        for name, path in pages:
            answer = inspector.goto(f"{server.base_url}{path}")
            assert answer is not None and answer.status == 200, (path, answer and answer.status)
            assert inspector.locator("html").get_attribute("dir") == (
                "rtl" if lang == "ar" else "ltr"
            )
            look(inspector, f"{name}-{lang}")
        inspector.goto(f"{server.base_url}/finance/ledger")
        inspector.locator('a[href^="/finance/ledger/accounts"]').first.click()
        look(inspector, f"ledger-account-{lang}")
    use_language(inspector, server, "ar")
