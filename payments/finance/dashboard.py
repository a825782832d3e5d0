"""The dashboard: payments counted and captured today, this month and over a chosen range, per
member state, agency, acquirer and status, per currency, with charts and what is waiting."""

from __future__ import annotations

from collections.abc import Callable

from flask import request
from markupsafe import Markup
from werkzeug.wrappers import Response

from payments import clock
from payments.finance import charts, guard
from payments.finance.texts import Words
from payments.finance.web import blp, language, render
from payments.money import format_major
from payments.service import figures
from payments.service.figures import MAX_RANGE_DAYS, Dashboard

PAGE: dict[str, tuple[str, str]] = {
    "counted_title": ("ما الذي يُحتسب", "What is counted"),
    "counted_count": (
        "العدد: المدفوعات التي أُنشئت في الفترة، بأيام التوقيت العالمي المنسق (UTC).",
        "Count: payments created in the period, in UTC days.",
    ),
    "counted_value": (
        "القيمة: المبلغ المحصَّل من المدفوعات الناجحة، قبل أي استرداد.",
        "Value: the amount captured by payments that succeeded, before any refund.",
    ),
    "counted_currency": (
        "كل رقم لعملة واحدة: لا تُجمع مبالغ عملتين معًا أبدًا.",
        "Every figure is for one currency: amounts in two currencies are never added together.",
    ),
    "filters_title": ("الفترة والوضع", "Period and mode"),
    "from": ("من تاريخ (UTC)", "From (UTC date)"),
    "to": ("إلى تاريخ (UTC)", "To (UTC date)"),
    "date_hint": (
        "بالصيغة YYYY-MM-DD، واليومان داخلان. {max} يومًا على الأكثر.",
        "As YYYY-MM-DD, both days included. At most {max} days.",
    ),
    "mode": ("المدفوعات", "Payments"),
    "mode_all": ("الحية والتجريبية معًا", "Live and test together"),
    "mode_live": ("الحية فقط", "Live only"),
    "mode_test": ("التجريبية فقط", "Test only"),
    "mode_shown": ("المدفوعات المعروضة: {mode}.", "Payments shown: {mode}."),
    "problem_title": ("لم تُقبل الفترة المطلوبة", "The period asked for was not accepted"),
    "problem_bad_date": (
        "اكتب التاريخين بالصيغة YYYY-MM-DD.",
        "Write both dates as YYYY-MM-DD.",
    ),
    "problem_out_of_bounds": (
        "يجب أن يقع التاريخان بين 2000-01-01 و2099-12-31.",
        "Both dates must fall between 2000-01-01 and 2099-12-31.",
    ),
    "problem_reversed": (
        "تاريخ البداية بعد تاريخ النهاية.",
        "The start date is after the end date.",
    ),
    "problem_too_long": (
        "الفترة أطول من {max} يومًا.",
        "The range is longer than {max} days.",
    ),
    "problem_bad_mode": (
        "نوع المدفوعات غير معروف: تُعرض الحية والتجريبية معًا.",
        "Unknown kind of payments: live and test are shown together.",
    ),
    "problem_fallback": (
        "تُعرض بدلًا منها الفترة الافتراضية: من {first} إلى {last}.",
        "The default period is shown instead: {first} to {last}.",
    ),
    "period_today": ("اليوم", "Today"),
    "period_month": ("هذا الشهر", "This month"),
    "period_range": ("الفترة المختارة", "Chosen range"),
    "period_span": ("من {first} إلى {last}", "{first} to {last}"),
    "totals_title": ("الإجمالي لكل عملة", "Totals per currency"),
    "totals_caption": (
        "عدد المدفوعات وقيمتها المحصَّلة لكل عملة",
        "Payments counted and value captured, per currency",
    ),
    "currency": ("العملة", "Currency"),
    "count": ("العدد", "Count"),
    "value": ("القيمة المحصَّلة", "Value captured"),
    "by_state": ("حسب الدولة العضو", "By member state"),
    "by_agency": ("حسب الجهة", "By agency"),
    "by_provider": ("حسب جهة التحصيل", "By acquirer"),
    "by_status": ("حسب الحالة", "By status"),
    "head_state": ("الدولة العضو", "Member state"),
    "head_agency": ("الجهة", "Agency"),
    "head_provider": ("جهة التحصيل", "Acquirer"),
    "head_status": ("الحالة", "Status"),
    "not_routed": ("لم تُوجَّه بعد", "Not routed yet"),
    "no_payments": ("لا توجد مدفوعات في هذه الفترات.", "No payments in these periods."),
    "state_SA": ("المملكة العربية السعودية", "Saudi Arabia"),
    "state_AE": ("الإمارات العربية المتحدة", "United Arab Emirates"),
    "state_KW": ("الكويت", "Kuwait"),
    "state_QA": ("قطر", "Qatar"),
    "state_BH": ("البحرين", "Bahrain"),
    "state_OM": ("عُمان", "Oman"),
    "status_created": ("أُنشئت", "Created"),
    "status_processing": ("قيد المعالجة", "Processing"),
    "status_requires_capture": ("بانتظار التحصيل", "Awaiting capture"),
    "status_succeeded": ("ناجحة", "Succeeded"),
    "status_failed": ("فاشلة", "Failed"),
    "status_cancelled": ("ملغاة", "Cancelled"),
    "status_expired": ("منتهية الصلاحية", "Expired"),
    "charts_title": ("الرسوم البيانية للفترة المختارة", "Charts of the chosen range"),
    "chart_status": ("عدد المدفوعات حسب الحالة والعملة", "Payments per status and currency"),
    "chart_status_summary": (
        "أعمدة أفقية: لكل حالة عمود لكل عملة، طوله عدد المدفوعات.",
        "Horizontal bars: for each status one bar per currency, as long as its count.",
    ),
    "chart_agency": (
        "القيمة المحصَّلة حسب الجهة بعملة {currency}",
        "Value captured per agency in {currency}",
    ),
    "chart_other_agencies": ("{count} جهة أخرى", "{count} other agencies"),
    "chart_agency_summary": (
        "أعمدة أفقية: لكل جهة عمود طوله القيمة المحصَّلة.",
        "Horizontal bars: one per agency, as long as the value it captured.",
    ),
    "chart_daily": (
        "عدد المدفوعات يوميًا، خط لكل عملة",
        "Payments per day, one line per currency",
    ),
    "chart_daily_value": (
        "القيمة المحصَّلة يوميًا بعملة {currency}",
        "Value captured per day in {currency}",
    ),
    "chart_daily_summary": (
        "من {first} إلى {last}، بأيام UTC.",
        "From {first} to {last}, in UTC days.",
    ),
    "chart_figures": ("أرقام الرسم", "The chart's figures"),
    "daily_table": ("الأرقام يومًا بيوم", "Day by day figures"),
    "day": ("اليوم", "Day"),
    "backlog_title": ("ما ينتظر المعالجة", "What is waiting"),
    "webhooks_pending": ("إشعارات Webhook بانتظار الإرسال", "Webhook deliveries pending"),
    "ledger_unsealed": (
        "قيود دفتر الأستاذ غير المختومة بعد",
        "Ledger transactions not yet sealed",
    ),
    "backlog_unknown": (
        "لم تُجب قاعدة البيانات: قوائم الانتظار غير معروفة الآن.",
        "The database did not answer: the backlog is not known now.",
    ),
    "awaiting_title": ("بانتظار التسوية", "Awaiting settlement"),
    "awaiting_note": (
        "المدفوعات الناجحة التي لم يذكرها بعد أي ملف تسوية مستورد، منذ البداية، بالوضع المختار. "
        "المتأخرة: التي أُنشئت قبل {lag} يوم أو أكثر (مهلة التسوية).",
        "Succeeded payments that no imported settlement file names yet, of all time, in the "
        "chosen mode. Overdue: created {lag} or more days ago (the settlement lag).",
    ),
    "awaiting_count": ("العدد", "Count"),
    "awaiting_value": ("القيمة", "Value"),
    "overdue_count": ("المتأخرة: العدد", "Overdue: count"),
    "overdue_value": ("المتأخرة: القيمة", "Overdue: value"),
    "awaiting_none": ("لا شيء بانتظار التسوية.", "Nothing awaits settlement."),
}

MODE_WORDS = {
    figures.Mode.ALL: "mode_all",
    figures.Mode.LIVE: "mode_live",
    figures.Mode.TEST: "mode_test",
}
PERIODS = ("today", "month", "range")


@blp.get("/")
@guard.signed_in()
def dashboard() -> Response:
    today = clock.now().date()
    chosen, range_problem = figures.choose_range(
        request.args.get("from"), request.args.get("to"), today
    )
    mode, mode_problem = figures.choose_mode(request.args.get("mode"))
    problems = [p.value for p in (range_problem, mode_problem) if p is not None]
    board = figures.read_dashboard(guard.gateway(), guard.principal(), today, chosen, mode)
    words = Words(language(), PAGE)
    labels = _labels(board, words)
    # One colour and dash per currency, the same in every chart of the page.
    styles = {currency: n for n, currency in enumerate(sorted(board.periods["range"].totals))}
    return render(
        "dashboard.html",
        PAGE,
        status=422 if problems else 200,
        board=board,
        problems=problems,
        range_refused=range_problem is not None,
        max_days=MAX_RANGE_DAYS,
        modes=[(m.value, MODE_WORDS[m]) for m in figures.Mode],
        mode_word=MODE_WORDS[mode],
        periods=PERIODS,
        dimensions=figures.DIMENSIONS,
        labels=labels,
        status_chart=_status_chart(board, words, labels["status"], styles),
        agency_charts=_agency_charts(board, words, labels["agency"], styles),
        daily_charts=_daily_charts(board, words, styles),
    )


def _labels(board: Dashboard, w: Words) -> dict[str, dict[str, str]]:
    """Each dimension's keys in words: states and statuses named, agencies by their name in
    the page's language, acquirers by their code."""

    def named(prefix: str, key: str) -> str:
        return w(f"{prefix}_{key}") if f"{prefix}_{key}" in PAGE else key

    labels: dict[str, dict[str, str]] = {d: {} for d in figures.DIMENSIONS}
    for dimension in figures.DIMENSIONS:
        for key, _currency in board.keys(dimension):
            if dimension == "state":
                labels[dimension][key] = named("state", key)
            elif dimension == "status":
                labels[dimension][key] = named("status", key)
            elif dimension == "agency":
                agency = board.agencies.get(key)
                name = (agency.name_ar if w.lang == "ar" else agency.name) if agency else key
                labels[dimension][key] = name
            else:
                labels[dimension][key] = key or w("not_routed")
    return labels


def _status_chart(
    board: Dashboard, w: Words, labels: dict[str, str], styles: dict[str, int]
) -> Markup | None:
    """Counts, so all currencies share one scale: a group per status, a bar per currency."""
    rows = board.periods["range"].by["status"]
    statuses = sorted({key for key, _ in rows})
    if not statuses:
        return None
    groups = [
        charts.BarGroup(
            label=labels[status],
            bars=tuple(
                charts.Bar(rows[(status, c)].count, f"{c}: {rows[(status, c)].count}", styles[c])
                for c in sorted(styles)
                if (status, c) in rows
            ),
        )
        for status in statuses
    ]
    return charts.bar_chart(w("chart_status"), groups, summary=w("chart_status_summary"))


def _agency_charts(
    board: Dashboard, w: Words, labels: dict[str, str], styles: dict[str, int]
) -> list[tuple[str, str, Markup]]:
    """One chart per currency (one currency per scale): (currency, title, svg)."""
    rows = board.periods["range"].by["agency"]
    drawn = []
    for currency, style in styles.items():
        title = w("chart_agency", currency=currency)
        values = sorted(
            (
                (labels.get(agency, agency), cell.value_minor)
                for (agency, ccy), cell in rows.items()
                if ccy == currency
            ),
        )
        if len(values) > charts.MAX_BARS:  # the largest, and the rest as one bar
            values.sort(key=lambda pair: -pair[1])
            rest = values[charts.MAX_BARS - 1 :]
            others = w("chart_other_agencies", count=len(rest))
            values = [*values[: charts.MAX_BARS - 1], (others, sum(v for _, v in rest))]
        groups = [
            charts.BarGroup(
                label=label,
                bars=(charts.Bar(value, format_major(value, currency), style),),
            )
            for label, value in values
        ]
        drawn.append(
            (currency, title, charts.bar_chart(title, groups, summary=w("chart_agency_summary")))
        )
    return drawn


def _daily_charts(board: Dashboard, w: Words, styles: dict[str, int]) -> list[tuple[str, Markup]]:
    """The daily count, one line per currency; then the daily value, one chart per currency."""
    days = [d.isoformat() for d in board.chosen.days]
    summary = w("chart_daily_summary", first=days[0], last=days[-1])
    count_lines = [
        charts.Line(c, tuple(cell.count for cell in cells), styles[c])
        for c, cells in board.daily.items()
    ]
    drawn = [
        (w("chart_daily"), charts.line_chart(w("chart_daily"), days, count_lines, summary=summary))
    ]
    for currency, cells in board.daily.items():
        title = w("chart_daily_value", currency=currency)
        line = charts.Line(currency, tuple(c.value_minor for c in cells), styles[currency])
        drawn.append(
            (title, charts.line_chart(title, days, [line], summary=summary, tick=_major(currency)))
        )
    return drawn


def _major(currency: str) -> Callable[[int], str]:
    return lambda amount_minor: format_major(amount_minor, currency)
