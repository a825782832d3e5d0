"""The console's administration and audit log pages over HTTP, on both databases: users,
agencies and API keys made, disabled and revoked by an admin and written to the audit log;
finance users kept out; the audit log's filters, pages and refusals; and an audit log the
database itself refuses to change."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import logging
import re
import urllib.parse
from collections.abc import Mapping

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payments import clock
from payments.finance import accounts, audit
from payments.gateway import Gateway
from payments.service import access
from tests.conftest import auth, count_rows, new_agency
from tests.integration.finance_support import PASSWORD, csrf, make_user, sign_in

ADMIN = "/finance/admin"
USERS = "/finance/admin/users"
AGENCIES = "/finance/admin/agencies"
KEYS = "/finance/admin/keys"
AUDIT = "/finance/audit"
_NEW_KEY = re.compile(r"data-new-key>([^<]+)<")


@dataclasses.dataclass
class Admin:
    client: FlaskClient
    id: str
    email: str


def _signed_in(app: Flask, gw: Gateway, role: str) -> Admin:
    client = app.test_client()
    email = make_user(gw, role)
    sign_in(client, email)
    user_id = accounts.user_id_of(gw, email)
    assert user_id is not None
    return Admin(client, user_id, email)


@pytest.fixture
def admin(app: Flask, gw: Gateway) -> Admin:
    return _signed_in(app, gw, "admin")


def _post(client: FlaskClient, path: str, data: Mapping[str, str | list[str]], page: str) -> str:
    """POST a console form with the CSRF token of `page`; the answer's status and body."""
    return _answer(client.post(path, data={**data, "csrf_token": csrf(client, page)}))


def _answer(response: object) -> str:
    status = response.status_code  # type: ignore[attr-defined]
    location = response.headers.get("Location", "")  # type: ignore[attr-defined]
    body = html.unescape(response.get_data(as_text=True))  # type: ignore[attr-defined]
    return f"{status} {location}\n{body}"


def _audit_rows(client: FlaskClient, query: str = "") -> list[tuple[str, str, str]]:
    """The audit log page's rows as (actor, action, target)."""
    page = client.get(f"{AUDIT}{query}")
    assert page.status_code == 200, page.get_data(as_text=True)
    body = page.get_data(as_text=True)
    rows = re.findall(
        r'<tr data-record="[^"]+" data-action="([a-z_]+)">.*?data-actor="([^"]*)">'
        r".*?</td>\s*<td>.*?</td>\s*<td>(.*?)</td>",
        body,
        re.S,
    )
    return [(html.unescape(actor), action, _text(target)) for action, actor, target in rows]


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split()[0]


# --------------------------------------------------------------------------- users


def test_admin_creates_a_user_who_can_sign_in(app: Flask, gw: Gateway, admin: Admin) -> None:
    index = admin.client.get(ADMIN).get_data(as_text=True)
    for path in (USERS, AGENCIES, KEYS):
        assert f'href="{path}"' in index
    email = "new.officer@ministry.gov.om"
    answer = _post(
        admin.client,
        USERS,
        {"email": "New.Officer@Ministry.gov.om ", "role": "finance", "password": PASSWORD},
        USERS,
    )
    assert answer.startswith(f"303 {USERS}?done=user_created"), answer[:300]
    page = admin.client.get(f"{USERS}?done=user_created").get_data(as_text=True)
    assert email in page and "أُنشئ المستخدم." in page

    newcomer = app.test_client()
    sign_in(newcomer, email)
    assert newcomer.get("/finance/account").status_code == 200
    new_id = accounts.user_id_of(gw, email)
    assert (admin.id, "user_created", new_id) in _audit_rows(admin.client)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "not-an-email", "role": "finance"}, "name@ministry.gov.om"),
        ({"email": "x@ministry.gov.om", "role": "boss"}, "اختر دورًا."),
        ({"email": "x@ministry.gov.om", "role": "finance", "password": "short"}, "12"),
        ({"email": "x" * 5000 + "@ministry.gov.om", "role": "finance"}, "أطول من المسموح"),
    ],
)
def test_a_bad_new_user_is_refused_with_a_message(
    gw: Gateway, admin: Admin, form: dict[str, str], message: str
) -> None:
    before = count_rows(gw)
    answer = _post(admin.client, USERS, {"password": PASSWORD, **form}, USERS)
    assert answer.startswith("422"), answer[:300]
    assert message in answer
    assert count_rows(gw) == before


def test_a_second_user_with_the_same_email_is_refused(gw: Gateway, admin: Admin) -> None:
    answer = _post(
        admin.client, USERS, {"email": admin.email, "role": "finance", "password": PASSWORD}, USERS
    )
    assert answer.startswith("422") and "يوجد مستخدم بهذا البريد الإلكتروني." in answer


def test_disabling_a_user_ends_their_session(app: Flask, gw: Gateway, admin: Admin) -> None:
    officer = _signed_in(app, gw, "finance")
    assert officer.client.get(AUDIT).status_code == 200
    answer = _post(admin.client, f"{USERS}/{officer.id}/disable", {}, USERS)
    assert answer.startswith(f"303 {USERS}?done=user_disabled"), answer[:300]

    gone = officer.client.get(AUDIT)
    assert gone.status_code == 302 and "/finance/sign-in" in gone.headers["Location"]
    again = app.test_client()
    refused = again.post(
        "/finance/sign-in",
        data={
            "email": officer.email,
            "password": PASSWORD,
            "csrf_token": csrf(again, "/finance/sign-in"),
        },
    )
    assert refused.status_code == 401
    assert (admin.id, "user_disabled", officer.id) in _audit_rows(admin.client)

    twice = _post(admin.client, f"{USERS}/{officer.id}/disable", {}, USERS)
    assert twice.startswith("422") and "معطّل من قبل" in twice
    unknown = _post(admin.client, f"{USERS}/usr_nobody/disable", {}, USERS)
    assert unknown.startswith("404") and "لا يوجد هذا المستخدم." in unknown
    huge = _post(admin.client, f"{USERS}/{'u' * 3000}/disable", {}, USERS)
    assert huge.startswith("404")


def test_the_last_admin_is_not_disabled(gw: Gateway, admin: Admin) -> None:
    answer = _post(admin.client, f"{USERS}/{admin.id}/disable", {}, USERS)
    assert answer.startswith("422"), answer[:300]
    assert "لا يمكن تعطيل آخر مسؤول نشط." in answer
    assert admin.client.get(USERS).status_code == 200  # still signed in
    assert [u.disabled_at for u in accounts.list_users(gw) if u.id == admin.id] == [None]


def test_resetting_a_second_factor(app: Flask, gw: Gateway, admin: Admin) -> None:
    other = _signed_in(app, gw, "admin")  # enrolled on the way in
    users = admin.client.get(USERS).get_data(as_text=True)
    assert f"/finance/admin/users/{other.id}/reset-second-factor" in users
    answer = _post(admin.client, f"{USERS}/{other.id}/reset-second-factor", {}, USERS)
    assert answer.startswith(f"303 {USERS}?done=second_factor_reset"), answer[:300]

    assert [u.totp_secret for u in accounts.list_users(gw) if u.id == other.id] == [None]
    gone = other.client.get(ADMIN)
    assert gone.status_code == 302 and "/finance/sign-in" in gone.headers["Location"]
    sign_in(other.client, other.email)  # enrols again, as an admin must
    assert other.client.get(ADMIN).status_code == 200
    assert (admin.id, "second_factor_reset", other.id) in _audit_rows(admin.client)


# --------------------------------------------------------------------------- agencies

AGENCY_FORM: dict[str, str | list[str]] = {
    "id": "om-rop",
    "name": "Royal Oman Police",
    "name_ar": "شرطة عمان السلطانية",
    "state": "OM",
    "currency": ["OMR", "USD"],
    "fee_bearer": "agency",
}


def test_admin_creates_an_agency(gw: Gateway, admin: Admin) -> None:
    answer = _post(admin.client, AGENCIES, AGENCY_FORM, AGENCIES)
    assert answer.startswith(f"303 {AGENCIES}?done=agency_created"), answer[:300]
    page = admin.client.get(AGENCIES).get_data(as_text=True)
    for shown in ("om-rop", "Royal Oman Police", "شرطة عمان السلطانية", "OMR, USD", "عُمان"):
        assert shown in page
    (agency,) = access.list_agencies(gw)
    assert (agency.currencies, agency.fee_bearer) == (["OMR", "USD"], "agency")
    assert (admin.id, "agency_created", "om-rop") in _audit_rows(admin.client)

    again = _post(admin.client, AGENCIES, AGENCY_FORM, AGENCIES)
    assert again.startswith("422") and "توجد جهة بهذا المعرّف." in again


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "Bad Id!"}, "معرّف الجهة"),
        ({"id": ""}, "معرّف الجهة"),
        ({"state": "EG"}, "اختر دولة عضوًا."),
        ({"currency": []}, "اختر عملة واحدة على الأقل."),
        ({"currency": ["XYZ"]}, "اختر عملة واحدة على الأقل."),
        ({"name": " "}, "اسم بالعربية"),
        ({"name_ar": "ش" * 201}, "200"),
        ({"fee_bearer": "nobody"}, "اختر من يتحمّل الرسوم."),
        ({"name": "n" * 5000}, "أطول من المسموح"),
    ],
)
def test_a_bad_agency_is_refused_with_a_message(
    gw: Gateway, admin: Admin, change: dict[str, str | list[str]], message: str
) -> None:
    before = count_rows(gw)
    answer = _post(admin.client, AGENCIES, {**AGENCY_FORM, **change}, AGENCIES)
    assert answer.startswith("422"), answer[:300]
    assert message in answer
    assert count_rows(gw) == before


# --------------------------------------------------------------------------- keys


def _session(app: Flask, client: FlaskClient) -> dict[str, object]:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"], path="/")
    assert cookie is not None
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    found: dict[str, object] = serializer.loads(cookie.value)
    return found


def test_a_new_key_is_shown_once_works_and_is_revoked(
    app: Flask,
    client: FlaskClient,
    gw: Gateway,
    admin: Admin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    new_agency(gw, "om-moh")
    answer = _post(admin.client, KEYS, {"role": "agency", "agency": "om-moh", "mode": "test"}, KEYS)
    assert answer.startswith(f"303 {KEYS}"), answer[:300]
    first = admin.client.get(KEYS).get_data(as_text=True)
    found = _NEW_KEY.search(first)
    assert found is not None
    secret = found.group(1)
    assert secret.startswith("gw_test_")
    assert secret not in str(_session(app, admin.client))  # dropped once shown
    second = admin.client.get(KEYS).get_data(as_text=True)
    assert secret not in second and "data-new-key" not in second
    assert secret[:12] in second  # the prefix stays listed

    assert client.get("/v1/payments", headers=auth(secret)).status_code == 200
    key_id = next(k.id for k in access.list_keys(gw) if k.prefix == secret[:12])
    rows = _audit_rows(admin.client)
    assert (admin.id, "key_created", key_id) in rows
    assert secret not in admin.client.get(AUDIT).get_data(as_text=True)

    revoked = _post(admin.client, f"{KEYS}/{key_id}/revoke", {}, KEYS)
    assert revoked.startswith(f"303 {KEYS}?done=key_revoked"), revoked[:300]
    assert client.get("/v1/payments", headers=auth(secret)).status_code == 401
    assert (admin.id, "key_revoked", key_id) in _audit_rows(admin.client)
    unknown = _post(admin.client, f"{KEYS}/key_nothing/revoke", {}, KEYS)
    assert unknown.startswith("404") and "لا يوجد هذا المفتاح." in unknown
    assert secret not in caplog.text


def test_a_finance_key_from_the_page(client: FlaskClient, gw: Gateway, admin: Admin) -> None:
    answer = _post(admin.client, KEYS, {"role": "finance"}, KEYS)
    assert answer.startswith(f"303 {KEYS}"), answer[:300]
    found = _NEW_KEY.search(admin.client.get(KEYS).get_data(as_text=True))
    assert found is not None and found.group(1).startswith("gw_fin_")
    trial = client.get("/v1/ledger/trial-balance", headers=auth(found.group(1)))
    assert trial.status_code == 200


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"role": "agency", "agency": "", "mode": "test"}, "422", "اختر جهة."),
        ({"role": "agency", "agency": "no-such", "mode": "test"}, "404", "لا توجد هذه الجهة."),
        ({"role": "agency", "agency": "om-moh", "mode": "prod"}, "422", "اختر الوضع"),
        ({"role": "root", "agency": "om-moh", "mode": "test"}, "422", "غير صحيحة"),
    ],
)
def test_a_bad_key_request_is_refused(
    gw: Gateway, admin: Admin, form: dict[str, str], status: str, message: str
) -> None:
    new_agency(gw, "om-moh")
    before = count_rows(gw)
    answer = _post(admin.client, KEYS, form, KEYS)
    assert answer.startswith(status), answer[:300]
    assert message in answer
    assert count_rows(gw) == before


def test_keys_list_shows_no_secret_or_digest(gw: Gateway, admin: Admin) -> None:
    secret = new_agency(gw, "om-moh")
    page = admin.client.get(KEYS).get_data(as_text=True)
    assert secret[:12] in page
    assert secret not in page and access.digest(secret) not in page


def test_the_pages_in_english(gw: Gateway, admin: Admin) -> None:
    new_agency(gw, "om-moh")
    switched = admin.client.post(
        "/finance/language",
        data={"lang": "en", "back": ADMIN, "csrf_token": csrf(admin.client, ADMIN)},
    )
    assert switched.status_code == 303
    expected = {
        ADMIN: "Administration",
        USERS: "Reset two-step verification",
        AGENCIES: "Who bears acquirer fees",
        KEYS: "New finance key",
        AUDIT: "Signed in",
        f"{AUDIT}?action=bogus": "Choose an action from the list.",
    }
    for path, words in expected.items():
        page = admin.client.get(path)
        assert page.status_code in (200, 422), path
        body = page.get_data(as_text=True)
        assert words in body and 'dir="ltr"' in body, path


# --------------------------------------------------------------------------- who may


def test_finance_users_get_403_on_every_admin_page_and_post(
    app: Flask, gw: Gateway, admin: Admin
) -> None:
    new_agency(gw, "om-moh")
    key_id = access.list_keys(gw)[0].id
    officer = _signed_in(app, gw, "finance")
    for path in (ADMIN, USERS, AGENCIES, KEYS):
        assert officer.client.get(path).status_code == 403, path
    token = csrf(officer.client, "/finance/account")
    before = count_rows(gw)
    posts: dict[str, Mapping[str, str | list[str]]] = {
        USERS: {"email": "sneaky@ministry.gov.om", "role": "admin", "password": PASSWORD},
        f"{USERS}/{admin.id}/disable": {},
        f"{USERS}/{admin.id}/reset-second-factor": {},
        AGENCIES: AGENCY_FORM,
        KEYS: {"role": "finance"},
        f"{KEYS}/{key_id}/revoke": {},
    }
    for path, data in posts.items():
        answer = officer.client.post(path, data={**data, "csrf_token": token})
        assert answer.status_code == 403, path
    assert count_rows(gw) == before
    assert officer.client.get(AUDIT).status_code == 200  # the audit log is theirs to read


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    for path in (ADMIN, USERS, AGENCIES, KEYS, AUDIT):
        answer = client.get(path)
        assert answer.status_code == 302 and "/finance/sign-in" in answer.headers["Location"]


def test_console_sessions_and_api_keys_do_not_cross(app: Flask, gw: Gateway, admin: Admin) -> None:
    assert admin.client.get("/v1/payments").status_code == 401
    key = new_agency(gw, "om-moh")
    finance = access.create_key(gw, agency_id=None, role="finance")[1]
    stranger = app.test_client()
    for secret in (key, finance):
        for path in ("/finance/", AUDIT, ADMIN):
            answer = stranger.get(path, headers=auth(secret))
            assert answer.status_code == 302, path
            assert "/finance/sign-in" in answer.headers["Location"]


# --------------------------------------------------------------------------- audit log


def test_the_audit_log_filters(app: Flask, gw: Gateway, admin: Admin) -> None:
    stranger = app.test_client()
    failed = stranger.post(
        "/finance/sign-in",
        data={
            "email": "Intruder@Example.com",
            "password": "wrong password!",
            "csrf_token": csrf(stranger, "/finance/sign-in"),
        },
    )
    assert failed.status_code == 401
    _post(admin.client, AGENCIES, AGENCY_FORM, AGENCIES)

    everything = _audit_rows(admin.client)
    assert {"sign_in", "sign_in_failed", "agency_created", "user_created"} <= {
        a for _, a, _ in everything
    }
    by_email = _audit_rows(admin.client, "?actor=intruder@example.com")
    assert [(a, w) for a, w, _ in by_email] == [("intruder@example.com", "sign_in_failed")]
    assert _audit_rows(admin.client, "?actor=INTRUDER@example.com") == by_email

    by_admin = _audit_rows(admin.client, f"?actor={admin.id}")
    assert by_admin and {a for a, _, _ in by_admin} == {admin.id}
    page = admin.client.get(f"{AUDIT}?actor={admin.id}").get_data(as_text=True)
    assert admin.email in page  # the user id's e-mail beside it

    created = _audit_rows(admin.client, "?action=agency_created")
    assert created == [(admin.id, "agency_created", "om-rop")]
    in_arabic = admin.client.get(f"{AUDIT}?action=agency_created").get_data(as_text=True)
    assert "إنشاء جهة" in in_arabic

    today = clock.now().date()
    tomorrow = today + dt.timedelta(days=1)
    assert _audit_rows(admin.client, f"?from={today}&to={today}") == everything
    assert _audit_rows(admin.client, f"?from={tomorrow}") == []
    assert _audit_rows(admin.client, f"?to={today - dt.timedelta(days=1)}") == []
    both = _audit_rows(admin.client, f"?actor={admin.id}&action=agency_created&from={today}")
    assert both == created


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("?action=drop_tables", "bad_action"),
        ("?from=2026-13-45", "bad_date"),
        ("?to=yesterday", "bad_date"),
        ("?from=0001-01-01", "bad_date"),
        ("?to=9999-12-31", "bad_date"),
        ("?from=2026-02-01&to=2026-01-01", "bad_range"),
        ("?actor=" + "a" * 300, "bad_actor"),
        ("?before=%27%20OR%201%3D1%20--", "bad_page"),
    ],
)
def test_bad_audit_filters_give_a_message(admin: Admin, query: str, problem: str) -> None:
    answer = admin.client.get(f"{AUDIT}{query}")
    assert answer.status_code == 422
    assert f'data-problem="{problem}"' in answer.get_data(as_text=True)


def test_the_audit_log_pages_keep_their_filters(gw: Gateway, admin: Admin) -> None:
    for n in range(audit.PAGE_SIZE + 5):
        audit.write(gw, "someone@example.com", "sign_in_failed", address=f"10.0.0.{n}")
    audit.write(gw, admin.id, "sign_out")
    query = "?actor=someone@example.com&action=sign_in_failed"
    first = admin.client.get(f"{AUDIT}{query}").get_data(as_text=True)
    assert first.count('data-action="sign_in_failed"') == audit.PAGE_SIZE
    link = re.search(r'href="([^"]+)" rel="next"', first)
    assert link is not None
    target = html.unescape(link.group(1))
    asked = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
    assert asked["actor"] == ["someone@example.com"] and asked["action"] == ["sign_in_failed"]
    second = admin.client.get(target).get_data(as_text=True)
    assert second.count('data-action="sign_in_failed"') == 5
    assert 'rel="next"' not in second
    assert "10.0.0.0<" in second and "10.0.0.0<" not in first  # oldest last


def test_the_audit_log_is_append_only(gw: Gateway) -> None:
    audit.write(gw, "someone@example.com", "sign_in_failed", address="10.0.0.1")
    for statement in (
        "UPDATE audit_log SET actor = 'nobody'",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"), gw.db.engine.begin() as conn:
            conn.execute(text(statement))
    records, _more = audit.records(gw, audit.AuditFilter())
    assert [(r.actor, r.address) for r in records] == [("someone@example.com", "10.0.0.1")]
