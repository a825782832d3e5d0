"""The payments pages: payments of every agency searched by reference, id, agency, status,
date and amount, and one payment with everything the gateway holds about it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from flask import abort, request
from werkzeug.wrappers import Response

from payments.errors import NotFound
from payments.finance import guard
from payments.finance.web import blp, render
from payments.ids import is_id
from payments.money import CURRENCY_EXPONENTS, AmountError, parse_major
from payments.schemas import unstorable
from payments.service import finance_reads
from payments.service.finance_reads import PaymentSearch
from payments.service.payments import Page
from payments.states import AttemptStatus, PaymentStatus, RefundStatus

PAGE_SIZE = 50
MAX_TEXT = 255  # a reference is at most this long; so is anything else typed in the form
MAX_AGENCY = 64
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CURRENCIES = tuple(sorted(CURRENCY_EXPONENTS))
STATUSES = tuple(status.value for status in PaymentStatus)
# Every status a payment, an attempt, a refund or a webhook job may show, worded below.
KNOWN_STATUSES = frozenset(
    [*STATUSES, *(s.value for s in AttemptStatus), *(s.value for s in RefundStatus), "pending"]
)

PAGE: dict[str, tuple[str, str]] = {
    "payments_title": ("المدفوعات", "Payments"),
    "search_title": ("البحث في المدفوعات", "Search payments"),
    "search_hint": (
        "مدفوعات جميع الجهات، الأحدث أولًا. التواريخ بالتوقيت العالمي المنسق (UTC).",
        "Payments of every agency, newest first. Dates are in UTC.",
    ),
    "reference": ("المرجع", "Reference"),
    "payment_id": ("رقم الدفعة", "Payment id"),
    "agency": ("الجهة", "Agency"),
    "status": ("الحالة", "Status"),
    "any": ("الكل", "Any"),
    "date_from": ("من تاريخ", "From date"),
    "date_to": ("إلى تاريخ", "To date"),
    "amount": ("المبلغ", "Amount"),
    "amount_hint": ("مثل 12.500", "Such as 12.500"),
    "currency": ("العملة", "Currency"),
    "search": ("بحث", "Search"),
    "clear": ("مسح", "Clear"),
    "results": ("النتائج", "Results"),
    "created": ("أُنشئت", "Created"),
    "updated": ("حُدّثت", "Updated"),
    "expires": ("تنتهي صلاحيتها", "Expires"),
    "provider": ("جهة التحصيل", "Acquirer"),
    "fix_these": ("صحّح ما يلي:", "Correct the following:"),
    "bad_reference": (
        "المرجع نص لا يزيد على 255 حرفًا.",
        "The reference is text of at most 255 characters.",
    ),
    "bad_payment_id": (
        "رقم الدفعة يبدأ بـ pay_ ويليه 26 حرفًا.",
        "A payment id starts with pay_ followed by 26 characters.",
    ),
    "bad_agency": (
        "رمز الجهة نص لا يزيد على 64 حرفًا.",
        "The agency is a code of at most 64 characters.",
    ),
    "bad_status": ("اختر حالة من القائمة.", "Choose a status from the list."),
    "bad_date": (
        "اكتب التاريخ بالصيغة 2026-03-31.",
        "Write the date as 2026-03-31.",
    ),
    "dates_reversed": (
        "تاريخ البداية بعد تاريخ النهاية.",
        "The from date is after the to date.",
    ),
    "bad_currency": ("اختر عملة من القائمة.", "Choose a currency from the list."),
    "amount_needs_currency": (
        "اختر عملة المبلغ.",
        "Choose the currency of the amount.",
    ),
    "bad_amount": (
        "اكتب مبلغًا موجبًا مثل {example} بما لا يزيد على {decimals} منازل عشرية لعملة {currency}.",
        "Type a positive amount such as {example}, with at most {decimals} decimals for "
        "{currency}.",
    ),
    "bad_page": (
        "رابط الصفحة غير صالح. ابدأ البحث من جديد.",
        "The page link is not valid. Start the search again.",
    ),
    # The payment's own page
    "payment_title": ("الدفعة", "Payment"),
    "back_to_payments": ("العودة إلى المدفوعات", "Back to payments"),
    "facts": ("البيانات", "Facts"),
    "mode": ("الوضع", "Mode"),
    "mode_live": ("فعلي", "Live"),
    "mode_test": ("تجريبي", "Test"),
    "captured": ("المبلغ المحصّل", "Captured"),
    "refunded": ("المبلغ المسترد", "Refunded"),
    "description": ("الوصف", "Description"),
    "service_code": ("رمز الخدمة", "Service code"),
    "provider_reference": ("مرجع جهة التحصيل", "Acquirer reference"),
    "capture_method": ("طريقة التحصيل", "Capture method"),
    "capture_automatic": ("تلقائي", "Automatic"),
    "capture_manual": ("يدوي", "Manual"),
    "method": ("وسيلة الدفع", "Payment method"),
    "card_ending": ("بطاقة {brand} تنتهي بـ {last4}", "{brand} card ending {last4}"),
    "failure": ("سبب الإخفاق", "Failure"),
    "none": ("لا يوجد", "None"),
    "routing_title": ("التوجيه", "Routing"),
    "routing_rule": ("القاعدة", "Rule"),
    "routing_providers": ("جهات التحصيل بالترتيب", "Acquirers in order"),
    "routing_skipped": ("جهات تم تخطيها", "Acquirers skipped"),
    "routing_none": ("لم تُوجَّه الدفعة بعد.", "The payment has not been routed yet."),
    "attempts_title": ("المحاولات", "Attempts"),
    "attempt": ("المحاولة", "Attempt"),
    "channel": ("القناة", "Channel"),
    "channel_api": ("واجهة برمجية", "API"),
    "channel_page": ("صفحة الدفع", "Payment page"),
    "result": ("النتيجة", "Result"),
    "decline_code": ("رمز الرفض", "Decline code"),
    "waiting_for": ("بانتظار", "Waiting for"),
    "refunds_title": ("المبالغ المستردة", "Refunds"),
    "refund": ("الاسترداد", "Refund"),
    "reason": ("السبب", "Reason"),
    "ledger_title": ("قيود دفتر الأستاذ", "Ledger postings"),
    "transaction": ("القيد", "Transaction"),
    "effective": ("تاريخ السريان", "Effective"),
    "account": ("الحساب", "Account"),
    "debit": ("مدين", "Debit"),
    "credit": ("دائن", "Credit"),
    "reverses": ("يعكس القيد", "Reverses"),
    "events_title": ("الأحداث", "Events"),
    "event": ("الحدث", "Event"),
    "type": ("النوع", "Type"),
    "object": ("العنصر", "Object"),
    "webhooks_title": ("إشعارات الويب", "Webhook deliveries"),
    "jobs_title": ("الإشعارات المستحقة", "Deliveries owed"),
    "endpoint": ("نقطة الاستقبال", "Endpoint"),
    "tries": ("عدد المحاولات", "Tries"),
    "next_try": ("المحاولة التالية", "Next try"),
    "deliveries_title": ("سجل الإرسال", "Delivery log"),
    "sent_at": ("وقت الإرسال", "Sent"),
    "response": ("الرد", "Response"),
    "delivered": ("تم التسليم", "Delivered"),
    "not_delivered": ("لم يُسلَّم", "Not delivered"),
    "error": ("الخطأ", "Error"),
    "redelivery": ("إعادة إرسال", "Redelivery"),
    # Statuses (payments, attempts, refunds, webhook jobs)
    "st_created": ("أُنشئت", "Created"),
    "st_processing": ("قيد المعالجة", "Processing"),
    "st_requires_capture": ("بانتظار التحصيل", "Awaiting capture"),
    "st_succeeded": ("ناجحة", "Succeeded"),
    "st_failed": ("فاشلة", "Failed"),
    "st_cancelled": ("ملغاة", "Cancelled"),
    "st_expired": ("منتهية الصلاحية", "Expired"),
    "st_open": ("مفتوحة", "Open"),
    "st_declined": ("مرفوضة", "Declined"),
    "st_unavailable": ("تعذّر الوصول", "Unavailable"),
    "st_pending": ("قيد الانتظار", "Pending"),
}


@dataclasses.dataclass(frozen=True)
class SearchForm:
    """The search form as typed, to show it again and to carry it to the next page."""

    reference: str = ""
    payment_id: str = ""
    agency: str = ""
    status: str = ""
    date_from: str = ""
    date_to: str = ""
    amount: str = ""
    currency: str = ""

    def as_args(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A field typed wrongly: the field (to link to) and the words that say why."""

    field: str
    key: str
    values: Mapping[str, object] = dataclasses.field(default_factory=dict)


def _typed(args: Mapping[str, str], name: str, limit: int = MAX_TEXT) -> str:
    # A value past its limit is kept whole only up to a bound, so that it is refused (not
    # silently cut) and the page never echoes megabytes.
    return args.get(name, "")[: limit * 4 + 1].strip()


def _text(value: str, limit: int) -> bool:
    return len(value) <= limit and not unstorable(value)


def _date(value: str) -> dt.date | None:
    if not DATE_RE.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def read_search(args: Mapping[str, str]) -> tuple[SearchForm, PaymentSearch, list[Problem]]:
    """The form's values, the search they make, and what is wrong with them."""
    form = SearchForm(
        reference=_typed(args, "reference"),
        payment_id=_typed(args, "payment_id").lower(),
        agency=_typed(args, "agency", MAX_AGENCY),
        status=_typed(args, "status"),
        date_from=_typed(args, "date_from"),
        date_to=_typed(args, "date_to"),
        amount=_typed(args, "amount"),
        currency=_typed(args, "currency").upper(),
    )
    problems: list[Problem] = []
    if form.reference and not _text(form.reference, MAX_TEXT):
        problems.append(Problem("reference", "bad_reference"))
    if form.payment_id and not is_id(form.payment_id, "pay"):
        problems.append(Problem("payment_id", "bad_payment_id"))
    if form.agency and not _text(form.agency, MAX_AGENCY):
        problems.append(Problem("agency", "bad_agency"))
    if form.status and form.status not in STATUSES:
        problems.append(Problem("status", "bad_status"))
    since = _date(form.date_from) if form.date_from else None
    until = _date(form.date_to) if form.date_to else None
    if form.date_from and since is None:
        problems.append(Problem("date_from", "bad_date"))
    if form.date_to and until is None:
        problems.append(Problem("date_to", "bad_date"))
    if since is not None and until is not None and since > until:
        problems.append(Problem("date_from", "dates_reversed"))
    currency_ok = form.currency in CURRENCY_EXPONENTS
    if form.currency and not currency_ok:
        problems.append(Problem("currency", "bad_currency"))
    amount_minor: int | None = None
    if form.amount and not form.currency:
        problems.append(Problem("currency", "amount_needs_currency"))
    elif form.amount and currency_ok:
        amount_minor = _amount(form.amount, form.currency, problems)
    created_lt = None
    if until is not None and until < dt.date.max:
        created_lt = _midnight(until + dt.timedelta(days=1))
    search = PaymentSearch(
        reference=form.reference or None,
        payment_id=form.payment_id or None,
        agency_id=form.agency or None,
        status=form.status or None,
        created_gte=_midnight(since) if since is not None else None,
        created_lt=created_lt,
        amount_minor=amount_minor,
        currency=form.currency or None,
    )
    return form, search, problems


def _amount(typed: str, currency: str, problems: list[Problem]) -> int | None:
    """The amount in minor units: parsed as a decimal, never a float; more decimals than the
    currency has are refused, not rounded."""
    try:
        minor = parse_major(typed, currency)
    except AmountError:
        minor = 0
    if minor > 0:
        return minor
    decimals = CURRENCY_EXPONENTS[currency]
    example = "12" + ("." + "5".ljust(decimals, "0") if decimals else "")
    problems.append(
        Problem(
            "amount",
            "bad_amount",
            {"example": example, "decimals": decimals, "currency": currency},
        )
    )
    return None


@blp.get("/payments", endpoint="payments")
@guard.signed_in()
def payment_search() -> Response:
    form, search, problems = read_search(request.args)
    after = request.args.get("starting_after", "")[:64]
    if after and not is_id(after, "pay"):
        problems.append(Problem("results", "bad_page"))
    context: dict[str, Any] = {
        "form": form,
        "problems": problems,
        "bad_fields": {p.field for p in problems},
        "statuses": STATUSES,
        "currencies": CURRENCIES,
        "known_statuses": KNOWN_STATUSES,
    }
    if problems:
        return render("payments.html", PAGE, status=422, found=None, has_more=False, **context)
    found, has_more = finance_reads.search_payments(
        guard.gateway(), guard.principal(), search, Page(PAGE_SIZE, after or None)
    )
    return render("payments.html", PAGE, found=found, has_more=has_more, **context)


def card_summary(method: Mapping[str, Any] | None) -> dict[str, str]:
    """What a page may show of a payment method: its type, and a card's brand and last four
    digits; nothing else the record holds (a stored record never holds more, but a page does
    not rely on that)."""
    if not method:
        return {}
    nested = method.get("card")
    card = nested if isinstance(nested, Mapping) else method
    digits = "".join(c for c in str(card.get("last4") or "") if c.isdigit())
    return {
        "type": str(method.get("type") or "")[:20],
        "brand": str(card.get("brand") or "")[:20],
        "last4": digits[-4:],
    }


@blp.get("/payments/<payment_id>", endpoint="payment")
@guard.signed_in()
def payment_page(payment_id: str) -> Response:
    try:
        dossier = finance_reads.payment_dossier(guard.gateway(), guard.principal(), payment_id[:64])
    except NotFound:
        abort(404)
    routing = dossier.payment.routing or {}
    providers = routing.get("providers")
    skipped = routing.get("skipped")
    return render(
        "payment.html",
        PAGE,
        d=dossier,
        p=dossier.payment,
        method=card_summary(dossier.payment.payment_method),
        routing_rule=routing.get("rule"),
        routing_providers=[str(name) for name in providers] if isinstance(providers, list) else [],
        routing_skipped=sorted((str(k), str(v)) for k, v in skipped.items())
        if isinstance(skipped, dict)
        else [],
        routed=bool(routing),
        known_statuses=KNOWN_STATUSES,
    )
