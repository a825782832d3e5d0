"""The console's words in Arabic and English: the words every page shares, and `Words`, which
joins a page's own words (kept beside its view) to them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from payments.money import CURRENCY_NAMES_AR, format_major

LANGUAGES = ("ar", "en")
DIRECTIONS = {"ar": "rtl", "en": "ltr"}
LANGUAGE_NAMES = {"ar": "العربية", "en": "English"}

# key -> (Arabic, English)
COMMON: dict[str, tuple[str, str]] = {
    "console": ("وحدة المالية", "Finance console"),
    "service_name": ("بوابة الدفع الإلكتروني الخليجية الموحدة", "GCC e-payment gateway"),
    "skip_link": ("انتقل إلى المحتوى", "Skip to content"),
    "nav_label": ("أقسام وحدة المالية", "Console sections"),
    "nav_dashboard": ("لوحة المتابعة", "Dashboard"),
    "nav_payments": ("المدفوعات", "Payments"),
    "nav_settlements": ("التسويات", "Settlements"),
    "nav_reconciliation": ("المطابقة", "Reconciliation"),
    "nav_ledger": ("دفتر الأستاذ", "Ledger"),
    "nav_audit": ("سجل التدقيق", "Audit log"),
    "nav_admin": ("الإدارة", "Administration"),
    "nav_account": ("حسابي", "My account"),
    "sign_out": ("تسجيل الخروج", "Sign out"),
    "signed_in_as": ("مسجّل الدخول باسم", "Signed in as"),
    "language_switch": ("English", "العربية"),
    "language_switch_label": ("تغيير اللغة", "Change language"),
    "role_finance": ("موظف مالية", "Finance officer"),
    "role_admin": ("مسؤول", "Administrator"),
    "footer": (
        "للاستخدام الرسمي فقط. كل إجراء يُسجَّل في سجل التدقيق.",
        "Official use only. Every action is written to the audit log.",
    ),
    "apply": ("تطبيق", "Apply"),
    "table_region": (
        "جدول (يُمرَّر أفقيًا على الشاشات الضيقة)",
        "Table (scrolls sideways on narrow screens)",
    ),
    "next_page": ("الصفحة التالية", "Next page"),
    "none_found": ("لا توجد نتائج.", "Nothing found."),
    "error_title": ("تعذّر إكمال الطلب", "The request could not be completed"),
    "error_403": (
        "هذه الصفحة للمسؤولين فقط.",
        "This page is for administrators only.",
    ),
    "error_404": ("الصفحة غير موجودة.", "There is no such page."),
    "error_400": (
        "انتهت صلاحية النموذج أو لم يُرسل كاملًا. ارجع وأعد المحاولة.",
        "The form expired or arrived incomplete. Go back and try again.",
    ),
    "error_503": (
        "الخدمة غير متاحة مؤقتًا. أعد المحاولة بعد لحظات.",
        "The service is briefly unavailable. Try again in a moment.",
    ),
    "back_to_dashboard": ("العودة إلى لوحة المتابعة", "Back to the dashboard"),
    # Sign-in
    "sign_in_title": ("تسجيل الدخول", "Sign in"),
    "email": ("البريد الإلكتروني", "E-mail address"),
    "password": ("كلمة المرور", "Password"),
    "sign_in_button": ("تسجيل الدخول", "Sign in"),
    "sign_in_failed": (
        "البريد الإلكتروني أو كلمة المرور غير صحيحة.",
        "The e-mail address or password is not right.",
    ),
    "locked_out": (
        "محاولات كثيرة غير ناجحة. أعد المحاولة بعد {minutes} دقيقة.",
        "Too many failed attempts. Try again in {minutes} minutes.",
    ),
    "signed_out": ("سُجّل خروجك.", "You are signed out."),
    "session_ended": (
        "انتهت جلستك. سجّل الدخول مرة أخرى.",
        "Your session ended. Sign in again.",
    ),
    "second_factor_title": ("رمز التحقق", "Verification code"),
    "second_factor_hint": (
        "أدخل الرمز المكوّن من 6 أرقام من تطبيق المصادقة، أو أحد رموز الاسترداد.",
        "Enter the 6-digit code from your authenticator app, or one of your recovery codes.",
    ),
    "code": ("الرمز", "Code"),
    "verify": ("تحقّق", "Verify"),
    "second_factor_failed": ("الرمز غير صحيح.", "That code is not right."),
    "enrol_title": ("إعداد التحقق بخطوتين", "Set up two-step verification"),
    "enrol_required": (
        "يجب على المسؤولين إعداد التحقق بخطوتين قبل المتابعة.",
        "Administrators must set up two-step verification before going on.",
    ),
    "enrol_step_scan": (
        "امسح الرمز بتطبيق المصادقة، أو أدخل المفتاح يدويًا:",
        "Scan the code with your authenticator app, or type the key in by hand:",
    ),
    "enrol_secret": ("المفتاح", "Key"),
    "enrol_step_code": (
        "ثم أدخل الرمز المكوّن من 6 أرقام الذي يظهر في التطبيق.",
        "Then enter the 6-digit code the app shows.",
    ),
    "enrol_button": ("تفعيل", "Turn on"),
    "recovery_title": ("رموز الاسترداد", "Recovery codes"),
    "recovery_hint": (
        "احفظ هذه الرموز في مكان آمن. كل رمز يُستخدم مرة واحدة إن فقدت هاتفك. لن تُعرض مرة أخرى.",
        "Keep these codes somewhere safe. Each works once if you lose your phone. "
        "They will not be shown again.",
    ),
    "continue": ("متابعة", "Continue"),
    "account_title": ("حسابي", "My account"),
    "second_factor_on": ("التحقق بخطوتين مفعّل.", "Two-step verification is on."),
    "second_factor_off": ("التحقق بخطوتين غير مفعّل.", "Two-step verification is off."),
    "set_up": ("إعداد", "Set up"),
}


class Words:
    """A page's words joined to the common ones, in one language; `w(key, **values)`."""

    def __init__(self, lang: str, page: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.lang = lang if lang in LANGUAGES else "ar"
        self._index = 0 if self.lang == "ar" else 1
        self._page = page or {}

    def __call__(self, key: str, **values: object) -> str:
        pair = self._page.get(key) or COMMON[key]
        text = pair[self._index]
        return text.format(**values) if values else text

    @property
    def dir(self) -> str:
        return DIRECTIONS[self.lang]

    def money(self, amount_minor: int, currency: str) -> str:
        """`12.500 OMR`, or `12.500 ريال عماني` in Arabic: never a float."""
        name = CURRENCY_NAMES_AR.get(currency, currency) if self.lang == "ar" else currency
        return f"{format_major(amount_minor, currency)} {name}"

    def when(self, moment: dt.datetime | None) -> str:
        """A moment in UTC, written the same in both languages (ISO 8601 reads right-to-left
        as well)."""
        if moment is None:
            return "—"
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
