"""Who is signed in to the console: the session in the signed cookie (15 minutes idle, 8 hours
in all, ended for every device at sign-out), the role a page needs, and CSRF on every form."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, abort, current_app, g, redirect, request, session, url_for

from payments import clock
from payments.finance import accounts, protection
from payments.finance.models import ConsoleUser
from payments.gateway import Gateway
from payments.principal import Principal

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
    session.pop(_KEY, None)


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


def check_csrf() -> Response | None:
    """Refuse a POST without this session's CSRF token."""
    if request.method == "POST" and not protection.csrf_ok():
        abort(400, description="csrf")
    return None


def locked_for(email: str) -> int | None:
    """Seconds until sign-ins for `email` from this address may be tried again, or None."""
    return accounts.locked_for(gateway(), email, address())
