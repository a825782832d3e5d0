"""The ledger pages: the trial balance, one account's statement with its running balance, and
the ledger's verification as `gateway ledger verify` runs it."""

from __future__ import annotations

import re
from typing import Any

from flask import abort, request
from werkzeug.wrappers import Response

from payments import postings
from payments.errors import NotFound
from payments.finance import guard
from payments.finance.web import blp, render
from payments.money import CURRENCY_EXPONENTS
from payments.service import finance_reads, reads
from payments.service.payments import Page

PAGE_SIZE = 50
MAX_CODE = 200  # the longest account code the ledger keeps
# Posting ids are PostgreSQL `integer`s: a larger cursor is past them all (as in the API).
MAX_POSTING_ID = 2**31 - 1
CURSOR_RE = re.compile(r"pst_([0-9]{1,18})")
KINDS = ("asset", "liability", "income", "expense", "equity")
# The checks `ledger verify` runs, in the order the page lists them.
CHECKS = (
    "chain",
    "content",
    "balance",
    "posting",
    "totals",
    "limit",
    "reversal",
    "anchor",
    "gateway",
    "trial balance",
)

PAGE: dict[str, tuple[str, str]] = {
    "ledger_title": ("دفتر الأستاذ", "Ledger"),
    "trial_balance": ("ميزان المراجعة", "Trial balance"),
    "trial_hint": (
        "مجموع المدين والدائن لكل عملة، وأرصدة الحسابات. لا تُجمع عملتان معًا.",
        "Debits and credits per currency, and every account's balance. "
        "No two currencies are ever added together.",
    ),
    "currency": ("العملة", "Currency"),
    "debits": ("المدين", "Debits"),
    "credits": ("الدائن", "Credits"),
    "balanced": ("متوازن", "Balanced"),
    "unbalanced": ("غير متوازن", "Not balanced"),
    "state": ("الحالة", "State"),
    "accounts": ("الحسابات", "Accounts"),
    "account": ("الحساب", "Account"),
    "kind": ("النوع", "Kind"),
    "balance": ("الرصيد", "Balance"),
    "empty_book": ("لا توجد قيود في الدفتر بعد.", "The book has no postings yet."),
    "verify_link": ("التحقق من سلامة الدفتر", "Verify the ledger"),
    "kind_asset": ("أصول", "Asset"),
    "kind_liability": ("التزامات", "Liability"),
    "kind_income": ("إيرادات", "Income"),
    "kind_expense": ("مصروفات", "Expense"),
    "kind_equity": ("حقوق ملكية", "Equity"),
    # The account's statement
    "statement_title": ("كشف الحساب", "Account statement"),
    "back_to_ledger": ("العودة إلى ميزان المراجعة", "Back to the trial balance"),
    "statement_hint": (
        "القيود الأحدث أولًا، ومع كل قيد رصيد الحساب بعده.",
        "Postings newest first, each with the account's balance after it.",
    ),
    "current_balance": ("الرصيد الحالي", "Current balance"),
    "effective": ("تاريخ السريان", "Effective"),
    "transaction": ("القيد", "Transaction"),
    "description": ("الوصف", "Description"),
    "debit": ("مدين", "Debit"),
    "credit": ("دائن", "Credit"),
    "balance_after": ("الرصيد بعده", "Balance after"),
    "postings": ("القيود", "Postings"),
    "bad_page": (
        "رابط الصفحة غير صالح؛ هذه أحدث القيود.",
        "The page link is not valid; these are the newest postings.",
    ),
    # Verification
    "verify_title": ("التحقق من سلامة الدفتر", "Ledger verification"),
    "verify_passed": (
        "نجح التحقق: سلسلة التجزئة متصلة وكل القواعد متحققة.",
        "Verification passed: the hash chain is unbroken and every invariant holds.",
    ),
    "verify_failed": (
        "فشل التحقق: وُجدت مشكلات في الدفتر.",
        "Verification FAILED: the book has problems.",
    ),
    "verify_counts": ("ما تم فحصه", "What was checked"),
    "n_transactions": ("القيود المختومة", "Sealed transactions"),
    "n_postings": ("الترحيلات", "Postings"),
    "n_accounts": ("الحسابات", "Accounts"),
    "n_anchors": ("نقاط الإرساء", "Anchors"),
    "n_pending": ("قيود بانتظار الختم", "Transactions waiting to be sealed"),
    "checks_title": ("الفحوص", "The checks"),
    "problems_title": ("ما الذي تعطّل", "What broke"),
    "check_holds": ("سليم", "Holds"),
    "check_broken": ("معطّل", "Broken"),
    "name_chain": ("سلسلة التجزئة", "Hash chain"),
    "name_content": ("محتوى القيد", "Content"),
    "name_balance": ("توازن القيد", "Balance"),
    "name_posting": ("الترحيل", "Posting"),
    "name_totals": ("مجاميع الحساب", "Account totals"),
    "name_limit": ("حد الحساب", "Account limit"),
    "name_reversal": ("القيد العكسي", "Reversal"),
    "name_anchor": ("نقطة الإرساء", "Anchor"),
    "name_gateway": ("أرصدة البوابة", "Gateway balances"),
    "name_trial balance": ("ميزان المراجعة", "Trial balance"),
    "problem_check": ("الفحص", "Check"),
    "problem_where": ("الموضع", "Where"),
    "problem_detail": ("التفاصيل", "Detail"),
    "check_chain": (
        "سلسلة التجزئة: كل حلقة تتبع سابقتها، ولا قيد خارجها إلا ما ينتظر الختم لبضع دقائق",
        "The hash chain: each link follows the one before, and no transaction is outside it "
        "except those waiting a few minutes to be sealed",
    ),
    "check_content": (
        "محتوى كل قيد يطابق بصمته المسجّلة",
        "Each transaction's content matches its recorded hash",
    ),
    "check_balance": (
        "كل قيد متوازن في كل عملة",
        "Each transaction balances in every currency",
    ),
    "check_posting": ("كل ترحيل بمبلغ موجب", "Each posting has a positive amount"),
    "check_totals": (
        "مجاميع كل حساب تساوي مجموع ترحيلاته",
        "Each account's totals equal the sum of its postings",
    ),
    "check_limit": ("لا حساب تجاوز حدّه الأدنى", "No account is below its limit"),
    "check_reversal": (
        "كل قيد عكسي يطابق القيد الذي يعكسه",
        "Each reversal mirrors the transaction it reverses",
    ),
    "check_anchor": (
        "نقاط الإرساء المحفوظة خارج قاعدة البيانات ما زالت في السلسلة",
        "The anchors kept outside the database are still in the chain",
    ),
    "check_gateway": (
        "أرصدة الجهات وجهات التحصيل والبنوك والرسوم تطابق المدفوعات والمبالغ المستردة والتسويات "
        "والتحويلات",
        "Agency, acquirer, bank and fee balances match the payments, refunds, settlement lines "
        "and payouts",
    ),
    "check_trial balance": (
        "المدين يساوي الدائن في كل عملة",
        "Debits equal credits in every currency",
    ),
}


@blp.get("/ledger", endpoint="ledger")
@guard.signed_in()
def trial_balance_page() -> Response:
    book = reads.trial_balance(guard.gateway(), guard.principal())
    return render("ledger.html", PAGE, book=book, kinds=KINDS)


def _cursor(typed: str) -> tuple[str | None, bool]:
    """The statement line to page after, and whether the one typed was good."""
    if not typed:
        return None, True
    found = CURSOR_RE.fullmatch(typed)
    if found is None:
        return None, False
    if int(found.group(1)) > MAX_POSTING_ID:
        return f"pst_{MAX_POSTING_ID}", True  # past every posting: from the newest
    return typed, True


@blp.get("/ledger/accounts", endpoint="ledger_account")
@guard.signed_in()
def account_page() -> Response:
    code = request.args.get("code", "")
    currency = request.args.get("currency", "")
    if not code or len(code) > MAX_CODE or currency not in CURRENCY_EXPONENTS:
        abort(404)
    after, cursor_ok = _cursor(request.args.get("starting_after", "")[:64])
    try:
        statement: dict[str, Any] = reads.account_statement(
            guard.gateway(), guard.principal(), code, currency, Page(PAGE_SIZE, after)
        )
    except NotFound:
        abort(404)
    return render(
        "ledger_account.html",
        PAGE,
        status=200 if cursor_ok else 422,
        s=statement,
        cursor_ok=cursor_ok,
        kinds=KINDS,
        capture_prefix=postings.prefix_of(postings.CAPTURE),
    )


@blp.get("/ledger/verify", endpoint="ledger_verify")
@guard.signed_in()
def verify_page() -> Response:
    checked = finance_reads.verify_ledger(guard.gateway(), guard.principal())
    return render(
        "ledger_verify.html",
        PAGE,
        report=checked.report,
        anchors=checked.anchors,
        checks=CHECKS,
    )
