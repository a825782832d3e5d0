"""Administration, for admins only: console users, agencies and API keys, each change written
to the audit log in the transaction that makes it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from payments.errors import GatewayError, NotFound
from payments.finance import accounts, audit, guard
from payments.finance.models import ROLES
from payments.finance.web import blp, render
from payments.models import Agency, ApiKey
from payments.money import CURRENCY_EXPONENTS
from payments.service import access

_NEW_KEY = "new_key"  # the secret to show once (sealed in the cookie), then dropped
MAX_FIELD_CHARS = 1024  # longer than any good value; refused with a message, never stored
MAX_CURRENCIES = len(CURRENCY_EXPONENTS)
# What a POST just did, shown once on the page it redirects to.
DONE = (
    "user_created",
    "user_disabled",
    "second_factor_reset",
    "agency_created",
    "key_revoked",
)

PAGE: dict[str, tuple[str, str]] = {
    "admin_title": ("الإدارة", "Administration"),
    "admin_intro": (
        "إدارة مستخدمي وحدة المالية والجهات الحكومية ومفاتيح الواجهة البرمجية. "
        "كل تغيير يُسجَّل في سجل التدقيق.",
        "Manage console users, government agencies and API keys. Every change is written to "
        "the audit log.",
    ),
    "users_title": ("المستخدمون", "Users"),
    "users_intro": ("من يدخل إلى وحدة المالية.", "Who signs in to the console."),
    "agencies_title": ("الجهات", "Agencies"),
    "agencies_intro": (
        "الجهات الحكومية التي تقبل المدفوعات عبر البوابة.",
        "The government agencies that take payments through the gateway.",
    ),
    "keys_title": ("مفاتيح الواجهة البرمجية", "API keys"),
    "keys_intro": (
        "مفاتيح الجهات ومفاتيح المالية للواجهة البرمجية. "
        "لا تُعرض قيمة المفتاح إلا مرة واحدة عند إنشائه.",
        "Agency and finance keys for the API. A key's secret is shown only once, when it "
        "is created.",
    ),
    "back_to_admin": ("العودة إلى الإدارة", "Back to administration"),
    # Users
    "col_email": ("البريد الإلكتروني", "E-mail address"),
    "col_role": ("الدور", "Role"),
    "col_second_factor": ("التحقق بخطوتين", "Two-step verification"),
    "col_state": ("الحالة", "State"),
    "col_created": ("تاريخ الإنشاء", "Created"),
    "col_actions": ("الإجراءات", "Actions"),
    "factor_on": ("مفعّل", "On"),
    "factor_off": ("غير مفعّل", "Off"),
    "user_active": ("نشط", "Active"),
    "user_disabled_since": ("معطّل منذ {when}", "Disabled since {when}"),
    "disable": ("تعطيل", "Disable"),
    "disable_named": ("تعطيل {email}", "Disable {email}"),
    "reset_factor": ("إعادة تعيين التحقق بخطوتين", "Reset two-step verification"),
    "reset_factor_named": (
        "إعادة تعيين التحقق بخطوتين لـ {email}",
        "Reset two-step verification for {email}",
    ),
    "new_user_title": ("مستخدم جديد", "New user"),
    "role": ("الدور", "Role"),
    "initial_password": ("كلمة المرور الأولى", "Initial password"),
    "initial_password_hint": (
        "12 حرفًا على الأقل. أبلغها للمستخدم بطريقة آمنة.",
        "At least 12 characters. Give it to the user in a safe way.",
    ),
    "create_user": ("إنشاء المستخدم", "Create user"),
    # Agencies
    "col_agency_id": ("المعرّف", "Id"),
    "col_name_ar": ("الاسم بالعربية", "Name in Arabic"),
    "col_name_en": ("الاسم بالإنجليزية", "Name in English"),
    "col_member_state": ("الدولة العضو", "Member state"),
    "col_currencies": ("العملات", "Currencies"),
    "col_fee_bearer": ("من يتحمّل رسوم المحصّل", "Who bears acquirer fees"),
    "new_agency_title": ("جهة جديدة", "New agency"),
    "agency_id": ("معرّف الجهة", "Agency id"),
    "agency_id_hint": (
        "أحرف إنجليزية صغيرة وأرقام و«-»، مثل om-moh.",
        "Lower-case letters, digits and '-', such as om-moh.",
    ),
    "name_en": ("الاسم بالإنجليزية", "Name in English"),
    "name_ar": ("الاسم بالعربية", "Name in Arabic"),
    "member_state": ("الدولة العضو", "Member state"),
    "currencies": ("العملات", "Currencies"),
    "fee_bearer": ("من يتحمّل رسوم المحصّل", "Who bears acquirer fees"),
    "bearer_gateway": ("البوابة", "The gateway"),
    "bearer_agency": ("الجهة", "The agency"),
    "create_agency": ("إنشاء الجهة", "Create agency"),
    "state_SA": ("المملكة العربية السعودية", "Saudi Arabia"),
    "state_AE": ("الإمارات العربية المتحدة", "United Arab Emirates"),
    "state_KW": ("الكويت", "Kuwait"),
    "state_QA": ("قطر", "Qatar"),
    "state_BH": ("البحرين", "Bahrain"),
    "state_OM": ("عُمان", "Oman"),
    "choose": ("— اختر —", "— choose —"),
    "list_limited": (
        "تُعرض أحدث {count} فقط.",
        "Only the newest {count} are shown.",
    ),
    # Keys
    "col_key_id": ("المعرّف", "Id"),
    "col_prefix": ("بداية المفتاح", "Prefix"),
    "col_agency": ("الجهة", "Agency"),
    "col_key_role": ("النوع", "Kind"),
    "col_mode": ("الوضع", "Mode"),
    "col_revoked": ("الإلغاء", "Revoked"),
    "key_role_agency": ("مفتاح جهة", "Agency key"),
    "key_role_finance": ("مفتاح مالية", "Finance key"),
    "mode_test": ("تجريبي", "Test"),
    "mode_live": ("فعلي", "Live"),
    "not_revoked": ("ساري", "In use"),
    "revoke": ("إلغاء", "Revoke"),
    "revoke_named": ("إلغاء المفتاح {key_id}", "Revoke key {key_id}"),
    "new_agency_key_title": ("مفتاح جهة جديد", "New agency key"),
    "new_finance_key_title": ("مفتاح مالية جديد", "New finance key"),
    "new_finance_key_hint": (
        "يقرأ مفتاح المالية التقارير ويستورد ملفات التسوية لكل الجهات. وضعه فعلي دائمًا.",
        "A finance key reads reports and imports settlement files for every agency. It is "
        "always live.",
    ),
    "agency": ("الجهة", "Agency"),
    "mode": ("الوضع", "Mode"),
    "create_key": ("إنشاء المفتاح", "Create key"),
    "new_key_title": ("المفتاح الجديد", "The new key"),
    "new_key_hint": (
        "انسخ هذا المفتاح الآن وسلّمه بطريقة آمنة. لن يُعرض مرة أخرى.",
        "Copy this key now and hand it over in a safe way. It will not be shown again.",
    ),
    "no_agencies_yet": (
        "لا توجد جهات بعد: أنشئ جهة أولًا.",
        "There are no agencies yet: create one first.",
    ),
    # What was done
    "done_user_created": ("أُنشئ المستخدم.", "The user was created."),
    "done_user_disabled": (
        "عُطّل المستخدم وانتهت جلساته.",
        "The user was disabled and their sessions ended.",
    ),
    "done_second_factor_reset": (
        "أُعيد تعيين التحقق بخطوتين. سيُعِدّه المستخدم عند دخوله التالي.",
        "Two-step verification was reset. The user sets it up again at their next sign-in.",
    ),
    "done_agency_created": ("أُنشئت الجهة.", "The agency was created."),
    "done_key_revoked": ("أُلغي المفتاح.", "The key was revoked."),
    # Problems
    "error_intro": ("لم يُحفظ شيء:", "Nothing was saved:"),
    "err_invalid": ("القيم المُدخلة غير صحيحة.", "The values entered are not right."),
    "err_too_long": ("إحدى القيم أطول من المسموح.", "One of the values is too long."),
    "err_email": (
        "أدخل بريدًا إلكترونيًا صحيحًا مثل name@ministry.gov.om.",
        "Enter an e-mail address such as name@ministry.gov.om.",
    ),
    "err_role": ("اختر دورًا.", "Choose a role."),
    "err_password": (
        "يجب أن تكون كلمة المرور بين 12 و1024 حرفًا.",
        "The password must have 12 to 1024 characters.",
    ),
    "err_user_exists": (
        "يوجد مستخدم بهذا البريد الإلكتروني.",
        "A user with that e-mail address exists already.",
    ),
    "err_no_user": ("لا يوجد هذا المستخدم.", "There is no such user."),
    "err_user_disabled": ("المستخدم معطّل من قبل.", "The user is disabled already."),
    "err_last_admin": (
        "لا يمكن تعطيل آخر مسؤول نشط.",
        "The last active administrator cannot be disabled.",
    ),
    "err_agency_id": (
        "معرّف الجهة: من 2 إلى 63 حرفًا من الأحرف الإنجليزية الصغيرة والأرقام و«-»، "
        "يبدأ بحرف أو رقم.",
        "Agency id: 2 to 63 lower-case letters, digits and '-', starting with a letter or digit.",
    ),
    "err_state": ("اختر دولة عضوًا.", "Choose a member state."),
    "err_currency": ("اختر عملة واحدة على الأقل.", "Choose at least one currency."),
    "err_name": (
        "للجهة اسم بالعربية واسم بالإنجليزية، كل منهما 200 حرف على الأكثر.",
        "An agency needs a name in Arabic and one in English, each at most 200 characters.",
    ),
    "err_fee_bearer": ("اختر من يتحمّل الرسوم.", "Choose who bears the fees."),
    "err_agency_exists": ("توجد جهة بهذا المعرّف.", "An agency with that id exists already."),
    "err_agency": ("اختر جهة.", "Choose an agency."),
    "err_no_agency": ("لا توجد هذه الجهة.", "There is no such agency."),
    "err_mode": ("اختر الوضع: تجريبي أو فعلي.", "Choose the mode: test or live."),
    "err_no_key": ("لا يوجد هذا المفتاح.", "There is no such key."),
}

# The words for a service's refusal: its code first, then the field it names.
USER_PROBLEMS = {
    "user_exists": "err_user_exists",
    "user_disabled": "err_user_disabled",
    "last_admin": "err_last_admin",
    "email": "err_email",
    "role": "err_role",
    "password": "err_password",
    "language": "err_invalid",
}
AGENCY_PROBLEMS = {
    "agency_exists": "err_agency_exists",
    "id": "err_agency_id",
    "state": "err_state",
    "currency": "err_currency",
    "name": "err_name",
    "fee_bearer": "err_fee_bearer",
}
KEY_PROBLEMS = {"agency": "err_agency", "mode": "err_mode", "role": "err_invalid"}


def _problem(exc: GatewayError, words: Mapping[str, str], missing: str) -> tuple[str, int]:
    """The word for a refusal, and the page's status (404 for what does not exist)."""
    if isinstance(exc, NotFound):
        return missing, 404
    found = words.get(exc.code) or words.get(exc.param or "") or "err_invalid"
    return found, 422


def _field(name: str) -> str:
    return request.form.get(name, "")


def _too_long(*values: str) -> bool:
    return any(len(v) > MAX_FIELD_CHARS for v in values)


def _done() -> str | None:
    done = request.args.get("done")
    return done if done in DONE else None


def _see(endpoint: str, done: str | None = None) -> Response:
    return redirect(url_for(endpoint, done=done) if done else url_for(endpoint), code=303)


@blp.get("/admin")
@guard.signed_in("admin")
def admin() -> Response:
    return render("admin.html", PAGE)


# Users


def _users_page(
    *, status: int = 200, error: str | None = None, form: Mapping[str, str] | None = None
) -> Response:
    return render(
        "admin_users.html",
        PAGE,
        status=status,
        users=accounts.list_users(guard.gateway()),
        roles=ROLES,
        error=error,
        form=form or {},
        done=_done() if status == 200 else None,
    )


@blp.get("/admin/users")
@guard.signed_in("admin")
def admin_users() -> Response:
    return _users_page()


@blp.post("/admin/users")
@guard.signed_in("admin")
def admin_users_create() -> Response:
    email, role, password = _field("email"), _field("role"), _field("password")
    kept = {"email": email[:254], "role": role if role in ROLES else ""}
    if _too_long(email, role):
        return _users_page(status=422, error="err_too_long", form=kept)
    try:
        accounts.create_user(
            guard.gateway(),
            email,
            role,
            password,
            actor=guard.user().id,
            address=guard.address(),
        )
    except GatewayError as exc:
        word, status = _problem(exc, USER_PROBLEMS, "err_no_user")
        return _users_page(status=status, error=word, form=kept)
    return _see("finance.admin_users", "user_created")


@blp.post("/admin/users/<user_id>/disable")
@guard.signed_in("admin")
def admin_user_disable(user_id: str) -> Response:
    if len(user_id) > 40:
        return _users_page(status=404, error="err_no_user")
    try:
        accounts.disable_user(
            guard.gateway(), user_id, actor=guard.user().id, address=guard.address()
        )
    except GatewayError as exc:
        word, status = _problem(exc, USER_PROBLEMS, "err_no_user")
        return _users_page(status=status, error=word)
    return _see("finance.admin_users", "user_disabled")


@blp.post("/admin/users/<user_id>/reset-second-factor")
@guard.signed_in("admin")
def admin_user_reset(user_id: str) -> Response:
    if len(user_id) > 40:
        return _users_page(status=404, error="err_no_user")
    try:
        accounts.reset_second_factor(
            guard.gateway(), user_id, actor=guard.user().id, address=guard.address()
        )
    except GatewayError as exc:
        word, status = _problem(exc, USER_PROBLEMS, "err_no_user")
        return _users_page(status=status, error=word)
    return _see("finance.admin_users", "second_factor_reset")


# Agencies


def _agencies_page(
    *, status: int = 200, error: str | None = None, form: Mapping[str, Any] | None = None
) -> Response:
    agencies = access.list_agencies(guard.gateway())
    return render(
        "admin_agencies.html",
        PAGE,
        status=status,
        agencies=agencies,
        limited=len(agencies) >= access.LIST_LIMIT,
        limit=access.LIST_LIMIT,
        states=access.MEMBER_STATES,
        all_currencies=tuple(CURRENCY_EXPONENTS),
        bearers=access.FEE_BEARERS,
        error=error,
        form=form or {"currencies": (), "fee_bearer": "gateway"},
        done=_done() if status == 200 else None,
    )


@blp.get("/admin/agencies")
@guard.signed_in("admin")
def admin_agencies() -> Response:
    return _agencies_page()


@blp.post("/admin/agencies")
@guard.signed_in("admin")
def admin_agencies_create() -> Response:
    agency_id = _field("id").strip()
    name, name_ar = _field("name").strip(), _field("name_ar").strip()
    state, fee_bearer = _field("state"), _field("fee_bearer")
    chosen = request.form.getlist("currency")
    # As `gateway agencies create --currency OMR,USD` reads them.
    codes = [c.strip().upper() for item in chosen for c in item.split(",") if c.strip()]
    kept = {
        "id": agency_id[:64],
        "name": name[:200],
        "name_ar": name_ar[:200],
        "state": state[:2],
        "currencies": tuple(c[:3] for c in codes[:MAX_CURRENCIES]),
        "fee_bearer": fee_bearer[:8],
    }
    if _too_long(agency_id, name, name_ar, state, fee_bearer, *chosen):
        return _agencies_page(status=422, error="err_too_long", form=kept)
    if len(codes) > MAX_CURRENCIES:
        return _agencies_page(status=422, error="err_currency", form=kept)
    actor, address = guard.user().id, guard.address()

    def audited(session: Session, agency: Agency) -> None:
        audit.record(
            session,
            actor,
            "agency_created",
            target=agency.id,
            address=address,
            details={
                "state": agency.state,
                "currencies": list(agency.currencies),
                "fee_bearer": agency.fee_bearer,
            },
        )

    try:
        access.create_agency(
            guard.gateway(),
            agency_id,
            name=name,
            name_ar=name_ar,
            state=state,
            currencies=codes,
            fee_bearer=fee_bearer,
            audited=audited,
        )
    except GatewayError as exc:
        word, status = _problem(exc, AGENCY_PROBLEMS, "err_invalid")
        return _agencies_page(status=status, error=word, form=kept)
    return _see("finance.admin_agencies", "agency_created")


# API keys


def _keys_page(
    *,
    status: int = 200,
    error: str | None = None,
    form: Mapping[str, str] | None = None,
    new_key: Mapping[str, str] | None = None,
) -> Response:
    gw = guard.gateway()
    keys = access.list_keys(gw)
    return render(
        "admin_keys.html",
        PAGE,
        status=status,
        keys=keys,
        limited=len(keys) >= access.LIST_LIMIT,
        limit=access.LIST_LIMIT,
        agencies=access.list_agencies(gw),
        error=error,
        form=form or {"mode": "test"},
        new_key=new_key,
        done=_done() if status == 200 else None,
    )


@blp.get("/admin/keys")
@guard.signed_in("admin")
def admin_keys() -> Response:
    shown = guard.take_secret(_NEW_KEY)  # once: the next GET no longer has it
    new_key = shown if isinstance(shown, dict) else None
    return _keys_page(new_key=new_key)


@blp.post("/admin/keys")
@guard.signed_in("admin")
def admin_keys_create() -> Response:
    role, agency_id, mode = _field("role"), _field("agency"), _field("mode")
    kept = {"agency": agency_id[:64], "mode": mode[:4]}
    if _too_long(role, agency_id, mode):
        return _keys_page(status=422, error="err_too_long", form=kept)
    if role == "agency" and not agency_id:
        return _keys_page(status=422, error="err_agency", form=kept)
    actor, address = guard.user().id, guard.address()

    def audited(session: Session, key: ApiKey) -> None:
        audit.record(
            session,
            actor,
            "key_created",
            target=key.id,
            address=address,
            details={"agency": key.agency_id, "role": key.role, "mode": key.mode},
        )

    try:
        key, secret = access.create_key(
            guard.gateway(),
            agency_id=agency_id if role == "agency" else None,
            role=role,
            mode=mode if role == "agency" else "live",
            audited=audited,
        )
    except GatewayError as exc:
        word, status = _problem(exc, KEY_PROBLEMS, "err_no_agency")
        return _keys_page(status=status, error=word, form=kept)
    guard.keep_secret(_NEW_KEY, {"id": key.id, "secret": secret})
    return _see("finance.admin_keys")


@blp.post("/admin/keys/<key_id>/revoke")
@guard.signed_in("admin")
def admin_key_revoke(key_id: str) -> Response:
    if len(key_id) > 40:
        return _keys_page(status=404, error="err_no_key")
    actor, address = guard.user().id, guard.address()

    def audited(session: Session, key: ApiKey) -> None:
        audit.record(
            session,
            actor,
            "key_revoked",
            target=key.id,
            address=address,
            details={"agency": key.agency_id, "role": key.role, "mode": key.mode},
        )

    try:
        access.revoke_key(guard.gateway(), key_id, audited=audited)
    except GatewayError as exc:
        word, status = _problem(exc, KEY_PROBLEMS, "err_no_key")
        return _keys_page(status=status, error=word)
    return _see("finance.admin_keys", "key_revoked")
