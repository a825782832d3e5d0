"""A fake Stripe API on 127.0.0.1 that the real `stripe` SDK talks to over HTTP, for tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import html
import json
import re
import secrets
import socketserver
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk_test_fake_gateway"
MAX_BODY_BYTES = 64 * 1024
MAX_AMOUNT = 99_999_999  # Stripe's eight-digit limit
MAX_LIST = 100
HANDLER_TIMEOUT_S = 10.0  # a silent client cannot hold a handler thread for longer
CURRENCIES = frozenset({"sar", "aed", "qar", "kwd", "bhd", "omr", "usd", "eur", "gbp"})
THREE_DECIMAL = frozenset({"kwd", "bhd", "omr", "jod", "tnd"})


@dataclasses.dataclass(frozen=True)
class Decline:
    """A card the issuer refuses, with the codes Stripe reports."""

    code: str
    decline_code: str
    message: str


SUCCEED = "succeed"
THREE_D_SECURE = "three_d_secure"  # succeeds once the payer authenticates
REFUND_PENDING = "refund_pending"  # succeeds; its refunds start `pending`
Behaviour = str | Decline

_DECLINED = "Your card was declined."
# Stripe's test cards (https://docs.stripe.com/testing) that the fake knows.
CARDS: dict[str, Behaviour] = {
    "4242424242424242": SUCCEED,
    "5555555555554444": SUCCEED,
    "4000000000000002": Decline("card_declined", "generic_decline", _DECLINED),
    "4000000000009995": Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "4000000000009987": Decline("card_declined", "lost_card", _DECLINED),
    "4000000000009979": Decline("card_declined", "stolen_card", _DECLINED),
    "4000000000000069": Decline("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."
    ),
    "4000000000000119": Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "4000000000003220": THREE_D_SECURE,
    "4000002760003184": THREE_D_SECURE,
    "4000000000007726": REFUND_PENDING,
}
# Stripe's test PaymentMethod ids -> the test card each stands for.
PAYMENT_METHODS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_threeDSecure2Required": "4000000000003220",
    "pm_card_authenticationRequired": "4000002760003184",
}

# The parameters each endpoint accepts; Stripe refuses any other, and so does the fake.
_CREATE_PARAMS = frozenset(
    {
        "amount",
        "automatic_payment_methods",
        "capture_method",
        "confirm",
        "currency",
        "description",
        "expand",
        "metadata",
        "payment_method",
        "payment_method_data",
        "payment_method_options",
        "payment_method_types",
        "receipt_email",
        "return_url",
        "statement_descriptor",
        "statement_descriptor_suffix",
    }
)
_CAPTURE_PARAMS = frozenset({"amount_to_capture", "expand", "metadata"})
_CANCEL_PARAMS = frozenset({"cancellation_reason", "expand"})
_REFUND_PARAMS = frozenset({"amount", "charge", "expand", "metadata", "payment_intent", "reason"})
_REFUND_LIST_PARAMS = frozenset(
    {"charge", "ending_before", "expand", "limit", "payment_intent", "starting_after"}
)
_SEARCH_PARAMS = frozenset({"expand", "limit", "page", "query"})
_RETRIEVE_PARAMS = frozenset({"expand", "client_secret"})
_CANCELABLE = frozenset(
    {
        "requires_payment_method",
        "requires_capture",
        "requires_confirmation",
        "requires_action",
        "processing",
    }
)
_SEARCH_CLAUSE = re.compile(
    r"""\s*(?:metadata\['((?:[^'\\]|\\.)*)'\]|([a-z_]+)):'((?:[^'\\]|\\.)*)'\s*"""
)


class Refusal(Exception):
    """An error answer in Stripe's shape: `{"error": {...}}` with its HTTP status."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _invalid(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    status: int = 400,
    intent: dict[str, Any] | None = None,
) -> Refusal:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
    if intent is not None:
        error["payment_intent"] = intent
    return Refusal(status, error)


def _missing(kind: str, object_id: str, param: str) -> Refusal:
    return _invalid(
        f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=404
    )


@dataclasses.dataclass
class Reply:
    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One API request as the fake saw it (the body is never kept: it may hold a card)."""

    method: str
    path: str
    idempotency_key: str | None
    status: int
    replayed: bool


@dataclasses.dataclass
class _Saved:
    fingerprint: str
    reply: Reply


@dataclasses.dataclass
class _IntentExtra:
    """What the fake knows of a PaymentIntent beyond its public fields; never the card."""

    behaviour: Behaviour
    return_url: str | None
    payment_method: dict[str, Any]


def parse_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding back into nested values: `a[b][c]=v` and `a[0]=v`."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        parts = [head] + (rest[:-1].split("][") if rest else [])
        if not head or (rest and not rest.endswith("]")):
            raise _invalid(f"Invalid parameter name: {key}")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise _invalid(f"Invalid parameter name: {key}")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise _invalid(f"Invalid parameter name: {key}")
        node[parts[-1]] = value
    params = _listify(root)
    if not isinstance(params, dict):
        raise _invalid("Invalid parameters")
    return params


def _listify(node: dict[str, Any]) -> Any:
    values = {k: _listify(v) if isinstance(v, dict) else v for k, v in node.items()}
    if values and all(k.isdigit() for k in values):
        return [values[k] for k in sorted(values, key=int)]
    return values


def _unknown_params(params: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise _invalid(f"Received unknown parameter: {name}", param=name)


def _integer(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None:
        if required:
            raise _invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
        return None
    if not isinstance(value, str) or not value.isdigit() or len(value) > 12:
        raise _invalid(
            f"Invalid integer: {str(value)[:20]}", param=name, code="parameter_invalid_integer"
        )
    return int(value)


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if value in (None, "false"):
        return False
    if value == "true":
        return True
    raise _invalid(f"Invalid boolean: {str(value)[:20]}", param=name)


def _text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise _invalid(f"Invalid string: {name}", param=name)
    return value


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    value = params.get("metadata", {})
    if value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid("Invalid hash", param="metadata")
    return dict(value)


def _brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    return "unknown"


def _luhn(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char) * (2 if index % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _card_error(decline: Decline, intent: dict[str, Any], charge_id: str | None) -> Refusal:
    error: dict[str, Any] = {
        "type": "card_error",
        "code": decline.code,
        "decline_code": decline.decline_code,
        "message": decline.message,
        "doc_url": f"https://docs.stripe.com/error-codes/{decline.code.replace('_', '-')}",
        "payment_intent": intent,
        "payment_method": intent.get("last_payment_error", {}).get("payment_method"),
    }
    if charge_id is not None:
        error["charge"] = charge_id
    return Refusal(402, error)


class FakeStripe:
    """The fake's state and behaviour, reached through HTTP by `FakeStripeServer`."""

    def __init__(self, *, base_url: Callable[[], str]) -> None:
        self._base_url = base_url
        self._lock = threading.RLock()
        self._sequence = 0
        self._order: dict[str, int] = {}  # object id -> creation order (lists sort by it)
        self._intents: dict[str, dict[str, Any]] = {}
        self._extra: dict[str, _IntentExtra] = {}
        self._charges: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}
        self._saved: dict[str, _Saved] = {}
        # Stripe's search index trails its writes ("usually under a minute"); 0: never behind.
        self.search_lag_s = 0.0

    # ---- object helpers

    def _remember(self, table: dict[str, dict[str, Any]], obj: dict[str, Any]) -> None:
        self._sequence += 1
        self._order[obj["id"]] = self._sequence
        table[obj["id"]] = obj

    def _newest_first(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(objects, key=lambda obj: self._order[obj["id"]], reverse=True)

    @staticmethod
    def _copy(obj: dict[str, Any]) -> dict[str, Any]:
        copied: dict[str, Any] = json.loads(json.dumps(obj))
        return copied

    def intent(self, intent_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._intents.get(intent_id)
            if found is None:
                raise _missing("payment_intent", intent_id, "intent")
            return self._copy(found)

    def intents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._copy(i) for i in self._newest_first(list(self._intents.values()))]

    def refund(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            found = self._refunds.get(refund_id)
            if found is None:
                raise _missing("refund", refund_id, "refund")
            return self._copy(found)

    def refunds(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._copy(r) for r in self._newest_first(list(self._refunds.values()))]

    # ---- the API

    def handle(self, method: str, path: str, params: dict[str, Any], key: str | None) -> Reply:
        """Answer one authenticated API call, honouring Stripe's idempotency on POST."""
        with self._lock:
            if method != "POST" or not key:
                return self._route(method, path, params)
            fingerprint = hashlib.sha256(
                json.dumps([method, path, params], sort_keys=True).encode()
            ).hexdigest()
            saved = self._saved.get(key)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    return Reply(
                        400,
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": (
                                    "Keys for idempotent requests can only be used with the "
                                    "same parameters they were first used with. Try using a "
                                    f"key other than '{key}' if you meant to execute a "
                                    "different request."
                                ),
                            }
                        },
                    )
                return Reply(saved.reply.status, saved.reply.body, replayed=True)
            reply = self._route(method, path, params)
            # Stripe keeps an answer under the key once the endpoint has begun to act (a
            # decline has made a PaymentIntent); a request refused by validation may be retried.
            if reply.status < 400 or reply.status == 402:
                self._saved[key] = _Saved(fingerprint, reply)
            return reply

    def _route(self, method: str, path: str, params: dict[str, Any]) -> Reply:
        parts = path.strip("/").split("/")
        try:
            if parts[:2] == ["v1", "payment_intents"]:
                rest = parts[2:]
                if method == "POST" and not rest:
                    return Reply(200, self._create_intent(params))
                if method == "GET" and rest == ["search"]:
                    return Reply(200, self._search_intents(params))
                if method == "GET" and len(rest) == 1:
                    _unknown_params(params, _RETRIEVE_PARAMS)
                    return Reply(200, self.intent(rest[0]))
                if method == "POST" and len(rest) == 2 and rest[1] == "capture":
                    return Reply(200, self._capture(rest[0], params))
                if method == "POST" and len(rest) == 2 and rest[1] == "cancel":
                    return Reply(200, self._cancel(rest[0], params))
            if parts[:2] == ["v1", "refunds"]:
                rest = parts[2:]
                if method == "POST" and not rest:
                    return Reply(200, self._create_refund(params))
                if method == "GET" and not rest:
                    return Reply(200, self._list_refunds(params))
                if method == "GET" and len(rest) == 1:
                    _unknown_params(params, _RETRIEVE_PARAMS)
                    return Reply(200, self.refund(rest[0]))
            if parts[:2] == ["v1", "charges"] and method == "GET" and len(parts) == 3:
                with self._lock:
                    charge = self._charges.get(parts[2])
                if charge is None:
                    raise _missing("charge", parts[2], "id")
                return Reply(200, self._copy(charge))
            raise _invalid(f"Unrecognized request URL ({method}: {path}).", status=404)
        except Refusal as refusal:
            return Reply(refusal.status, {"error": refusal.error})

    # ---- PaymentIntents

    def _payment_method(self, params: dict[str, Any]) -> tuple[Behaviour, dict[str, Any]]:
        """The card to charge and what the fake does with it; only its summary is kept."""
        pm_id = _text(params, "payment_method")
        data = params.get("payment_method_data")
        if pm_id is not None:
            number = PAYMENT_METHODS.get(pm_id)
            if number is None:
                raise _invalid(
                    f"No such PaymentMethod: '{pm_id}'",
                    param="payment_method",
                    code="resource_missing",
                )
            exp_month, exp_year, name = 12, dt.date.today().year + 5, None
        elif isinstance(data, dict):
            if data.get("type") != "card" or not isinstance(data.get("card"), dict):
                raise _invalid(
                    "The fake knows card payment methods only",
                    param="payment_method_data[type]",
                )
            card: dict[str, Any] = data["card"]
            for field in ("number", "exp_month", "exp_year"):
                if not isinstance(card.get(field), str) or not card[field]:
                    raise _invalid(
                        f"Missing required param: payment_method_data[card][{field}].",
                        param=f"payment_method_data[card][{field}]",
                        code="parameter_missing",
                    )
            number = card["number"].replace(" ", "")
            exp_month = _integer(card, "exp_month") or 0
            exp_year = _integer(card, "exp_year") or 0
            billing = data.get("billing_details")
            name = billing.get("name") if isinstance(billing, dict) else None
        else:
            raise _invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        behaviour: Behaviour = CARDS.get(number, SUCCEED)
        if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn(number):
            behaviour = Decline(
                "incorrect_number", "incorrect_number", "Your card number is incorrect."
            )
        elif number not in CARDS:
            behaviour = Decline(
                "card_declined",
                "test_mode_live_card",
                "Your card was declined. Your request was in test mode, but used a non test"
                " (live) card.",
            )
        today = dt.date.today()
        if (exp_year, exp_month) < (today.year, today.month) or not 1 <= exp_month <= 12:
            behaviour = Decline("expired_card", "expired_card", "Your card has expired.")
        method = {
            "id": pm_id or _new_id("pm"),
            "object": "payment_method",
            "type": "card",
            "card": {
                "brand": _brand(number),
                "last4": number[-4:],
                "exp_month": exp_month,
                "exp_year": exp_year,
                "funding": "credit",
            },
            "billing_details": {"name": name},
            "livemode": False,
        }
        return behaviour, method

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, _CREATE_PARAMS)
        amount = _integer(params, "amount", required=True) or 0
        currency = (_text(params, "currency") or "").lower()
        if not currency:
            raise _invalid("Missing required param: currency.", param="currency")
        if currency not in CURRENCIES:
            raise _invalid(f"Invalid currency: {currency[:10]}.", param="currency")
        if not 1 <= amount <= MAX_AMOUNT:
            raise _invalid("Amount must be at least 1 and at most 99999999", param="amount")
        if currency in THREE_DECIMAL and amount % 10:
            raise _invalid(
                f"Amounts in {currency.upper()} must be a multiple of 10 (the last digit 0).",
                param="amount",
                code="amount_invalid",
            )
        capture_method = _text(params, "capture_method") or "automatic_async"
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise _invalid("Invalid capture_method", param="capture_method")
        types = params.get("payment_method_types")
        if types is not None and types != ["card"]:
            raise _invalid("The fake knows card payments only", param="payment_method_types")
        options = params.get("payment_method_options", {})
        card_options = options.get("card", {}) if isinstance(options, dict) else {}
        if not isinstance(card_options, dict):
            raise _invalid("Invalid hash", param="payment_method_options[card]")
        moto = _flag(card_options, "moto")
        three_d_secure = _text(card_options, "request_three_d_secure") or "automatic"
        if three_d_secure not in ("automatic", "any", "challenge"):
            raise _invalid(
                "Invalid request_three_d_secure",
                param="payment_method_options[card][request_three_d_secure]",
            )
        confirm = _flag(params, "confirm")
        return_url = _text(params, "return_url")
        automatic = params.get("automatic_payment_methods")
        no_redirects = isinstance(automatic, dict) and automatic.get("allow_redirects") == "never"
        if confirm and types is None and return_url is None and not no_redirects:
            # What Stripe says when automatic payment methods might need a redirect.
            raise _invalid(
                "This PaymentIntent is configured to accept payment methods enabled in your "
                "Dashboard. Because some of these payment methods might redirect your customer "
                "off of your page, you must provide a `return_url`.",
                param="return_url",
            )
        behaviour: Behaviour = SUCCEED
        method: dict[str, Any] = {}
        if confirm or "payment_method" in params or "payment_method_data" in params:
            behaviour, method = self._payment_method(params)
        intent_id = _new_id("pi")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": currency,
            "capture_method": capture_method,
            "confirmation_method": "automatic",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(8)}",
            "created": int(time.time()),
            "description": _text(params, "description"),
            "livemode": False,
            "metadata": _metadata(params),
            "payment_method": method.get("id"),
            "payment_method_types": ["card"],
            "payment_method_options": {
                "card": {"moto": moto} if moto else {"request_three_d_secure": three_d_secure}
            },
            "latest_charge": None,
            "last_payment_error": None,
            "next_action": None,
            "cancellation_reason": None,
            "canceled_at": None,
            "status": "requires_payment_method" if not method else "requires_confirmation",
        }
        self._remember(self._intents, intent)
        self._extra[intent_id] = _IntentExtra(behaviour, return_url, method)
        if not confirm:
            return self._copy(intent)
        if isinstance(behaviour, Decline):
            charge_id = self._charge(intent, "failed", decline=behaviour)
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "card_error",
                "code": behaviour.code,
                "decline_code": behaviour.decline_code,
                "message": behaviour.message,
                "charge": charge_id,
                "payment_method": method,
            }
            raise _card_error(behaviour, self._copy(intent), charge_id)
        # `any` and `challenge` ask for 3DS on every card; `automatic` only where the card
        # (here: the 3DS test cards) requires it. A MOTO payment is exempt either way.
        challenge = three_d_secure in ("any", "challenge") or behaviour == THREE_D_SECURE
        if challenge and not moto:
            intent["status"] = "requires_action"
            if return_url is not None:
                intent["next_action"] = {
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": f"{self._base_url()}/3ds/{intent_id}",
                        "return_url": return_url,
                    },
                }
            else:
                intent["next_action"] = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            return self._copy(intent)
        self._authorised(intent)
        return self._copy(intent)

    def _charge(
        self, intent: dict[str, Any], status: str, *, decline: Decline | None = None
    ) -> str:
        extra = self._extra[intent["id"]]
        charge = {
            "id": _new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0,
            "amount_refunded": 0,
            "captured": False,
            "currency": intent["currency"],
            "created": int(time.time()),
            "livemode": False,
            "paid": status == "succeeded",
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "payment_method_details": {
                "type": "card",
                "card": dict(extra.payment_method.get("card", {})),
            },
            "refunded": False,
            "status": status,
            "failure_code": decline.code if decline else None,
            "failure_message": decline.message if decline else None,
        }
        self._remember(self._charges, charge)
        intent["latest_charge"] = charge["id"]
        return str(charge["id"])

    def _authorised(self, intent: dict[str, Any]) -> None:
        """The issuer said yes: capture now or hold the amount, as the intent asked."""
        self._charge(intent, "succeeded")
        intent["next_action"] = None
        intent["last_payment_error"] = None
        if intent["capture_method"] == "manual":
            intent["status"] = "requires_capture"
            intent["amount_capturable"] = intent["amount"]
        else:
            self._captured(intent, intent["amount"])

    def _captured(self, intent: dict[str, Any], amount: int) -> None:
        intent["status"] = "succeeded"
        intent["amount_received"] = amount
        intent["amount_capturable"] = 0
        charge = self._charges[intent["latest_charge"]]
        charge["captured"] = True
        charge["amount_captured"] = amount

    def _unexpected_state(self, intent: dict[str, Any], action: str, allowed: str) -> Refusal:
        return _invalid(
            f"This PaymentIntent could not be {action} because it has a status of "
            f"{intent['status']}. Only a PaymentIntent with one of the following statuses may "
            f"be {action}: {allowed}.",
            code="payment_intent_unexpected_state",
            intent=self._copy(intent),
        )

    def _capture(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, _CAPTURE_PARAMS)
        intent = self._intents.get(intent_id)
        if intent is None:
            raise _missing("payment_intent", intent_id, "intent")
        if intent["status"] != "requires_capture":
            raise self._unexpected_state(intent, "captured", "requires_capture")
        capturable = intent["amount_capturable"]
        amount = _integer(params, "amount_to_capture")
        amount = capturable if amount is None else amount
        if not 1 <= amount <= capturable:
            raise _invalid(
                f"The amount to capture ({amount}) must be between 1 and the amount capturable"
                f" ({capturable}).",
                param="amount_to_capture",
                code="amount_too_large",
                intent=self._copy(intent),
            )
        self._captured(intent, amount)
        return self._copy(intent)

    def _cancel(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, _CANCEL_PARAMS)
        intent = self._intents.get(intent_id)
        if intent is None:
            raise _missing("payment_intent", intent_id, "intent")
        if intent["status"] not in _CANCELABLE:
            raise self._unexpected_state(intent, "canceled", ", ".join(sorted(_CANCELABLE)))
        intent.update(
            status="canceled",
            amount_capturable=0,
            next_action=None,
            canceled_at=int(time.time()),
            cancellation_reason=_text(params, "cancellation_reason"),
        )
        return self._copy(intent)

    def _search_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        """Stripe's search over PaymentIntents, for `metadata['k']:'v'` and `field:'v'` clauses
        joined by AND. A PaymentIntent younger than `search_lag_s` is not found yet."""
        _unknown_params(params, _SEARCH_PARAMS)
        query = _text(params, "query") or ""
        limit = _integer(params, "limit") or 10
        offset = int(_text(params, "page") or "0")
        clauses: list[tuple[str | None, str | None, str]] = []
        for clause in query.split(" AND "):
            match = _SEARCH_CLAUSE.fullmatch(clause)
            if match is None or not query:
                raise _invalid(f"Invalid search query: {query[:100]}", param="query")
            meta_key, field, value = match.groups()
            unescape = re.compile(r"\\(.)")
            clauses.append(
                (
                    unescape.sub(r"\1", meta_key) if meta_key is not None else None,
                    field,
                    unescape.sub(r"\1", value),
                )
            )

        def matches(intent: dict[str, Any]) -> bool:
            for meta_key, field, value in clauses:
                if meta_key is not None and intent["metadata"].get(meta_key) != value:
                    return False
                if field is not None and str(intent.get(field)) != value:
                    return False
            return True

        indexed = time.time() - self.search_lag_s
        found = [
            i
            for i in self._newest_first(list(self._intents.values()))
            if matches(i) and i["created"] <= indexed
        ]
        page = found[offset : offset + min(limit, MAX_LIST)]
        more = offset + len(page) < len(found)
        return {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "data": [self._copy(i) for i in page],
            "has_more": more,
            "next_page": str(offset + len(page)) if more else None,
        }

    # ---- 3-D Secure

    def authenticate(self, intent_id: str, *, succeed: bool) -> dict[str, Any]:
        """The payer passes (or fails) the challenge of an intent that `requires_action`."""
        with self._lock:
            intent = self._intents.get(intent_id)
            if intent is None:
                raise KeyError(intent_id)
            if intent["status"] != "requires_action":
                raise ValueError(f"{intent_id} is {intent['status']}, not requires_action")
            if succeed:
                self._authorised(intent)
            else:
                extra = self._extra[intent_id]
                intent.update(
                    status="requires_payment_method",
                    next_action=None,
                    last_payment_error={
                        "type": "invalid_request_error",
                        "code": "payment_intent_authentication_failure",
                        "message": (
                            "The provided PaymentMethod has failed authentication. You can "
                            "provide payment_method_data or a new PaymentMethod to attempt to "
                            "fulfill this PaymentIntent again."
                        ),
                        "payment_method": extra.payment_method,
                    },
                )
            return self._copy(intent)

    def return_address(self, intent_id: str, *, succeeded: bool) -> str | None:
        """Where Stripe sends the payer after the challenge, with its query parameters."""
        with self._lock:
            extra = self._extra.get(intent_id)
            intent = self._intents.get(intent_id)
            if extra is None or intent is None or extra.return_url is None:
                return None
            query = urllib.parse.urlencode(
                {
                    "payment_intent": intent_id,
                    "payment_intent_client_secret": intent["client_secret"],
                    "redirect_status": "succeeded" if succeeded else "failed",
                }
            )
            separator = "&" if "?" in extra.return_url else "?"
            return f"{extra.return_url}{separator}{query}"

    # ---- Refunds

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, _REFUND_PARAMS)
        intent_id = _text(params, "payment_intent")
        charge_id = _text(params, "charge")
        if intent_id is None and charge_id is not None:
            charge = self._charges.get(charge_id)
            if charge is None:
                raise _invalid(
                    f"No such charge: '{charge_id}'", param="charge", code="resource_missing"
                )
            intent_id = charge["payment_intent"]
        if intent_id is None:
            raise _invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        intent = self._intents.get(intent_id)
        if intent is None:
            raise _invalid(
                f"No such payment_intent: '{intent_id}'",
                param="payment_intent",
                code="resource_missing",
            )
        if intent["status"] != "succeeded":
            raise self._unexpected_state(intent, "refunded", "succeeded")
        charge = self._charges[intent["latest_charge"]]
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining <= 0:
            raise _invalid(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = _integer(params, "amount")
        amount = remaining if amount is None else amount
        if amount < 1:
            raise _invalid("Refund amount must be at least 1.", param="amount")
        if amount > remaining:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                param="amount",
                code="amount_too_large",
            )
        pending = self._extra[intent_id].behaviour == REFUND_PENDING
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "charge": charge["id"],
            "payment_intent": intent_id,
            "created": int(time.time()),
            "metadata": _metadata(params),
            "reason": _text(params, "reason"),
            "status": "pending" if pending else "succeeded",
            "failure_reason": None,
        }
        self._remember(self._refunds, refund)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
        return self._copy(refund)

    def settle_refund(self, refund_id: str, status: str) -> dict[str, Any]:
        """A refund's later fate at the issuer: `succeeded`, or `failed` (the money returns)."""
        assert status in ("succeeded", "failed", "canceled"), status
        with self._lock:
            refund = self._refunds[refund_id]
            if status != "succeeded" and refund["status"] != status:
                charge = self._charges[refund["charge"]]
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = False
                refund["failure_reason"] = "lost_or_stolen_card" if status == "failed" else None
            refund["status"] = status
            return self._copy(refund)

    def _list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, _REFUND_LIST_PARAMS)
        limit = _integer(params, "limit") or 10
        if not 1 <= limit <= MAX_LIST:
            raise _invalid("Limit must be between 1 and 100.", param="limit")
        refunds = self._newest_first(list(self._refunds.values()))
        for field in ("payment_intent", "charge"):
            wanted = _text(params, field)
            if wanted is not None:
                refunds = [r for r in refunds if r[field] == wanted]
        after = _text(params, "starting_after")
        if after is not None:
            if after not in self._refunds:
                raise _missing("refund", after, "starting_after")
            refunds = [r for r in refunds if self._order[r["id"]] < self._order[after]]
        page = refunds[:limit]
        return {
            "object": "list",
            "url": "/v1/refunds",
            "data": [self._copy(r) for r in page],
            "has_more": len(refunds) > limit,
        }

    # ---- events

    def event_object(self, event_type: str, intent_id: str) -> dict[str, Any]:
        """The object an event of this type carries about the intent, from the fake's state."""
        with self._lock:
            intent = self._intents.get(intent_id)
            refunds = [r for r in self._refunds.values() if r["payment_intent"] == intent_id]
            if event_type.startswith("payment_intent.") and intent is not None:
                return self._copy(intent)
            if (event_type.startswith("refund.") or event_type == "charge.refund.updated") and (
                refunds
            ):
                return self._copy(self._newest_first(refunds)[0])
            if event_type.startswith("charge.") and intent and intent.get("latest_charge"):
                return self._copy(self._charges[intent["latest_charge"]])
        return default_event_object(event_type, intent_id)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # `server_close` waits for the handlers: no thread outlives a test
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], server: FakeStripeServer) -> None:
        self.fake_server = server
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up (`getfqdn`), which can stall on a
        # machine without a resolver; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.fake_server.errors.append(f"handler error for {client_address}")


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no pooled connection outlives a test.
    protocol_version = "HTTP/1.0"
    timeout = HANDLER_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        assert isinstance(self.server, _HTTPServer)
        server = self.server.fake_server
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.json_reply(413, {"error": {"type": "invalid_request_error", "message": "too big"}})
            return
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/3ds/"):
            self._three_d_secure(server, method, url.path, raw)
            return
        server.answer_api(self, method, url, raw)

    def _three_d_secure(self, server: FakeStripeServer, method: str, path: str, raw: bytes) -> None:
        """The issuer's challenge page a payer is sent to; its two buttons pass or fail it."""
        parts = path.strip("/").split("/")
        intent_id = parts[1] if len(parts) > 1 else ""
        if method == "GET" and len(parts) == 2:
            try:
                intent = server.state.intent(intent_id)
            except Refusal:
                self._page(404, "<p>No such payment.</p>")
                return
            amount = f"{intent['amount']} {intent['currency'].upper()} (minor units)"
            self._page(
                200,
                f"<h1>3-D Secure test page</h1><p>{html.escape(amount)}</p>"
                f'<form method="post" action="/3ds/{intent_id}/complete">'
                '<button type="submit">Complete authentication</button></form>'
                f'<form method="post" action="/3ds/{intent_id}/fail">'
                '<button type="submit">Fail authentication</button></form>',
            )
            return
        if method == "POST" and len(parts) == 3 and parts[2] in ("complete", "fail"):
            succeed = parts[2] == "complete"
            try:
                server.state.authenticate(intent_id, succeed=succeed)
            except KeyError:
                self._page(404, "<p>No such payment.</p>")
                return
            except ValueError as error:
                self._page(409, f"<p>{html.escape(str(error))}</p>")
                return
            back = server.state.return_address(intent_id, succeeded=succeed)
            if back is None:
                self._page(200, "<p>Done.</p>")
                return
            self._send(303, b"", {"Location": back})
            return
        self._page(404, "<p>Not found.</p>")

    def _page(self, status: int, body_html: str) -> None:
        page = f"<!doctype html><html><body>{body_html}</body></html>".encode()
        self._send(status, page, {"Content-Type": "text/html; charset=utf-8"})

    def json_reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(
            status,
            json.dumps(body).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout test): nobody is listening any more


class FakeStripeServer:
    """A fake Stripe on `http://127.0.0.1:<port>`; point `StripeProvider(api_base=server.url)`
    at it. Use as a context manager, or `start()` and `stop()`.

    Faults, for the money-safety tests: `slow_next(n, delay_s=...)` and `fail_next(n)` act
    on the next n API requests *after* the fake has carried them out (a charge is made, then
    its answer comes late or as a 500); `answer_without(field)` leaves a field out of the next
    answer; `refuse_connections()` stops listening until `accept_connections()` (same port,
    same state). `payment_made_elsewhere(...)` charges a card on the same account without the
    gateway, as a Payment Link or the Dashboard would.
    """

    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.state = FakeStripe(base_url=lambda: self.url)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._delays: list[float] = []
        self._failures: list[int] = []
        self._omissions: list[str] = []
        self._requests: list[RecordedRequest] = []
        self._port = 0
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    # ---- life cycle

    def start(self) -> FakeStripeServer:
        assert self._http is None, "already listening"
        self._wake = threading.Event()
        http = _HTTPServer(("127.0.0.1", self._port), self)
        self._port = int(http.server_address[1])
        self._http = http
        self._thread = threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and wait for the requests in hand (late answers are cut short)."""
        http, self._http = self._http, None
        self._wake.set()
        if http is not None:
            http.shutdown()
            http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=HANDLER_TIMEOUT_S)
            self._thread = None

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # ---- faults

    def slow_next(self, count: int = 1, *, delay_s: float) -> None:
        """The next `count` API requests are carried out, then answered `delay_s` late."""
        with self._lock:
            self._delays.extend([delay_s] * count)

    def fail_next(self, count: int = 1, *, status: int = 500) -> None:
        """The next `count` API requests are carried out, then answered with `status` (an
        `api_error`), as when Stripe acts and its answer is lost on the way back. A retry
        under the same idempotency key replays the real answer."""
        with self._lock:
            self._failures.extend([status] * count)

    def answer_without(self, field: str, count: int = 1) -> None:
        """The next `count` API requests are carried out, then answered with `field` left out
        of the object returned, as a faulty answer might be (a capture's `amount_received`)."""
        with self._lock:
            self._omissions.extend([field] * count)

    def search_behind(self, lag_s: float) -> None:
        """Search finds a PaymentIntent only `lag_s` after it was made, as Stripe's index can
        trail its writes; 0 puts the index level with the writes again."""
        self.state.search_lag_s = lag_s

    def refuse_connections(self) -> None:
        """Stop listening: connections are refused (nothing is sent) until `accept_connections`."""
        self.stop()

    def accept_connections(self) -> None:
        self.start()

    # ---- what the fake holds

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def payment_intent(self, intent_id: str) -> dict[str, Any]:
        return self.state.intent(intent_id)

    def payment_intents(self) -> list[dict[str, Any]]:
        """Every PaymentIntent, newest first."""
        return self.state.intents()

    def refund(self, refund_id: str) -> dict[str, Any]:
        return self.state.refund(refund_id)

    def refunds(self) -> list[dict[str, Any]]:
        """Every refund, newest first."""
        return self.state.refunds()

    def payment_made_elsewhere(
        self, amount_minor: int, currency: str, *, metadata: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A PaymentIntent charged with Stripe's test Visa on the same account but not by the
        gateway (a Payment Link, the Dashboard): no metadata unless given, its own amount."""
        params: dict[str, Any] = {
            "amount": str(amount_minor),
            "currency": currency.lower(),
            "confirm": "true",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "metadata": dict(metadata or {}),
        }
        reply = self.state.handle("POST", "/v1/payment_intents", params, None)
        assert reply.status == 200, reply.body
        return reply.body

    def complete_3ds(self, intent_id: str) -> dict[str, Any]:
        """The payer passes the 3-D Secure challenge (also `POST /3ds/<id>/complete`)."""
        return self.state.authenticate(intent_id, succeed=True)

    def fail_3ds(self, intent_id: str) -> dict[str, Any]:
        """The payer fails the 3-D Secure challenge (also `POST /3ds/<id>/fail`)."""
        return self.state.authenticate(intent_id, succeed=False)

    def settle_refund(self, refund_id: str, status: str = "succeeded") -> dict[str, Any]:
        return self.state.settle_refund(refund_id, status)

    def send_event(
        self,
        gateway_url: str,
        event_type: str,
        payment_intent_id: str,
        secret: str,
        timestamp: int | None = None,
    ) -> int:
        """POST a correctly signed event about the intent, carrying the fake's current object."""
        return send_event(
            gateway_url,
            event_type,
            payment_intent_id,
            secret,
            timestamp,
            data_object=self.state.event_object(event_type, payment_intent_id),
        )

    # ---- serving

    def answer_api(
        self, handler: _Handler, method: str, url: urllib.parse.SplitResult, raw: bytes
    ) -> None:
        with self._lock:
            delay = self._delays.pop(0) if self._delays else 0.0
            failure = self._failures.pop(0) if self._failures else 0
            omitted = self._omissions.pop(0) if self._omissions else None
        key = handler.headers.get("Idempotency-Key")
        if handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            reply = Reply(
                401,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided: sk_test_****",
                    }
                },
            )
        else:
            try:
                body = raw.decode() if method == "POST" else url.query
                params = parse_form(urllib.parse.parse_qsl(body, keep_blank_values=True))
                reply = self.state.handle(method, url.path, params, key)
            except Refusal as refusal:
                reply = Reply(refusal.status, {"error": refusal.error})
            except Exception as error:  # a bug in the fake: answer like Stripe, keep it seen
                self.errors.append(f"{type(error).__name__}: {error}")
                reply = Reply(500, {"error": {"type": "api_error", "message": "fake failed"}})
        if delay:
            self._wake.wait(delay)
        status, body_out = reply.status, reply.body
        if omitted is not None:
            body_out = {name: field for name, field in body_out.items() if name != omitted}
        if failure:
            status = failure
            body_out = {
                "error": {
                    "type": "api_error",
                    "message": "An unknown error occurred while processing this request.",
                }
            }
        with self._lock:
            self._requests.append(RecordedRequest(method, url.path, key, status, reply.replayed))
        headers = {"Request-Id": _new_id("req")}
        if reply.replayed:
            headers["Idempotent-Replayed"] = "true"
        if key:
            headers["Idempotency-Key"] = key
        handler.json_reply(status, body_out, headers)


# ---- signed events


def default_event_object(event_type: str, payment_intent_id: str) -> dict[str, Any]:
    """A minimal object of the kind Stripe puts in an event of `event_type`."""
    if event_type.startswith("refund.") or event_type == "charge.refund.updated":
        return {"id": _new_id("re"), "object": "refund", "payment_intent": payment_intent_id}
    if event_type.startswith("charge.dispute."):
        return {"id": _new_id("dp"), "object": "dispute", "payment_intent": payment_intent_id}
    if event_type.startswith("charge."):
        return {"id": _new_id("ch"), "object": "charge", "payment_intent": payment_intent_id}
    return {"id": payment_intent_id, "object": "payment_intent"}


def build_event(
    event_type: str,
    payment_intent_id: str,
    *,
    data_object: dict[str, Any] | None = None,
    event_id: str | None = None,
    created: int | None = None,
) -> bytes:
    """An event body as Stripe sends it."""
    event = {
        "id": event_id or _new_id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": data_object or default_event_object(event_type, payment_intent_id)},
    }
    return json.dumps(event).encode()


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature`: `t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{payload}" keyed by secret>`."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def signed_event(
    event_type: str,
    payment_intent_id: str,
    secret: str,
    timestamp: int | None = None,
    *,
    data_object: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A genuine event: its body and the headers Stripe would send with it."""
    body = build_event(event_type, payment_intent_id, data_object=data_object, created=timestamp)
    return body, {
        "Content-Type": "application/json",
        "Stripe-Signature": signature_header(body, secret, timestamp),
    }


def forged_event(
    event_type: str, payment_intent_id: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """An event that looks genuine but is signed with a secret that is not the endpoint's."""
    return signed_event(event_type, payment_intent_id, "whsec_" + secrets.token_hex(16), timestamp)


def send_event(
    gateway_url: str,
    event_type: str,
    payment_intent_id: str,
    secret: str,
    timestamp: int | None = None,
    *,
    forged: bool = False,
    data_object: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
) -> int:
    """POST a signed (or, with `forged`, a wrongly signed) event to `gateway_url`; returns the
    HTTP status the gateway answered."""
    if forged:
        body, headers = forged_event(event_type, payment_intent_id, timestamp)
    else:
        body, headers = signed_event(
            event_type, payment_intent_id, secret, timestamp, data_object=data_object
        )
    request = urllib.request.Request(gateway_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)
