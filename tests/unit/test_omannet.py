"""The OmanNet adapter on its own: the VPC secure hash against vectors computed here with the
standard library, the refusal of every tampered callback, the amount codec, the redirect it
builds, and what each of the bank's 2-party answers means for the money."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from providers.base import (
    AuthorizeRequest,
    InvalidNotification,
    Outcome,
    RedirectProvider,
    RefundOutcome,
    RefundRequest,
    SchemeReturn,
)
from providers.omannet import (
    MAX_AMOUNT_MINOR,
    MAX_REPLY_BYTES,
    InvalidAmount,
    OmanNetProvider,
    OmanNetTerminal,
    format_amount,
    parse_amount,
    secure_hash,
)
from providers.transport import Reply, Transport, TransportError
from tests.unit.fuzz_support import fuzz

SECRET_HEX = "8F3A6C1D2E4B5A6978E1F20C3D4B5A69"
KEY = bytes.fromhex(SECRET_HEX)
PASSWORD = "s3cret-pass!"
TERMINAL = OmanNetTerminal(
    merchant_id="TESTOMN001",
    access_code="A1B2C3D4",
    secure_secret=SECRET_HEX,
    user="amauser",
    password=PASSWORD,
)
PAGE_URL = "https://bank.test/vpcpay"
QUERY_URL = "https://bank.test/vpcdps"
RETURN_URL = "https://gateway.test/pay/tok123/return?lang=ar"
REF = "att_01jd9zq4x0marker000000001"


def vpc_hash(fields: Mapping[str, str], key: bytes = KEY) -> str:
    """The VPC SHA256 hash, written out here from the specification, not from the adapter."""
    names = [
        name
        for name in fields
        if (name.startswith("vpc_") or name.startswith("user_"))
        and name not in ("vpc_SecureHash", "vpc_SecureHashType")
    ]
    names.sort(key=lambda name: name.encode("utf-8"))
    message = "&".join(name + "=" + fields[name] for name in names)
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest().upper()


def signed(fields: Mapping[str, str], key: bytes = KEY) -> dict[str, str]:
    out = dict(fields)
    out["vpc_SecureHashType"] = "SHA256"
    out["vpc_SecureHash"] = vpc_hash(out, key)
    return out


class NoNetwork:
    """A transport that fails the test if the adapter uses it."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        raise AssertionError("no network call was expected")


class ScriptedBank:
    """A stand-in for the bank's 2-party endpoint: it checks each request's signature with the
    test's own hash and answers what the test scripts."""

    def __init__(self, answer: Callable[[dict[str, str]], Reply]) -> None:
        self.answer = answer
        self.requests: list[dict[str, str]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        assert url == QUERY_URL
        assert headers["Content-Type"] == "application/x-www-form-urlencoded"
        fields = dict(urllib.parse.parse_qsl(body.decode("ascii"), strict_parsing=True))
        assert fields["vpc_SecureHashType"] == "SHA256"
        assert fields["vpc_SecureHash"] == vpc_hash(fields)
        self.requests.append(fields)
        return self.answer(fields)


def form(fields: Mapping[str, str], status: int = 200) -> Reply:
    return Reply(
        status, urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"
    )


def dr_answer(code: str, **extra: str) -> Callable[[dict[str, str]], Reply]:
    """A queryDR answer for whatever reference was asked about."""

    def answer(request: dict[str, str]) -> Reply:
        fields = {
            "vpc_Version": "1",
            "vpc_Command": "queryDR",
            "vpc_Merchant": TERMINAL.merchant_id,
            "vpc_MerchTxnRef": request["vpc_MerchTxnRef"],
            "vpc_DRExists": "Y",
            "vpc_FoundMultipleDRs": "N",
            "vpc_TxnResponseCode": code,
            "vpc_Message": "as scripted",
            "vpc_Amount": "12500",
            "vpc_Currency": "OMR",
            "vpc_TransactionNo": "3000000042",
            "vpc_ReceiptNo": "601234567890",
            "vpc_AuthorizeId": "123456",
        }
        if request["vpc_MerchTxnRef"].startswith("re_"):  # a refund's record names its payment
            fields["vpc_ShopTransactionNo"] = "3000000001"
        fields.update(extra)
        return form(signed({k: v for k, v in fields.items() if v != "<absent>"}))

    return answer


def provider(transport: Transport | None = None) -> OmanNetProvider:
    return OmanNetProvider(
        "omannet",
        TERMINAL,
        PAGE_URL,
        QUERY_URL,
        transport or NoNetwork(),
    )


def request(**overrides: object) -> AuthorizeRequest:
    values: dict[str, object] = {
        "idempotency_key": REF,
        "amount_minor": 12500,
        "currency": "OMR",
        "method": "omannet",
        "capture": True,
        "description": "Medical certificate fee",
        "return_url": RETURN_URL,
        "payer_present": True,
        "language": "ar",
    }
    values.update(overrides)
    return AuthorizeRequest(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the secure hash


def test_the_hash_covers_vpc_and_user_fields_sorted_in_byte_order() -> None:
    fields = {
        "vpc_Version": "1",
        "vpc_amount_lower": "x",  # lower case sorts after every upper-case name in byte order
        "user_Ref": "R-1",  # `user_` sorts before `vpc_`
        "vpc_Amount": "12500",
        "vpc_AccessCode": "A1B2C3D4",
        "vpc_Message": "مرحبا a+b c/d",  # hashed as it is: not URL-encoded
        "other": "not hashed",
        "vpc_SecureHashType": "SHA256",
        "vpc_SecureHash": "not hashed either",
    }
    message = (
        "user_Ref=R-1&vpc_AccessCode=A1B2C3D4&vpc_Amount=12500"
        "&vpc_Message=مرحبا a+b c/d&vpc_Version=1&vpc_amount_lower=x"
    )
    expected = hmac.new(KEY, message.encode("utf-8"), hashlib.sha256).hexdigest().upper()
    assert secure_hash(fields, KEY) == expected
    assert expected == vpc_hash(fields)  # the test's own helper agrees with the literal
    assert re.fullmatch(r"[0-9A-F]{64}", expected)


def test_the_hash_depends_on_every_covered_field_and_on_nothing_else() -> None:
    base = {"vpc_Amount": "12500", "vpc_Currency": "OMR", "user_Note": "n"}
    reference = secure_hash(base, KEY)
    assert secure_hash({**base, "lang": "ar", "vpc_SecureHash": "X"}, KEY) == reference
    assert secure_hash({**base, "vpc_Amount": "12501"}, KEY) != reference
    assert secure_hash({**base, "user_Note": "m"}, KEY) != reference
    assert secure_hash({**base, "vpc_Extra": ""}, KEY) != reference
    assert secure_hash(base, bytes.fromhex("00" * 16)) != reference


def test_the_redirect_is_signed_as_the_bank_checks_it() -> None:
    result = provider().authorize(request())
    assert result.outcome is Outcome.REDIRECT
    assert result.amount_minor == 12500
    assert result.currency == "OMR"
    assert result.redirect_url is not None
    base, _, query = result.redirect_url.partition("?")
    assert base == PAGE_URL
    pairs = urllib.parse.parse_qsl(query, strict_parsing=True)
    fields = dict(pairs)
    assert len(fields) == len(pairs)
    assert fields == {
        "vpc_Version": "1",
        "vpc_Command": "pay",
        "vpc_AccessCode": "A1B2C3D4",
        "vpc_Merchant": "TESTOMN001",
        "vpc_MerchTxnRef": REF,
        "vpc_OrderInfo": "Medical certificate fee",
        "vpc_Amount": "12500",
        "vpc_Currency": "OMR",
        "vpc_Locale": "ar",
        "vpc_ReturnURL": RETURN_URL,
        "vpc_SecureHashType": "SHA256",
        "vpc_SecureHash": vpc_hash(fields),
    }
    # The payer's browser carries these: never the 2-party credentials or the secret.
    for secret in (PASSWORD, TERMINAL.user, SECRET_HEX, SECRET_HEX.lower()):
        assert secret not in result.redirect_url


def test_order_info_is_cut_to_the_field_and_falls_back_to_the_reference() -> None:
    long = provider().authorize(request(description="Renewal of a commercial registration & fees"))
    assert long.redirect_url is not None
    fields = dict(urllib.parse.parse_qsl(long.redirect_url.partition("?")[2]))
    assert fields["vpc_OrderInfo"] == "Renewal of a commercial registrati"
    assert len(fields["vpc_OrderInfo"]) == 34
    arabic = provider().authorize(request(description="رسوم الشهادة الطبية", language="en"))
    assert arabic.redirect_url is not None
    fields = dict(urllib.parse.parse_qsl(arabic.redirect_url.partition("?")[2]))
    assert fields["vpc_OrderInfo"] == REF
    assert fields["vpc_Locale"] == "en"
    assert fields["vpc_SecureHash"] == vpc_hash(fields)


@pytest.mark.parametrize(
    "overrides",
    [
        {"currency": "KWD"},
        {"method": "card"},
        {"capture": False},
        {"amount_minor": 0},
        {"amount_minor": MAX_AMOUNT_MINOR + 1},
        {"idempotency_key": "x" * 41},
        {"idempotency_key": "att 1"},
        {"return_url": None},
        {"return_url": "ftp://gateway.test/return"},
        {"return_url": "https://gateway.test/return?a=1&b=2"},
        {"return_url": "https://gateway.test/" + "r" * 300},
        {"language": "fr"},
    ],
)
def test_a_request_omannet_cannot_take_is_unavailable_without_a_call(
    overrides: dict[str, object],
) -> None:
    result = provider().authorize(request(**overrides))
    assert result.outcome is Outcome.UNAVAILABLE
    assert result.redirect_url is None
    assert result.message


def test_it_is_a_redirect_provider_with_omannet_capabilities() -> None:
    adapter: RedirectProvider = provider()
    caps = adapter.capabilities
    assert caps.currencies == frozenset({"OMR"})
    assert caps.methods == frozenset({"omannet"})
    assert not caps.manual_capture
    assert caps.partial_refund
    assert not caps.livemode
    assert caps.accepts(currency="OMR", method="omannet", amount_minor=12345, manual=False)
    assert not caps.accepts(currency="OMR", method="omannet", amount_minor=12345, manual=True)
    live = OmanNetProvider("omannet", TERMINAL, PAGE_URL, QUERY_URL, NoNetwork(), livemode=True)
    assert live.capabilities.livemode
    assert live.authorize(request(return_url="http://gateway.test/r")).outcome is (
        Outcome.UNAVAILABLE
    )
    with pytest.raises(ValueError, match="https"):
        OmanNetProvider(
            "omannet", TERMINAL, "http://bank.test/p", QUERY_URL, NoNetwork(), livemode=True
        )


def test_capture_and_cancel_are_refused_clearly() -> None:
    adapter = provider()
    captured = adapter.capture("k-capture", "3000000001", 12500, "OMR")
    cancelled = adapter.cancel("k-cancel", "3000000001")
    for result in (captured, cancelled):
        assert result.outcome is Outcome.DECLINED
        assert result.decline_code == "not_supported"
        assert result.message and "authorisation" in result.message


def test_the_terminal_never_shows_its_secret_or_password() -> None:
    shown = repr(TERMINAL) + str(TERMINAL)
    assert SECRET_HEX not in shown
    assert PASSWORD not in shown
    assert "TESTOMN001" in shown
    with pytest.raises(ValueError, match="secure secret") as short:
        OmanNetTerminal("M1", "AC1", "ABCD", "u", "p")
    assert "ABCD" not in str(short.value)
    with pytest.raises(ValueError, match="password") as amp:
        OmanNetTerminal("M1", "AC1", SECRET_HEX, "u", "p&q")
    assert "p&q" not in str(amp.value)
    with pytest.raises(ValueError, match="secure secret"):
        OmanNetTerminal("M1", "AC1", "Z" * 32, "u", "p")


# ---------------------------------------------------------------------------- the callback


def callback(**overrides: str) -> dict[str, str]:
    fields = {
        "vpc_Version": "1",
        "vpc_Command": "pay",
        "vpc_Merchant": "TESTOMN001",
        "vpc_MerchTxnRef": REF,
        "vpc_OrderInfo": "Medical certificate fee",
        "vpc_Amount": "12500",
        "vpc_Currency": "OMR",
        "vpc_Locale": "ar",
        "vpc_TxnResponseCode": "0",
        "vpc_Message": "Approved",
        "vpc_TransactionNo": "3000000777",
        "vpc_ReceiptNo": "601234567890",
        "vpc_AuthorizeId": "654321",
    }
    fields.update(overrides)
    return signed(fields)


def test_a_signed_callback_is_read() -> None:
    assert provider().parse_return({**callback(), "lang": "ar"}) == SchemeReturn(
        attempt_key=REF, amount_minor=12500, currency="OMR", result="0", reference="3000000777"
    )
    declined = provider().parse_return(callback(vpc_TxnResponseCode="2", vpc_AuthorizeId=""))
    assert declined.result == "2"


def test_the_hash_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    fields = callback()
    provider().parse_return(fields)
    assert (fields["vpc_SecureHash"], fields["vpc_SecureHash"]) in calls


def _changed(fields: dict[str, str]) -> dict[str, str]:
    return {**fields, "vpc_Amount": "99999"}


def _flipped(fields: dict[str, str]) -> dict[str, str]:
    declined = callback(vpc_TxnResponseCode="2")
    return {**declined, "vpc_TxnResponseCode": "0"}


def _merged(fields: dict[str, str]) -> dict[str, str]:
    """Two adjacent fields merged into one: the signed string, and so the hash, is unchanged."""
    merged = dict(fields)
    merged["vpc_Message"] = merged["vpc_Message"] + "&vpc_OrderInfo=" + merged.pop("vpc_OrderInfo")
    assert vpc_hash(merged) == fields["vpc_SecureHash"]
    return merged


def _resigned_elsewhere(fields: dict[str, str]) -> dict[str, str]:
    return signed({k: v for k, v in fields.items() if not k.startswith("vpc_Secure")}, b"\x01" * 16)


def _replayed_query_answer(fields: dict[str, str]) -> dict[str, str]:
    return callback(vpc_Command="queryDR", vpc_DRExists="Y")


def _without(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda fields: {k: v for k, v in fields.items() if k != name}


def _with(name: str, value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda fields: {**fields, name: value}


TAMPERINGS: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "a changed field": _changed,
    "a decline turned into an approval": _flipped,
    "an added vpc field": _with("vpc_EvilMarker", "evilvalue"),
    "an added user field": _with("user_EvilMarker", "evilvalue"),
    "an added field outside the hash": _with("evilmarker", "evilvalue"),
    "a removed field": _without("vpc_Message"),
    "a removed response code": _without("vpc_TxnResponseCode"),
    "no hash": _without("vpc_SecureHash"),
    "no hash type": _without("vpc_SecureHashType"),
    "another hash type": _with("vpc_SecureHashType", "MD5"),
    "a lower-case hash type": _with("vpc_SecureHashType", "sha256"),
    # Refused: the bank writes upper case, and one signature needs no second spelling.
    "a lower-case hash": lambda fields: {
        **fields,
        "vpc_SecureHash": fields["vpc_SecureHash"].lower(),
    },
    "a cut hash": lambda fields: {**fields, "vpc_SecureHash": fields["vpc_SecureHash"][:-2]},
    "an empty hash": _with("vpc_SecureHash", ""),
    "fields merged without changing the signed string": _merged,
    "a hash under another key": _resigned_elsewhere,
    "a 2-party answer replayed as a callback": _replayed_query_answer,
    "a control character": _with("vpc_Message", "Appro\x00ved"),
    "an overlong field": _with("vpc_Message", "m" * 256),
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS.values()), ids=list(TAMPERINGS))
def test_a_tampered_callback_is_refused_without_echoing_it(
    tamper: Callable[[dict[str, str]], dict[str, str]],
) -> None:
    fields = tamper(callback())
    with pytest.raises(InvalidNotification) as refused:
        provider().parse_return(fields)
    message = str(refused.value)
    assert message
    for value in (REF, "3000000777", "601234567890", "654321", "99999", "evilvalue", "Evil"):
        assert value.lower() not in message.lower()
    assert callback()["vpc_SecureHash"] not in message
    assert "\x00" not in message


@pytest.mark.parametrize(
    "overrides",
    [
        {"vpc_Amount": "012500"},
        {"vpc_Amount": "12.500"},
        {"vpc_Amount": "-12500"},
        {"vpc_Amount": ""},
        {"vpc_MerchTxnRef": "has space"},
        {"vpc_Currency": "omr"},
        {"vpc_TransactionNo": "T300"},
        {"vpc_Merchant": "OTHERMERCH"},
        {"vpc_TxnResponseCode": ""},
    ],
)
def test_a_signed_callback_with_a_bad_value_is_refused(overrides: dict[str, str]) -> None:
    with pytest.raises(InvalidNotification):
        provider().parse_return(callback(**overrides))


def test_a_callback_too_large_is_refused_before_hashing() -> None:
    many = {f"user_F{i}": "v" for i in range(60)}
    with pytest.raises(InvalidNotification, match="more than"):
        provider().parse_return(callback(**many))
    with pytest.raises(InvalidNotification):
        provider().parse_return({"vpc_Amount": 12500})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------- amounts


@fuzz(300)
@given(st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR))
@example(1)
@example(13)
@example(MAX_AMOUNT_MINOR)
def test_every_amount_survives_format_and_parse(amount_minor: int) -> None:
    text = format_amount(amount_minor)
    assert text == f"{amount_minor:d}"
    assert parse_amount(text) == amount_minor


def _plain(text: str) -> bool:
    """A plain positive integer string within the limit, judged here without the adapter."""
    return (
        text != ""
        and all(char in "0123456789" for char in text)
        and text[0] != "0"
        and len(text) <= 13
        and int(text) <= MAX_AMOUNT_MINOR
    )


near_misses = st.one_of(
    st.integers(min_value=-(10**14), max_value=10**14).map(str),
    st.builds(
        lambda n, zeros: "0" * zeros + str(n),
        st.integers(min_value=0, max_value=MAX_AMOUNT_MINOR),
        st.integers(min_value=1, max_value=3),
    ),
    st.builds(
        lambda n, shape: shape.format(n),
        st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
        st.sampled_from(
            ["+{}", " {}", "{} ", "{}\n", "{}.000", "{}.5", "{:_}", "{:,}", "{}e0", "0x{:x}"]
        ),
    ),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=14),
    st.text(max_size=20),
)


@fuzz(500)
@given(near_misses)
@example("١٢٥٠٠")  # Arabic-Indic digits
@example("0")
@example(str(MAX_AMOUNT_MINOR + 1))
@example("9" * 5000)
def test_only_a_plain_positive_integer_string_is_an_amount(text: str) -> None:
    if _plain(text):
        assert parse_amount(text) == int(text)
    else:
        with pytest.raises(InvalidAmount):
            parse_amount(text)


@pytest.mark.parametrize("value", [0, -1, MAX_AMOUNT_MINOR + 1, True, 12.5, "12500", None])
def test_only_an_integer_in_range_is_formatted(value: object) -> None:
    with pytest.raises(InvalidAmount):
        format_amount(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- 2-party answers


@pytest.mark.parametrize(
    ("code", "outcome", "decline_code"),
    [
        ("0", Outcome.APPROVED, None),
        ("2", Outcome.DECLINED, "card_declined"),
        ("4", Outcome.DECLINED, "expired_card"),
        ("5", Outcome.DECLINED, "insufficient_funds"),
        ("C", Outcome.DECLINED, "abandoned"),
        ("A", Outcome.DECLINED, "abandoned"),
        ("P", Outcome.UNKNOWN, None),
        ("?", Outcome.UNKNOWN, None),
        ("3", Outcome.UNKNOWN, None),
        ("7", Outcome.UNKNOWN, None),
        ("Z", Outcome.UNKNOWN, None),
    ],
)
def test_each_response_code_means_what_the_table_says(
    code: str, outcome: Outcome, decline_code: str | None
) -> None:
    bank = ScriptedBank(dr_answer(code))
    result = provider(bank).status(REF, None)
    assert result.outcome is outcome
    assert result.decline_code == decline_code
    assert result.amount_minor == 12500
    assert result.currency == "OMR"
    if outcome is Outcome.APPROVED:
        assert result.amount_captured_minor == 12500
        assert result.reference == "3000000042"
    (sent,) = bank.requests
    assert sent["vpc_Command"] == "queryDR"
    assert sent["vpc_MerchTxnRef"] == REF
    assert (sent["vpc_User"], sent["vpc_Password"]) == ("amauser", PASSWORD)


def test_no_such_transaction_is_unavailable() -> None:
    def none(request: dict[str, str]) -> Reply:
        return form(
            signed(
                {
                    "vpc_Command": "queryDR",
                    "vpc_Merchant": TERMINAL.merchant_id,
                    "vpc_MerchTxnRef": request["vpc_MerchTxnRef"],
                    "vpc_DRExists": "N",
                }
            )
        )

    assert provider(ScriptedBank(none)).status(REF, None).outcome is Outcome.UNAVAILABLE
    assert provider(ScriptedBank(none)).refund_status("re_x").outcome is RefundOutcome.UNAVAILABLE


def _raw(body: bytes, status: int = 200) -> Callable[[dict[str, str]], Reply]:
    return lambda request: Reply(status, body, "application/x-www-form-urlencoded")


def _tampered(request: dict[str, str]) -> Reply:
    reply = dr_answer("0")(request)
    return Reply(200, reply.body.replace(b"vpc_Amount=12500", b"vpc_Amount=1"))


def _lower_hash(request: dict[str, str]) -> Reply:
    fields = dict(urllib.parse.parse_qsl(dr_answer("0")(request).body.decode()))
    fields["vpc_SecureHash"] = fields["vpc_SecureHash"].lower()
    return form(fields)


def _unreachable(request: dict[str, str]) -> Reply:
    raise TransportError("could not connect", sent=False)


UNTRUSTED: dict[str, Callable[[dict[str, str]], Reply]] = {
    "a changed answer": _tampered,
    "a lower-case hash": _lower_hash,
    "an answer about another reference": dr_answer("0", vpc_MerchTxnRef="att_someone_else"),
    "an answer to another command": dr_answer("0", vpc_Command="refund"),
    "another merchant": dr_answer("0", vpc_Merchant="OTHERMERCH"),
    "approved without a transaction number": dr_answer("0", vpc_TransactionNo="<absent>"),
    "several transactions": dr_answer("0", vpc_FoundMultipleDRs="Y"),
    "a malformed transaction number": dr_answer("0", vpc_TransactionNo="T-1"),
    "an HTTP error": _raw(b"", status=500),
    "a body that is not a form": _raw(b"<html>\xff</html>"),
    "a repeated field": _raw(b"vpc_Amount=1&vpc_Amount=2"),
    "a body too large": _raw(b"a" * (MAX_REPLY_BYTES + 1)),
    "no connection": _unreachable,
}


@pytest.mark.parametrize("answer", list(UNTRUSTED.values()), ids=list(UNTRUSTED))
def test_an_answer_that_cannot_be_trusted_is_unknown(
    answer: Callable[[dict[str, str]], Reply], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert provider(ScriptedBank(answer)).status(REF, None).outcome is Outcome.UNKNOWN
    assert provider(ScriptedBank(answer)).refund_status("re_x").outcome is RefundOutcome.UNKNOWN
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in (PASSWORD, SECRET_HEX, "vpc_SecureHash=", "12500"):
            assert secret not in text


def test_a_payment_status_needs_a_payment_record_with_its_amount() -> None:
    for answer in (
        dr_answer("0", vpc_ShopTransactionNo="3000000001"),  # a refund's record
        dr_answer("0", vpc_Amount="<absent>"),
        dr_answer("0", vpc_Currency="<absent>"),
    ):
        assert provider(ScriptedBank(answer)).status(REF, None).outcome is Outcome.UNKNOWN
    payment_record = dr_answer("0", vpc_ShopTransactionNo="<absent>")
    assert provider(ScriptedBank(payment_record)).refund_status("re_x").outcome is (
        RefundOutcome.UNKNOWN
    )


def test_the_status_names_the_transaction_it_was_asked_about() -> None:
    bank = ScriptedBank(dr_answer("0"))
    assert provider(bank).status(REF, "3000000042").outcome is Outcome.APPROVED
    assert provider(bank).status(REF, "3000000043").outcome is Outcome.UNKNOWN
    # A key `authorize` would never send names nothing at the bank: no call is needed.
    assert provider().status("not a key", None).outcome is Outcome.UNAVAILABLE


def refund_request(**overrides: object) -> RefundRequest:
    values: dict[str, object] = {
        "idempotency_key": "re_01jd9zq4x0marker000000001",
        "payment_reference": "3000000042",
        "amount_minor": 2500,
        "currency": "OMR",
    }
    values.update(overrides)
    return RefundRequest(**values)  # type: ignore[arg-type]


def refund_answer(code: str, **extra: str) -> Callable[[dict[str, str]], Reply]:
    def answer(request: dict[str, str]) -> Reply:
        fields = {
            "vpc_Version": "1",
            "vpc_Command": request["vpc_Command"],
            "vpc_Merchant": TERMINAL.merchant_id,
            "vpc_MerchTxnRef": request["vpc_MerchTxnRef"],
            "vpc_TxnResponseCode": code,
            "vpc_Message": "as scripted",
            "vpc_Amount": "2500",
            "vpc_Currency": "OMR",
            "vpc_TransactionNo": "3000000050",
            "vpc_ShopTransactionNo": "3000000042",
            "vpc_ReceiptNo": "601234567891",
            "vpc_AuthorizeId": "",
        }
        if request["vpc_Command"] == "queryDR":
            fields.update(vpc_DRExists="Y", vpc_FoundMultipleDRs="N")
        fields.update(extra)
        return form(signed(fields))

    return answer


def test_a_refund_is_sent_under_its_own_key_and_read() -> None:
    bank = ScriptedBank(refund_answer("0"))
    result = provider(bank).refund(refund_request())
    assert result.outcome is RefundOutcome.SUCCEEDED
    assert result.reference == "3000000050"
    (sent,) = bank.requests
    assert sent["vpc_Command"] == "refund"
    assert sent["vpc_MerchTxnRef"] == "re_01jd9zq4x0marker000000001"
    assert (sent["vpc_TransNo"], sent["vpc_Amount"]) == ("3000000042", "2500")
    refused = provider(ScriptedBank(refund_answer("2"))).refund(refund_request())
    assert refused.outcome is RefundOutcome.FAILED
    other = provider(ScriptedBank(refund_answer("0", vpc_Amount="2501"))).refund(refund_request())
    assert other.outcome is RefundOutcome.UNKNOWN
    status = provider(ScriptedBank(refund_answer("0"))).refund_status(sent["vpc_MerchTxnRef"])
    assert (status.outcome, status.reference) == (RefundOutcome.SUCCEEDED, "3000000050")


def test_a_refund_that_never_left_is_unavailable_and_one_that_may_have_is_unknown() -> None:
    def unsent(request: dict[str, str]) -> Reply:
        raise TransportError("could not connect", sent=False)

    def lost(request: dict[str, str]) -> Reply:
        raise TransportError("read timed out", sent=True)

    assert provider(ScriptedBank(unsent)).refund(refund_request()).outcome is (
        RefundOutcome.UNAVAILABLE
    )
    assert provider(ScriptedBank(lost)).refund(refund_request()).outcome is RefundOutcome.UNKNOWN
    assert provider(ScriptedBank(lost)).refund_status("re_x").outcome is RefundOutcome.UNKNOWN


@pytest.mark.parametrize(
    "overrides",
    [
        {"currency": "KWD"},
        {"payment_reference": "ch_123"},
        {"amount_minor": 0},
        {"idempotency_key": "r" * 41},
    ],
)
def test_a_refund_omannet_cannot_make_fails_without_a_call(overrides: dict[str, object]) -> None:
    result = provider().refund(refund_request(**overrides))
    assert result.outcome is RefundOutcome.FAILED
    assert result.message
