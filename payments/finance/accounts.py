"""Console users: creating them, signing in with a password and a second factor (TOTP or a
recovery code), enrolment, and what an administrator may do to an account. Every step writes
the audit log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Iterable

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from payments import clock
from payments.errors import Conflict, NotFound, ValidationFailed
from payments.finance import audit
from payments.finance.models import LANGUAGES, ROLES, AuditRecord, ConsoleUser
from payments.gateway import Gateway
from payments.ids import new_id
from payments.schemas import unstorable
from payments.webhooks.sealing import SecretBox

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 hashes anything; a megabyte password is an attack
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{2,63}$")
RECOVERY_CODES = 10
ISSUER = "GCC e-payment gateway"
TOTP_WINDOW = 1  # a code of the step before or after is accepted too (clock drift)
# Failed sign-ins lock for a while: per account (the e-mail typed, known or not, so that a
# lock-out says nothing of whether the account exists; wrong second-factor codes count too)
# and per address. Counted from the audit log, which every worker and node shares.
LOCK_WINDOW = dt.timedelta(minutes=15)
FAILURES_PER_ACCOUNT = 5
FAILURES_PER_ADDRESS = 20

_hasher = PasswordHasher()


@functools.cache
def _unknown_account_hash() -> str:
    """A hash to verify against when no account has the e-mail typed, so that a sign-in
    takes the same time whether or not the account exists."""
    return _hasher.hash(secrets.token_urlsafe(16))


def normal_email(email: str) -> str:
    return email.strip().lower()


NOT_AN_EMAIL = "(not an e-mail address)"


def typed_account(email: str) -> str:
    """The account a sign-in asked for, as the audit log and the lock-out keep it: the e-mail
    address typed, or one marker for anything else (a password typed in the wrong field is
    never kept, and nothing typed can pass for a user's id)."""
    email = normal_email(email)
    if len(email) > 254 or not EMAIL_RE.match(email) or unstorable(email):
        return NOT_AN_EMAIL
    return email


def _check_email(email: str) -> str:
    email = normal_email(email)
    if len(email) > 254 or not EMAIL_RE.match(email) or unstorable(email):
        raise ValidationFailed("an e-mail address such as name@ministry.gov.om", param="email")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValidationFailed(
            f"a password of at least {MIN_PASSWORD_CHARS} characters", param="password"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValidationFailed(
            f"a password of at most {MAX_PASSWORD_CHARS} characters", param="password"
        )


def _box(gw: Gateway) -> SecretBox:
    return SecretBox(gw.settings.encryption_key)


def _code_digest(gw: Gateway, code: str) -> str:
    key = ("console-recovery:" + gw.settings.secret_key).encode()
    return hmac.new(key, code.replace("-", "").lower().encode(), hashlib.sha256).hexdigest()


def create_user(
    gw: Gateway,
    email: str,
    role: str,
    password: str,
    *,
    actor: str,
    address: str | None = None,
    language: str = "ar",
) -> ConsoleUser:
    """A new console user; `actor` is who created it (an admin's id, or `cli`)."""
    email = _check_email(email)
    if role not in ROLES:
        raise ValidationFailed(f"role is one of {', '.join(ROLES)}", param="role")
    if language not in LANGUAGES:
        raise ValidationFailed("language is ar or en", param="language")
    check_password(password)
    password_hash = _hasher.hash(password)  # outside the transaction: it takes a while
    with gw.db.transaction() as session:
        if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email)):
            raise Conflict(f"a user {email} exists already", code="user_exists")
        user = ConsoleUser(
            id=new_id("usr"),
            email=email,
            role=role,
            password_hash=password_hash,
            language=language,
            session_epoch=0,
            created_at=clock.now(),
        )
        session.add(user)
        audit.record(
            session,
            actor,
            "user_created",
            target=user.id,
            address=address,
            details={"email": email, "role": role},
        )
    return user


@dataclasses.dataclass(frozen=True)
class PasswordChecked:
    """The outcome of the password step: the user, or None for a wrong e-mail or password
    (one answer for both)."""

    user: ConsoleUser | None

    @property
    def needs_enrolment(self) -> bool:
        """An admin without a second factor enrols before anything else."""
        return self.user is not None and self.user.role == "admin" and not self.user.totp_secret


def check_sign_in(
    gw: Gateway, email: str, password: str, *, address: str | None
) -> PasswordChecked:
    """The password step. A failure is audited under the e-mail typed; a success is audited
    once the second factor (if any) is passed too, by `signed_in`."""
    email = typed_account(email)
    user = None
    if email != NOT_AN_EMAIL:
        with gw.db.read() as session:
            user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == email))
    stored = user.password_hash if user is not None else _unknown_account_hash()
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD_CHARS])
        good = user is not None and user.disabled_at is None
    except (VerificationError, InvalidHashError):
        good = False
    if not good:
        audit.write(gw, email, "sign_in_failed", address=address)
        return PasswordChecked(None)
    assert user is not None
    if _hasher.check_needs_rehash(user.password_hash):
        _rehash(gw, user.id, password)
    return PasswordChecked(user)


def _rehash(gw: Gateway, user_id: str, password: str) -> None:
    new_hash = _hasher.hash(password)
    with gw.db.transaction() as session:
        found = session.get(ConsoleUser, user_id)
        if found is not None:
            found.password_hash = new_hash


def locked_for(gw: Gateway, email: str, address: str | None) -> int | None:
    """Seconds until a sign-in as `email` from `address` may be tried again, or None."""
    email = typed_account(email)
    since = clock.now() - LOCK_WINDOW
    with gw.db.read() as session:
        user_id = session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email))
        by_account = _failures(session, _FAILED, _failed_as(email, user_id), since)
        by_address = _failures(session, _FAILED, AuditRecord.address == address, since)
    until = [
        found[limit - 1] + LOCK_WINDOW
        for found, limit in ((by_account, FAILURES_PER_ACCOUNT), (by_address, FAILURES_PER_ADDRESS))
        if len(found) >= limit
    ]
    if not until:
        return None
    return max(1, math.ceil((max(until) - clock.now()).total_seconds()))


_FAILED = AuditRecord.action.in_(("sign_in_failed", "second_factor_failed"))


def _failed_as(email: str, user_id: str | None) -> ColumnElement[bool]:
    """The failures that count against an account: at its e-mail address, and (once the
    password passed) at its second factor."""
    return AuditRecord.actor.in_([email] if user_id is None else [email, user_id])


def _failures(
    session: Session, failed: ColumnElement[bool], whose: ColumnElement[bool], since: dt.datetime
) -> list[dt.datetime]:
    """When the failures `whose` selects happened since `since`, newest first (enough of
    them to tell a lock)."""
    return list(
        session.scalars(
            select(AuditRecord.created_at)
            .where(failed, whose, AuditRecord.created_at >= since)
            .order_by(AuditRecord.created_at.desc())
            .limit(max(FAILURES_PER_ACCOUNT, FAILURES_PER_ADDRESS))
        )
    )


def signed_in(gw: Gateway, user: ConsoleUser, *, address: str | None, factor: str) -> None:
    audit.write(gw, user.id, "sign_in", address=address, details={"second_factor": factor})


def check_second_factor(gw: Gateway, user_id: str, code: str, *, address: str | None) -> bool:
    """A TOTP code (each good once) or an unused recovery code (then spent)."""
    code = re.sub(r"[\s-]", "", code)[:32]
    with gw.db.transaction() as session:
        user = session.get(ConsoleUser, user_id, with_for_update=True)
        if user is None or user.disabled_at is not None or not user.totp_secret:
            return False
        since = clock.now() - LOCK_WINDOW
        failures = _failures(session, _FAILED, _failed_as(user.email, user.id), since)
        if len(failures) >= FAILURES_PER_ACCOUNT:
            return False  # guesses sent at once wait on the row lock and meet the count here
        if code.isdigit() and len(code) == 6:
            ok = _spend_totp(gw, user, code)
        else:
            ok = _spend_recovery_code(gw, user, code)
        if not ok:
            audit.record(session, user.id, "second_factor_failed", address=address)
        return ok


def _spend_totp(gw: Gateway, user: ConsoleUser, code: str) -> bool:
    assert user.totp_secret is not None
    secret = _box(gw).open(user.totp_secret, context=f"{user.id}:totp").decode()
    step = _matching_step(pyotp.TOTP(secret), code, after=user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


def _matching_step(totp: pyotp.TOTP, code: str, *, after: int | None) -> int | None:
    """The time step, within the drift allowed and later than `after` (a code once used, or
    older than one used, is spent), whose code is `code`; None if none."""
    step_now = int(clock.now().timestamp()) // totp.interval
    for step in range(step_now - TOTP_WINDOW, step_now + TOTP_WINDOW + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _spend_recovery_code(gw: Gateway, user: ConsoleUser, code: str) -> bool:
    wanted = _code_digest(gw, code)
    left = list(user.recovery_codes or ())
    for digest in left:
        if hmac.compare_digest(digest, wanted):
            left.remove(digest)
            user.recovery_codes = left
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Enrolment:
    """A second factor offered, not yet kept: the secret and its QR code (SVG)."""

    secret: str
    uri: str
    qr_svg: str


def offer_enrolment(user: ConsoleUser, secret: str | None = None) -> Enrolment:
    """A new secret (or the one offered before, drawn again) and its QR code."""
    secret = secret or pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    qr = segno.make(uri, error="m")
    svg = qr.svg_inline(scale=5, dark="#111", light="#fff", title="TOTP")
    return Enrolment(secret=secret, uri=uri, qr_svg=svg)


def enrol(
    gw: Gateway, user_id: str, secret: str, code: str, *, address: str | None
) -> list[str] | None:
    """Keep the second factor once a code from it proves the user holds it; the recovery
    codes, shown once, or None if the code was wrong."""
    code = re.sub(r"\s", "", code)[:16]
    step = _matching_step(pyotp.TOTP(secret), code, after=None)
    if step is None:
        return None
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    with gw.db.transaction() as session:
        user = session.get(ConsoleUser, user_id, with_for_update=True)
        if user is None or user.disabled_at is not None or user.totp_secret:
            return None  # enrolled meanwhile (a form sent twice): the first one stands
        user.totp_secret = _box(gw).seal(secret.encode(), context=f"{user.id}:totp")
        user.totp_last_step = step
        user.recovery_codes = [_code_digest(gw, c) for c in codes]
        audit.record(session, user.id, "second_factor_enrolled", address=address)
    return codes


def _recovery_code() -> str:
    raw = secrets.token_hex(5)
    return f"{raw[:5]}-{raw[5:]}"


def active_user(gw: Gateway, user_id: str, epoch: int) -> ConsoleUser | None:
    """The user a session names, if the account is enabled and the session not ended."""
    with gw.db.read() as session:
        user = session.get(ConsoleUser, user_id)
    if user is None or user.disabled_at is not None or user.session_epoch != epoch:
        return None
    return user


def sign_out(gw: Gateway, user_id: str, *, address: str | None) -> None:
    """End every session of the user (a copied cookie dies with the one signed out)."""
    with gw.db.transaction() as session:
        user = session.get(ConsoleUser, user_id, with_for_update=True)
        if user is not None:
            user.session_epoch += 1
            audit.record(session, user.id, "sign_out", address=address)


def set_language(gw: Gateway, user_id: str, language: str) -> None:
    if language not in LANGUAGES:
        raise ValidationFailed("language is ar or en", param="language")
    with gw.db.transaction() as session:
        user = session.get(ConsoleUser, user_id, with_for_update=True)
        if user is not None:
            user.language = language


def list_users(gw: Gateway) -> list[ConsoleUser]:
    with gw.db.read() as session:
        return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.email)))


MAX_LOOKUP = 500  # the most user ids one look-up takes (one page of the audit log is fewer)


def emails_of(gw: Gateway, user_ids: Iterable[str]) -> dict[str, str]:
    """The e-mail address of each of these user ids that names a console user (the first
    `MAX_LOOKUP` of them)."""
    wanted = sorted({u for u in user_ids if u.startswith("usr_") and len(u) <= 40})[:MAX_LOOKUP]
    if not wanted:
        return {}
    with gw.db.read() as session:
        rows = session.execute(
            select(ConsoleUser.id, ConsoleUser.email).where(ConsoleUser.id.in_(wanted))
        ).all()
    return {row.id: row.email for row in rows}


def _admin_change(session: Session, user_id: str) -> ConsoleUser:
    user = None
    if len(user_id) <= 40 and not unstorable(user_id):
        user = session.get(ConsoleUser, user_id, with_for_update=True)
    if user is None:
        raise NotFound(f"no user {user_id[:40]!r}", param="id")
    return user


def disable_user(gw: Gateway, user_id: str, *, actor: str, address: str | None) -> ConsoleUser:
    """Disable an account: its sessions end at once; an admin never disables the last
    enabled admin, themselves included."""
    with gw.db.transaction() as session:
        user = _admin_change(session, user_id)
        if user.disabled_at is not None:
            raise Conflict("the user is disabled already", code="user_disabled")
        if user.role == "admin" and _enabled_admins(session) <= 1:
            raise Conflict("the last enabled administrator stays", code="last_admin")
        user.disabled_at = clock.now()
        user.session_epoch += 1
        audit.record(session, actor, "user_disabled", target=user.id, address=address)
    return user


def reset_second_factor(
    gw: Gateway, user_id: str, *, actor: str, address: str | None
) -> ConsoleUser:
    """Forget a user's second factor (a lost phone): their sessions end, and they enrol anew
    at their next sign-in (an admin must; a finance user may)."""
    with gw.db.transaction() as session:
        user = _admin_change(session, user_id)
        user.totp_secret = None
        user.totp_last_step = None
        user.recovery_codes = None
        user.session_epoch += 1
        audit.record(session, actor, "second_factor_reset", target=user.id, address=address)
    return user


def _enabled_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ConsoleUser)
            .where(ConsoleUser.role == "admin", ConsoleUser.disabled_at.is_(None))
        )
        or 0
    )


def user_id_of(gw: Gateway, email: str) -> str | None:
    """The id of the user with `email`, if any."""
    with gw.db.read() as session:
        found = session.scalar(
            select(ConsoleUser.id).where(ConsoleUser.email == normal_email(email))
        )
    return found
