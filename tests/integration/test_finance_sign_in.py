"""Signing in to the finance console over HTTP: password and second factor, the same answer
for unknown accounts, lock-outs, CSRF, sessions that end, and sign-out, on both databases."""

from __future__ import annotations

import datetime as dt
import re
import statistics
import time
from collections.abc import Callable, Iterator

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from payments import clock
from payments.finance import accounts
from payments.finance.models import AuditRecord, ConsoleUser
from payments.gateway import Gateway
from tests.integration.finance_support import PASSWORD, csrf, make_user, sign_in

SIGN_IN = "/finance/sign-in"


def _post_sign_in(client: FlaskClient, email: str, password: str) -> tuple[int, str]:
    answer = client.post(
        SIGN_IN, data={"email": email, "password": password, "csrf_token": csrf(client, SIGN_IN)}
    )
    return answer.status_code, answer.get_data(as_text=True)


def _user_id(gw: Gateway, email: str) -> str:
    found = accounts.user_id_of(gw, email)
    assert found is not None
    return found


def _actions(gw: Gateway) -> list[tuple[str, str]]:
    with gw.db.read() as session:
        rows = session.execute(
            select(AuditRecord.actor, AuditRecord.action).order_by(AuditRecord.id)
        ).all()
    return [(actor, action) for actor, action in rows]


@pytest.fixture
def moved_clock() -> Iterator[list[dt.timedelta]]:
    """Time as the gateway reads it, moved forward by the list's one element."""
    shift = [dt.timedelta()]
    clock.set_clock(lambda: dt.datetime.now(dt.UTC) + shift[0])
    yield shift
    clock.set_clock(None)


def test_a_finance_user_signs_in_with_the_password_and_sees_the_console(
    app: Flask, gw: Gateway, client: FlaskClient
) -> None:
    email = make_user(gw)
    assert client.get("/finance/").headers["Location"].startswith("/finance/sign-in?next=")
    status, _ = _post_sign_in(client, email.upper(), PASSWORD)  # e-mail in any case
    assert status == 303
    page = client.get("/finance/")
    assert page.status_code == 200
    assert 'dir="rtl"' in page.get_data(as_text=True)  # Arabic first
    user_id = _user_id(gw, email)
    assert (user_id, "sign_in") in _actions(gw)


def test_a_wrong_password_and_an_unknown_account_get_the_same_answer(
    gw: Gateway, client: FlaskClient
) -> None:
    email = make_user(gw)
    wrong_status, wrong_page = _post_sign_in(client, email, "not the password at all")
    unknown_status, unknown_page = _post_sign_in(client, "nobody@ministry.gov.om", PASSWORD)
    assert wrong_status == unknown_status == 401
    message = "البريد الإلكتروني أو كلمة المرور غير صحيحة."
    assert message in wrong_page and message in unknown_page
    strip = re.compile(r'value="[^"]*"')  # the e-mail typed and the CSRF token differ
    assert strip.sub("", wrong_page) == strip.sub("", unknown_page)
    assert client.get("/finance/").status_code == 302
    assert (email, "sign_in_failed") in _actions(gw)
    assert ("nobody@ministry.gov.om", "sign_in_failed") in _actions(gw)


def test_repeated_failures_lock_the_account_known_or_not(gw: Gateway, client: FlaskClient) -> None:
    email = make_user(gw)
    for _ in range(accounts.FAILURES_PER_ACCOUNT):
        assert _post_sign_in(client, email, "not the password at all")[0] == 401
    status, page = _post_sign_in(client, email, PASSWORD)  # even the right password now
    assert status == 429
    assert "أعد المحاولة بعد" in page
    assert client.get("/finance/").status_code == 302
    for _ in range(5):
        _post_sign_in(client, "ghost@ministry.gov.om", "not the password at all")
    assert _post_sign_in(client, "ghost@ministry.gov.om", PASSWORD)[0] == 429


def test_an_admin_enrols_in_totp_before_anything_else_then_needs_a_code(
    app: Flask, gw: Gateway
) -> None:
    email = make_user(gw, "admin")
    client = app.test_client()
    answer = client.post(
        SIGN_IN, data={"email": email, "password": PASSWORD, "csrf_token": csrf(client, SIGN_IN)}
    )
    assert answer.headers["Location"].endswith("/finance/account/second-factor")
    assert client.get("/finance/").headers["Location"].endswith("/finance/account/second-factor")
    page = client.get("/finance/account/second-factor").get_data(as_text=True)
    assert "<svg" in page and "<script" not in page  # the QR code, drawn on the server
    secret = re.search(r"data-secret>([A-Z2-7]+)<", page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert secret is not None and token is not None  # each visit offers a new secret: keep these
    wrong = client.post(
        "/finance/account/second-factor", data={"code": "000000", "csrf_token": token.group(1)}
    )
    assert wrong.status_code == 422
    totp = pyotp.TOTP(secret.group(1))
    enrolled_at = time.time()
    enrolled = client.post(
        "/finance/account/second-factor",
        data={"code": totp.at(enrolled_at), "csrf_token": token.group(1)},
    )
    assert enrolled.status_code == 303
    codes_page = client.get("/finance/account/recovery-codes").get_data(as_text=True)
    codes = re.findall(r"data-recovery-code>([^<]+)<", codes_page)
    assert len(codes) == accounts.RECOVERY_CODES
    again = client.get("/finance/account/recovery-codes")  # shown once
    assert "data-recovery-code" not in again.get_data(as_text=True)
    with gw.db.read() as session:
        user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == email))
        assert user is not None and user.totp_secret is not None
        stored = " ".join([user.totp_secret, *(user.recovery_codes or [])])
    assert secret.group(1) not in stored and not any(c in stored for c in codes)

    # The next sign-in asks for a code: a wrong one, the one just used, then a recovery code.
    other = app.test_client()
    _post_sign_in(other, email, PASSWORD)
    assert other.get("/finance/").headers["Location"].startswith("/finance/sign-in")
    code_token = csrf(other, "/finance/sign-in/code")
    for bad in ("123456", totp.at(enrolled_at)):  # the code given at enrolment is spent
        answer = other.post("/finance/sign-in/code", data={"code": bad, "csrf_token": code_token})
        assert answer.status_code == 401
    answer = other.post("/finance/sign-in/code", data={"code": codes[0], "csrf_token": code_token})
    assert answer.status_code == 303
    assert other.get("/finance/").status_code == 200
    third = app.test_client()
    _post_sign_in(third, email, PASSWORD)
    token3 = csrf(third, "/finance/sign-in/code")
    spent = third.post("/finance/sign-in/code", data={"code": codes[0], "csrf_token": token3})
    assert spent.status_code == 401  # a recovery code works once


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    gw: Gateway, client: FlaskClient
) -> None:
    email = make_user(gw)
    before = _actions(gw)
    answer = client.post(SIGN_IN, data={"email": email, "password": PASSWORD})
    assert answer.status_code == 400
    forged = client.post(SIGN_IN, data={"email": email, "password": PASSWORD, "csrf_token": "x"})
    assert forged.status_code == 400
    assert _actions(gw) == before
    assert client.get("/finance/").status_code == 302
    sign_in(client, email)
    out = client.post("/finance/sign-out", data={})
    assert out.status_code == 400
    assert client.get("/finance/").status_code == 200  # still signed in


@pytest.mark.parametrize(
    "after", [dt.timedelta(minutes=16), dt.timedelta(hours=8, minutes=1)], ids=["idle", "8h"]
)
def test_an_expired_session_is_sent_to_sign_in(
    gw: Gateway, client: FlaskClient, moved_clock: list[dt.timedelta], after: dt.timedelta
) -> None:
    sign_in(client, make_user(gw))
    if after > dt.timedelta(hours=1):  # busy all along: one page every ten minutes
        for step in range(1, 48):  # up to 7 h 50 min: each page within the 8 hours
            moved_clock[0] = dt.timedelta(minutes=10 * step)
            if moved_clock[0] >= after:
                break
            assert client.get("/finance/account").status_code == 200
    moved_clock[0] = after
    answer = client.get("/finance/account")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/finance/sign-in")


def test_sign_out_ends_every_copy_of_the_session(app: Flask, gw: Gateway) -> None:
    client = app.test_client()
    sign_in(client, make_user(gw))
    cookie = client.get_cookie("session")
    assert cookie is not None
    copy = app.test_client()
    copy.set_cookie("session", cookie.value)
    assert copy.get("/finance/").status_code == 200
    out = client.post("/finance/sign-out", data={"csrf_token": csrf(client, "/finance/account")})
    assert out.status_code == 303
    assert client.get("/finance/").status_code == 302
    assert copy.get("/finance/").status_code == 302  # the copied cookie died with it


def test_a_disabled_user_cannot_sign_in(gw: Gateway, client: FlaskClient) -> None:
    email = make_user(gw)
    accounts.disable_user(gw, _user_id(gw, email), actor="test", address=None)
    assert _post_sign_in(client, email, PASSWORD)[0] == 401


def test_signing_in_never_sends_the_browser_off_the_console(
    gw: Gateway, client: FlaskClient
) -> None:
    email = make_user(gw)
    token = csrf(client, SIGN_IN)
    answer = client.post(
        SIGN_IN,
        data={
            "email": email,
            "password": PASSWORD,
            "next": "//evil.example/finance",
            "csrf_token": token,
        },
    )
    assert answer.headers["Location"] == "/finance/"


def test_console_pages_carry_the_security_headers(client: FlaskClient) -> None:
    answer = client.get(SIGN_IN)
    headers = answer.headers
    assert "script-src" not in headers["Content-Security-Policy"]
    assert "form-action 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    cookie = answer.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # env=test


def test_sign_in_takes_the_same_time_for_unknown_and_known_accounts(
    gw: Gateway, client: FlaskClient, report_counts: Callable[[str], None]
) -> None:
    """Measured and printed; asserted only against a gross difference (a skipped hash)."""
    known = [make_user(gw) for _ in range(2)]
    timings: dict[str, list[float]] = {"unknown": [], "known": []}
    for n in range(6):
        for kind, email in (
            ("unknown", f"nobody{n}@ministry.gov.om"),
            ("known", known[n % 2]),
        ):
            token = csrf(client, SIGN_IN)
            started = time.perf_counter()
            answer = client.post(
                SIGN_IN, data={"email": email, "password": "wrong password!", "csrf_token": token}
            )
            timings[kind].append(time.perf_counter() - started)
            assert answer.status_code == 401
    unknown, known_s = statistics.median(timings["unknown"]), statistics.median(timings["known"])
    report_counts(
        f"sign-in with a wrong password: unknown account {unknown * 1000:.1f} ms, "
        f"known account {known_s * 1000:.1f} ms (medians of 6)"
    )
    assert 0.5 < unknown / known_s < 2.0
