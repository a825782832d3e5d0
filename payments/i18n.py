"""Arabic texts of the error messages a client can receive."""

from __future__ import annotations

ARABIC_BY_CODE: dict[str, str] = {
    "invalid_json": "نص الطلب ليس JSON صالحًا.",
    "body_not_object": "يجب أن يكون نص الطلب كائن JSON.",
    "body_too_deep": "نص الطلب متداخل بعمق أكبر من المسموح به.",
    "invalid_characters": "نص الطلب يحتوي على محارف غير مسموح بها.",
    "body_too_large": "نص الطلب أكبر من الحد المسموح به (64 كيلوبايت).",
    "unsupported_media_type": "يجب أن يكون نوع المحتوى application/json.",
    "parameter_invalid": "الطلب يحتوي على حقول غير صالحة.",
    "amount_exceeds_refundable": "المبلغ يتجاوز المبلغ القابل للاسترداد.",
    "amount_exceeds_authorized": "المبلغ يتجاوز المبلغ المفوَّض.",
    "idempotency_key_reused": "مفتاح عدم التكرار استُخدم من قبل مع طلب مختلف.",
    "idempotency_key_in_use": "طلب آخر بنفس مفتاح عدم التكرار ما زال قيد التنفيذ.",
    "idempotency_key_invalid": "مفتاح عدم التكرار غير صالح.",
    "authentication_failed": "مفتاح الواجهة البرمجية مفقود أو غير صالح أو ملغى.",
    "permission_denied": "لا يسمح دور هذا المفتاح بهذه العملية.",
    "resource_missing": "المورد المطلوب غير موجود.",
    "route_missing": "المسار المطلوب غير موجود.",
    "method_not_allowed": "طريقة الطلب غير مسموح بها لهذا المسار.",
    "payment_invalid_state": "حالة الدفعة لا تسمح بهذه العملية.",
    "payment_expired": "انتهت صلاحية الدفعة.",
    "payment_disputed": "على الدفعة اعتراض مفتوح؛ لا يمكن استردادها حتى يُلغى الاعتراض.",
    "agency_key_required": "إنشاء الدفعات يتطلب مفتاح جهة حكومية.",
    "rate_limited": "طلبات كثيرة جدًا؛ أعد المحاولة لاحقًا.",
    "capture_failed": "رفض مزوّد الدفع التحصيل؛ لم تتغير الدفعة.",
    "cancel_failed": "رفض مزوّد الدفع الإلغاء؛ لم تتغير الدفعة.",
    "unavailable": "الخدمة غير متاحة مؤقتًا؛ أعد المحاولة بنفس المفتاح.",
    "url_invalid": "عنوان URL غير صالح لاستقبال الإشعارات.",
    "url_https_required": "يجب أن يستخدم عنوان الإشعارات بروتوكول https في بيئة الإنتاج.",
    "url_not_allowed": "عنوان الإشعارات يشير إلى عنوان شبكة خاص أو محجوز غير مسموح به.",
    "url_unresolvable": "تعذّر العثور على عنوان الخادم في عنوان الإشعارات.",
    "endpoint_limit_reached": "بلغت الجهة الحد الأقصى لعدد نقاط استقبال الإشعارات.",
    "endpoint_disabled": "نقطة استقبال الإشعارات معطّلة؛ فعّلها أولًا.",
    "notification_invalid": "تعذّر التحقق من توقيع إشعار مزوّد الدفع أو من توقيته.",
    "internal": "حدث خطأ داخلي غير متوقع.",
}

ARABIC_BY_TYPE: dict[str, str] = {
    "invalid_request": "الطلب غير صالح.",
    "authentication": "فشل التحقق من الهوية.",
    "permission": "ليست لديك صلاحية لهذه العملية.",
    "not_found": "المورد المطلوب غير موجود.",
    "conflict": "الحالة الحالية لا تسمح بهذه العملية.",
    "rate_limited": "طلبات كثيرة جدًا.",
    "provider": "فشل مزوّد الدفع ولم تتأثر الدفعة.",
    "unavailable": "الخدمة غير متاحة مؤقتًا.",
    "internal": "حدث خطأ داخلي غير متوقع.",
}


def message(code: str, type_: str, english: str, language: str) -> str:
    if language != "ar":
        return english
    return ARABIC_BY_CODE.get(code) or ARABIC_BY_TYPE.get(type_, english)
