"""The hosted payment page through the Flask test client, on both databases: tokens, headers,
CSRF, the card form's messages, declines, cancel, 3-D Secure through the sandbox's simulator,
the pages of finished payments, and card data kept out of pages, logs and the session."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from payments import clock
from payments.api.app import create_app
from payments.checkout import texts
from payments.gateway import Gateway, build_gateway
from payments.links import make_token
from tests.conftest import PAYMENT, auth, count_rows, make_settings, new_agency

PUBLIC = "http://gateway.test"
GOOD = "4242424242424242"
DECLINED = "4000000000000002"
NO_FUNDS = "4000000000009995"
EXPIRED_CARD = "4000000000000069"
TIMEOUT = "4000000000005126"
NEEDS_3DS = "4000000000003220"
CVC = "737"
NAME = "Fatima Al Balushi"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http: https:; "
    "frame-ancestors 'none'; base-uri 'none'"
)
EN_LABELS = ("Card number", "Expiry month", "Expiry year", "Security code", "Name on card")
AR_LABELS = ("رقم البطاقة", "شهر الانتهاء", "سنة الانتهاء", "رمز الأمان", "الاسم على البطاقة")


# --------------------------------------------------------------------------- helpers


def create(client: FlaskClient, key: str, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/payments", json={**PAYMENT, **overrides}, headers=auth(key))
    assert response.status_code == 201, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def payment_of(client: FlaskClient, key: str, payment_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/payments/{payment_id}", headers=auth(key))
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def local(url: str) -> str:
    """The path (and query) of one of the gateway's own addresses."""
    assert url.startswith(PUBLIC + "/") or url.startswith("/"), url
    return url.removeprefix(PUBLIC)


def page_path(payment: dict[str, Any]) -> str:
    path = local(payment["next_url"])
    assert re.fullmatch(r"/pay/[A-Za-z0-9_.-]+", path), path
    return path


def text_of(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def csrf_of(body: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', body)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def open_page(client: FlaskClient, path: str, **query: str) -> str:
    response = client.get(path, query_string=query)
    assert response.status_code == 200, text_of(response)[:500]
    assert response.mimetype == "text/html"
    return text_of(response)


def card_form(number: str, **fields: str) -> dict[str, str]:
    return {
        "number": number,
        "exp_month": "12",
        "exp_year": "2034",
        "cvc": CVC,
        "name": NAME,
        **fields,
    }


def pay(client: FlaskClient, path: str, number: str, **fields: str) -> TestResponse:
    """Open the page (for its CSRF token) and send the card form as the browser would."""
    body = open_page(client, path)
    lang = re.search(r'name="lang" value="(ar|en)"', body)
    assert lang, "the form carries the page's language"
    form = {"csrf_token": csrf_of(body), "lang": lang.group(1), **card_form(number, **fields)}
    return client.post(f"{path}/card", data=form)


def see_other(response: TestResponse) -> str:
    assert response.status_code == 303, (response.status_code, text_of(response)[:500])
    return response.headers["Location"]


def check_page_headers(response: TestResponse) -> None:
    headers = response.headers
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


def check_not_found(response: TestResponse) -> None:
    assert response.status_code == 404
    assert response.mimetype == "text/html", response.mimetype
    body = text_of(response)
    assert "Page not found" in body and "الصفحة غير موجودة" in body
    assert '"error"' not in body
    check_page_headers(response)


def visible(body: str) -> str:
    """The page's text, tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


# --------------------------------------------------------------------------- tokens and headers


def test_a_forged_altered_or_foreign_token_is_a_plain_404_page(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = create(client, agency_key)
    path = page_path(payment)
    token = path.rsplit("/", 1)[1]
    # A character of the signature (the last one may only carry padding bits).
    cut = token.rindex(".") + 1
    altered = token[:cut] + ("A" if token[cut] != "A" else "B") + token[cut + 1 :]
    foreign = make_token("another-gateway-secret-" + "x" * 32, payment["id"])
    nobody = make_token(gw.settings.secret_key, "pay_" + "0" * 26)
    for bad in ("nonsense", altered, foreign, nobody, payment["id"], "x" * 300):
        check_not_found(client.get(f"/pay/{bad}"))
        check_not_found(client.post(f"/pay/{bad}/card", data=card_form(GOOD)))
        check_not_found(client.post(f"/pay/{bad}/cancel"))
        check_not_found(client.get(f"/pay/{bad}/return"))
    check_not_found(client.get("/sandbox/3ds/ch_unknown"))
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"


def test_the_page_sends_its_security_headers_and_a_strict_session_cookie(
    client: FlaskClient, agency_key: str
) -> None:
    path = page_path(create(client, agency_key))
    response = client.get(path)
    check_page_headers(response)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # outside development (these tests run as GATEWAY_ENV=test)
    body = text_of(response)
    assert "<script" not in body and " on" + "click=" not in body and "style=" not in body
    stylesheet = client.get("/pay/static/checkout.css")
    assert stylesheet.status_code == 200 and stylesheet.mimetype == "text/css"
    check_page_headers(stylesheet)
    stylesheet.close()


def test_only_development_sends_the_session_cookie_without_secure(
    tmp_path: Path, database_url: str
) -> None:
    """`make run` serves plain http on a laptop: only there may the cookie travel without
    `Secure` (browsers keep a `Secure` cookie from http://127.0.0.1, not from other hosts)."""
    gw = build_gateway(make_settings(database_url, tmp_path, env="development"))
    try:
        client = create_app(gw=gw).test_client()
        page = client.get(page_path(create(client, new_agency(gw))))
        assert page.status_code == 200
        cookie = page.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    finally:
        gw.db.dispose()


def test_production_has_no_simulator_and_secure_cookies(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(database_url, tmp_path, env="production")
    gw = build_gateway(settings)
    try:
        app = create_app(gw=gw)
        client = app.test_client()
        key = new_agency(gw)
        response = client.get("/sandbox/3ds/ch_anything")
        check_not_found_csp = response.headers["Content-Security-Policy"]
        assert response.status_code == 404 and response.mimetype == "text/html"
        assert "form-action 'self' https:;" in check_not_found_csp
        assert "http:" not in check_not_found_csp
        page = client.get(page_path(create(client, key)))
        assert page.status_code == 200
        assert "Secure" in page.headers["Set-Cookie"]
    finally:
        gw.db.dispose()


# --------------------------------------------------------------------------- what the page shows


def test_the_arabic_page_is_right_to_left_with_arabic_words_and_currency(
    client: FlaskClient, agency_key: str
) -> None:
    path = page_path(create(client, agency_key))  # language defaults to Arabic
    body = open_page(client, path)
    assert '<html lang="ar" dir="rtl">' in body
    words = visible(body)
    for label in (*AR_LABELS, "ادفع", "إلغاء والعودة", "جهة"):
        assert label in words, label
    assert "12.500 ريال عماني" in " ".join(words.split())
    assert "Medical certificate fee" in words
    assert 'hreflang="en"' in body and ">English<" in body
    for label in EN_LABELS:
        assert label not in words

    english = open_page(client, path, lang="en")
    assert '<html lang="en" dir="ltr">' in english
    assert "12.500 OMR" in " ".join(visible(english).split())
    assert 'name="lang" value="en"' in english  # the choice travels with the forms
    ignored = open_page(client, path, lang="fr")
    assert '<html lang="ar" dir="rtl">' in ignored


def test_the_english_page_shows_labels_autocomplete_and_the_currency_decimals(
    client: FlaskClient, gw: Gateway
) -> None:
    key = new_agency(gw, "sa-moj", "SAR", "SA")
    path = page_path(create(client, key, amount=15000, currency="SAR", language="en"))
    body = open_page(client, path)
    assert '<html lang="en" dir="ltr">' in body
    words = " ".join(visible(body).split())
    assert "150.00 SAR" in words and "Agency sa-moj" in words
    for name, label, autocomplete in (
        ("number", "Card number", "cc-number"),
        ("exp_month", "Expiry month", "cc-exp-month"),
        ("exp_year", "Expiry year", "cc-exp-year"),
        ("cvc", "Security code", "cc-csc"),
        ("name", "Name on card", "cc-name"),
    ):
        assert f'<label class="label" for="{name}">{label}</label>' in body
        tag = re.search(rf'<input [^>]*id="{name}"[^>]*>', body)
        assert tag, name
        assert f'autocomplete="{autocomplete}"' in tag.group(0)
        assert ('inputmode="numeric"' in tag.group(0)) == (name != "name")
    assert re.search(r'<button class="button" type="submit">Pay</button>', body)
    assert "Cancel and return" in words
    assert 'method="post"' in body and "novalidate" in body
    arabic = open_page(client, path, lang="ar")
    assert "150.00 ريال سعودي" in " ".join(visible(arabic).split())


# --------------------------------------------------------------------------- CSRF


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = create(client, agency_key)
    path = page_path(payment)
    open_page(client, path)  # the session now holds a CSRF secret
    before = count_rows(gw)
    for data in (card_form(GOOD), {**card_form(GOOD), "csrf_token": "forged"}):
        refused = client.post(f"{path}/card", data=data)
        assert refused.status_code == 400 and refused.mimetype == "text/html"
        assert "This form has expired" in text_of(refused)
        check_page_headers(refused)
    refused = client.post(f"{path}/cancel", data={"lang": "en"})
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    # A token from another payer's session is refused too.
    stranger = client.application.test_client()
    token = csrf_of(open_page(client, path))
    assert stranger.post(f"{path}/cancel", data={"csrf_token": token}).status_code == 400
    assert count_rows(gw) == before
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"


def test_the_api_takes_no_csrf_token(client: FlaskClient, agency_key: str) -> None:
    payment = create(client, agency_key)
    card = {"number": GOOD, "exp_month": 12, "exp_year": 2034, "cvc": CVC}
    confirmed = client.post(
        f"/v1/payments/{payment['id']}/confirm",
        json={"payment_method": {"type": "card", "card": card}},
        headers=auth(agency_key),
    )
    assert confirmed.status_code == 200 and confirmed.json is not None
    assert confirmed.json["status"] == "succeeded"


def test_only_the_pages_open_the_session_cookie(client: FlaskClient) -> None:
    """The API is stateless: its requests get Flask's null session, the pages a cookie one."""
    app = client.application
    for path, opened in (("/v1/payments", False), ("/pay/some-token", True)):
        with app.test_request_context(path):
            session = app.session_interface.open_session(app, request)
            assert (session is not None) is opened, path


# --------------------------------------------------------------------------- the card form


def test_mistakes_are_shown_beside_their_fields_keeping_all_but_number_and_code(
    client: FlaskClient, agency_key: str
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    bad_number = "4242424242424241"
    response = pay(client, path, bad_number, exp_month="13", exp_year="20x9", cvc="12")
    assert response.status_code == 200
    body = text_of(response)
    check_page_headers(response)
    assert "<title>Error: " in body
    assert "There is a problem" in body
    for message in (
        "The card number is not valid",
        "Enter the expiry month as a number from 1 to 12",
        "Enter the expiry year as 4 digits",
        "Enter the 3 or 4 digit security code",
    ):
        assert message in body, message
    for field in ("number", "exp_month", "exp_year", "cvc"):
        tag = re.search(rf'<input [^>]*id="{field}"[^>]*>', body)
        assert tag and 'aria-invalid="true"' in tag.group(0), field
        assert f"{field}-error" in tag.group(0)  # aria-describedby names the message
        assert f'href="#{field}"' in body  # the summary links to the field
    assert 'value="13"' in body and 'value="20x9"' in body
    assert f'value="{NAME}"' in body
    assert bad_number not in body and 'value="12"' not in body
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"

    missing = pay(client, path, "", exp_month="", exp_year="", cvc="", name="")
    body = text_of(missing)
    for message in (
        "Enter the card number",
        "Enter the expiry month",
        "Enter the expiry year",
        "Enter the security code",
        "Enter the name as it is written on the card",
    ):
        assert message in body, message

    past = pay(client, path, GOOD, exp_month="1", exp_year="2020")
    body = text_of(past)
    assert "The expiry date is in the past" in body
    assert GOOD not in body and f'value="{CVC}"' not in body
    assert re.search(r'<input [^>]*id="exp_month"[^>]*aria-invalid="true"', body)

    arabic = pay(client, path, "1234", lang="ar", name="")
    body = text_of(arabic)
    assert '<html lang="ar" dir="rtl">' in body
    assert "رقم البطاقة غير صحيح" in body and "أدخل الاسم كما هو مكتوب على البطاقة" in body


def test_arabic_digits_and_spaces_are_read_as_a_card(client: FlaskClient, agency_key: str) -> None:
    payment = create(client, agency_key)
    path = page_path(payment)
    arabic_digits = "٤٢٤٢ ٤٢٤٢ ٤٢٤٢ ٤٢٤٢"
    done = pay(client, path, arabic_digits, exp_month="١٢", exp_year="٢٠٣٤", cvc="٧٣٧")
    assert see_other(done) == PAYMENT["return_url"]
    paid = payment_of(client, agency_key, payment["id"])
    assert paid["status"] == "succeeded"
    assert paid["payment_method"]["last4"] == "4242"


# --------------------------------------------------------------------------- outcomes


def test_a_good_card_goes_back_to_the_return_url_and_the_page_shows_the_outcome(
    client: FlaskClient, agency_key: str
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    token = csrf_of(open_page(client, path))
    assert see_other(pay(client, path, GOOD)) == PAYMENT["return_url"]
    assert payment_of(client, agency_key, payment["id"])["status"] == "succeeded"
    body = open_page(client, path)
    assert "Payment received" in body and 'name="number"' not in body
    assert f'href="{PAYMENT["return_url"]}"' in body
    # A second submission (the back button, a double click) pays nothing: back to the page.
    again = client.post(f"{path}/card", data={"csrf_token": token, **card_form(GOOD)})
    assert local(see_other(again)) == path
    assert payment_of(client, agency_key, payment["id"])["amount_captured"] == 12500


def test_two_declines_then_a_good_card_on_the_same_payment(
    client: FlaskClient, agency_key: str
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    assert local(see_other(pay(client, path, DECLINED))) == f"{path}?lang=en"
    body = open_page(client, path, lang="en")
    assert "Your card was not accepted" in body
    assert "Your bank declined the card" in body and "2 tries left." in body
    assert 'name="number"' in body
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"
    see_other(pay(client, path, NO_FUNDS))
    body = open_page(client, path, lang="ar")
    assert "لا يوجد رصيد كافٍ" in body and "بقيت محاولة واحدة." in body
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"
    assert see_other(pay(client, path, GOOD)) == PAYMENT["return_url"]
    assert payment_of(client, agency_key, payment["id"])["status"] == "succeeded"


def test_the_third_decline_fails_the_payment_with_its_code(
    client: FlaskClient, agency_key: str
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    see_other(pay(client, path, DECLINED))
    see_other(pay(client, path, NO_FUNDS))
    assert see_other(pay(client, path, EXPIRED_CARD)) == PAYMENT["return_url"]
    failed = payment_of(client, agency_key, payment["id"])
    assert failed["status"] == "failed"
    assert failed["failure"]["code"] == "expired_card"
    body = open_page(client, path)
    assert "Payment failed" in body and "Your bank says the card has expired." in body
    assert f'href="{PAYMENT["return_url"]}"' in body and 'name="number"' not in body


def test_cancel_and_return(client: FlaskClient, agency_key: str) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    token = csrf_of(open_page(client, path))
    cancelled = client.post(f"{path}/cancel", data={"csrf_token": token, "lang": "en"})
    assert see_other(cancelled) == PAYMENT["return_url"]
    assert payment_of(client, agency_key, payment["id"])["status"] == "cancelled"
    body = open_page(client, path)
    assert "Payment cancelled" in body and f'href="{PAYMENT["return_url"]}"' in body
    again = client.post(f"{path}/cancel", data={"csrf_token": token, "lang": "en"})
    assert local(see_other(again)) == f"{path}?lang=en"
    assert local(see_other(client.get(f"{path}/cancel"))) == path


def test_an_expired_payment_says_so_and_takes_no_card(client: FlaskClient, agency_key: str) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    token = csrf_of(open_page(client, path))
    later = clock.now() + dt.timedelta(hours=3)
    clock.set_clock(lambda: later)
    body = open_page(client, path)
    assert "This payment has expired" in body and 'name="number"' not in body
    refused = client.post(f"{path}/card", data={"csrf_token": token, **card_form(GOOD)})
    assert local(see_other(refused)) == path
    assert payment_of(client, agency_key, payment["id"])["status"] in ("created", "expired")


def test_an_old_link_found_later_cancels_nothing(client: FlaskClient, agency_key: str) -> None:
    """The link expires with the payment: past `expires_at`, and before the worker has
    marked the payment expired, "Cancel and return" changes nothing."""
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    token = csrf_of(open_page(client, path))
    later = clock.now() + dt.timedelta(seconds=5400)
    clock.set_clock(lambda: later)
    refused = client.post(f"{path}/cancel", data={"csrf_token": token})
    assert local(see_other(refused)) == path
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"
    assert "This payment has expired" in open_page(client, path)


def test_a_paid_payment_s_link_expires_with_the_payment(
    client: FlaskClient, agency_key: str
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    pay(client, path, GOOD)
    assert "Payment received" in open_page(client, path)
    later = clock.now() + dt.timedelta(seconds=5400)
    clock.set_clock(lambda: later)
    body = open_page(client, path)
    assert "This payment link has expired" in body and "Payment received" not in body
    arabic = open_page(client, path, lang="ar")
    assert "انتهت صلاحية رابط الدفع هذا" in arabic


def test_a_link_made_before_a_secret_key_rotation_still_opens(
    client: FlaskClient, gw: Gateway, agency_key: str, tmp_path: Path
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    rotated = dataclasses.replace(
        gw.settings,
        secret_key="rotated-secret-key-" + "r" * 32,
        previous_secret_key=gw.settings.secret_key,
    )
    after = build_gateway(rotated)
    try:
        assert "Card number" in open_page(create_app(gw=after).test_client(), path)
        forgotten = dataclasses.replace(rotated, previous_secret_key=None)
        gone = build_gateway(forgotten)
        try:
            check_not_found(create_app(gw=gone).test_client().get(path))
        finally:
            gone.db.dispose()
    finally:
        after.db.dispose()


def test_a_payment_in_flight_says_so_and_refreshes_without_script(
    client: FlaskClient, agency_key: str
) -> None:
    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    assert local(see_other(pay(client, path, TIMEOUT))) == f"{path}?lang=en"
    assert payment_of(client, agency_key, payment["id"])["status"] == "processing"
    body = open_page(client, path)
    assert "Your payment is being processed" in body
    assert '<meta http-equiv="refresh" content="10">' in body
    assert "<script" not in body
    calm = open_page(client, path, refresh="off")
    assert "http-equiv" not in calm and "Check now" in calm


# --------------------------------------------------------------------------- 3-D Secure


def start_challenge(client: FlaskClient, key: str, lang: str) -> tuple[dict[str, Any], str, str]:
    """Pay with the 3-D Secure card: the payment, its page and the challenge page's path."""
    payment = create(client, key, language=lang)
    path = page_path(payment)
    challenge = local(see_other(pay(client, path, NEEDS_3DS)))
    assert re.fullmatch(rf"/sandbox/3ds/[A-Za-z0-9_-]+\?lang={lang}", challenge), challenge
    assert payment_of(client, key, payment["id"])["status"] == "processing"
    return payment, path, challenge


def answer(client: FlaskClient, challenge: str, outcome: str) -> str:
    page = client.get(challenge)
    assert page.status_code == 200
    check_page_headers(page)
    body = text_of(page)
    token = csrf_of(body)
    return see_other(
        client.post(
            challenge.split("?", maxsplit=1)[0],
            data={"csrf_token": token, "outcome": outcome, "lang": "en"},
        )
    )


def test_3ds_completed_on_the_simulator_succeeds(client: FlaskClient, agency_key: str) -> None:
    payment, path, challenge = start_challenge(client, agency_key, "en")
    waiting = open_page(client, path)
    assert "Your payment is being processed" in waiting
    assert "Continue to your bank" in waiting and html.escape(challenge) in waiting
    simulator = text_of(client.get(challenge))
    assert "Sandbox simulator" in simulator and "12.500 OMR" in " ".join(visible(simulator).split())
    assert "Complete authentication" in simulator and "Fail authentication" in simulator
    back = answer(client, challenge, "complete")
    assert local(back) == f"{path}/return?lang=en"
    assert see_other(client.get(local(back))) == PAYMENT["return_url"]
    assert payment_of(client, agency_key, payment["id"])["status"] == "succeeded"
    done = text_of(client.get(challenge))
    assert "This check is already finished" in done and "Complete authentication" not in done


def test_3ds_failed_on_the_simulator_is_a_declined_try(
    client: FlaskClient, agency_key: str
) -> None:
    payment, path, challenge = start_challenge(client, agency_key, "ar")
    arabic = text_of(client.get(challenge))
    assert '<html lang="ar" dir="rtl">' in arabic and "إتمام التحقق" in arabic
    back = answer(client, challenge, "fail")
    assert local(see_other(client.get(local(back)))) == f"{path}?lang=ar"
    assert payment_of(client, agency_key, payment["id"])["status"] == "created"
    body = open_page(client, path)
    assert texts.failure_reason("ar", "authentication_failed") in body
    assert "بقيت محاولتان." in body
    assert see_other(pay(client, path, GOOD)) == PAYMENT["return_url"]


def test_the_return_address_trusts_no_query_string(client: FlaskClient, agency_key: str) -> None:
    payment, path, challenge = start_challenge(client, agency_key, "en")
    forged = client.get(f"{path}/return", query_string={"status": "succeeded", "result": "ok"})
    assert local(see_other(forged)) == path
    assert payment_of(client, agency_key, payment["id"])["status"] == "processing"
    refused = client.post(challenge.split("?", maxsplit=1)[0], data={"outcome": "complete"})
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert payment_of(client, agency_key, payment["id"])["status"] == "processing"


# --------------------------------------------------------------------------- card data


def test_no_card_number_or_code_in_pages_logs_or_the_session(
    client: FlaskClient, agency_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    numbers = {GOOD, DECLINED, "4242424242424241", NEEDS_3DS}
    code = re.compile(r"(?<![\w.])4929(?![\w.])")  # the security code typed below
    bodies: list[str] = []
    cookies: list[str] = []

    def keep(response: TestResponse) -> TestResponse:
        bodies.append(text_of(response))
        cookies.extend(response.headers.getlist("Set-Cookie"))
        return response

    payment = create(client, agency_key, language="en")
    path = page_path(payment)
    keep(pay(client, path, "4242424242424241", cvc="4929"))
    keep(pay(client, path, DECLINED, cvc="4929"))
    bodies.append(open_page(client, path))
    challenge = local(see_other(keep(pay(client, path, NEEDS_3DS, cvc="4929"))))
    keep(client.get(challenge))
    back = answer(client, challenge, "complete")
    keep(client.get(local(back)))
    bodies.append(open_page(client, path))

    app: Flask = client.application
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    stored = client.get_cookie("session")
    assert stored is not None, "the page keeps a CSRF secret in the session"
    sessions = [repr(serializer.loads(stored.value))]
    for cookie in cookies:
        value = cookie.split(";", 1)[0].split("=", 1)[1]
        if value:
            sessions.append(repr(serializer.loads(value)))
    logged = [caplog.text, *(repr(record.__dict__) for record in caplog.records)]
    for where in (*bodies, *sessions, *logged):
        for number in numbers:
            assert number not in where, (number, where[:300])
        assert not code.search(where), where[:300]
