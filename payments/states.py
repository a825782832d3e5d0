"""Payment, attempt and refund statuses, and the one table of legal payment transitions."""

from __future__ import annotations

import enum

from payments.errors import Conflict


class PaymentStatus(enum.StrEnum):
    CREATED = "created"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class AttemptStatus(enum.StrEnum):
    """An attempt is `open` while the acquirer may still move money for it."""

    OPEN = "open"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"
    UNAVAILABLE = "unavailable"
    CANCELLED = "cancelled"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class FailureCode(enum.StrEnum):
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    AUTHENTICATION_FAILED = "authentication_failed"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    ABANDONED = "abandoned"


FAILURE_MESSAGES: dict[FailureCode, str] = {
    FailureCode.CARD_DECLINED: "The card was declined.",
    FailureCode.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    FailureCode.EXPIRED_CARD: "The card has expired.",
    FailureCode.INCORRECT_CVC: "The security code is incorrect.",
    FailureCode.AUTHENTICATION_FAILED: "The payer could not be authenticated.",
    FailureCode.PROVIDER_UNAVAILABLE: "No acquirer could take the payment; nothing was charged.",
    FailureCode.ABANDONED: "The payment was not completed in time.",
}

P = PaymentStatus
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.CREATED: frozenset({P.PROCESSING, P.CANCELLED, P.EXPIRED}),
    # back to `created` only when the payer on the hosted page may try another card
    P.PROCESSING: frozenset({P.CREATED, P.REQUIRES_CAPTURE, P.SUCCEEDED, P.FAILED, P.CANCELLED}),
    P.REQUIRES_CAPTURE: frozenset({P.PROCESSING, P.SUCCEEDED, P.CANCELLED}),
    P.SUCCEEDED: frozenset(),
    P.FAILED: frozenset(),
    P.CANCELLED: frozenset(),
    P.EXPIRED: frozenset(),
}

# The event an agency is told about when a payment enters a status (none for `processing`).
PAYMENT_EVENTS: dict[PaymentStatus, str] = {
    P.REQUIRES_CAPTURE: "payment.requires_capture",
    P.SUCCEEDED: "payment.succeeded",
    P.FAILED: "payment.failed",
    P.CANCELLED: "payment.cancelled",
    P.EXPIRED: "payment.expired",
}
REFUND_EVENTS: dict[RefundStatus, str] = {
    RefundStatus.SUCCEEDED: "refund.succeeded",
    RefundStatus.FAILED: "refund.failed",
}


def check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    """Raise `Conflict` unless the payment may move from `current` to `target`."""
    if target not in TRANSITIONS[current]:
        raise Conflict(
            f"a {current.value} payment cannot become {target.value}",
            code="payment_invalid_state",
            message_args={"status": current.value},
        )
