"""Every word the hosted page and the 3-D Secure simulator show, in Arabic and in English."""

from __future__ import annotations

from payments.money import CURRENCY_NAMES_AR, format_major

LANGUAGES = ("ar", "en")
DIRECTIONS = {"ar": "rtl", "en": "ltr"}
# The switch names the other language in that language, so a payer who cannot read the
# page's language still recognises their own.
LANGUAGE_NAMES = {"ar": "العربية", "en": "English"}

# Each national scheme by the name its cardholders know it by, as API.md's buttons read.
SCHEME_NAMES = {
    "en": {"knet": "KNET", "benefit": "BENEFIT", "omannet": "OmanNet", "mada": "mada"},
    "ar": {"knet": "KNET", "benefit": "BENEFIT", "omannet": "OmanNet", "mada": "مدى"},
}

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "service_name": "GCC Government Payments",
        "skip_link": "Skip to main content",
        "language_switch": "Language",
        "test_banner": "Test payment: no real money will be taken.",
        "pay_title": "Pay {agency}",
        "summary_title": "Payment summary",
        "summary_agency": "Paying",
        "summary_description": "For",
        "summary_amount": "Amount to pay",
        "summary_amount_paid": "Amount paid",
        "summary_amount_plain": "Amount",
        "card_title": "Card details",
        "card_number": "Card number",
        "card_number_hint": "The long number on the front of your card.",
        "expiry": "Expiry date",
        "expiry_hint": "As shown on the card, for example 03 and 2029.",
        "exp_month": "Expiry month",
        "exp_year": "Expiry year",
        "cvc": "Security code",
        "cvc_hint": "The last 3 digits on the back of the card (4 digits on the front for "
        "American Express).",
        "name": "Name on card",
        "pay": "Pay",
        "cancel": "Cancel and return",
        "cancel_hint": "Nothing will be charged and you will go back to {agency}.",
        "error_prefix": "Error:",
        "error_title_prefix": "Error: ",
        "error_summary": "There is a problem",
        "declined_title": "Your card was not accepted",
        "try_another": "You can try another card.",
        "tries_left_1": "1 try left.",
        "tries_left_n": "{count} tries left.",
        "unavailable_title": "Card payments are not available right now",
        "unavailable_body": "No payment was taken. Please try again later, or return to the "
        "service.",
        "processing_title": "Your payment is being processed",
        "processing_body": "We are waiting for your bank's answer. Do not pay again.",
        "processing_refresh": "This page checks again every {seconds} seconds.",
        "processing_stop": "Stop checking automatically",
        "processing_check": "Check now",
        "processing_continue": "Continue to your bank's verification",
        "processing_verify": "Your bank needs to confirm that it is you. Continue to your bank's "
        "page to finish the payment.",
        "succeeded_title": "Payment received",
        "succeeded_body": "Your payment to {agency} is complete.",
        "authorised_title": "Payment authorised",
        "authorised_body": "Your payment to {agency} is authorised. {agency} will complete it.",
        "failed_title": "Payment failed",
        "failed_body": "No money was taken.",
        "cancelled_title": "Payment cancelled",
        "cancelled_body": "You cancelled this payment. No money was taken.",
        "expired_title": "This payment has expired",
        "expired_body": "No money was taken. Go back to {agency} to start again.",
        "link_expired_title": "This payment link has expired",
        "link_expired_body": "The link stopped working when the time to pay ran out. If you "
        "paid, {agency} has your payment; if not, go back to {agency} to start again.",
        "return_link": "Return to {agency}",
        "footer": "Secure payment page of the GCC government payment gateway.",
        "not_found_title": "Page not found",
        "not_found_body": "This payment link is not valid. Check that you used the whole link "
        "the service gave you.",
        "csrf_title": "This form has expired",
        "csrf_body": "For your security the form could not be sent. Go back to the payment "
        "page and try again. Nothing was charged.",
        "bad_request_title": "The request could not be understood",
        "bad_request_body": "Go back to the payment page and try again.",
        "server_error_title": "Sorry, something went wrong",
        "server_error_body": "Please try again in a few minutes. If you were paying, check "
        "with the service before paying again.",
        "back_to_payment": "Back to the payment page",
        "sim_masthead": "Sandbox test bank (simulator)",
        "sim_banner": "Sandbox simulator: this is not a real bank. No real authentication "
        "takes place here.",
        "sim_title": "3-D Secure test page",
        "sim_intro": "Choose what the cardholder's bank should answer for this test payment.",
        "sim_amount": "Amount",
        "sim_reference": "Reference",
        "sim_complete": "Complete authentication",
        "sim_fail": "Fail authentication",
        "sim_done_title": "This check is already finished",
        "sim_done_body": "The outcome was: {state}.",
        "sim_back": "Back to the payment",
        "sim_state_pending": "waiting",
        "sim_state_succeeded": "authenticated",
        "sim_state_failed": "not authenticated",
        "sim_state_expired": "timed out",
        "schemes_title": "Pay with your national debit card",
        "schemes_hint": "You will pay on {scheme}'s own page and come back here.",
        "scheme_or_card": "Or pay by card",
        "callback_title": "This answer from the payment scheme could not be checked",
        "callback_body": "Nothing was changed. Go back to the payment page to see where it stands.",
        "scheme_sim_banner": "Sandbox simulator of {scheme}: not the real scheme. No real money "
        "moves here.",
        "scheme_sim_title": "{scheme} test payment page",
        "scheme_sim_intro": "Choose what {scheme} should answer for this test payment.",
        "scheme_sim_merchant": "Merchant",
        "scheme_sim_approve": "Approve",
        "scheme_sim_decline": "Decline",
        "scheme_sim_cancel": "Cancel",
        "scheme_sim_done_title": "This payment is already finished",
        "scheme_sim_done_body": "The outcome was: {state}.",
    },
    "ar": {
        "service_name": "بوابة الدفع الحكومية الخليجية",
        "skip_link": "انتقل إلى المحتوى الرئيسي",
        "language_switch": "اللغة",
        "test_banner": "دفعة تجريبية: لن يُخصم أي مبلغ حقيقي.",
        "pay_title": "الدفع إلى {agency}",
        "summary_title": "ملخص الدفعة",
        "summary_agency": "الجهة",
        "summary_description": "مقابل",
        "summary_amount": "المبلغ المطلوب",
        "summary_amount_paid": "المبلغ المدفوع",
        "summary_amount_plain": "المبلغ",
        "card_title": "بيانات البطاقة",
        "card_number": "رقم البطاقة",
        "card_number_hint": "الرقم الطويل على وجه البطاقة.",
        "expiry": "تاريخ الانتهاء",
        "expiry_hint": "كما هو مكتوب على البطاقة، مثل 03 و 2029.",
        "exp_month": "شهر الانتهاء",
        "exp_year": "سنة الانتهاء",
        "cvc": "رمز الأمان",
        "cvc_hint": "آخر 3 أرقام على ظهر البطاقة (4 أرقام على وجه بطاقة أمريكان إكسبريس).",
        "name": "الاسم على البطاقة",
        "pay": "ادفع",
        "cancel": "إلغاء والعودة",
        "cancel_hint": "لن يُخصم أي مبلغ وستعود إلى {agency}.",
        "error_prefix": "خطأ:",
        "error_title_prefix": "خطأ: ",
        "error_summary": "يوجد خطأ",
        "declined_title": "لم تُقبل بطاقتك",
        "try_another": "يمكنك تجربة بطاقة أخرى.",
        "tries_left_1": "بقيت محاولة واحدة.",
        "tries_left_2": "بقيت محاولتان.",
        "tries_left_n": "بقيت {count} محاولات.",
        "unavailable_title": "الدفع بالبطاقة غير متاح حاليًا",
        "unavailable_body": "لم يُخصم أي مبلغ. يُرجى المحاولة لاحقًا أو العودة إلى الخدمة.",
        "processing_title": "دفعتك قيد المعالجة",
        "processing_body": "ننتظر رد البنك. لا تدفع مرة أخرى.",
        "processing_refresh": "تتحقق هذه الصفحة من جديد كل {seconds} ثوانٍ.",
        "processing_stop": "أوقف التحقق التلقائي",
        "processing_check": "تحقق الآن",
        "processing_continue": "تابع إلى صفحة التحقق لدى البنك",
        "processing_verify": "يحتاج البنك إلى التأكد من هويتك. تابع إلى صفحة البنك لإتمام الدفعة.",
        "succeeded_title": "تم استلام الدفعة",
        "succeeded_body": "اكتملت دفعتك إلى {agency}.",
        "authorised_title": "تم تفويض الدفعة",
        "authorised_body": "تم تفويض دفعتك إلى {agency}، وستُكملها الجهة.",
        "failed_title": "لم تنجح الدفعة",
        "failed_body": "لم يُخصم أي مبلغ.",
        "cancelled_title": "أُلغيت الدفعة",
        "cancelled_body": "ألغيت هذه الدفعة. لم يُخصم أي مبلغ.",
        "expired_title": "انتهت صلاحية هذه الدفعة",
        "expired_body": "لم يُخصم أي مبلغ. عُد إلى {agency} لتبدأ من جديد.",
        "link_expired_title": "انتهت صلاحية رابط الدفع هذا",
        "link_expired_body": "توقف الرابط عن العمل بانتهاء مهلة الدفع. إن كنت قد دفعت فقد "
        "تسلّمت {agency} دفعتك، وإلا فعُد إلى {agency} لتبدأ من جديد.",
        "return_link": "العودة إلى {agency}",
        "footer": "صفحة دفع آمنة تابعة لبوابة الدفع الحكومية الخليجية.",
        "not_found_title": "الصفحة غير موجودة",
        "not_found_body": "رابط الدفع هذا غير صالح. تأكد من استخدام الرابط كاملًا كما أرسلته الجهة.",
        "csrf_title": "انتهت صلاحية النموذج",
        "csrf_body": "لحمايتك لم يُرسل النموذج. عُد إلى صفحة الدفع وحاول مرة أخرى. لم يُخصم أي مبلغ.",
        "bad_request_title": "تعذّر فهم الطلب",
        "bad_request_body": "عُد إلى صفحة الدفع وحاول مرة أخرى.",
        "server_error_title": "عذرًا، حدث خطأ",
        "server_error_body": "يُرجى المحاولة بعد دقائق. إن كنت تدفع، فتحقق من الجهة قبل أن "
        "تدفع مرة أخرى.",
        "back_to_payment": "العودة إلى صفحة الدفع",
        "sim_masthead": "بنك الاختبار (محاكي)",
        "sim_banner": "محاكي بيئة الاختبار: هذا ليس بنكًا حقيقيًا، ولا يجري هنا أي تحقق حقيقي.",
        "sim_title": "صفحة اختبار التحقق الآمن ثلاثي الأبعاد",
        "sim_intro": "اختر رد بنك حامل البطاقة على هذه الدفعة التجريبية.",
        "sim_amount": "المبلغ",
        "sim_reference": "المرجع",
        "sim_complete": "إتمام التحقق",
        "sim_fail": "إفشال التحقق",
        "sim_done_title": "انتهى هذا التحقق من قبل",
        "sim_done_body": "كانت النتيجة: {state}.",
        "sim_back": "العودة إلى الدفعة",
        "sim_state_pending": "بانتظار الرد",
        "sim_state_succeeded": "تم التحقق",
        "sim_state_failed": "لم يتم التحقق",
        "sim_state_expired": "انتهت المهلة",
        "schemes_title": "ادفع ببطاقة الخصم الوطنية",
        "schemes_hint": "ستدفع على صفحة {scheme} نفسها ثم تعود إلى هنا.",
        "scheme_or_card": "أو ادفع بالبطاقة",
        "callback_title": "تعذّر التحقق من رد شبكة الدفع",
        "callback_body": "لم يتغير شيء. عُد إلى صفحة الدفع لترى حالتها.",
        "scheme_sim_banner": "محاكي تجريبي لشبكة {scheme}: ليس الشبكة الحقيقية. لا تتحرك هنا أي "
        "أموال حقيقية.",
        "scheme_sim_title": "صفحة دفع تجريبية لشبكة {scheme}",
        "scheme_sim_intro": "اختر رد {scheme} على هذه الدفعة التجريبية.",
        "scheme_sim_merchant": "التاجر",
        "scheme_sim_approve": "موافقة",
        "scheme_sim_decline": "رفض",
        "scheme_sim_cancel": "إلغاء",
        "scheme_sim_done_title": "انتهت هذه الدفعة من قبل",
        "scheme_sim_done_body": "النتيجة: {state}.",
    },
}

FAILURE_REASONS: dict[str, dict[str, str]] = {
    "en": {
        "card_declined": "Your bank declined the card.",
        "insufficient_funds": "There is not enough money in the card's account.",
        "expired_card": "Your bank says the card has expired.",
        "incorrect_cvc": "The security code is not correct.",
        "authentication_failed": "Your bank could not confirm that you made this payment.",
        "provider_unavailable": "The payment service was not available. No money was taken.",
        "abandoned": "The payment was not completed.",
        "other": "The payment could not be completed.",
    },
    "ar": {
        "card_declined": "رفض البنك البطاقة.",
        "insufficient_funds": "لا يوجد رصيد كافٍ في حساب البطاقة.",
        "expired_card": "أفاد البنك بأن البطاقة منتهية الصلاحية.",
        "incorrect_cvc": "رمز الأمان غير صحيح.",
        "authentication_failed": "لم يتمكن البنك من التأكد من أنك أجريت هذه الدفعة.",
        "provider_unavailable": "خدمة الدفع لم تكن متاحة. لم يُخصم أي مبلغ.",
        "abandoned": "لم تكتمل الدفعة.",
        "other": "تعذّر إتمام الدفعة.",
    },
}

# Messages beside a card field: (field, problem) -> text.
FIELD_ERRORS: dict[str, dict[tuple[str, str], str]] = {
    "en": {
        ("number", "missing"): "Enter the card number",
        ("number", "not_digits"): "Enter the card number using digits only",
        ("number", "invalid"): "The card number is not valid: check it and try again",
        ("exp_month", "missing"): "Enter the expiry month",
        ("exp_month", "invalid"): "Enter the expiry month as a number from 1 to 12",
        ("exp_year", "missing"): "Enter the expiry year",
        ("exp_year", "invalid"): "Enter the expiry year as 4 digits, for example 2029",
        ("expiry", "past"): "The expiry date is in the past: check the card",
        ("cvc", "missing"): "Enter the security code",
        ("cvc", "invalid"): "Enter the 3 or 4 digit security code",
        ("name", "missing"): "Enter the name as it is written on the card",
        ("name", "invalid"): "Enter the name on the card in 100 characters or fewer",
    },
    "ar": {
        ("number", "missing"): "أدخل رقم البطاقة",
        ("number", "not_digits"): "أدخل رقم البطاقة بالأرقام فقط",
        ("number", "invalid"): "رقم البطاقة غير صحيح: تحقق منه وحاول مرة أخرى",
        ("exp_month", "missing"): "أدخل شهر الانتهاء",
        ("exp_month", "invalid"): "أدخل شهر الانتهاء رقمًا من 1 إلى 12",
        ("exp_year", "missing"): "أدخل سنة الانتهاء",
        ("exp_year", "invalid"): "أدخل سنة الانتهاء بأربعة أرقام، مثل 2029",
        ("expiry", "past"): "تاريخ الانتهاء مضى: تحقق من البطاقة",
        ("cvc", "missing"): "أدخل رمز الأمان",
        ("cvc", "invalid"): "أدخل رمز الأمان المكوّن من 3 أو 4 أرقام",
        ("name", "missing"): "أدخل الاسم كما هو مكتوب على البطاقة",
        ("name", "invalid"): "أدخل الاسم على البطاقة في 100 حرف أو أقل",
    },
}


def language(value: str | None) -> str | None:
    """`value` if it names a language the pages speak, else None."""
    return value if value in LANGUAGES else None


def text(lang: str, key: str, **values: object) -> str:
    template = TEXTS[lang][key]
    return template.format(**values) if values else template


def tries_left(lang: str, count: int) -> str:
    """'2 tries left.', with Arabic's dual and plural forms."""
    if count == 1:
        return text(lang, "tries_left_1")
    if count == 2 and lang == "ar":
        return text(lang, "tries_left_2")
    return text(lang, "tries_left_n", count=count)


def currency_name(lang: str, currency: str) -> str:
    """The ISO code on the English page; the currency's own name on the Arabic page."""
    return CURRENCY_NAMES_AR.get(currency, currency) if lang == "ar" else currency


def amount(lang: str, amount_minor: int, currency: str) -> tuple[str, str]:
    """The amount in the currency's own decimals and the currency's name: ('12.500', 'OMR')."""
    return format_major(amount_minor, currency), currency_name(lang, currency)


def failure_reason(lang: str, code: str | None) -> str:
    reasons = FAILURE_REASONS[lang]
    return reasons.get(code or "other", reasons["other"])


def field_error(lang: str, field: str, problem: str) -> str:
    return FIELD_ERRORS[lang][(field, problem)]
