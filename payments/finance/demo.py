"""Demo console users for `gateway demo seed`: a finance officer and an administrator whose
passwords are derived from the secret key, so seeding again prints the same ones without
storing them."""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select

from payments.finance import accounts
from payments.finance.models import ConsoleUser
from payments.gateway import Gateway

DEMO_USERS = (("finance@demo.gateway.test", "finance"), ("admin@demo.gateway.test", "admin"))


def _password(gw: Gateway, email: str) -> str:
    key = gw.settings.secret_key.encode()
    return hmac.new(key, f"demo-console:{email}".encode(), hashlib.sha256).hexdigest()[:20]


def seed(gw: Gateway) -> list[tuple[str, str, str]]:
    """Create the demo users that are missing; (e-mail, role, password) of each."""
    if gw.settings.is_production:
        raise RuntimeError("demo data is never seeded in production")
    seeded = []
    for email, role in DEMO_USERS:
        password = _password(gw, email)
        with gw.db.read() as session:
            exists = session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email))
        if exists is None:
            accounts.create_user(gw, email, role, password, actor="demo-seed", language="ar")
        seeded.append((email, role, password))
    return seeded
