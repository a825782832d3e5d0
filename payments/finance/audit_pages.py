"""The audit log page: who did what in the console, newest first, a page at a time, filtered
by actor, action and dates."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from flask import request, url_for
from werkzeug.wrappers import Response

from payments.finance import accounts, audit, guard
from payments.finance.web import blp, render
from payments.schemas import unstorable

MAX_ACTOR_CHARS = 254
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RECORD_ID_RE = re.compile(r"aud_[0-9a-z]{26}")
FIRST_YEAR, LAST_YEAR = 2000, 9998

PAGE: dict[str, tuple[str, str]] = {
    "audit_title": ("سجل التدقيق", "Audit log"),
    "audit_intro": (
        "كل ما جرى في وحدة المالية، الأحدث أولًا. لا يمكن تعديل السجل أو حذف شيء منه.",
        "Everything done in the console, newest first. The log cannot be changed or deleted from.",
    ),
    "filters": ("تصفية", "Filter"),
    "actor": ("المنفّذ", "Actor"),
    "actor_hint": (
        "معرّف مستخدم، أو البريد الإلكتروني المُدخل في محاولة دخول فاشلة.",
        "A user id, or the e-mail typed at a failed sign-in.",
    ),
    "action": ("الإجراء", "Action"),
    "any_action": ("كل الإجراءات", "All actions"),
    "from": ("من تاريخ", "From"),
    "to": ("إلى تاريخ", "To"),
    "clear": ("مسح التصفية", "Clear filters"),
    "col_when": ("الوقت", "When"),
    "col_who": ("من", "Who"),
    "col_what": ("ماذا", "What"),
    "col_target": ("على ماذا", "Target"),
    "col_where": ("من أين", "From where"),
    "col_details": ("التفاصيل", "Details"),
    "bad_actor": (
        "المنفّذ طويل جدًا (254 حرفًا على الأكثر).",
        "The actor is too long (254 characters at most).",
    ),
    "bad_action": ("اختر إجراءً من القائمة.", "Choose an action from the list."),
    "bad_date": (
        "أدخل التاريخ بالشكل 2026-01-31.",
        "Enter dates in the form 2026-01-31.",
    ),
    "bad_range": (
        "تاريخ البداية بعد تاريخ النهاية.",
        "The start date is after the end date.",
    ),
    "bad_page": (
        "رابط الصفحة غير صحيح. ابدأ من الصفحة الأولى.",
        "The page link is not right. Start from the first page.",
    ),
    "filter_problem": ("لم تُطبَّق التصفية:", "The filters were not applied:"),
    # The actions, each in both languages.
    "action_sign_in": ("تسجيل دخول", "Signed in"),
    "action_sign_in_failed": ("محاولة دخول فاشلة", "Failed sign-in"),
    "action_second_factor_failed": ("رمز تحقق خاطئ", "Wrong verification code"),
    "action_second_factor_enrolled": ("تفعيل التحقق بخطوتين", "Two-step verification set up"),
    "action_sign_out": ("تسجيل خروج", "Signed out"),
    "action_settlement_imported": ("استيراد ملف تسوية", "Settlement file imported"),
    "action_break_resolved": ("معالجة فرق مطابقة", "Reconciliation break resolved"),
    "action_report_downloaded": ("تنزيل تقرير", "Report downloaded"),
    "action_user_created": ("إنشاء مستخدم", "User created"),
    "action_user_disabled": ("تعطيل مستخدم", "User disabled"),
    "action_second_factor_reset": (
        "إعادة تعيين التحقق بخطوتين",
        "Two-step verification reset",
    ),
    "action_agency_created": ("إنشاء جهة", "Agency created"),
    "action_key_created": ("إنشاء مفتاح واجهة برمجية", "API key created"),
    "action_key_revoked": ("إلغاء مفتاح واجهة برمجية", "API key revoked"),
}


@dataclasses.dataclass(frozen=True)
class _Asked:
    """The filters as typed (to draw the form again and to keep in the next page's link)."""

    actor: str = ""
    action: str = ""
    since: str = ""
    until: str = ""

    def query(self) -> dict[str, Any]:
        values = {"actor": self.actor, "action": self.action, "from": self.since, "to": self.until}
        return {k: v for k, v in values.items() if v}


def _date(text: str, problems: list[str]) -> dt.date | None:
    if not text:
        return None
    if _DATE_RE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            pass
        else:
            if FIRST_YEAR <= day.year <= LAST_YEAR:
                return day
    if "bad_date" not in problems:
        problems.append("bad_date")
    return None


def _read_filters(args: Any) -> tuple[_Asked, audit.AuditFilter, str | None, list[str]]:
    problems: list[str] = []
    actor = str(args.get("actor", "")).strip()
    action = str(args.get("action", ""))
    since_text = str(args.get("from", "")).strip()
    until_text = str(args.get("to", "")).strip()
    before = args.get("before") or None
    asked = _Asked(
        actor=actor[:MAX_ACTOR_CHARS],
        action=action if action in audit.ACTIONS else "",
        since=since_text[:10],
        until=until_text[:10],
    )
    if len(actor) > MAX_ACTOR_CHARS or unstorable(actor):
        problems.append("bad_actor")
    elif "@" in actor:
        actor = accounts.normal_email(actor)  # failed sign-ins are kept under this form
    if action and action not in audit.ACTIONS:
        problems.append("bad_action")
    since = _date(since_text, problems)
    until = _date(until_text, problems)
    if since and until and since > until:
        problems.append("bad_range")
    if before is not None and not _RECORD_ID_RE.fullmatch(before):
        problems.append("bad_page")
    wanted = audit.AuditFilter(actor=actor or None, action=action or None, since=since, until=until)
    return asked, wanted, before, problems


def _action_label(words_lang: str, action: str) -> str:
    pair = PAGE.get(f"action_{action}")
    if pair is None:
        return action  # an action named after this page was written
    return pair[0] if words_lang == "ar" else pair[1]


@blp.get("/audit")
@guard.signed_in()
def audit_log() -> Response:
    asked, wanted, before, problems = _read_filters(request.args)
    lang = guard.user().language
    actions = [(a, _action_label(lang, a)) for a in audit.ACTIONS]
    labels = dict(actions)
    if problems:
        return render(
            "audit_log.html",
            PAGE,
            status=422,
            asked=asked,
            actions=actions,
            labels=labels,
            problems=problems,
            records=[],
            emails={},
            next_url=None,
            filtered=True,
        )
    gw = guard.gateway()
    found, more = audit.records(gw, wanted, before=before)
    emails = accounts.emails_of(gw, [r.actor for r in found] + [r.target or "" for r in found])
    next_url = (
        url_for("finance.audit_log", **{**asked.query(), "before": found[-1].id})
        if more and found
        else None
    )
    return render(
        "audit_log.html",
        PAGE,
        asked=asked,
        actions=actions,
        labels=labels,
        problems=[],
        records=found,
        emails=emails,
        next_url=next_url,
        filtered=bool(asked.query()) or before is not None,
    )
