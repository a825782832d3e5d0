"""Who is signed in to the console: the session in the signed cookie (15 minutes idle, 8 hours
in all, ended for every device at sign-out), the role a page needs, and CSRF on every form."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, abort, current_app, g, redirect, request, session, url_for

from payments import clock
from payments.finance import accounts, protection
from payments.finance.models import ConsoleUser
from payments.gateway import Gateway
from payments.principal import Principal
from payments.webhooks.sealing import SealError, SecretBox

IDLE_S = 15 * 60
ABSOLUTE_S = 8 * 3600

_KEY = "finance"  # the session cookie's entry for the console

F = TypeVar("F", bound=Callable[..., Any])


def _seconds() -> int:
    return int(clock.now().timestamp())


def gateway() -> Gateway:
    gw: Gateway = current_app.extensions["gateway"]
    return gw


def address() -> str:
    return request.remote_addr or "unknown"


def begin(user: ConsoleUser, *, second_factor_due: bool) -> None:
    """A fresh session for `user` (never one carried over from before the password)."""
    session.clear()
    now = _seconds()
    session[_KEY] = {
        "user": user.id,
        "epoch": user.session_epoch,
        "started": now,
        "seen": now,
        "stage": "second_factor" if second_factor_due else "in",
    }
    session.permanent = False


def promote() -> None:
    """The second factor passed: the session is fully signed in."""
    state = dict(session.get(_KEY) or {})
    state["stage"] = "in"
    session[_KEY] = state


def end() -> None:
    """Forget the sign-in and anything the console kept in the cookie for it."""
    for name in [k for k in session if k == _KEY or k.startswith(_KEY + "_")]:
        session.pop(name, None)


def keep_secret(name: str, value: object) -> None:
    """Keep `value` (a secret to show once, or an enrolment in progress) in the cookie until
    `take_secret`: sealed under the encryption key and bound to the user and `name`, since
    the signed cookie is readable by whoever holds it."""
    sealed = _box().seal(json.dumps(value).encode(), context=_secret_context(name))
    session[f"{_KEY}_{name}"] = sealed


def peek_secret(name: str) -> Any:
    """What `keep_secret` kept under `name`, left in place; None if nothing (or not this
    user's)."""
    sealed = session.get(f"{_KEY}_{name}")
    if not isinstance(sealed, str):
        return None
    try:
        return json.loads(_box().open(sealed, context=_secret_context(name)))
    except (SealError, ValueError):
        return None


def take_secret(name: str) -> Any:
    """What `keep_secret` kept under `name`, then forgotten."""
    found = peek_secret(name)
    session.pop(f"{_KEY}_{name}", None)
    return found


def _secret_context(name: str) -> str:
    state = session.get(_KEY)
    user_id = state.get("user") if isinstance(state, dict) else None
    return f"console:{name}:{user_id}"


def _box() -> SecretBox:
    return SecretBox(gateway().settings.encryption_key)


def _state() -> dict[str, Any] | None:
    state = session.get(_KEY)
    if not isinstance(state, dict):
        return None
    now = _seconds()
    try:
        if now - int(state["seen"]) > IDLE_S or now - int(state["started"]) > ABSOLUTE_S:
            end()
            return None
    except (KeyError, TypeError, ValueError):
        end()
        return None
    return state


def pending_user() -> ConsoleUser | None:
    """The user between their password and their second factor."""
    state = _state()
    if state is None or state.get("stage") != "second_factor":
        return None
    return accounts.active_user(gateway(), str(state["user"]), int(state["epoch"]))


def current_user() -> ConsoleUser | None:
    """The fully signed-in user, refreshing the idle clock; None otherwise."""
    state = _state()
    if state is None or state.get("stage") != "in":
        return None
    user = accounts.active_user(gateway(), str(state["user"]), int(state["epoch"]))
    if user is None:
        end()
        return None
    state = dict(state)
    state["seen"] = _seconds()
    session[_KEY] = state
    return user


def signed_in(role: str = "finance") -> Callable[[F], F]:
    """The page needs a signed-in user of `role` (`admin` pages refuse finance users with
    403); anyone signed out is sent to sign in and brought back after."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("finance.sign_in", next=_here()))
            if user.role == "admin" and not user.totp_secret:
                return redirect(url_for("finance.enrol"))
            if role == "admin" and user.role != "admin":
                abort(403)
            g.console_user = user
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def user() -> ConsoleUser:
    """The signed-in user of this request (set by `signed_in`)."""
    found: ConsoleUser = g.console_user
    return found


def principal() -> Principal:
    """The console user as the service functions know callers: finance staff across agencies,
    named by their user id in what they import and resolve."""
    return Principal(key_id=user().id, role="finance", agency_id=None, livemode=True)


def _here() -> str:
    return request.full_path.rstrip("?")


def safe_next(target: str | None) -> str | None:
    """A page of the console to return to after signing in; nothing else (no open redirect)."""
    if not target or not target.startswith("/finance") or "//" in target or "\\" in target:
        return None
    return target


# Endpoints that take more than the 64 KiB of a form (a settlement file), by endpoint: the
# limit in bytes, for a signed-in user only.
LARGE_BODIES: dict[str, Callable[[], int]] = {}


def check_post() -> Response | None:
    """Hold a POST to its size before its form is read (a large upload only from a signed-in
    user), then refuse it without this session's CSRF token."""
    if request.method != "POST":
        return None
    limit = gateway().settings.max_body_bytes
    large = LARGE_BODIES.get(request.endpoint or "")
    if large is not None and current_user() is not None:
        limit = large()
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        abort(413)
    if not protection.csrf_ok():
        abort(400, description="csrf")
    return None


def locked_for(email: str) -> int | None:
    """Seconds until sign-ins for `email` from this address may be tried again, or None."""
    return accounts.locked_for(gateway(), email, address())
