"""Signing in and out of the console: the password, the second factor, enrolment in it (with
the recovery codes shown once), the language, and the user's own account page."""

from __future__ import annotations

import math

from flask import abort, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from payments.finance import accounts, guard
from payments.finance.models import ConsoleUser
from payments.finance.texts import LANGUAGES
from payments.finance.web import LANG_COOKIE, blp, render

_ENROLMENT = "enrolment"  # the secret offered, kept (sealed) until confirmed
_RECOVERY = "recovery"  # the codes to show once, then dropped


def _landing() -> Response:
    target = guard.safe_next(session.pop("finance_next", None))
    return redirect(target or url_for("finance.dashboard"), code=303)


@blp.get("/sign-in")
def sign_in() -> Response:
    if guard.current_user() is not None:
        return redirect(url_for("finance.dashboard"))
    nxt = guard.safe_next(request.args.get("next"))
    notice = request.args.get("notice")
    return render("sign_in.html", next=nxt, notice=notice if notice in ("signed_out",) else None)


@blp.post("/sign-in")
def sign_in_post() -> Response:
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")
    nxt = guard.safe_next(request.form.get("next"))
    gw = guard.gateway()
    locked = guard.locked_for(email)
    if locked is not None:
        response = render(
            "sign_in.html",
            status=429,
            email=email,
            next=nxt,
            locked_minutes=max(1, math.ceil(locked / 60)),
        )
        response.headers["Retry-After"] = str(locked)
        return response
    checked = accounts.check_sign_in(gw, email, password, address=guard.address())
    if checked.user is None:
        return render("sign_in.html", status=401, email=email, next=nxt, failed=True)
    user = checked.user
    has_factor = bool(user.totp_secret)
    guard.begin(user, second_factor_due=has_factor)
    if nxt:
        session["finance_next"] = nxt
    if has_factor:
        return redirect(url_for("finance.second_factor"), code=303)
    accounts.signed_in(gw, user, address=guard.address(), factor="none")
    if checked.needs_enrolment:
        return redirect(url_for("finance.enrol"), code=303)
    return _landing()


@blp.get("/sign-in/code")
def second_factor() -> Response:
    if guard.pending_user() is None:
        return redirect(url_for("finance.sign_in"))
    return render("second_factor.html")


@blp.post("/sign-in/code")
def second_factor_post() -> Response:
    user = guard.pending_user()
    if user is None:
        return redirect(url_for("finance.sign_in"), code=303)
    gw = guard.gateway()
    locked = guard.locked_for(user.email)
    if locked is not None:
        return render("second_factor.html", status=429, locked_minutes=math.ceil(locked / 60))
    code = request.form.get("code", "")
    if not accounts.check_second_factor(gw, user.id, code, address=guard.address()):
        return render("second_factor.html", status=401, failed=True)
    guard.promote()
    accounts.signed_in(gw, user, address=guard.address(), factor="totp")
    return _landing()


def _enrolling_user() -> ConsoleUser:
    user = guard.current_user()
    if user is None:
        abort(403)
    return user


@blp.get("/account/second-factor")
def enrol() -> Response:
    user = guard.current_user()
    if user is None:
        return redirect(url_for("finance.sign_in", next=request.path))
    g.console_user = user
    if user.totp_secret:
        return redirect(url_for("finance.account"))
    offer = accounts.offer_enrolment(user)
    guard.keep_secret(_ENROLMENT, offer.secret)
    return render("enrol.html", offer=offer, required=user.role == "admin")


@blp.post("/account/second-factor")
def enrol_post() -> Response:
    user = _enrolling_user()
    g.console_user = user
    secret = guard.peek_secret(_ENROLMENT)
    if not isinstance(secret, str) or user.totp_secret:
        return redirect(url_for("finance.enrol"), code=303)
    codes = accounts.enrol(
        guard.gateway(), user.id, secret, request.form.get("code", ""), address=guard.address()
    )
    if codes is None:
        offer = accounts.offer_enrolment(user, secret)
        return render(
            "enrol.html", status=422, offer=offer, required=user.role == "admin", failed=True
        )
    guard.take_secret(_ENROLMENT)
    guard.keep_secret(_RECOVERY, codes)
    return redirect(url_for("finance.recovery_codes"), code=303)


@blp.get("/account/recovery-codes")
@guard.signed_in()
def recovery_codes() -> Response:
    codes = guard.take_secret(_RECOVERY)
    if not codes:
        return redirect(url_for("finance.account"))
    return render("recovery_codes.html", codes=codes)


@blp.get("/account")
@guard.signed_in()
def account() -> Response:
    return render("account.html")


@blp.post("/sign-out")
def sign_out() -> Response:
    user = guard.current_user()
    if user is not None:
        accounts.sign_out(guard.gateway(), user.id, address=guard.address())
    guard.end()
    return redirect(url_for("finance.sign_in", notice="signed_out"), code=303)


@blp.post("/language")
def choose_language() -> Response:
    lang = request.form.get("lang", "")
    if lang not in LANGUAGES:
        abort(400)
    user = guard.current_user()
    if user is not None:
        accounts.set_language(guard.gateway(), user.id, lang)
    back = guard.safe_next(request.form.get("back")) or url_for("finance.dashboard")
    response = redirect(back, code=303)
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=365 * 86400,
        httponly=True,
        samesite="Lax",
        secure=guard.gateway().settings.env != "development",  # as the session cookie
    )
    return response
