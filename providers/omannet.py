"""OmanNet through a bank's hosted gateway, spoken in the virtual-payment-client (VPC) style.

The payer is sent (GET) to the bank's payment page with a signed set of `vpc_*` fields and comes
back to `vpc_ReturnURL` with the bank's signed response fields; the bank's 2-party endpoint
answers `queryDR` (the transaction's latest state) and `refund`, form-encoded both ways. OmanNet
is purchase only: there is no authorisation apart from capture, so `capture` and `cancel` are
refused.

The secure hash (`vpc_SecureHashType=SHA256`) is an HMAC-SHA256 keyed with the hex-decoded
merchant secret over every field whose name starts with `vpc_` or `user_`, except
`vpc_SecureHash` and `vpc_SecureHashType`, sorted by name in byte order and joined as
`name=value&name=value` (values as they are, never URL-encoded), written as upper-case hex.
Every answer is checked over exactly the fields that came: a field added, removed or changed,
a missing hash, another hash type or a hash in lower case (the bank writes upper case; a second
spelling of one signature buys nothing) is refused. A value holding `&` is refused too: it
could be split into two fields, or two merged into one, without changing the signed string.

Amounts cross this edge as VPC writes them, integer strings of minor units (OMR 12.500 is
`12500`), formatted and parsed only here. The bank's response codes, as this adapter reads
them, are `RESPONSE_CODES`: a code it does not know is an unknown outcome, never a guess.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import Collection, Mapping

from providers.base import (
    AuthorizeRequest,
    Capabilities,
    InvalidNotification,
    Outcome,
    ProviderResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SchemeReturn,
)
from providers.transport import Transport, TransportError

log = logging.getLogger(__name__)

CURRENCY = "OMR"
METHOD = "omannet"
VPC_VERSION = "1"
HASH_TYPE = "SHA256"
HASH_FIELD = "vpc_SecureHash"
HASH_TYPE_FIELD = "vpc_SecureHashType"
LOCALES = frozenset({"ar", "en"})
MAX_AMOUNT_MINOR = 10**12  # the gateway's largest amount (payments.money), in baisa
# The longest merchant reference VPC takes; the gateway's attempt and refund ids fit in it.
MERCH_TXN_REF_RE = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
TRANSACTION_NO_RE = re.compile(r"[0-9]{1,19}")
CURRENCY_RE = re.compile(r"[A-Z]{3}")
_AMOUNT_RE = re.compile(r"[1-9][0-9]{0,12}")
_FIELD_NAME_RE = re.compile(r"(?:vpc|user)_[A-Za-z0-9_]{1,58}")
_HASH_RE = re.compile(r"[0-9A-F]{64}")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_URL_RE = re.compile(r"https?://[\x21-\x7e]+")

# Each field's longest value, as the bank's gateway limits them; a field not named here may be
# OTHER_FIELD_MAX_CHARS long. Every bound keeps what one message may hold small.
FIELD_LIMITS: dict[str, int] = {
    "vpc_Version": 8,
    "vpc_Command": 16,
    "vpc_AccessCode": 16,
    "vpc_Merchant": 16,
    "vpc_MerchTxnRef": 40,
    "vpc_OrderInfo": 34,
    "vpc_Amount": len(str(MAX_AMOUNT_MINOR)),
    "vpc_Currency": 3,
    "vpc_Locale": 5,
    "vpc_ReturnURL": 255,
    "vpc_User": 32,
    "vpc_Password": 64,
    "vpc_TransNo": 19,
    "vpc_TxnResponseCode": 2,
    "vpc_Message": 255,
    "vpc_TransactionNo": 19,
    "vpc_ShopTransactionNo": 19,
    "vpc_ReceiptNo": 12,
    "vpc_AuthorizeId": 6,
    "vpc_DRExists": 1,
    "vpc_FoundMultipleDRs": 1,
    HASH_FIELD: 64,
    HASH_TYPE_FIELD: 8,
}
OTHER_FIELD_MAX_CHARS = 255
MAX_FIELDS = 40
# A whole message (the redirect's query, a callback, a 2-party answer): the sum over its fields
# of name and value lengths. Far above any honest message, far below what could hurt.
MAX_QUERY_CHARS = 4096
# The payer's redirect, encoded: within what every browser and proxy carries.
MAX_URL_CHARS = 8192
# A 2-party answer's body: percent-encoding may triple each character of MAX_QUERY_CHARS.
MAX_REPLY_BYTES = 3 * MAX_QUERY_CHARS
MESSAGE_MAX_CHARS = 200
# vpc_OrderInfo: what the bank's page shows. It takes ASCII; other characters become spaces.
ORDER_INFO_MAX_CHARS = FIELD_LIMITS["vpc_OrderInfo"]
_ORDER_INFO_DROP_RE = re.compile(r"[^A-Za-z0-9 \-_.,/#:()']+")
FORM_TYPE = "application/x-www-form-urlencoded"


class CodeClass(enum.StrEnum):
    """What a `vpc_TxnResponseCode` means for the money."""

    APPROVED = "approved"  # charged (a purchase) or refunded (a refund)
    DECLINED = "declined"  # final: nothing moved
    ABANDONED = "abandoned"  # the payer cancelled or the page timed out: nothing moved
    PENDING = "pending"  # not finished yet: ask again later
    UNKNOWN = "unknown"  # the bank itself cannot say: ask again later, never guess


@dataclasses.dataclass(frozen=True)
class ResponseCode:
    meaning: str
    kind: CodeClass
    decline_code: str | None = None  # the gateway's failure code, for a decline


# The bank's `vpc_TxnResponseCode` table as this adapter reads it (the VPC codes). Codes after
# which the bank may have moved money without saying so (no reply from the issuer, a
# communication or system error, an unspecified failure) are unknown: the worker asks again.
RESPONSE_CODES: dict[str, ResponseCode] = {
    "0": ResponseCode("approved", CodeClass.APPROVED),
    "2": ResponseCode("declined by the bank", CodeClass.DECLINED, "card_declined"),
    "4": ResponseCode("expired card", CodeClass.DECLINED, "expired_card"),
    "5": ResponseCode("insufficient funds", CodeClass.DECLINED, "insufficient_funds"),
    "8": ResponseCode("transaction type not supported", CodeClass.DECLINED, "card_declined"),
    "9": ResponseCode("declined, do not contact the bank", CodeClass.DECLINED, "card_declined"),
    "E": ResponseCode("referred: declined by the issuer", CodeClass.DECLINED, "card_declined"),
    "F": ResponseCode("authentication failed", CodeClass.DECLINED, "authentication_failed"),
    "I": ResponseCode("security code check failed", CodeClass.DECLINED, "incorrect_cvc"),
    "A": ResponseCode("aborted: the payment page timed out", CodeClass.ABANDONED, "abandoned"),
    "C": ResponseCode("cancelled by the payer", CodeClass.ABANDONED, "abandoned"),
    "P": ResponseCode("received, the payer has not finished", CodeClass.PENDING),
    "D": ResponseCode("deferred, awaiting processing", CodeClass.PENDING),
    "?": ResponseCode("status unknown", CodeClass.UNKNOWN),
    "1": ResponseCode("unspecified failure", CodeClass.UNKNOWN),
    "3": ResponseCode("no reply from the issuer", CodeClass.UNKNOWN),
    "6": ResponseCode("error communicating with the issuer", CodeClass.UNKNOWN),
    "7": ResponseCode("payment server error", CodeClass.UNKNOWN),
}
_UNLISTED_CODE = ResponseCode("a code this adapter does not know", CodeClass.UNKNOWN)


def response_code(code: str) -> ResponseCode:
    """What the bank's response code means; an unlisted one is an unknown outcome."""
    return RESPONSE_CODES.get(code, _UNLISTED_CODE)


# ---------------------------------------------------------------------------- amounts


class InvalidAmount(ValueError):
    """Not an amount VPC can carry: a plain positive integer string of minor units."""


def format_amount(amount_minor: int) -> str:
    """`amount_minor` as VPC's `vpc_Amount`: the integer of minor units, in decimal digits."""
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 1 <= amount_minor <= MAX_AMOUNT_MINOR
    ):
        raise InvalidAmount(
            f"an amount must be an integer from 1 to {MAX_AMOUNT_MINOR} minor units"
        )
    return str(amount_minor)


def parse_amount(text: str) -> int:
    """A `vpc_Amount` back to minor units: ASCII digits without sign, point, space or leading
    zero, from 1 to MAX_AMOUNT_MINOR; anything else is refused, never rounded or repaired."""
    # The regex bounds the digits before int() sees them.
    if not isinstance(text, str) or _AMOUNT_RE.fullmatch(text) is None:
        raise InvalidAmount("vpc_Amount is not a plain positive integer of minor units")
    amount = int(text)
    if amount > MAX_AMOUNT_MINOR:
        raise InvalidAmount(f"vpc_Amount is over {MAX_AMOUNT_MINOR} minor units")
    return amount


# ---------------------------------------------------------------------------- the secure hash


def hashed_names(fields: Collection[str]) -> list[str]:
    """The names the secure hash covers, in the order it covers them (byte order: for the
    ASCII names VPC uses, the same as code-point order)."""
    return sorted(
        name
        for name in fields
        if name.startswith(("vpc_", "user_")) and name not in (HASH_FIELD, HASH_TYPE_FIELD)
    )


def secure_hash(fields: Mapping[str, str], key: bytes) -> str:
    """The VPC SHA256 secure hash of `fields` under the hex-decoded merchant secret `key`."""
    message = "&".join(f"{name}={fields[name]}" for name in hashed_names(fields))
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def sign(fields: Mapping[str, str], key: bytes) -> dict[str, str]:
    """`fields` with their secure hash and its type added."""
    signed = dict(fields)
    signed.pop(HASH_FIELD, None)
    signed[HASH_TYPE_FIELD] = HASH_TYPE
    signed[HASH_FIELD] = secure_hash(signed, key)
    return signed


def check_fields(fields: Mapping[str, str], *, unsigned: Collection[str] = ()) -> None:
    """Refuse a message whose shape is wrong before anything reads it: too many or too long
    fields, a name outside `vpc_`/`user_` (save those in `unsigned`, which the caller ignores),
    a value with a control character or `&`. Messages never repeat the data."""
    if not isinstance(fields, Mapping):
        raise InvalidNotification("the message is not a set of fields")
    if len(fields) > MAX_FIELDS:
        raise InvalidNotification(f"the message has more than {MAX_FIELDS} fields")
    total = 0
    for name, value in fields.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidNotification("the message has a field that is not text")
        if name in unsigned:
            if len(value) > OTHER_FIELD_MAX_CHARS:
                raise InvalidNotification("the message has a field that is too long")
            continue
        if _FIELD_NAME_RE.fullmatch(name) is None:
            raise InvalidNotification("the message has a field the secure hash does not cover")
        if len(value) > FIELD_LIMITS.get(name, OTHER_FIELD_MAX_CHARS):
            raise InvalidNotification("the message has a field that is too long")
        if _CONTROL_RE.search(value) or "&" in value:
            raise InvalidNotification("the message has a field with a forbidden character")
        total += len(name) + len(value) + 2
    if total > MAX_QUERY_CHARS:
        raise InvalidNotification(f"the message is over {MAX_QUERY_CHARS} characters")


def verify(
    fields: Mapping[str, str], key: bytes, *, unsigned: Collection[str] = ()
) -> dict[str, str]:
    """The signed fields of a message whose secure hash verifies over exactly the `vpc_` and
    `user_` fields it has, without the hash and its type; `InvalidNotification` otherwise."""
    check_fields(fields, unsigned=unsigned)
    signed = {name: value for name, value in fields.items() if name not in unsigned}
    given = signed.pop(HASH_FIELD, None)
    hash_type = signed.pop(HASH_TYPE_FIELD, None)
    if given is None:
        raise InvalidNotification("the message has no vpc_SecureHash")
    if hash_type != HASH_TYPE:
        raise InvalidNotification("the message's vpc_SecureHashType is not SHA256")
    if _HASH_RE.fullmatch(given) is None:
        raise InvalidNotification("the message's vpc_SecureHash is not 64 upper-case hex digits")
    if not hmac.compare_digest(secure_hash(signed, key), given):
        raise InvalidNotification("the message's vpc_SecureHash does not verify")
    return signed


def parse_form(body: bytes) -> dict[str, str]:
    """A form-encoded body (a 2-party request or answer) as fields; a repeated field, a body too
    large, not ASCII or not form-encoded is refused."""
    if len(body) > MAX_REPLY_BYTES:
        raise InvalidNotification(f"the body is over {MAX_REPLY_BYTES} bytes")
    try:
        text = body.decode("ascii")
        pairs = urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidNotification("the body is not a form-encoded set of fields") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InvalidNotification("the body repeats a field")
    return fields


def encode_form(fields: Mapping[str, str]) -> bytes:
    return urllib.parse.urlencode(fields).encode("ascii")


# ---------------------------------------------------------------------------- the terminal


@dataclasses.dataclass(frozen=True)
class OmanNetTerminal:
    """The merchant's terminal at the bank's gateway; its repr never shows the secure secret
    or the 2-party password."""

    merchant_id: str
    access_code: str
    secure_secret: str = dataclasses.field(repr=False)  # hex, as the bank hands it out
    user: str
    password: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        checks = (
            ("merchant_id", self.merchant_id, re.compile(r"[A-Za-z0-9]{1,16}")),
            ("access_code", self.access_code, re.compile(r"[A-Za-z0-9]{1,16}")),
            # Printable ASCII without space or `&`, which no signed value may hold.
            ("user", self.user, re.compile(r"[\x21-\x25\x27-\x7e]{1,32}")),
            ("password", self.password, re.compile(r"[\x21-\x25\x27-\x7e]{1,64}")),
        )
        for name, value, pattern in checks:
            if not isinstance(value, str) or pattern.fullmatch(value) is None:
                # The name only: a password's value must not reach an error message.
                raise ValueError(f"the OmanNet terminal's {name} is malformed")
        secret = self.secure_secret
        if not isinstance(secret, str) or _HEX_RE.fullmatch(secret) is None or len(secret) < 32:
            raise ValueError(
                "the OmanNet terminal's secure secret must be at least 16 bytes of hex"
            )

    @property
    def key(self) -> bytes:
        """The HMAC key: the secure secret, hex-decoded."""
        return bytes.fromhex(self.secure_secret)


def order_info(description: str, fallback: str) -> str:
    """`vpc_OrderInfo` from a payment's description: ASCII letters, digits and a little
    punctuation, other runs of characters as one space, cut to the field's limit; `fallback`
    (the merchant reference) when nothing of it remains, an Arabic description for one."""
    text = " ".join(_ORDER_INFO_DROP_RE.sub(" ", description).split())
    text = text[:ORDER_INFO_MAX_CHARS].rstrip()
    return text or fallback[:ORDER_INFO_MAX_CHARS]


def _message(fields: Mapping[str, str]) -> str | None:
    text = fields.get("vpc_Message")
    if not text:
        return None
    return _CONTROL_RE.sub(" ", text)[:MESSAGE_MAX_CHARS]


class _NoAnswer(Exception):
    """A 2-party call that brought back no answer this adapter can trust."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class OmanNetProvider:
    """OmanNet through the bank's hosted VPC gateway: a `RedirectProvider`."""

    def __init__(
        self,
        name: str,
        terminal: OmanNetTerminal,
        page_url: str,
        query_url: str,
        transport: Transport,
        *,
        livemode: bool = False,
        return_params: Collection[str] = ("lang",),
    ) -> None:
        for what, url in (("page_url", page_url), ("query_url", query_url)):
            if _URL_RE.fullmatch(url) is None or "?" in url or "#" in url:
                raise ValueError(f"{what} must be an http(s) URL without a query")
            if livemode and not url.startswith("https://"):
                raise ValueError(f"{what} must be an https URL in live mode")
        bad = [p for p in return_params if p.startswith(("vpc_", "user_")) or not p]
        if bad:
            raise ValueError("return_params may not name fields the bank signs")
        self.name = name
        self.callback_fields = frozenset({HASH_FIELD})
        self.terminal = terminal
        self.page_url = page_url
        self.query_url = query_url
        self.transport = transport
        # The gateway's own parameters of its return address (its `?lang=`): the bank hands
        # them back beside its fields, unsigned; `parse_return` ignores them and nothing else.
        self.return_params = frozenset(return_params)
        self.capabilities = Capabilities(
            currencies=frozenset({CURRENCY}),
            methods=frozenset({METHOD}),
            manual_capture=False,
            partial_refund=True,
            livemode=livemode,
        )

    # ------------------------------------------------------------------ the payer's redirect

    def _refusal(self, request: AuthorizeRequest) -> str | None:
        """Why this request cannot go to OmanNet, or None."""
        if request.currency != CURRENCY or request.method != METHOD:
            return "OmanNet takes only OMR payments by the omannet method"
        if not request.capture:
            return "OmanNet has no separate authorisation: manual capture is not offered"
        if MERCH_TXN_REF_RE.fullmatch(request.idempotency_key) is None:
            return "the idempotency key does not fit vpc_MerchTxnRef"
        if request.language not in LOCALES:
            return "the payer's language must be ar or en"
        url = request.return_url
        if url is None or _URL_RE.fullmatch(url) is None:
            return "an OmanNet payment needs an http(s) return URL"
        if self.capabilities.livemode and not url.startswith("https://"):
            return "the return URL must be https in live mode"
        if len(url) > FIELD_LIMITS["vpc_ReturnURL"] or "&" in url or "#" in url:
            return "the return URL is too long for vpc_ReturnURL or has & or #"
        return None

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """The bank's page address with the signed request; no network call. A request OmanNet
        cannot take is UNAVAILABLE, not DECLINED: nothing was sent or charged, and the payment
        may still go to an acquirer that takes it, where a decline would fail it for a reason
        that is not the payer's."""
        refusal = self._refusal(request)
        if refusal is None:
            try:
                amount = format_amount(request.amount_minor)
            except InvalidAmount as exc:
                refusal = str(exc)
        if refusal is not None:
            return ProviderResult(Outcome.UNAVAILABLE, message=refusal)
        assert request.return_url is not None
        fields = {
            "vpc_Version": VPC_VERSION,
            "vpc_Command": "pay",
            "vpc_AccessCode": self.terminal.access_code,
            "vpc_Merchant": self.terminal.merchant_id,
            "vpc_MerchTxnRef": request.idempotency_key,
            "vpc_OrderInfo": order_info(request.description, request.idempotency_key),
            "vpc_Amount": amount,
            "vpc_Currency": CURRENCY,
            "vpc_Locale": request.language,
            "vpc_ReturnURL": request.return_url,
        }
        signed = sign(fields, self.terminal.key)
        url = f"{self.page_url}?{urllib.parse.urlencode(signed)}"
        try:
            check_fields(signed)  # within every limit the bank checks
        except InvalidNotification as exc:
            return ProviderResult(Outcome.UNAVAILABLE, message=str(exc))
        if len(url) > MAX_URL_CHARS:
            return ProviderResult(Outcome.UNAVAILABLE, message="the payment page URL is too long")
        return ProviderResult(
            Outcome.REDIRECT,
            redirect_url=url,
            amount_minor=request.amount_minor,
            currency=CURRENCY,
        )

    def parse_return(self, fields: Mapping[str, str]) -> SchemeReturn:
        """The bank's signed answer on the payer's return: a hint naming the attempt, which the
        gateway then confirms with `status`. Only the fields of this one callback may be given
        (a repeated field must be refused by the caller: a mapping cannot hold it)."""
        signed = verify(fields, self.terminal.key, unsigned=self.return_params)
        if signed.get("vpc_Command") != "pay":
            # A signed 2-party answer (queryDR, refund) replayed as a callback.
            raise InvalidNotification("the callback does not answer a payment")
        self._check_merchant(signed)
        ref = signed.get("vpc_MerchTxnRef", "")
        if MERCH_TXN_REF_RE.fullmatch(ref) is None:
            raise InvalidNotification("the callback's vpc_MerchTxnRef is missing or malformed")
        code = signed.get("vpc_TxnResponseCode", "")
        if not code:
            raise InvalidNotification("the callback has no vpc_TxnResponseCode")
        currency = signed.get("vpc_Currency", "")
        if CURRENCY_RE.fullmatch(currency) is None:
            raise InvalidNotification("the callback's vpc_Currency is missing or malformed")
        try:
            amount = parse_amount(signed.get("vpc_Amount", ""))
        except InvalidAmount as exc:
            raise InvalidNotification(str(exc)) from None
        transaction_no = signed.get("vpc_TransactionNo") or None
        if transaction_no is not None and TRANSACTION_NO_RE.fullmatch(transaction_no) is None:
            raise InvalidNotification("the callback's vpc_TransactionNo is malformed")
        return SchemeReturn(
            attempt_key=ref,
            amount_minor=amount,
            currency=currency,
            result=code,
            reference=transaction_no,
        )

    def _check_merchant(self, signed: Mapping[str, str]) -> None:
        merchant = signed.get("vpc_Merchant")
        if merchant is not None and merchant != self.terminal.merchant_id:
            raise InvalidNotification("the message names another merchant")

    # ------------------------------------------------------------------ 2-party calls

    def _exchange(self, command: str, merch_txn_ref: str, **extra: str) -> dict[str, str]:
        """Send one signed 2-party request; the verified answer, which must answer this very
        request (its command, merchant and reference). Raises `_NoAnswer` otherwise."""
        fields = {
            "vpc_Version": VPC_VERSION,
            "vpc_Command": command,
            "vpc_AccessCode": self.terminal.access_code,
            "vpc_Merchant": self.terminal.merchant_id,
            "vpc_MerchTxnRef": merch_txn_ref,
            "vpc_User": self.terminal.user,
            "vpc_Password": self.terminal.password,
            **extra,
        }
        body = encode_form(sign(fields, self.terminal.key))
        headers = {"Content-Type": FORM_TYPE, "Accept": FORM_TYPE}
        try:
            reply = self.transport.post(self.query_url, body, headers)
        except TransportError as exc:
            raise _NoAnswer(f"the bank did not answer: {exc}", sent=exc.sent) from None
        if reply.status != 200:
            raise _NoAnswer(f"the bank answered HTTP {reply.status}", sent=True)
        try:
            answer = verify(parse_form(reply.body), self.terminal.key)
            self._check_merchant(answer)
        except InvalidNotification as exc:
            # The reason only: the answer's fields are the bank's data, not for the log.
            log.warning("OmanNet answer refused", extra={"provider": self.name, "reason": str(exc)})
            raise _NoAnswer(f"the bank's answer is refused: {exc}", sent=True) from None
        if answer.get("vpc_Command") != command or answer.get("vpc_MerchTxnRef") != merch_txn_ref:
            raise _NoAnswer("the bank's answer is about another request", sent=True)
        return answer

    def status(self, idempotency_key: str, reference: str | None) -> ProviderResult:
        """The bank's truth about the payment under `idempotency_key`, by `queryDR`."""
        if MERCH_TXN_REF_RE.fullmatch(idempotency_key) is None:
            # `authorize` never sends such a reference, so the bank holds nothing under it.
            return ProviderResult(Outcome.UNAVAILABLE, message="no OmanNet payment has this key")
        try:
            answer = self._exchange("queryDR", idempotency_key)
        except _NoAnswer as exc:
            # Even an unsent query is UNKNOWN: it says nothing about the charge itself.
            return ProviderResult(Outcome.UNKNOWN, message=str(exc))
        exists = answer.get("vpc_DRExists")
        if exists == "N":
            return ProviderResult(Outcome.UNAVAILABLE, message="the bank has no such payment")
        if exists != "Y" or answer.get("vpc_FoundMultipleDRs", "N") != "N":
            return ProviderResult(Outcome.UNKNOWN, message="the bank's answer is ambiguous")
        if "vpc_ShopTransactionNo" in answer:
            return ProviderResult(Outcome.UNKNOWN, message="the reference names a refund")
        try:
            amount = parse_amount(answer.get("vpc_Amount", ""))
        except InvalidAmount:
            return ProviderResult(Outcome.UNKNOWN, message="the bank's answer has no amount")
        currency = answer.get("vpc_Currency", "")
        transaction_no = answer.get("vpc_TransactionNo") or None
        if CURRENCY_RE.fullmatch(currency) is None or (
            transaction_no is not None and TRANSACTION_NO_RE.fullmatch(transaction_no) is None
        ):
            return ProviderResult(Outcome.UNKNOWN, message="the bank's answer is malformed")
        if reference is not None and transaction_no is not None and reference != transaction_no:
            return ProviderResult(Outcome.UNKNOWN, message="the bank names another transaction")
        code = response_code(answer.get("vpc_TxnResponseCode", ""))
        message = _message(answer) or code.meaning
        # Every answer names what the charge is for: the gateway refuses one about another.
        result = functools.partial(
            ProviderResult,
            reference=transaction_no,
            amount_minor=amount,
            currency=currency,
            message=message,
        )
        if code.kind is CodeClass.APPROVED:
            if transaction_no is None:
                return result(Outcome.UNKNOWN, message="approved without a transaction number")
            return result(Outcome.APPROVED, amount_captured_minor=amount)
        if code.kind in (CodeClass.DECLINED, CodeClass.ABANDONED):
            return result(Outcome.DECLINED, decline_code=code.decline_code)
        return result(Outcome.UNKNOWN)

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund (part of) a payment; the refund's vpc_MerchTxnRef is the request's
        idempotency key, so the bank makes one refund however often it is sent."""
        refusal = None
        if request.currency != CURRENCY:
            refusal = "OmanNet refunds only OMR"
        elif MERCH_TXN_REF_RE.fullmatch(request.idempotency_key) is None:
            refusal = "the idempotency key does not fit vpc_MerchTxnRef"
        elif TRANSACTION_NO_RE.fullmatch(request.payment_reference) is None:
            refusal = "the payment reference is not an OmanNet transaction number"
        amount = ""
        try:
            amount = format_amount(request.amount_minor)
        except InvalidAmount as exc:
            refusal = refusal or str(exc)
        if refusal is not None:
            return RefundResult(RefundOutcome.FAILED, message=refusal)
        try:
            answer = self._exchange(
                "refund",
                request.idempotency_key,
                vpc_TransNo=request.payment_reference,
                vpc_Amount=amount,
            )
        except _NoAnswer as exc:
            # Only a request that never left is known not to have refunded anything.
            outcome = RefundOutcome.UNKNOWN if exc.sent else RefundOutcome.UNAVAILABLE
            return RefundResult(outcome, message=str(exc))
        names_this_refund = (
            answer.get("vpc_ShopTransactionNo") == request.payment_reference
            and answer.get("vpc_Amount") == amount
        )
        if not names_this_refund:
            return RefundResult(RefundOutcome.UNKNOWN, message="the bank answered another refund")
        return self._refund_result(answer)

    def refund_status(self, idempotency_key: str) -> RefundResult:
        """The bank's truth about the refund under `idempotency_key`, by `queryDR`."""
        if MERCH_TXN_REF_RE.fullmatch(idempotency_key) is None:
            return RefundResult(RefundOutcome.UNAVAILABLE, message="no OmanNet refund has this key")
        try:
            answer = self._exchange("queryDR", idempotency_key)
        except _NoAnswer as exc:
            return RefundResult(RefundOutcome.UNKNOWN, message=str(exc))
        exists = answer.get("vpc_DRExists")
        if exists == "N":
            return RefundResult(RefundOutcome.UNAVAILABLE, message="the bank has no such refund")
        if exists != "Y" or answer.get("vpc_FoundMultipleDRs", "N") != "N":
            return RefundResult(RefundOutcome.UNKNOWN, message="the bank's answer is ambiguous")
        if TRANSACTION_NO_RE.fullmatch(answer.get("vpc_ShopTransactionNo", "")) is None:
            return RefundResult(RefundOutcome.UNKNOWN, message="the reference names no refund")
        return self._refund_result(answer)

    @staticmethod
    def _refund_result(answer: Mapping[str, str]) -> RefundResult:
        code = response_code(answer.get("vpc_TxnResponseCode", ""))
        message = _message(answer) or code.meaning
        transaction_no = answer.get("vpc_TransactionNo") or None
        if transaction_no is not None and TRANSACTION_NO_RE.fullmatch(transaction_no) is None:
            return RefundResult(RefundOutcome.UNKNOWN, message="the bank's answer is malformed")
        if code.kind is CodeClass.APPROVED:
            if transaction_no is None:
                return RefundResult(RefundOutcome.UNKNOWN, message="refunded without a number")
            return RefundResult(RefundOutcome.SUCCEEDED, reference=transaction_no, message=message)
        if code.kind in (CodeClass.DECLINED, CodeClass.ABANDONED):
            return RefundResult(RefundOutcome.FAILED, reference=transaction_no, message=message)
        if code.kind is CodeClass.PENDING:
            return RefundResult(RefundOutcome.PENDING, reference=transaction_no, message=message)
        return RefundResult(RefundOutcome.UNKNOWN, reference=transaction_no, message=message)

    # ------------------------------------------------------------------ no separate capture

    def capture(
        self, idempotency_key: str, reference: str, amount_minor: int, currency: str
    ) -> ProviderResult:
        return ProviderResult(
            Outcome.DECLINED,
            decline_code="not_supported",
            message="OmanNet has no separate authorisation: a payment is captured at once",
        )

    def cancel(self, idempotency_key: str, reference: str) -> ProviderResult:
        return ProviderResult(
            Outcome.DECLINED,
            decline_code="not_supported",
            message="OmanNet has no separate authorisation to void: refund the payment instead",
        )
