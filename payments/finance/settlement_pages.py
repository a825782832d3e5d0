"""The settlement and reconciliation pages: import an acquirer's settlement file, read an
import's lines and breaks, see a period's reconciliation, resolve a break with a note, and
download the report as CSV or XLSX; all through the settlement desk the app hands the console."""

from __future__ import annotations

import datetime as dt
import io
import re
import tempfile
from collections.abc import Mapping
from typing import Any

from flask import abort, current_app, g, redirect, request, send_file, url_for
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from payments import clock
from payments.errors import Conflict, GatewayError, NotFound, ValidationFailed
from payments.finance import audit, guard
from payments.finance.settlement_desk import SettlementDesk
from payments.finance.web import blp, render

IMPORTS_PER_PAGE = 25
LINES_PER_PAGE = 100
BREAKS_SHOWN = 200
DOWNLOAD_FORMATS = ("csv", "xlsx")
# The multipart envelope and form fields around an uploaded file, as the API allows.
UPLOAD_ENVELOPE_BYTES = 64 * 1024
# A report bigger than this is written to disk while it is made, never held in memory.
SPOOL_IN_MEMORY_BYTES = 4 * 1024 * 1024
_SETTLEMENT_ID = re.compile(r"^stl_[0-9a-z]{26}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_LINE_NO = re.compile(r"^[0-9]{1,10}$")
_PROVIDER_CHARS = 40
_ITEM_CHARS = 80

PAGE: dict[str, tuple[str, str]] = {
    # Settlement files
    "upload_heading": ("استيراد ملف تسوية", "Import a settlement file"),
    "provider": ("جهة التحصيل", "Acquirer"),
    "file": ("ملف التسوية", "Settlement file"),
    "file_hint": (
        "ملف CSV كما ترسله جهة التحصيل. استيراد الملف نفسه مرة ثانية لا يغيّر شيئًا.",
        "A CSV file as the acquirer sends it. Importing the same file again changes nothing.",
    ),
    "import_button": ("استيراد", "Import"),
    "imports_heading": ("الملفات المستوردة", "Imported files"),
    "imports_caption": ("الملفات المستوردة، الأحدث أولًا", "Imported files, newest first"),
    "no_imports": ("لم يُستورد أي ملف بعد.", "No file has been imported yet."),
    "col_id": ("المعرّف", "ID"),
    "col_file": ("الملف", "File"),
    "col_provider": ("جهة التحصيل", "Acquirer"),
    "col_lines": ("الأسطر", "Lines"),
    "col_matched": ("المطابقة", "Matched"),
    "col_breaks": ("الفروقات", "Breaks"),
    "col_imported_by": ("المستورِد", "Imported by"),
    "col_imported_at": ("وقت الاستيراد", "Imported at"),
    "choose_provider": ("اختر جهة تحصيل معروفة.", "Choose a known acquirer."),
    "choose_provider_option": ("— اختر جهة التحصيل —", "— Choose the acquirer —"),
    "choose_file": ("اختر ملفًا لاستيراده.", "Choose a file to import."),
    "file_refused": (
        "رُفض الملف كاملًا ولم يُستورد منه شيء:",
        "The file was refused whole and nothing was imported:",
    ),
    "too_large": (
        "ما أُرسل أكبر من الحد المسموح ({mib} ميغابايت). لم يُستورد شيء.",
        "What was sent is over the limit ({mib} MiB). Nothing was imported.",
    ),
    "imported_notice": (
        "استُورد الملف: {lines} سطرًا.",
        "The file was imported: {lines} lines.",
    ),
    "seen_notice": (
        "استُورد هذا الملف من قبل؛ لم يُستورد شيء من جديد. هذا هو الاستيراد الأول.",
        "This file was imported before; nothing was imported again. This is the first import.",
    ),
    "bad_page_link": ("رابط الصفحة غير صالح.", "That page link is not valid."),
    "back_to_settlements": ("العودة إلى التسويات", "Back to settlements"),
    # One import
    "settlement_title": ("ملف تسوية", "Settlement file"),
    "summary_heading": ("الأسطر حسب الحالة", "Lines by status"),
    "col_status": ("الحالة", "Status"),
    "col_count": ("العدد", "Count"),
    "lines_heading": ("الأسطر", "Lines"),
    "lines_caption": ("أسطر الملف بترتيبه", "The file's lines, in its order"),
    "col_line": ("السطر", "Line"),
    "col_settlement_date": ("تاريخ التسوية", "Settlement date"),
    "col_reference": ("مرجع جهة التحصيل", "Acquirer reference"),
    "col_type": ("النوع", "Type"),
    "col_gross": ("الإجمالي", "Gross"),
    "col_fee": ("الرسوم", "Fee"),
    "col_net": ("الصافي", "Net"),
    "col_payment": ("الدفعة", "Payment"),
    "col_resolution": ("المعالجة", "Resolution"),
    "breaks_only": ("الفروقات فقط", "Breaks only"),
    "all_lines": ("كل الأسطر", "All lines"),
    "more_lines": ("الأسطر التالية", "Next lines"),
    "no_lines": ("لا توجد أسطر هنا.", "There are no lines here."),
    "break_mark": ("فرق", "Break"),
    "resolve_on_reconciliation": (
        "تُعالج الفروقات من صفحة المطابقة.",
        "Breaks are resolved on the reconciliation page.",
    ),
    "type_payment": ("دفعة", "Payment"),
    "type_refund": ("استرداد", "Refund"),
    "type_chargeback": ("استرداد مُعترض عليه", "Chargeback"),
    "type_chargeback_reversal": ("إلغاء الاسترداد المُعترض عليه", "Chargeback reversal"),
    # Statuses
    "status_matched": ("مطابق", "Matched"),
    "status_matched_within_tolerance": ("مطابق ضمن حد التفاوت", "Matched within tolerance"),
    "status_amount_mismatch": ("اختلاف في المبلغ", "Amount mismatch"),
    "status_currency_mismatch": ("اختلاف في العملة", "Currency mismatch"),
    "status_duplicate": ("مكرر", "Duplicate"),
    "status_missing_in_gateway": ("غير موجود في البوابة", "Missing in the gateway"),
    "status_chargeback": ("استرداد مُعترض عليه", "Chargeback"),
    "status_chargeback_reversal": ("إلغاء الاسترداد المُعترض عليه", "Chargeback reversal"),
    "status_missing_in_settlement": ("غير موجود في التسوية", "Missing in settlement"),
    "status_pending_settlement": ("بانتظار التسوية", "Pending settlement"),
    # Reconciliation
    "period_heading": ("الفترة", "Period"),
    "date_from": ("من تاريخ", "From"),
    "date_to": ("إلى تاريخ", "To"),
    "date_hint": (
        "بالصيغة YYYY-MM-DD؛ {days} يومًا على الأكثر.",
        "As YYYY-MM-DD; at most {days} days.",
    ),
    "show_button": ("عرض", "Show"),
    "facts_heading": ("التقرير", "The report"),
    "generated_at": ("أُعدّ في", "Generated at"),
    "lag_days": ("مهلة التسوية (أيام)", "Settlement lag (days)"),
    "ledger": ("دفتر الأستاذ", "Ledger"),
    "ledger_agrees": ("يطابق المبالغ", "Agrees with the amounts"),
    "ledger_disagrees": ("لا يطابق المبالغ", "Does not agree with the amounts"),
    "items_heading": ("البنود حسب الحالة", "Items by status"),
    "totals_heading": ("المجاميع حسب العملة", "Totals by currency"),
    "totals_caption": (
        "لكل عملة على حدة؛ لا تُجمع عملتان.",
        "Each currency on its own; two currencies are never added.",
    ),
    "col_currency": ("العملة", "Currency"),
    "col_items": ("البنود", "Items"),
    "col_gateway_amount": ("مبلغ البوابة", "Gateway amount"),
    "col_settled_amount": ("المبلغ المسوّى", "Settled amount"),
    "no_items": ("لا بنود في هذه الفترة.", "No items in this period."),
    "breaks_heading": ("الفروقات", "Breaks"),
    "breaks_caption": ("فروقات الفترة", "The period's breaks"),
    "breaks_shown": (
        "تُعرض أول {shown} من {total} فرقًا؛ نزّل التقرير لرؤيتها كلها.",
        "The first {shown} of {total} breaks are shown; download the report for all of them.",
    ),
    "no_breaks": ("لا فروقات في هذه الفترة.", "No breaks in this period."),
    "col_item": ("البند", "Item"),
    "col_agency": ("الجهة", "Agency"),
    "col_gateway_date": ("تاريخ البوابة", "Gateway date"),
    "note": ("ملاحظة المعالجة", "Resolution note"),
    "note_hint": (
        "اشرح لماذا لا يحتاج هذا الفرق إلى عمل آخر ({chars} حرفًا على الأكثر).",
        "Say why this break needs no more work (at most {chars} characters).",
    ),
    "resolve_button": ("تسجيل المعالجة", "Mark resolved"),
    "resolved_by": ("عالجه", "Resolved by"),
    "resolved_notice": ("سُجّلت معالجة الفرق:", "The break is marked resolved:"),
    "download_heading": ("تنزيل التقرير", "Download the report"),
    "download_csv": ("تنزيل CSV", "Download CSV"),
    "download_xlsx": ("تنزيل XLSX", "Download XLSX"),
    "date_invalid": ("اكتب التاريخين بالصيغة YYYY-MM-DD.", "Write both dates as YYYY-MM-DD."),
    "dates_backwards": (
        "تاريخ البداية بعد تاريخ النهاية.",
        "The start date is after the end date.",
    ),
    "period_too_long": (
        "يغطي التقرير {days} يومًا على الأكثر؛ اطلب عدة تقارير.",
        "A report covers at most {days} days; ask for several.",
    ),
    "format_invalid": ("اختر CSV أو XLSX.", "Choose CSV or XLSX."),
    "request_refused": ("رُفض الطلب ولم يتغيّر شيء:", "The request was refused; nothing changed:"),
    "note_empty": (
        "اكتب ملاحظة تشرح سبب المعالجة.",
        "Write a note saying why the break is resolved.",
    ),
    "note_too_long": (
        "الملاحظة أطول من {chars} حرفًا.",
        "The note is over {chars} characters.",
    ),
    "note_refused": (
        "لا تقبل الملاحظة إلا النص وفواصل الأسطر والمسافات الجدولية:",
        "The note may hold text, line breaks and tabs only:",
    ),
    "item_unknown": (
        "لا يوجد هذا البند لدى جهة التحصيل هذه.",
        "There is no such item for this acquirer.",
    ),
    "already_resolved": ("عولج هذا الفرق من قبل.", "This break was resolved already."),
    "not_a_break": ("هذا البند ليس فرقًا:", "This item is not a break:"),
}


class PageError(Exception):
    """Bad input a page answers with a message in the user's language (and maybe the
    gateway's own words, in English, beside it)."""

    def __init__(self, key: str, status: int = 422, detail: str | None = None, **values: Any):
        super().__init__(key)
        self.key = key
        self.status = status
        self.detail = detail
        self.values = values


def desk() -> SettlementDesk:
    found: SettlementDesk = current_app.extensions["settlement_desk"]
    return found


def _statuses() -> dict[str, str]:
    """Each status the desk knows -> the word key naming it."""
    return {status: f"status_{status}" for status in desk().statuses}


# -- the upload's size ---------------------------------------------------------------------------


guard.LARGE_BODIES["finance.settlements_upload"] = lambda: (
    guard.gateway().settings.max_settlement_file_bytes + UPLOAD_ENVELOPE_BYTES
)


@blp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> Response:
    user = guard.current_user()
    if user is not None:
        g.console_user = user
    if request.endpoint != "finance.settlements_upload":  # any other form: 64 KiB at most
        return render("error.html", status=413, kind=400)
    limit = guard.gateway().settings.max_settlement_file_bytes
    return render(
        "settlement_refused.html",
        PAGE,
        status=413,
        error=PageError("too_large", 413, mib=max(1, limit // (1024 * 1024))),
    )


# -- settlement files ----------------------------------------------------------------------------


def _imports_page(
    *, status: int = 200, error: PageError | None = None, chosen: str | None = None
) -> Response:
    after = request.args.get("after") or None
    if after is not None and not _SETTLEMENT_ID.match(after):
        after, error, status = None, PageError("bad_page_link"), 422
    found, has_more = desk().list_imports(
        guard.principal(), limit=IMPORTS_PER_PAGE, starting_after=after
    )
    return render(
        "settlements.html",
        PAGE,
        status=status,
        imports=found,
        next_after=found[-1].id if has_more and found else None,
        providers=desk().importable_providers(),
        not_breaks=desk().not_breaks,
        chosen=chosen,
        error=error,
    )


@blp.get("/settlements")
@guard.signed_in()
def settlements() -> Response:
    return _imports_page()


@blp.post("/settlements")
@guard.signed_in()
def settlements_upload() -> Response:
    provider = request.form.get("provider", "")[:_PROVIDER_CHARS]
    upload = request.files.get("file")
    if provider not in desk().importable_providers():
        return _imports_page(status=422, error=PageError("choose_provider"))
    if upload is None or not upload.filename:
        return _imports_page(status=422, error=PageError("choose_file"), chosen=provider)
    filename = upload.filename.replace("\\", "/").rsplit("/", 1)[-1]
    filename = "".join(c for c in filename if c.isprintable())[:200] or "upload"
    try:
        outcome = desk().import_file(guard.principal(), provider, upload.stream, filename)
    except ValidationFailed as exc:
        refused = PageError("file_refused", detail=exc.message)
        return _imports_page(status=422, error=refused, chosen=provider)
    settlement = outcome.settlement
    if outcome.created:
        audit.write(
            guard.gateway(),
            guard.user().id,
            "settlement_imported",
            target=settlement.id,
            address=guard.address(),
            details={
                "provider": settlement.provider,
                "lines": settlement.line_count,
                "filename": settlement.filename,
            },
        )
    notice = "imported" if outcome.created else "seen"
    return redirect(
        url_for("finance.settlement", settlement_id=settlement.id, notice=notice), code=303
    )


@blp.get("/settlements/<settlement_id>")
@guard.signed_in()
def settlement(settlement_id: str) -> Response:
    after_text = request.args.get("after", "0")
    if not _LINE_NO.match(after_text):
        abort(404)
    breaks_only = request.args.get("breaks") == "1"
    try:
        found = desk().get_import(
            guard.principal(),
            settlement_id[:60],
            after_line_no=int(after_text),
            limit=LINES_PER_PAGE,
            breaks_only=breaks_only,
        )
    except NotFound:
        abort(404)
    notice = request.args.get("notice")
    return render(
        "settlement.html",
        PAGE,
        settlement=found.settlement,
        lines=found.lines,
        next_after=found.lines[-1].line_no if found.has_more and found.lines else None,
        breaks_only=breaks_only,
        line_statuses=desk().line_statuses,
        statuses=_statuses(),
        notice=notice if notice in ("imported", "seen") else None,
    )


# -- reconciliation ------------------------------------------------------------------------------


def _day(text: str) -> dt.date:
    if not _DATE.match(text):
        raise PageError("date_invalid")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise PageError("date_invalid") from None


def _period(values: Mapping[str, str]) -> tuple[str, dt.date, dt.date]:
    """The acquirer and days asked for, refused with the page's own words when wrong."""
    provider = values.get("provider", "")[:_PROVIDER_CHARS]
    if provider not in desk().providers():
        raise PageError("choose_provider")
    date_from = _day(values.get("from", "").strip())
    date_to = _day(values.get("to", "").strip())
    if date_from > date_to:
        raise PageError("dates_backwards")
    days = desk().max_period_days
    if (date_to - date_from).days >= days:
        raise PageError("period_too_long", days=days)
    return provider, date_from, date_to


def _asked(values: Mapping[str, str]) -> dict[str, str]:
    """The form's fields as typed, to draw them again."""
    return {
        "provider": values.get("provider", "")[:_PROVIDER_CHARS],
        "from": values.get("from", "")[:20],
        "to": values.get("to", "")[:20],
    }


def _defaults() -> dict[str, str]:
    today = clock.now().date()
    providers = desk().providers()
    return {
        "provider": "sandbox" if "sandbox" in providers else (providers or [""])[0],
        "from": today.replace(day=1).isoformat(),
        "to": today.isoformat(),
    }


def _reconciliation_page(
    values: Mapping[str, str],
    *,
    status: int = 200,
    error: PageError | None = None,
    failed_item: str | None = None,
    note: str = "",
    first_visit: bool = False,
) -> Response:
    """The reconciliation page for the period in `values` (the form's fields; on a first
    visit, this month so far and nothing counted yet)."""
    asked = _defaults() if first_visit else _asked(values)
    report = None
    try:
        if not first_visit:
            provider, date_from, date_to = _period(values)
            report = desk().reconciliation(
                guard.principal(), provider, date_from, date_to, max_breaks=BREAKS_SHOWN
            )
    except PageError as exc:
        if error is None:
            error, status = exc, exc.status
    except ValidationFailed as exc:
        if error is None:
            error, status = PageError("request_refused", detail=exc.message), 422
    resolved = request.args.get("resolved", "")[:_ITEM_CHARS] or None
    return render(
        "reconciliation.html",
        PAGE,
        status=status,
        asked=asked,
        providers=desk().providers(),
        report=report,
        statuses=_statuses(),
        formats=DOWNLOAD_FORMATS,
        max_days=desk().max_period_days,
        max_note_chars=desk().max_note_chars,
        error=error,
        failed_item=failed_item,
        note=note,
        resolved=resolved if error is None else None,
    )


@blp.get("/reconciliation")
@guard.signed_in()
def reconciliation() -> Response:
    first_visit = not any(request.args.get(name) for name in ("provider", "from", "to"))
    return _reconciliation_page(request.args, first_visit=first_visit)


@blp.get("/reconciliation/report")
@guard.signed_in()
def reconciliation_download() -> Response:
    fmt = request.args.get("format", "")
    try:
        provider, date_from, date_to = _period(request.args)
    except PageError as exc:
        return _reconciliation_page(request.args, status=exc.status, error=exc)
    if fmt not in DOWNLOAD_FORMATS:
        return _reconciliation_page(request.args, status=422, error=PageError("format_invalid"))
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    try:
        desk().write_report(
            guard.principal(),
            provider,
            date_from=date_from,
            date_to=date_to,
            fmt=fmt,
            out=spool,  # type: ignore[arg-type]
        )
        size = spool.tell()
        spool.seek(0)
        body: Any = spool.read() if size <= SPOOL_IN_MEMORY_BYTES else spool
    except ValidationFailed as exc:
        spool.close()
        refused = PageError("request_refused", detail=exc.message)
        return _reconciliation_page(request.args, status=422, error=refused)
    except BaseException:
        spool.close()
        raise
    if body is not spool:
        spool.close()  # a small report answers from memory
    audit.write(
        guard.gateway(),
        guard.user().id,
        "report_downloaded",
        target=provider,
        address=guard.address(),
        details={
            "provider": provider,
            "from": date_from.isoformat(),
            "to": date_to.isoformat(),
            "format": fmt,
        },
    )
    response = send_file(
        io.BytesIO(body) if isinstance(body, bytes) else body,
        mimetype=desk().report_formats[fmt],
        as_attachment=True,
        download_name=f"reconciliation-{provider}-{date_from}-{date_to}.{fmt}",
    )
    if body is spool:
        response.call_on_close(spool.close)  # a large one streams from the spool's file
    return response


def _back(values: Mapping[str, str], **extra: str) -> str:
    query: dict[str, Any] = {**_asked(values), **extra}
    return url_for("finance.reconciliation", **query)


@blp.post("/reconciliation/resolve")
@guard.signed_in()
def reconciliation_resolve() -> Response:
    form = request.form
    item = form.get("item", "").strip()[:_ITEM_CHARS]
    note = form.get("note", "")
    try:
        provider, _date_from, _date_to = _period(form)
    except PageError as exc:
        return _reconciliation_page(form, status=exc.status, error=exc)
    limit = desk().max_note_chars
    failed: PageError | None = None
    if not note.strip():
        failed = PageError("note_empty")
    elif len(note) > limit:
        failed = PageError("note_too_long", chars=limit)
    else:
        try:
            resolution = desk().resolve(guard.principal(), provider, item, note)
        except NotFound:
            failed = PageError("item_unknown", 404)
        except Conflict:
            failed = PageError("already_resolved", 409)
        except ValidationFailed as exc:
            key = "note_refused" if exc.param == "note" else "not_a_break"
            failed = PageError(key, detail=exc.message)
        except GatewayError as exc:
            failed = PageError("request_refused", exc.status, detail=exc.message)
    if failed is not None:
        return _reconciliation_page(
            form, status=failed.status, error=failed, failed_item=item, note=note[: limit * 2]
        )
    audit.write(
        guard.gateway(),
        guard.user().id,
        "break_resolved",
        target=resolution.item,
        address=guard.address(),
        details={"provider": resolution.provider, "status": resolution.status},
    )
    return redirect(_back(form, resolved=resolution.item), code=303)
