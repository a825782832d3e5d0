"""Signing in to the finance console through its real pages, for the console's HTTP tests."""

from __future__ import annotations

import re

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from payments.finance import accounts
from payments.gateway import Gateway
from payments.ids import new_id

PASSWORD = "a long enough password"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: FlaskClient, path: str) -> str:
    """GET `path` and return the CSRF token of its forms."""
    page = client.get(path)
    found = _TOKEN.search(page.get_data(as_text=True))
    assert found is not None, f"no form on {path} ({page.status_code})"
    return found.group(1)


def make_user(gw: Gateway, role: str = "finance", email: str | None = None) -> str:
    """A new console user's e-mail; the password is PASSWORD."""
    email = email or f"{role}-{new_id('t')[-8:].lower()}@ministry.gov.om"
    accounts.create_user(gw, email, role, PASSWORD, actor="test")
    return email


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> None:
    """Sign in with the password, enrolling in (or passing) the second factor as the pages ask."""
    answer = client.post(
        "/finance/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf(client, "/finance/sign-in")},
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    if answer.headers["Location"].endswith("/finance/account/second-factor"):
        page = client.get("/finance/account/second-factor").get_data(as_text=True)
        secret = re.search(r"data-secret>([A-Z2-7]+)<", page)
        token = _TOKEN.search(page)
        assert secret is not None and token is not None
        enrolled = client.post(
            "/finance/account/second-factor",
            data={"code": pyotp.TOTP(secret.group(1)).now(), "csrf_token": token.group(1)},
        )
        assert enrolled.status_code == 303, enrolled.get_data(as_text=True)


def signed_in_client(app: Flask, gw: Gateway, role: str = "finance") -> FlaskClient:
    """A client signed in as a new user of `role` (an admin enrols in TOTP on the way)."""
    client = app.test_client()
    sign_in(client, make_user(gw, role))
    return client
