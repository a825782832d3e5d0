"""The Stripe acquirer: PaymentIntents, Refunds and signed events through the `stripe` SDK.

One `StripeClient` per instance, never the SDK's global configuration. Every answer keeps the
gateway's money rule: `unavailable` only when Stripe provably did nothing (the connection could
not even be made, or Stripe refused the request before acting); whenever the request may have
reached Stripe and no answer came back, `unknown`, and the gateway asks `status` later.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import requests
import stripe
import urllib3.exceptions

from providers.base import (
    AuthorizeRequest,
    Capabilities,
    InvalidNotification,
    Notification,
    Outcome,
    ProviderResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
)

if TYPE_CHECKING:
    from stripe.params import (
        PaymentIntentCaptureParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
        RefundListParams,
    )

log = logging.getLogger(__name__)

CURRENCIES = frozenset({"SAR", "AED", "QAR", "KWD", "BHD", "OMR", "USD"})
# Stripe takes three-decimal currencies in minor units but wants the last digit to be 0.
AMOUNT_MULTIPLE: tuple[tuple[str, int], ...] = (("KWD", 10), ("BHD", 10), ("OMR", 10))
# Stripe's own default: a signed event older than five minutes is a replay.
WEBHOOK_TOLERANCE_S = 300
# `refund_status` scans at most this many of the newest refunds (see there for why).
REFUND_SCAN_PAGES = 5
PAGE_SIZE = 100
MESSAGE_MAX_CHARS = 200

# Stripe's `decline_code` or `code` -> the gateway's failure code; anything else is a decline.
DECLINE_CODES: dict[str, str] = {
    "generic_decline": "card_declined",
    "card_declined": "card_declined",
    "insufficient_funds": "insufficient_funds",
    "expired_card": "expired_card",
    "incorrect_cvc": "incorrect_cvc",
    "invalid_cvc": "incorrect_cvc",
    "authentication_required": "authentication_failed",
    "authentication_not_handled": "authentication_failed",
    "payment_intent_authentication_failure": "authentication_failed",
}

_DIGIT_RUN = re.compile(r"\d[\d -]{10,}\d")
_CVC_FIELD = re.compile(r"\[cvc\]|%5Bcvc%5D", re.IGNORECASE)


def decline_code(*stripe_codes: str | None) -> str:
    """The gateway's code for the first of Stripe's codes it knows (`decline_code` first: it
    is the more precise), else `card_declined`."""
    for code in stripe_codes:
        if code and code in DECLINE_CODES:
            return DECLINE_CODES[code]
    return "card_declined"


def _safe_message(text: object) -> str | None:
    """A message fit for results and logs: short, and with any run of digits long enough to be
    a card number masked, whatever the other side wrote."""
    if text is None:
        return None
    return _DIGIT_RUN.sub("[digits withheld]", str(text))[:MESSAGE_MAX_CHARS]


class _WithholdCardData(logging.Filter):
    """The SDK logs each request's form body at DEBUG ("Post details"); for a card payment that
    body holds the card number and the security code, which must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "post_data=" in text or _CVC_FIELD.search(text) or _DIGIT_RUN.search(text):
            record.msg = "Stripe request details withheld: they may hold card data"
            record.args = ()
        return True


_WITHHOLD_CARD_DATA = _WithholdCardData()

# The SDK's own switch for printing its log to stderr, which it reads at import; it honours
# `debug` (request and response bodies too) and `info` (one line per request and response).
SDK_CONSOLE_LOG_VAR = "STRIPE_LOG"


def _keep_card_data_off_the_console(console_log: str | None) -> None:
    """At `debug` the SDK prints each request's form body to stderr itself, past any logging
    filter, and a card payment's body holds the card number and the security code. The SDK's
    public switch `stripe.log` outranks the variable, so holding it at `info` keeps the lines
    a developer asked for and drops the bodies. The switch is the SDK's one console for the
    whole process: there is no per-client one. Production refuses the variable outright
    (config/settings.py), which reads the variable and hands it here as `console_log`."""
    if stripe.log == "debug" or (stripe.log is None and console_log == "debug"):
        stripe.log = "info"
        log.warning(
            "the Stripe SDK's console log is held at info: at debug it prints card data",
            extra={"variable": SDK_CONSOLE_LOG_VAR},
        )


def _never_sent(error: stripe.APIConnectionError) -> bool:
    """True only when the TCP connection itself could not be made (refused, unreachable, name
    not resolved, connect timeout): then no byte of the request left. A read timeout, a reset,
    a TLS failure or anything unrecognised may have reached Stripe, so it is not this."""
    cause = error.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return False
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        inner = cause.args[0]
        if isinstance(inner, urllib3.exceptions.MaxRetryError):
            inner = inner.reason
        return isinstance(inner, urllib3.exceptions.NewConnectionError)
    return False


def _untouched(error: stripe.StripeError) -> bool:
    """Stripe provably did nothing with the request: it never arrived, or Stripe turned it away
    before acting (bad key, no permission, rate limit, any 4xx but a conflict)."""
    if isinstance(error, stripe.APIConnectionError):
        return _never_sent(error)
    if isinstance(
        error,
        stripe.AuthenticationError
        | stripe.PermissionError
        | stripe.RateLimitError
        | stripe.InvalidRequestError,
    ):
        return True
    # An idempotency error means an earlier request under this key exists and may have acted;
    # a 409 means one is still in flight. Neither proves anything about the money.
    if isinstance(error, stripe.IdempotencyError):
        return False
    status = error.http_status
    return status is not None and 400 <= status < 500 and status != 409


def _refused(error: stripe.StripeError) -> bool:
    """Stripe looked at the request and said no: nothing moved."""
    return isinstance(error, stripe.CardError | stripe.InvalidRequestError)


def _error_body(error: stripe.StripeError) -> dict[str, Any]:
    body = error.json_body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return cast(dict[str, Any], body["error"])
    return {}


def _error_intent(error: stripe.StripeError) -> dict[str, Any] | None:
    """The PaymentIntent Stripe attaches to an error about one, if any."""
    intent = _error_body(error).get("payment_intent")
    return cast(dict[str, Any], intent) if isinstance(intent, dict) else None


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _describe(error: stripe.StripeError) -> str:
    return f"{type(error).__name__} (HTTP {error.http_status}, code {error.code})"


def _amount_of(intent: Mapping[str, Any]) -> int | None:
    return _int(intent, "amount")


def _currency_of(intent: Mapping[str, Any]) -> str | None:
    """The PaymentIntent's currency as the gateway writes it (Stripe writes it lower case)."""
    currency = _str(intent, "currency")
    return currency.upper() if currency else None


def intent_result(intent: Mapping[str, Any]) -> ProviderResult:
    """What a PaymentIntent's state means to the gateway; anything it cannot read is `unknown`.
    Every answer says what the PaymentIntent is for, so the gateway can tell whether it is
    about the attempt it asked for."""
    result = functools.partial(
        ProviderResult,
        reference=_str(intent, "id"),
        amount_minor=_amount_of(intent),
        currency=_currency_of(intent),
    )
    status = _str(intent, "status")
    received = _int(intent, "amount_received")
    if status == "succeeded":
        return result(Outcome.APPROVED, amount_captured_minor=received)
    if status == "requires_capture":
        return result(Outcome.REQUIRES_CAPTURE, amount_captured_minor=received)
    if status == "canceled":
        return result(Outcome.CANCELLED, amount_captured_minor=received)
    if status == "requires_action":
        url = _str(_dict(_dict(intent, "next_action"), "redirect_to_url"), "url")
        if url is None:
            # An action the gateway cannot send the payer to: wait, never guess.
            return result(
                Outcome.UNKNOWN,
                message="Stripe asks for an action without a page to send the payer to",
            )
        return result(Outcome.REDIRECT, redirect_url=url)
    error = _dict(intent, "last_payment_error")
    if status == "requires_payment_method" and error:
        return result(
            Outcome.DECLINED,
            decline_code=decline_code(_str(error, "decline_code"), _str(error, "code")),
            message=_safe_message(_str(error, "message")),
        )
    # `processing`, or a state our create-and-confirm never leaves a payment in.
    return result(Outcome.UNKNOWN, message=f"Stripe says the payment is {status}")


def refund_result(refund: Mapping[str, Any]) -> RefundResult:
    reference = _str(refund, "id")
    status = _str(refund, "status")
    if status == "succeeded":
        return RefundResult(RefundOutcome.SUCCEEDED, reference=reference)
    if status in ("pending", "requires_action"):
        return RefundResult(RefundOutcome.PENDING, reference=reference)
    if status in ("failed", "canceled"):
        return RefundResult(
            RefundOutcome.FAILED,
            reference=reference,
            message=_safe_message(_str(refund, "failure_reason") or f"the refund {status}"),
        )
    return RefundResult(
        RefundOutcome.UNKNOWN, reference=reference, message=f"Stripe says the refund is {status}"
    )


def _not_this_attempts(intent: Mapping[str, Any], idempotency_key: str) -> str | None:
    """Why the PaymentIntent cannot be the one `authorize` made under `idempotency_key`, or
    None. Every PaymentIntent the gateway makes carries its attempt's key in its metadata, so
    one without the key (made outside the gateway on the same account) is as foreign as one
    with another attempt's; and one that does not say its amount and currency cannot be
    checked against the attempt's."""
    owner = _str(_dict(intent, "metadata"), "gateway_attempt")
    if owner is None:
        return "it carries no gateway_attempt metadata"
    if owner != idempotency_key:
        return "its gateway_attempt metadata names another attempt"
    if _amount_of(intent) is None or _currency_of(intent) is None:
        return "it does not say its amount and currency"
    return None


def _search_literal(value: str) -> str:
    """A value quoted for Stripe's search query language."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class StripeProvider:
    """Card payments through Stripe's PaymentIntents, each under the attempt's idempotency key."""

    def __init__(
        self,
        *,
        name: str = "stripe",
        api_key: str,
        api_base: str | None = None,
        webhook_secret: str | None = None,
        timeout_s: float = 20.0,
        sdk_console_log: str | None = None,
    ) -> None:
        """`sdk_console_log` is the SDK's `STRIPE_LOG` as the settings read it."""
        assert timeout_s > 0, "every Stripe call needs a timeout"
        self.name = name
        self.webhook_secret = webhook_secret
        self.capabilities = Capabilities(
            currencies=CURRENCIES,
            methods=frozenset({"card"}),
            manual_capture=True,
            partial_refund=True,
            livemode=True,
            amount_multiple=AMOUNT_MULTIPLE,
        )
        # The connect and the read timeouts are each `timeout_s`.
        self._http = stripe.RequestsClient(timeout=timeout_s)
        # No SDK retries: a retry after a timeout would hide the `unknown` the gateway must
        # record; its worker asks for the status itself, with backoff.
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=0,
        )
        logging.getLogger("stripe").addFilter(_WITHHOLD_CARD_DATA)  # idempotent: one instance
        _keep_card_data_off_the_console(sdk_console_log)

    def close(self) -> None:
        """Close this thread's pooled connections to Stripe."""
        close: Callable[[], None] = self._http.close  # the SDK leaves it unannotated
        close()

    def _failed(self, call: str, error: stripe.StripeError) -> None:
        log.warning(
            "Stripe call failed",
            extra={"provider": self.name, "call": call, "error": _describe(error)},
        )

    # -- charges ---------------------------------------------------------------------------

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        card = request.card
        if card is None or request.method != "card":
            return ProviderResult(Outcome.DECLINED, decline_code="card_declined")
        if request.payer_present and not request.return_url:
            # Without a return address 3-D Secure could not send the payer anywhere.
            return ProviderResult(
                Outcome.UNAVAILABLE, message="a payer-present card payment needs a return_url"
            )
        payment_method: dict[str, Any] = {
            "type": "card",
            "card": {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "cvc": card.cvc,
            },
        }
        if card.name:
            payment_method["billing_details"] = {"name": card.name}
        params: dict[str, Any] = {
            "amount": request.amount_minor,
            "currency": request.currency.lower(),
            "confirm": True,
            "capture_method": "automatic" if request.capture else "manual",
            # Card only: Stripe's automatic payment methods would demand redirect handling.
            "payment_method_types": ["card"],
            "payment_method_data": payment_method,
            "metadata": {"gateway_attempt": request.idempotency_key},
            "description": request.description,
            "payment_method_options": {
                "card": (
                    {"request_three_d_secure": "automatic"}
                    if request.payer_present
                    # Server-to-server confirm is a mail or telephone order: exempt from 3DS.
                    else {"moto": True}
                )
            },
        }
        if request.return_url:
            params["return_url"] = request.return_url
        try:
            intent = self._client.v1.payment_intents.create(
                cast("PaymentIntentCreateParams", params),
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.CardError as error:
            body = _error_body(error)
            declined = _error_intent(error) or {}
            return ProviderResult(
                Outcome.DECLINED,
                reference=_str(declined, "id"),
                decline_code=decline_code(_str(body, "decline_code"), _str(body, "code")),
                message=_safe_message(error.user_message),
                amount_minor=_amount_of(declined),
                currency=_currency_of(declined),
            )
        except stripe.StripeError as error:
            self._failed("authorize", error)
            intent_data = _error_intent(error)
            if intent_data is not None and _refused(error):
                # Stripe created the PaymentIntent before refusing: its state is the answer.
                return intent_result(intent_data)
            if _untouched(error):
                return ProviderResult(Outcome.UNAVAILABLE, message=_safe_message(_describe(error)))
            return ProviderResult(Outcome.UNKNOWN, message=_safe_message(_describe(error)))
        return intent_result(intent.to_dict())

    def _change(self, call: str, error: stripe.StripeError) -> ProviderResult:
        """A capture or a cancel that raised: refused, provably untouched, or unknown."""
        self._failed(call, error)
        if _refused(error):
            intent_data = _error_intent(error) or {}
            if _str(intent_data, "status") in ("succeeded", "canceled"):
                # Refused because it is already final (captured or voided): say so.
                return intent_result(intent_data)
            return ProviderResult(
                Outcome.DECLINED,
                reference=_str(intent_data, "id"),
                decline_code=_str(_error_body(error), "code"),
                message=_safe_message(error.user_message),
                amount_minor=_amount_of(intent_data),
                currency=_currency_of(intent_data),
            )
        if _untouched(error):
            return ProviderResult(Outcome.UNAVAILABLE, message=_safe_message(_describe(error)))
        return ProviderResult(Outcome.UNKNOWN, message=_safe_message(_describe(error)))

    def capture(
        self, idempotency_key: str, reference: str, amount_minor: int, currency: str
    ) -> ProviderResult:
        params: PaymentIntentCaptureParams = {"amount_to_capture": amount_minor}
        try:
            intent = self._client.v1.payment_intents.capture(
                reference, params, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as error:
            return self._change("capture", error)
        return intent_result(intent.to_dict())

    def cancel(self, idempotency_key: str, reference: str) -> ProviderResult:
        try:
            intent = self._client.v1.payment_intents.cancel(
                reference, None, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as error:
            return self._change("cancel", error)
        return intent_result(intent.to_dict())

    def status(self, idempotency_key: str, reference: str | None) -> ProviderResult:
        try:
            if reference is not None:
                intent = self._client.v1.payment_intents.retrieve(reference).to_dict()
            else:
                # The caller died before learning the reference: find the PaymentIntent by the
                # key it carries. Stripe's search trails writes by up to a minute (longer in an
                # outage); the gateway asks no sooner than two minutes after the attempt.
                query = f"metadata['gateway_attempt']:{_search_literal(idempotency_key)}"
                found = self._client.v1.payment_intents.search({"query": query, "limit": 2})
                if not found.data:
                    return ProviderResult(Outcome.UNAVAILABLE, message="no charge under this key")
                if len(found.data) > 1:
                    return ProviderResult(
                        Outcome.UNKNOWN, message="several Stripe payments carry this key"
                    )
                intent = found.data[0].to_dict()
        except stripe.StripeError as error:
            self._failed("status", error)
            return ProviderResult(Outcome.UNKNOWN, message=_safe_message(_describe(error)))
        why = _not_this_attempts(intent, idempotency_key)
        if why is not None:
            # Stripe's answer is true of some payment on the account, not of this attempt: a
            # Payment Link or a Dashboard charge, or another attempt's. It settles nothing; the
            # attempt stays open until Stripe answers for its own payment.
            log.warning(
                "Stripe status answer refused: not this attempt's payment",
                extra={
                    "provider": self.name,
                    "attempt": idempotency_key,
                    "reference": _str(intent, "id"),
                    "differs": why,
                },
            )
            return ProviderResult(
                Outcome.UNKNOWN, message=f"the Stripe payment is not this attempt's: {why}"
            )
        return intent_result(intent)

    # -- refunds ---------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        params: RefundCreateParams = {
            "payment_intent": request.payment_reference,
            "amount": request.amount_minor,
            "metadata": {"gateway_refund": request.idempotency_key},
        }
        try:
            refund = self._client.v1.refunds.create(
                params, {"idempotency_key": request.idempotency_key}
            )
        except stripe.StripeError as error:
            self._failed("refund", error)
            if _refused(error):
                return RefundResult(RefundOutcome.FAILED, message=_safe_message(error.user_message))
            if _untouched(error):
                return RefundResult(
                    RefundOutcome.UNAVAILABLE, message=_safe_message(_describe(error))
                )
            return RefundResult(RefundOutcome.UNKNOWN, message=_safe_message(_describe(error)))
        return refund_result(refund.to_dict())

    def refund_status(self, idempotency_key: str) -> RefundResult:
        """Find the refund made under `idempotency_key` among the account's newest refunds.

        Stripe has no search for refunds, the protocol hands us only the key, and replaying the
        create call is impossible without its amount, so the refund is found by the metadata
        `refund()` put on it, scanning at most `REFUND_SCAN_PAGES` pages, newest first. The
        gateway asks within minutes of the refund, while it is among the newest. Having seen
        every refund the account has without finding it proves there is none (`unavailable`);
        running out of pages proves nothing, so that answer is `unknown` and the refund waits
        for an operator rather than for a guess.
        """
        starting_after: str | None = None
        try:
            for _ in range(REFUND_SCAN_PAGES):
                params: RefundListParams = {"limit": PAGE_SIZE}
                if starting_after is not None:
                    params["starting_after"] = starting_after
                page = self._client.v1.refunds.list(params)
                for item in page.data:
                    refund = item.to_dict()
                    if _str(_dict(refund, "metadata"), "gateway_refund") == idempotency_key:
                        return refund_result(refund)
                if not page.has_more or not page.data:
                    return RefundResult(
                        RefundOutcome.UNAVAILABLE, message="no refund under this key"
                    )
                starting_after = page.data[-1].id
        except stripe.StripeError as error:
            self._failed("refund_status", error)
            return RefundResult(RefundOutcome.UNKNOWN, message=_safe_message(_describe(error)))
        return RefundResult(
            RefundOutcome.UNKNOWN,
            message=f"not among Stripe's newest {REFUND_SCAN_PAGES * PAGE_SIZE} refunds",
        )

    # -- notifications ---------------------------------------------------------------------

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Verify `Stripe-Signature` over the raw body, then read which payment it concerns."""
        if not self.webhook_secret:
            raise InvalidNotification("no Stripe webhook secret is configured")
        signature = next(
            (value for key, value in headers.items() if key.lower() == "stripe-signature"), None
        )
        if not signature:
            raise InvalidNotification("the Stripe-Signature header is missing")
        if not signature.isascii():  # the SDK's compare_digest raises TypeError on it
            raise InvalidNotification("the Stripe-Signature header is not ASCII")
        try:
            stripe.WebhookSignature.verify_header(
                body, signature, self.webhook_secret, tolerance=WEBHOOK_TOLERANCE_S
            )
            event = json.loads(body)
        except stripe.SignatureVerificationError as error:
            raise InvalidNotification(
                f"the Stripe signature does not verify: {error.user_message}"
            ) from None
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the limit
            raise InvalidNotification("the body is not a Stripe event") from None
        if not isinstance(event, dict) or event.get("object") != "event":
            raise InvalidNotification("the body is not a Stripe event")
        event_id, event_type = _str(event, "id"), _str(event, "type")
        obj = _dict(_dict(event, "data"), "object")
        if not event_id or not event_type or not obj:
            raise InvalidNotification("the body is not a Stripe event")
        return Notification(event_id=event_id, type=event_type, reference=_intent_of(obj))


def _intent_of(obj: Mapping[str, Any]) -> str | None:
    """The PaymentIntent an event's object concerns: the object itself for `payment_intent.*`,
    else its `payment_intent` field (charges, refunds, disputes), expanded or not."""
    if obj.get("object") == "payment_intent":
        return _str(obj, "id")
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        return _str(intent, "id")
    return intent if isinstance(intent, str) else None
