"""What a hostile or careless hand sends the finance console, on both databases: secrets never
readable in the cookie, nothing typed at a failed sign-in kept unless it is an e-mail address,
NUL characters refused with a page instead of a 500, guesses at the second factor sent at once
meeting the lock, a second enrolment refused, and large uploads only for signed-in users."""

from __future__ import annotations

import io
import re

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from payments.finance import accounts
from payments.finance.models import AuditRecord
from payments.gateway import Gateway
from tests.conftest import count_rows, new_agency
from tests.integration.finance_support import PASSWORD, csrf, make_user, signed_in_client

SIGN_IN = "/finance/sign-in"


def _cookie(app: Flask, client: FlaskClient) -> str:
    """The session cookie as anyone holding it reads it: its payload, signature unchecked."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"], path="/")
    assert cookie is not None
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return str(serializer.loads(cookie.value))


def _actors(gw: Gateway, action: str) -> list[str]:
    with gw.db.read() as session:
        return list(session.scalars(select(AuditRecord.actor).where(AuditRecord.action == action)))


def test_a_new_api_key_travels_sealed_in_the_cookie_until_shown(gw: Gateway, app: Flask) -> None:
    new_agency(gw, "om-moh")
    admin = signed_in_client(app, gw, "admin")
    token = csrf(admin, "/finance/admin/keys")
    made = admin.post(
        "/finance/admin/keys",
        data={"role": "agency", "agency": "om-moh", "mode": "test", "csrf_token": token},
    )
    assert made.status_code == 303
    assert "gw_test_" not in _cookie(app, admin)
    shown = admin.get("/finance/admin/keys").get_data(as_text=True)
    secret = re.search(r"data-new-key>([^<]+)<", shown)
    assert secret is not None and secret.group(1).startswith("gw_test_")


def test_enrolment_secrets_and_recovery_codes_travel_sealed(gw: Gateway, app: Flask) -> None:
    client = app.test_client()
    client.post(
        SIGN_IN,
        data={"email": make_user(gw), "password": PASSWORD, "csrf_token": csrf(client, SIGN_IN)},
    )
    page = client.get("/finance/account/second-factor").get_data(as_text=True)
    secret = re.search(r"data-secret>([A-Z2-7]+)<", page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert secret is not None and token is not None
    assert secret.group(1) not in _cookie(app, client)
    code = pyotp.TOTP(secret.group(1)).now()
    client.post("/finance/account/second-factor", data={"code": code, "csrf_token": token.group(1)})
    cookie = _cookie(app, client)
    codes = re.findall(
        r"data-recovery-code>([^<]+)<",
        client.get("/finance/account/recovery-codes").get_data(as_text=True),
    )
    assert len(codes) == accounts.RECOVERY_CODES
    assert not any(c in cookie for c in codes)


def test_only_an_email_address_typed_at_a_failed_sign_in_is_kept(
    gw: Gateway, client: FlaskClient
) -> None:
    admin_id = accounts.user_id_of(gw, make_user(gw, "admin"))
    assert admin_id is not None
    for typed in ("my secret password 1", admin_id, "nobody@ministry.gov.om"):
        answer = client.post(
            SIGN_IN,
            data={"email": typed, "password": "wrong", "csrf_token": csrf(client, SIGN_IN)},
        )
        assert answer.status_code == 401
    assert sorted(_actors(gw, "sign_in_failed")) == sorted(
        [accounts.NOT_AN_EMAIL, accounts.NOT_AN_EMAIL, "nobody@ministry.gov.om"]
    )


def test_nul_characters_get_a_page_not_a_server_error(gw: Gateway, app: Flask) -> None:
    client = app.test_client()
    answer = client.post(
        SIGN_IN,
        data={
            "email": "a\x00b@ministry.gov.om",
            "password": "x",
            "csrf_token": csrf(client, SIGN_IN),
        },
    )
    assert answer.status_code == 401
    admin = signed_in_client(app, gw, "admin")
    assert admin.get("/finance/audit", query_string={"actor": "a\x00"}).status_code == 422
    before = count_rows(gw)
    token = csrf(admin, "/finance/admin/users")
    made = admin.post(
        "/finance/admin/users",
        data={
            "email": "x\x00y@ministry.gov.om",
            "role": "finance",
            "password": PASSWORD,
            "csrf_token": token,
        },
    )
    assert made.status_code == 422
    agency = admin.post(
        "/finance/admin/agencies",
        data={
            "id": "om-nul",
            "name": "Ministry\x00",
            "name_ar": "وزارة",
            "state": "OM",
            "currencies": "OMR",
            "fee_bearer": "gateway",
            "csrf_token": token,
        },
    )
    assert agency.status_code == 422
    for path in ("/finance/admin/users/usr_%00/disable", "/finance/admin/keys/key_%00/revoke"):
        assert admin.post(path, data={"csrf_token": token}).status_code == 404, path
    assert count_rows(gw) == before


def test_guesses_at_the_second_factor_meet_the_lock_however_they_arrive(gw: Gateway) -> None:
    email = make_user(gw, "admin")
    user_id = accounts.user_id_of(gw, email)
    assert user_id is not None
    secret = pyotp.random_base32()
    codes = accounts.enrol(gw, user_id, secret, pyotp.TOTP(secret).now(), address=None)
    assert codes is not None
    for _ in range(accounts.FAILURES_PER_ACCOUNT):
        assert not accounts.check_second_factor(gw, user_id, "000000", address=None)
    # The lock is met inside the check itself, not only by the page before it.
    assert not accounts.check_second_factor(gw, user_id, codes[0], address=None)
    assert accounts.enrol(gw, user_id, secret, pyotp.TOTP(secret).now(), address=None) is None


def test_only_a_signed_in_user_may_send_a_large_upload(gw: Gateway, app: Flask) -> None:
    client = app.test_client()
    token = csrf(client, SIGN_IN)
    big = b"settlement_date,provider_reference\n" + b"x" * (200 * 1024)
    answer = client.post(
        "/finance/settlements",
        data={"provider": "sandbox", "csrf_token": token, "file": (io.BytesIO(big), "big.csv")},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 413
    signed_out_again = client.post(
        SIGN_IN,
        data={"email": "a@b.gov.om", "password": "x" * 70_000, "csrf_token": token},
    )
    assert signed_out_again.status_code == 413  # every other form: 64 KiB at most
