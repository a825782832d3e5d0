"""The tranportal "raw" protocol of the national debit schemes (KNET in Kuwait, BENEFIT in
Bahrain): one adapter, configured per scheme by a `TranportalScheme`.

The protocol, as these integrations publish it:
- A request is a set of fields (tranportal id, password, action, amount, currency, language,
  track id, return URLs, user-defined fields), encoded as a query string (KNET) or a JSON
  array of one object (BENEFIT), encrypted with AES-CBC under the terminal's resource key
  (AES-128 or AES-256 by the key's length; PKCS#7 padding; the key's first 16 bytes double as
  the IV), hex-encoded in upper case: the `trandata`.
- A purchase (action 1) sends the payer to the scheme's page with the trandata in the URL; no
  server call is made. The scheme sends the payer back to `responseURL` or `errorURL` with the
  encrypted result in a `trandata` field.
- An inquiry (action 8) and a refund (action 2) are server-to-server POSTs to the tranportal
  endpoint: an envelope (`tranportalId`/`id` and `trandata`, in the scheme's encoding) whose
  answer is an envelope holding the encrypted result.

CBC without a MAC is malleable: whoever holds a callback can flip bits in what it decrypts to.
So a callback is only a hint (`parse_return`): the gateway's truth is the inquiry (`status`),
a server-to-server call the payer never touches. Decrypted trandata holds the terminal's
password: it is never logged, and no error message here repeats any of it.

Amounts cross the wire as decimal major units (`1.250` KWD); they are converted to and from
integer minor units only here, through `providers.scheme_amounts`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

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
from providers.scheme_amounts import (
    MAX_AMOUNT_MINOR,
    SCHEME_CURRENCY_EXPONENTS,
    SchemeAmountError,
    format_amount,
    parse_amount,
)
from providers.transport import Transport, TransportError

log = logging.getLogger(__name__)

# ---- limits on everything that crosses the wire

TRANDATA_MAX_CHARS = 8 * 1024  # hex characters, checked before anything is decrypted
REPLY_MAX_BYTES = 16 * 1024  # a server-to-server answer's body
FIELDS_MAX = 40  # fields in one request, answer or envelope
FIELD_NAME_MAX_CHARS = 32
FIELD_VALUE_MAX_CHARS = 9 * 1024  # an envelope's trandata is the longest value
FIELDS_TEXT_MAX_CHARS = 10 * 1024  # a whole set of fields, as text
URL_MAX_CHARS = 1024
TRACK_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,80}", re.ASCII)
REFERENCE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
RESULT_RE = re.compile(r"[A-Za-z][A-Za-z ]{0,31}", re.ASCII)
ERROR_CODE_RE = re.compile(r"[A-Za-z0-9_.-]{1,40}", re.ASCII)
_HEX_RE = re.compile(r"[0-9A-Fa-f]+", re.ASCII)
_TRANPORTAL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}", re.ASCII)
_PRINTABLE_RE = re.compile(r"[\x20-\x7e]*", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
AES_BLOCK_BYTES = 16
AES_KEY_BYTES = (16, 32)  # AES-128 or AES-256, by the resource key's length
PASSWORD_MAX_CHARS = 64
UDF_COUNT = 5

# ---- the protocol's actions and result words, the same for every scheme

ACTION_PURCHASE = "1"
ACTION_REFUND = "2"
ACTION_INQUIRY = "8"
CAPTURED = "CAPTURED"
NOT_CAPTURED = "NOT CAPTURED"
CANCELED = "CANCELED"
# The inquiry's word for a transaction whose payer is still on the scheme's page.
INITIALIZED = "INITIALIZED"

# The field names of the protocol, as KNET spells them; a scheme renames some (`wire_names`).
REQUEST_FIELDS = ("id", "password", "action", "amt", "currencycode", "langid", "trackid")
RESULT_FIELDS = ("paymentid", "result", "auth", "ref", "tranid", "trackid", "amt")
UDF_FIELDS = tuple(f"udf{n}" for n in range(1, UDF_COUNT + 1))


class Encoding(enum.StrEnum):
    """How a scheme writes a set of fields, inside the trandata and in an envelope."""

    FORM = "form"  # key=value&key=value, percent-encoded
    JSON = "json"  # [{"key": "value", ...}]

    @property
    def content_type(self) -> str:
        if self is Encoding.FORM:
            return "application/x-www-form-urlencoded"
        return "application/json"


class IvRule(enum.StrEnum):
    """Where the CBC initialisation vector comes from."""

    # What KNET and BENEFIT do: the resource key's first 16 bytes. A fixed IV leaks whether two
    # trandata start alike; it is the schemes' protocol, not a choice of this module.
    RESOURCE_KEY = "resource_key"


@dataclasses.dataclass(frozen=True)
class SettlementLayout:
    """A scheme's daily settlement file: a CSV whose header names these columns, in this order,
    for date, transaction id, track id, payment id, auth code, type, currency, amount, fee and
    net. Amounts are decimal major units with the currency's exponent; refunds are negative."""

    columns: tuple[str, str, str, str, str, str, str, str, str, str]
    date_format: str  # strftime format of the date column (the UTC day of the capture/refund)
    purchase_type: str  # the type column's word for a capture
    refund_type: str  # ... and for a refund


@dataclasses.dataclass(frozen=True)
class TranportalScheme:
    """Everything that differs between the schemes that speak the tranportal protocol."""

    name: str  # the gateway's method and provider name: `knet`
    label: str  # as payers know it: `KNET`
    currency: str  # ISO 4217
    currency_code: str  # ISO 4217 numeric, as the scheme wants it: `414`
    encoding: Encoding
    # The gateway's language -> the scheme's `langid`; the first is the default.
    languages: tuple[tuple[str, str], ...]
    page_path: str  # the payment page, below the scheme's base URL
    tranportal_path: str  # the server-to-server endpoint, below the same base URL
    envelope_id_field: str  # the envelope's field naming the tranportal id
    settlement: SettlementLayout
    # Field names this scheme spells differently from KNET: (KNET's name, this scheme's).
    wire_names: tuple[tuple[str, str], ...] = ()
    # The inquiry names the track id in this field, with `inquiry_marker` fields saying to
    # search by track id (KNET: `transid` holds it and `udf5=TrackID`).
    inquiry_key_field: str = "trackid"
    inquiry_marker: tuple[tuple[str, str], ...] = ()
    iv_rule: IvRule = IvRule.RESOURCE_KEY
    # The error codes the adapter acts on. These are the simulator's; certifying a live
    # terminal maps the scheme's own codes here.
    error_not_found: str = "TRANSACTION_NOT_FOUND"
    error_timed_out: str = "PAYMENT_TIMED_OUT"
    # The errors by which the scheme refuses a refund it has not made; any other error (a
    # system fault, a timeout on its side) says nothing about the refund, which stays unknown.
    refund_refusals: frozenset[str] = frozenset(
        {
            "BAD_REQUEST",
            "ORIGINAL_NOT_CAPTURED",
            "REFUND_EXCEEDS_CAPTURE",
            "TRACK_ID_IN_USE",
            "TRANSACTION_NOT_FOUND",
        }
    )

    def __post_init__(self) -> None:
        assert re.fullmatch(r"[a-z][a-z0-9]{0,15}", self.name), "a scheme name is a short word"
        assert self.currency in SCHEME_CURRENCY_EXPONENTS, "a scheme currency needs an exponent"
        assert re.fullmatch(r"[0-9]{3}", self.currency_code), "ISO 4217 numeric codes"
        assert self.languages, "a scheme has at least one language"

    def wire(self, name: str) -> str:
        """The scheme's spelling of a protocol field."""
        return dict(self.wire_names).get(name, name)

    def langid(self, language: str) -> str:
        """The scheme's language code for the gateway's `ar`/`en`; the default otherwise."""
        return dict(self.languages).get(language, self.languages[0][1])

    def language(self, langid: str) -> str | None:
        """The gateway's language for the scheme's code, or None if the scheme has no such."""
        for language, code in self.languages:
            if code == langid:
                return language
        return None

    def iv_for(self, key: bytes) -> bytes:
        assert self.iv_rule is IvRule.RESOURCE_KEY
        return key[:AES_BLOCK_BYTES]

    def urls(self, base_url: str) -> tuple[str, str]:
        """The payment page's URL and the tranportal endpoint's, below `base_url`."""
        base = base_url.rstrip("/")
        return base + self.page_path, base + self.tranportal_path


KNET = TranportalScheme(
    name="knet",
    label="KNET",
    currency="KWD",
    currency_code="414",
    encoding=Encoding.FORM,
    languages=(("ar", "ARA"), ("en", "USA")),
    page_path="/kpg/PaymentHTTP.htm",
    tranportal_path="/kpg/tranPipe.htm",
    envelope_id_field="tranportalId",
    settlement=SettlementLayout(
        columns=(
            "POST_DATE",
            "TRAN_ID",
            "TRACK_ID",
            "PAYMENT_ID",
            "AUTH_CODE",
            "TYPE",
            "CURRENCY",
            "AMOUNT",
            "FEE",
            "NET",
        ),
        date_format="%Y-%m-%d",
        purchase_type="PURCHASE",
        refund_type="REFUND",
    ),
    inquiry_key_field="transid",
    inquiry_marker=(("udf5", "TrackID"),),
)

BENEFIT = TranportalScheme(
    name="benefit",
    label="BENEFIT",
    currency="BHD",
    currency_code="048",
    encoding=Encoding.JSON,
    languages=(("ar", "ARA"), ("en", "EN")),
    page_path="/PG/PaymentHTTP.htm",
    tranportal_path="/PG/tranPipe.htm",
    envelope_id_field="id",
    settlement=SettlementLayout(
        columns=(
            "SETTLEMENT_DATE",
            "TRANSACTION_ID",
            "MERCHANT_TRACK_ID",
            "PAYMENT_ID",
            "APPROVAL_CODE",
            "TRANSACTION_TYPE",
            "CURRENCY",
            "GROSS_AMOUNT",
            "COMMISSION",
            "NET_AMOUNT",
        ),
        date_format="%d/%m/%Y",
        purchase_type="SALE",
        refund_type="CREDIT",
    ),
    wire_names=(
        ("trackid", "trackId"),
        ("paymentid", "paymentId"),
        ("tranid", "transId"),
        ("transid", "transId"),
    ),
)

SCHEMES: Mapping[str, TranportalScheme] = {scheme.name: scheme for scheme in (KNET, BENEFIT)}


@dataclasses.dataclass(frozen=True)
class TranportalTerminal:
    """A merchant's terminal at a scheme. Its repr never shows the password or the key."""

    tranportal_id: str
    password: str = dataclasses.field(repr=False)
    resource_key: str = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        # The messages name what is wrong, never the value: these are secrets.
        if not _TRANPORTAL_ID_RE.fullmatch(self.tranportal_id):
            raise ValueError("a tranportal id is 1-32 letters, digits, '_' or '-'")
        if not 0 < len(self.password) <= PASSWORD_MAX_CHARS or not _printable(self.password):
            raise ValueError(f"a tranportal password is 1-{PASSWORD_MAX_CHARS} printable ASCII")
        if len(self.resource_key) not in AES_KEY_BYTES or not _printable(self.resource_key):
            raise ValueError("a resource key is 16 or 32 printable ASCII characters")

    @property
    def key(self) -> bytes:
        return self.resource_key.encode("ascii")


class TranportalFormatError(ValueError):
    """Trandata or a set of fields that cannot be read. Its message never repeats the data."""


# ---- the codec: fields <-> text <-> trandata


def _printable(text: str) -> bool:
    return _PRINTABLE_RE.fullmatch(text) is not None


def encode_fields(encoding: Encoding, fields: Sequence[tuple[str, str]]) -> str:
    """Fields as the scheme writes them, in the order given; always ASCII."""
    if encoding is Encoding.FORM:
        return urllib.parse.urlencode(list(fields))
    return json.dumps([dict(fields)], separators=(",", ":"), ensure_ascii=True)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise TranportalFormatError("a field appears twice")
        result[key] = value
    return result


def _refuse_constant(_name: str) -> Any:
    raise TranportalFormatError("not a JSON value the protocol uses")


def decode_fields(encoding: Encoding, text: str) -> dict[str, str]:
    """Read a set of fields written as printable ASCII (a scheme writes nothing else, and a
    garbled block of plaintext almost never is); refuse duplicates, non-string values, control
    characters and anything past the limits. A JSON null counts as an absent field."""
    if len(text) > FIELDS_TEXT_MAX_CHARS or not _printable(text):
        raise TranportalFormatError("fields are too long or not printable ASCII")
    pairs: list[tuple[str, Any]]
    if encoding is Encoding.FORM:
        try:
            pairs = urllib.parse.parse_qsl(
                text,
                keep_blank_values=True,
                strict_parsing=True,
                max_num_fields=FIELDS_MAX,
                errors="strict",
            )
        except ValueError:  # includes UnicodeDecodeError and too many fields
            raise TranportalFormatError("fields are not a query string") from None
        fields = _refuse_duplicates(pairs)
    else:
        try:
            document = json.loads(
                text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
            )
        except TranportalFormatError:
            raise
        # JSONDecodeError carries the document: never chained. Deep nesting overflows the
        # parser's stack rather than failing to parse.
        except (ValueError, RecursionError):
            raise TranportalFormatError("fields are not JSON") from None
        if not isinstance(document, list) or len(document) != 1:
            raise TranportalFormatError("fields are not a JSON array of one object")
        fields = document[0]
        if not isinstance(fields, dict):
            raise TranportalFormatError("fields are not a JSON array of one object")
        fields = {key: value for key, value in fields.items() if value is not None}
    if len(fields) > FIELDS_MAX:
        raise TranportalFormatError("too many fields")
    for key, value in fields.items():
        if not isinstance(value, str):
            raise TranportalFormatError("a field's value is not a string")
        if not 0 < len(key) <= FIELD_NAME_MAX_CHARS or len(value) > FIELD_VALUE_MAX_CHARS:
            raise TranportalFormatError("a field's name or value is too long")
        # A value may be decoded from escapes into any text (an Arabic error message), but
        # never into control characters.
        if not _printable(key) or _CONTROL_RE.search(value):
            raise TranportalFormatError("a field holds a control character")
    return fields


def _check_key(key: bytes, iv: bytes) -> None:
    assert len(key) in AES_KEY_BYTES, "AES-128 or AES-256"
    assert len(iv) == AES_BLOCK_BYTES, "a CBC IV is one block"


def encrypt_trandata(plaintext: bytes, key: bytes, iv: bytes) -> str:
    """AES-CBC with PKCS#7 padding, hex in upper case: the scheme's trandata."""
    _check_key(key, iv)
    padder = padding.PKCS7(AES_BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex().upper()


def decrypt_trandata(trandata: str, key: bytes, iv: bytes) -> bytes:
    """The plaintext of trandata, after its size and form are checked; a `TranportalFormatError`
    that says what is wrong, never what the data was."""
    _check_key(key, iv)
    if len(trandata) > TRANDATA_MAX_CHARS:
        raise TranportalFormatError(f"is over {TRANDATA_MAX_CHARS} characters")
    if not trandata or len(trandata) % (2 * AES_BLOCK_BYTES) or not _HEX_RE.fullmatch(trandata):
        raise TranportalFormatError("is not whole AES blocks of hex")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(bytes.fromhex(trandata)) + decryptor.finalize()
    unpadder = padding.PKCS7(AES_BLOCK_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise TranportalFormatError("does not decrypt under this terminal's key") from None


class TrandataCodec:
    """Seals and opens one terminal's trandata in its scheme's encoding."""

    def __init__(self, scheme: TranportalScheme, terminal: TranportalTerminal) -> None:
        self.scheme = scheme
        self._key = terminal.key
        self._iv = scheme.iv_for(self._key)

    def __repr__(self) -> str:
        return f"TrandataCodec({self.scheme.name})"

    def seal(self, fields: Sequence[tuple[str, str]]) -> str:
        text = encode_fields(self.scheme.encoding, fields)
        return encrypt_trandata(text.encode("ascii"), self._key, self._iv)

    def open(self, trandata: str) -> dict[str, str]:
        plaintext = decrypt_trandata(trandata, self._key, self._iv)
        try:
            text = plaintext.decode("ascii")
        except UnicodeDecodeError:
            raise TranportalFormatError("does not decrypt to text") from None
        return decode_fields(self.scheme.encoding, text)


def valid_url(url: object) -> bool:
    """An absolute http(s) URL of bounded length without spaces or control characters."""
    if not isinstance(url, str) or not 0 < len(url) <= URL_MAX_CHARS:
        return False
    if not _printable(url) or " " in url:
        return False
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def with_query(url: str, fields: Sequence[tuple[str, str]]) -> str:
    """`url` with `fields` appended to its query string (before any fragment)."""
    parts = urllib.parse.urlsplit(url)
    added = urllib.parse.urlencode(list(fields))
    query = f"{parts.query}&{added}" if parts.query else added
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _code(text: str | None) -> str:
    """An error code fit for a message: the scheme's own, or a placeholder if it is odd."""
    if text is not None and ERROR_CODE_RE.fullmatch(text):
        return text
    return "(unreadable)"


class _NoAnswer(Exception):
    """A server-to-server call that brought back nothing readable."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class TranportalProvider:
    """A national scheme's terminal behind the `RedirectProvider` protocol.

    Purchases only (the schemes have no separate authorisation), so `manual_capture` is False;
    `capture` and `cancel` are never called for it and decline if they are."""

    def __init__(  # noqa: PLR0917 - the positional order the composition root was given
        self,
        name: str,
        scheme: TranportalScheme,
        terminal: TranportalTerminal,
        page_url: str,
        tranportal_url: str,
        transport: Transport,
        *,
        livemode: bool = False,
    ) -> None:
        assert valid_url(page_url) and valid_url(tranportal_url), "scheme URLs are http(s)"
        self.name = name
        self.callback_fields = frozenset({"trandata"})
        self.scheme = scheme
        self.terminal = terminal
        self.page_url = page_url
        self.tranportal_url = tranportal_url
        self.transport = transport
        self.codec = TrandataCodec(scheme, terminal)
        self.capabilities = Capabilities(
            currencies=frozenset({scheme.currency}),
            methods=frozenset({scheme.name}),
            manual_capture=False,
            partial_refund=True,
            livemode=livemode,
        )

    def __repr__(self) -> str:
        return f"TranportalProvider({self.name!r}, {self.scheme.name}, {self.terminal!r})"

    # ---- building requests

    def _w(self, name: str) -> str:
        return self.scheme.wire(name)

    def _credentials(self, action: str) -> list[tuple[str, str]]:
        return [
            (self._w("id"), self.terminal.tranportal_id),
            (self._w("password"), self.terminal.password),
            (self._w("action"), action),
        ]

    def _udfs(self) -> list[tuple[str, str]]:
        return [(self._w(udf), "") for udf in UDF_FIELDS]

    def _amount(self, amount_minor: int) -> list[tuple[str, str]]:
        return [
            (self._w("amt"), format_amount(amount_minor, self.scheme.currency)),
            (self._w("currencycode"), self.scheme.currency_code),
        ]

    def _inquiry(self, track_id: str) -> list[tuple[str, str]]:
        fields = dict(self._credentials(ACTION_INQUIRY))
        fields[self._w("currencycode")] = self.scheme.currency_code
        fields[self._w("trackid")] = track_id
        fields[self._w(self.scheme.inquiry_key_field)] = track_id
        for name, value in self.scheme.inquiry_marker:
            fields[self._w(name)] = value
        return list(fields.items())

    # ---- the calls

    def _refusal(self, request: AuthorizeRequest) -> str | None:
        if request.currency != self.scheme.currency:
            return f"{self.scheme.label} takes {self.scheme.currency} only"
        if request.method != self.scheme.name:
            return f"{self.scheme.label} takes the {self.scheme.name} method only"
        if not request.capture:
            return f"{self.scheme.label} has no separate authorisation: purchases only"
        if not 0 < request.amount_minor <= MAX_AMOUNT_MINOR:
            return "the amount is outside 1 to 10^12 minor units"
        if not TRACK_ID_RE.fullmatch(request.idempotency_key):
            return "the idempotency key cannot be a track id"
        if not valid_url(request.return_url):
            return "a scheme payment needs an http(s) return URL"
        return None

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        """The URL of the scheme's page for this purchase; nothing is sent anywhere yet.

        A request the scheme cannot take answers UNAVAILABLE: nothing was charged or even sent,
        so routing may offer the payment to an acquirer that can take it (routing should not
        have offered it here; a decline would fail the payment for the gateway's mistake)."""
        refusal = self._refusal(request)
        if refusal is not None:
            return ProviderResult(Outcome.UNAVAILABLE, message=refusal)
        assert request.return_url is not None
        fields = [
            *self._credentials(ACTION_PURCHASE),
            *self._amount(request.amount_minor),
            (self._w("langid"), self.scheme.langid(request.language)),
            (self._w("trackid"), request.idempotency_key),
            (self._w("responseURL"), request.return_url),
            (self._w("errorURL"), request.return_url),
            # Free for the merchant; nothing of the payer's goes into them.
            *self._udfs(),
        ]
        redirect_url = with_query(
            self.page_url,
            [
                ("param", "paymentInit"),
                ("trandata", self.codec.seal(fields)),
                ("tranportalId", self.terminal.tranportal_id),
                ("responseURL", request.return_url),
                ("errorURL", request.return_url),
            ],
        )
        return ProviderResult(
            Outcome.REDIRECT,
            redirect_url=redirect_url,
            amount_minor=request.amount_minor,
            currency=request.currency,
        )

    def parse_return(self, fields: Mapping[str, str]) -> SchemeReturn:
        """What the scheme's callback says, once its trandata decrypts; only a hint (see the
        module's docstring). Its reference is the scheme's transaction id when it gave one,
        as `status` answers it, so that whichever the gateway keeps names the transaction to
        refund; else the payment id."""
        trandata = fields.get("trandata")
        if not isinstance(trandata, str) or not trandata:
            raise InvalidNotification("the callback carries no trandata")
        try:
            data = self.codec.open(trandata)
        except TranportalFormatError as exc:
            raise InvalidNotification(f"the callback's trandata {exc}") from None
        track_id = data.get(self._w("trackid"))
        amt = data.get(self._w("amt"))
        result = data.get(self._w("result"))
        if track_id is None or amt is None or result is None:
            raise InvalidNotification("the callback lacks its track id, amount or result")
        if not TRACK_ID_RE.fullmatch(track_id) or not RESULT_RE.fullmatch(result):
            raise InvalidNotification("the callback's track id or result is malformed")
        code = data.get(self._w("currencycode"))
        if code is not None and code != self.scheme.currency_code:
            raise InvalidNotification("the callback is in another currency")
        try:
            amount_minor = parse_amount(amt, self.scheme.currency)
        except SchemeAmountError as exc:
            raise InvalidNotification(f"the callback's amount: {exc}") from None
        reference = data.get(self._w("tranid")) or data.get(self._w("paymentid"))
        if reference is not None and not REFERENCE_RE.fullmatch(reference):
            raise InvalidNotification("the callback's transaction id is malformed")
        return SchemeReturn(
            attempt_key=track_id,
            amount_minor=amount_minor,
            currency=self.scheme.currency,
            result=result,
            reference=reference,
        )

    def _call(self, fields: Sequence[tuple[str, str]]) -> dict[str, str]:
        """POST one server-to-server request; the answer's decrypted fields."""
        envelope = encode_fields(
            self.scheme.encoding,
            [
                (self.scheme.envelope_id_field, self.terminal.tranportal_id),
                ("trandata", self.codec.seal(fields)),
            ],
        )
        content_type = self.scheme.encoding.content_type
        try:
            reply = self.transport.post(
                self.tranportal_url,
                envelope.encode("ascii"),
                {"Content-Type": content_type, "Accept": content_type},
            )
        except TransportError as exc:
            raise _NoAnswer(f"{self.scheme.label}: {exc}", sent=exc.sent) from None
        if reply.status != 200:
            raise _NoAnswer(f"{self.scheme.label} answered HTTP {reply.status}", sent=True)
        if len(reply.body) > REPLY_MAX_BYTES:
            raise _NoAnswer(f"{self.scheme.label}'s answer is too long", sent=True)
        try:
            outer = decode_fields(self.scheme.encoding, reply.body.decode("ascii"))
            trandata = outer.get("trandata")
            if trandata is None:
                # An unencrypted error: it says nothing the gateway can trust.
                raise TranportalFormatError("has no trandata")
            return self.codec.open(trandata)
        except (TranportalFormatError, UnicodeDecodeError) as exc:
            reason = exc if isinstance(exc, TranportalFormatError) else "is not text"
            log.warning(
                "unreadable answer from a scheme",
                extra={"provider": self.name, "reason": str(reason)},
            )
            raise _NoAnswer(f"{self.scheme.label}'s answer {reason}", sent=True) from None

    def _answered_amount(self, data: Mapping[str, str]) -> int | None:
        """The answer's amount in minor units, None if it gave none; SchemeAmountError if it
        gave one that cannot be read exactly."""
        amt = data.get(self._w("amt"))
        return None if amt is None else parse_amount(amt, self.scheme.currency)

    def _answered_reference(self, data: Mapping[str, str]) -> str | None:
        tranid = data.get(self._w("tranid"))
        return tranid if tranid is not None and REFERENCE_RE.fullmatch(tranid) else None

    def _charge_result(self, track_id: str, data: Mapping[str, str]) -> ProviderResult:
        """What an inquiry's answer means for the charge; `unknown` whenever it is unclear."""
        error = data.get("Error")
        result = data.get(self._w("result"))
        if result is None:
            if error == self.scheme.error_not_found:
                return ProviderResult(
                    Outcome.UNAVAILABLE,
                    message=f"{self.scheme.label} has no transaction under this track id",
                )
            return ProviderResult(
                Outcome.UNKNOWN, message=f"{self.scheme.label} answered error {_code(error)}"
            )
        answered_track = data.get(self._w("trackid"))
        if answered_track is not None and answered_track != track_id:
            return ProviderResult(
                Outcome.UNKNOWN, message=f"{self.scheme.label} answered about another track id"
            )
        try:
            amount_minor = self._answered_amount(data)
        except SchemeAmountError as exc:
            return ProviderResult(
                Outcome.UNKNOWN, message=f"{self.scheme.label}'s amount is unreadable: {exc}"
            )
        reference = self._answered_reference(data)
        answer = functools.partial(
            ProviderResult,
            reference=reference,
            amount_minor=amount_minor,
            currency=self.scheme.currency if amount_minor is not None else None,
        )
        if result == CAPTURED:
            if reference is None or amount_minor is None:
                # Without its transaction id a capture could never be refunded: ask again.
                return answer(
                    Outcome.UNKNOWN,
                    message=f"{self.scheme.label} says captured without id or amount",
                )
            return answer(Outcome.APPROVED, amount_captured_minor=amount_minor)
        if result == NOT_CAPTURED:
            # A page that timed out is a payer who walked away, not a refusal by the bank.
            code = "abandoned" if error == self.scheme.error_timed_out else "card_declined"
            return answer(Outcome.DECLINED, decline_code=code)
        if result == CANCELED:
            return answer(Outcome.DECLINED, decline_code="abandoned")
        if result == INITIALIZED:
            return answer(
                Outcome.UNKNOWN,
                message=f"the payer has not finished on the {self.scheme.label} page",
            )
        return answer(Outcome.UNKNOWN, message=f"{self.scheme.label} answered an unknown result")

    def status(self, idempotency_key: str, reference: str | None) -> ProviderResult:
        """The scheme's truth about the purchase under this track id, by inquiry (action 8)."""
        if not TRACK_ID_RE.fullmatch(idempotency_key):
            return ProviderResult(Outcome.UNKNOWN, message="the key cannot be a track id")
        try:
            data = self._call(self._inquiry(idempotency_key))
        except _NoAnswer as exc:
            # Even a request that never left tells nothing about the charge.
            return ProviderResult(Outcome.UNKNOWN, message=exc.reason)
        return self._charge_result(idempotency_key, data)

    def _refund_result(
        self,
        track_id: str,
        data: Mapping[str, str],
        *,
        inquiry: bool,
        amount_minor: int | None = None,
    ) -> RefundResult:
        error = data.get("Error")
        result = data.get(self._w("result"))
        label = self.scheme.label
        if result is None:
            if inquiry and error == self.scheme.error_not_found:
                return RefundResult(
                    RefundOutcome.UNAVAILABLE, message=f"{label} has no refund under this key"
                )
            if inquiry or error not in self.scheme.refund_refusals:
                # An inquiry that fails, or an error that is not a refusal, says nothing about
                # the refund.
                return RefundResult(
                    RefundOutcome.UNKNOWN, message=f"{label} answered error {_code(error)}"
                )
            return RefundResult(
                RefundOutcome.FAILED, message=f"{label} refused the refund: {_code(error)}"
            )
        answered_track = data.get(self._w("trackid"))
        if answered_track is not None and answered_track != track_id:
            return RefundResult(RefundOutcome.UNKNOWN, message=f"{label} answered another refund")
        reference = self._answered_reference(data)
        if result == CAPTURED:
            try:
                answered_amount = self._answered_amount(data)
            except SchemeAmountError:
                answered_amount = None
            if reference is None or (amount_minor is not None and answered_amount != amount_minor):
                return RefundResult(
                    RefundOutcome.UNKNOWN,
                    reference=reference,
                    message=f"{label}'s refund answer lacks its id or is for another amount",
                )
            return RefundResult(RefundOutcome.SUCCEEDED, reference=reference)
        if result == NOT_CAPTURED:
            return RefundResult(
                RefundOutcome.FAILED,
                reference=reference,
                message=f"{label} did not make the refund: {_code(error)}",
            )
        return RefundResult(RefundOutcome.UNKNOWN, message=f"{label} answered an unknown result")

    def refund(self, request: RefundRequest) -> RefundResult:
        """A credit (action 2) of part or all of a captured purchase, named by its transaction
        id; the refund's track id is its idempotency key, so a retry is the same refund."""
        label = self.scheme.label
        problem = None
        if request.currency != self.scheme.currency:
            problem = f"{label} refunds {self.scheme.currency} only"
        elif not 0 < request.amount_minor <= MAX_AMOUNT_MINOR:
            problem = "the amount is outside 1 to 10^12 minor units"
        elif not TRACK_ID_RE.fullmatch(request.idempotency_key):
            problem = "the idempotency key cannot be a track id"
        elif not REFERENCE_RE.fullmatch(request.payment_reference):
            problem = f"not a {label} transaction id"
        if problem is not None:
            return RefundResult(RefundOutcome.FAILED, message=problem)
        fields = [
            *self._credentials(ACTION_REFUND),
            *self._amount(request.amount_minor),
            (self._w("transid"), request.payment_reference),
            (self._w("trackid"), request.idempotency_key),
            *self._udfs(),
        ]
        try:
            data = self._call(fields)
        except _NoAnswer as exc:
            outcome = RefundOutcome.UNKNOWN if exc.sent else RefundOutcome.UNAVAILABLE
            return RefundResult(outcome, message=exc.reason)
        return self._refund_result(
            request.idempotency_key, data, inquiry=False, amount_minor=request.amount_minor
        )

    def refund_status(self, idempotency_key: str) -> RefundResult:
        """The scheme's truth about the refund under this track id, by inquiry (action 8)."""
        if not TRACK_ID_RE.fullmatch(idempotency_key):
            return RefundResult(RefundOutcome.UNKNOWN, message="the key cannot be a track id")
        try:
            data = self._call(self._inquiry(idempotency_key))
        except _NoAnswer as exc:
            # An inquiry that never left says nothing about the refund: never UNAVAILABLE.
            return RefundResult(RefundOutcome.UNKNOWN, message=exc.reason)
        return self._refund_result(idempotency_key, data, inquiry=True)

    def capture(
        self, idempotency_key: str, reference: str, amount_minor: int, currency: str
    ) -> ProviderResult:
        return ProviderResult(
            Outcome.DECLINED,
            decline_code="capture_not_supported",
            message=f"{self.scheme.label} captures at purchase; there is nothing to capture",
        )

    def cancel(self, idempotency_key: str, reference: str) -> ProviderResult:
        return ProviderResult(
            Outcome.DECLINED,
            decline_code="cancel_not_supported",
            message=f"{self.scheme.label} has no authorisation to void; refund instead",
        )
