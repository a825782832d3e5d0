"""The tranportal adapter on its own: its trandata against encryptions made here with the
`cryptography` primitives directly, amounts at the edge, refusal of anything tampered with,
and what each answer of the scheme means for the money."""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import example, given, settings
from hypothesis import strategies as st

from payments.money import CURRENCY_EXPONENTS
from providers.base import (
    AuthorizeRequest,
    InvalidNotification,
    Outcome,
    RefundOutcome,
    RefundRequest,
)
from providers.scheme_amounts import (
    MAX_AMOUNT_MINOR,
    SCHEME_CURRENCY_EXPONENTS,
    SchemeAmountError,
    format_amount,
    parse_amount,
)
from providers.tranportal import (
    BENEFIT,
    KNET,
    TRANDATA_MAX_CHARS,
    TranportalFormatError,
    TranportalProvider,
    TranportalScheme,
    TranportalTerminal,
    decrypt_trandata,
    encrypt_trandata,
)
from providers.transport import Reply, TransportError

TRANPORTAL_ID = "TP10021"
PASSWORD = "pass!word1"
KEY_128 = "A1B2C3D4E5F6G7H8"
KEY_256 = "A1B2C3D4E5F6G7H8I9J0K1L2M3N4O5P6"
RETURN_URL = "https://gw.test/pay/return?t=tok1"
PAGE_URL = "https://scheme.test/page"
TRANPORTAL_URL = "https://scheme.test/tranportal"
SCHEMES = [KNET, BENEFIT]


def independent_encrypt(plaintext: str, resource_key: str) -> str:
    """What the scheme's own kit would send: AES-CBC, PKCS#7, the key's first 16 bytes as IV,
    upper-case hex. Written here from the primitives, never with the code under test."""
    key = resource_key.encode("ascii")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("ascii")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex().upper()


def independent_decrypt(trandata: str, resource_key: str) -> str:
    key = resource_key.encode("ascii")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(bytes.fromhex(trandata)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode("ascii")


class FakeScheme:
    """A transport whose answer the test writes; it records what was posted."""

    def __init__(self, answer: Callable[[bytes], Reply] | None = None) -> None:
        self.answer = answer
        self.posts: list[tuple[str, bytes]] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        self.posts.append((url, body))
        if self.answer is None:
            raise AssertionError("no call was expected")
        return self.answer(body)


def terminal(key: str = KEY_128) -> TranportalTerminal:
    return TranportalTerminal(TRANPORTAL_ID, PASSWORD, key)


def provider(
    scheme: TranportalScheme, transport: FakeScheme | None = None, key: str = KEY_128
) -> TranportalProvider:
    return TranportalProvider(
        scheme.name,
        scheme,
        terminal(key),
        PAGE_URL,
        TRANPORTAL_URL,
        transport or FakeScheme(),
    )


def purchase(
    scheme: TranportalScheme, amount_minor: int = 1250, **changes: object
) -> AuthorizeRequest:
    fields: dict[str, object] = {
        "idempotency_key": "att_01jd0000000000000000000001",
        "amount_minor": amount_minor,
        "currency": scheme.currency,
        "method": scheme.name,
        "capture": True,
        "description": "Residence permit fee",
        "return_url": RETURN_URL,
        "language": "en",
    }
    fields.update(changes)
    return AuthorizeRequest(**fields)  # type: ignore[arg-type]


def redirect_query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, strict_parsing=True))


def fields_text(scheme: TranportalScheme, fields: list[tuple[str, str]]) -> str:
    """Fields as the scheme writes them, written out here independently."""
    if scheme is KNET:
        return "&".join(f"{k}={urllib.parse.quote_plus(v)}" for k, v in fields)
    return json.dumps([dict(fields)], separators=(",", ":"))


def callback(
    scheme: TranportalScheme, fields: list[tuple[str, str]], key: str = KEY_128
) -> dict[str, str]:
    return {"t": "tok1", "trandata": independent_encrypt(fields_text(scheme, fields), key)}


def result_fields(
    scheme: TranportalScheme, result: str = "CAPTURED", amt: str = "1.250", **extra: str
) -> list[tuple[str, str]]:
    w = scheme.wire
    fields = [
        (w("paymentid"), "100202412345678"),
        (w("result"), result),
        (w("auth"), "123456"),
        (w("ref"), "412345678901"),
        (w("tranid"), "2024123456789012"),
        (w("trackid"), "att_01jd0000000000000000000001"),
        (w("amt"), amt),
    ]
    return fields + list(extra.items())


def replaced(fields: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k == name else v) for k, v in fields]


# ---- the cipher, against independent encryptions


def test_knet_purchase_trandata_is_the_documented_query_string_encrypted() -> None:
    result = provider(KNET).authorize(purchase(KNET))
    assert result.outcome is Outcome.REDIRECT
    assert result.amount_minor == 1250 and result.currency == "KWD"
    assert result.redirect_url is not None and result.redirect_url.startswith(PAGE_URL + "?")
    query = redirect_query(result.redirect_url)
    ret = urllib.parse.quote_plus(RETURN_URL)
    expected = independent_encrypt(
        f"id={TRANPORTAL_ID}&password=pass%21word1&action=1&amt=1.250&currencycode=414"
        f"&langid=USA&trackid=att_01jd0000000000000000000001&responseURL={ret}&errorURL={ret}"
        "&udf1=&udf2=&udf3=&udf4=&udf5=",
        KEY_128,
    )
    assert query == {
        "param": "paymentInit",
        "trandata": expected,
        "tranportalId": TRANPORTAL_ID,
        "responseURL": RETURN_URL,
        "errorURL": RETURN_URL,
    }


def test_benefit_purchase_trandata_is_the_documented_json_encrypted() -> None:
    result = provider(BENEFIT).authorize(purchase(BENEFIT, 5000, language="ar"))
    assert result.redirect_url is not None
    expected = independent_encrypt(
        '[{"id":"TP10021","password":"pass!word1","action":"1","amt":"5.000",'
        '"currencycode":"048","langid":"ARA","trackId":"att_01jd0000000000000000000001",'
        f'"responseURL":"{RETURN_URL}","errorURL":"{RETURN_URL}",'
        '"udf1":"","udf2":"","udf3":"","udf4":"","udf5":""}]',
        KEY_128,
    )
    assert redirect_query(result.redirect_url)["trandata"] == expected


def test_aes_256_by_key_length() -> None:
    key = KEY_256.encode("ascii")
    plaintext = b"result=CAPTURED&trackid=abc"
    expected = independent_encrypt(plaintext.decode(), KEY_256)
    assert encrypt_trandata(plaintext, key, key[:16]) == expected
    assert decrypt_trandata(expected, key, key[:16]) == plaintext
    assert decrypt_trandata(expected.lower(), key, key[:16]) == plaintext
    assert len(expected) == 64  # 27 bytes pad to two blocks


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_a_callback_encrypted_independently_is_read(scheme: TranportalScheme) -> None:
    got = provider(scheme).parse_return(callback(scheme, result_fields(scheme, udf1="x y")))
    assert got.attempt_key == "att_01jd0000000000000000000001"
    assert got.amount_minor == 1250
    assert got.currency == scheme.currency
    assert got.result == "CAPTURED"
    assert got.reference == "2024123456789012"  # the transaction id, as status() reports it


def test_a_cancelled_callback_names_the_payment_id() -> None:
    w = KNET.wire
    fields = [(w("paymentid"), "100202412345678"), (w("result"), "CANCELED")]
    fields += [(w("trackid"), "att_1"), (w("amt"), "0.013")]
    got = provider(KNET).parse_return(callback(KNET, fields))
    assert (got.result, got.reference, got.amount_minor) == ("CANCELED", "100202412345678", 13)


def test_the_adapters_own_trandata_decrypts_independently() -> None:
    result = provider(KNET, key=KEY_256).authorize(purchase(KNET))
    assert result.redirect_url is not None
    text = independent_decrypt(redirect_query(result.redirect_url)["trandata"], KEY_256)
    assert dict(urllib.parse.parse_qsl(text))["trackid"] == "att_01jd0000000000000000000001"


# ---- amounts at the edge


def test_exponents_agree_with_the_gateways() -> None:
    for currency, exp in SCHEME_CURRENCY_EXPONENTS.items():
        assert CURRENCY_EXPONENTS[currency] == exp


@given(
    amount_minor=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
    currency=st.sampled_from(sorted(SCHEME_CURRENCY_EXPONENTS)),
)
@example(amount_minor=1, currency="KWD")
@example(amount_minor=MAX_AMOUNT_MINOR, currency="BHD")
@example(amount_minor=1, currency="SAR")
def test_amounts_survive_format_and_parse(amount_minor: int, currency: str) -> None:
    """Every supported currency, with its own number of decimals."""
    text = format_amount(amount_minor, currency)
    exp = SCHEME_CURRENCY_EXPONENTS[currency]
    assert (text.count("."), len(text.partition(".")[2])) == ((1, exp) if exp else (0, 0))
    assert parse_amount(text, currency) == amount_minor


@settings(max_examples=150, deadline=None)
@given(
    amount_minor=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
    scheme=st.sampled_from(SCHEMES),
)
@example(amount_minor=1, scheme=BENEFIT)
@example(amount_minor=MAX_AMOUNT_MINOR, scheme=KNET)
def test_amounts_survive_the_adapter_both_ways(amount_minor: int, scheme: TranportalScheme) -> None:
    result = provider(scheme).authorize(purchase(scheme, amount_minor))
    assert result.redirect_url is not None
    text = independent_decrypt(redirect_query(result.redirect_url)["trandata"], KEY_128)
    sent = (dict(urllib.parse.parse_qsl(text)) if scheme is KNET else json.loads(text)[0])["amt"]
    got = provider(scheme).parse_return(callback(scheme, result_fields(scheme, amt=sent)))
    assert got.amount_minor == amount_minor


@given(
    amount_minor=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
    extra=st.text(alphabet="0123456789", min_size=1, max_size=6),
    currency=st.sampled_from(["KWD", "BHD"]),
)
def test_more_decimals_than_the_currency_has_are_refused(
    amount_minor: int, extra: str, currency: str
) -> None:
    text = format_amount(amount_minor, currency) + extra
    with pytest.raises(SchemeAmountError):
        parse_amount(text, currency)
    scheme = KNET if currency == "KWD" else BENEFIT
    with pytest.raises(InvalidNotification):
        provider(scheme).parse_return(callback(scheme, result_fields(scheme, amt=text)))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0.000",
        "-1.000",
        "+1.000",
        "1e3",
        "1.",
        ".5",
        " 1.000",
        "1,000",
        "\u0661.\u0660\u0660\u0660",
        "NaN",
    ],
)
def test_amounts_in_any_other_notation_are_refused(text: str) -> None:
    with pytest.raises(SchemeAmountError):
        parse_amount(text, "KWD")


def test_fewer_decimals_are_exact() -> None:
    assert parse_amount("1.25", "BHD") == 1250
    assert parse_amount("7", "KWD") == 7000


def test_past_the_maximum_is_refused() -> None:
    with pytest.raises(SchemeAmountError):
        parse_amount("1000000000.001", "KWD")
    with pytest.raises(SchemeAmountError):
        format_amount(MAX_AMOUNT_MINOR + 1, "KWD")


# ---- tampered trandata


def assert_echoes_nothing(exc: BaseException, *secrets: str) -> None:
    text = f"{exc} {exc!r}"
    for secret in filter(None, secrets):
        for start in range(0, max(len(secret) - 8, 0) + 1, 4):
            assert secret[start : start + 8] not in text
    assert PASSWORD not in text
    # Nothing chained either: a traceback shows no exception that held the data.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


GOOD = independent_encrypt(fields_text(KNET, result_fields(KNET)), KEY_128)


@given(position=st.integers(min_value=0, max_value=len(GOOD) - 1), flip=st.integers(1, 15))
def test_a_flipped_hex_digit_is_refused(position: int, flip: int) -> None:
    digit = format(int(GOOD[position], 16) ^ flip, "X")
    tampered = GOOD[:position] + digit + GOOD[position + 1 :]
    with pytest.raises(InvalidNotification) as caught:
        provider(KNET).parse_return({"trandata": tampered})
    assert_echoes_nothing(caught.value, tampered)


@pytest.mark.parametrize(
    "trandata",
    [
        pytest.param(
            independent_encrypt(fields_text(KNET, result_fields(KNET)), "Z" * 16), id="wrong key"
        ),
        pytest.param(GOOD[:-2], id="truncated by a byte"),
        pytest.param(GOOD[:-32], id="truncated by a block"),
        pytest.param("G" + GOOD[1:], id="not hex"),
        pytest.param(GOOD + "0" * (TRANDATA_MAX_CHARS - len(GOOD) + 32), id="oversized"),
        pytest.param("", id="empty"),
        pytest.param(independent_encrypt("", KEY_128), id="empty plaintext"),
        pytest.param(independent_encrypt("result=CAPTURED&amt=1.250", KEY_128), id="no track id"),
        pytest.param(
            independent_encrypt(fields_text(KNET, result_fields(KNET)) + "&result=x", KEY_128),
            id="duplicate field",
        ),
        pytest.param(
            independent_encrypt(
                fields_text(KNET, result_fields(KNET, currencycode="048")), KEY_128
            ),
            id="another currency",
        ),
        pytest.param(
            independent_encrypt(
                fields_text(KNET, replaced(result_fields(KNET), "trackid", "a b")), KEY_128
            ),
            id="malformed track id",
        ),
        pytest.param(
            independent_encrypt(
                fields_text(KNET, replaced(result_fields(KNET), "result", "")), KEY_128
            ),
            id="empty result",
        ),
        pytest.param(
            independent_encrypt(fields_text(BENEFIT, result_fields(BENEFIT)), KEY_128),
            id="json to a form scheme",
        ),
    ],
)
def test_tampered_or_foreign_trandata_is_refused(trandata: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        provider(KNET).parse_return({"trandata": trandata})
    assert_echoes_nothing(caught.value, trandata)


def test_a_callback_without_trandata_is_refused() -> None:
    with pytest.raises(InvalidNotification):
        provider(KNET).parse_return({"Error": "IPAY0100", "ErrorText": "failed"})


@pytest.mark.parametrize(
    "document",
    [
        '{"result":"CAPTURED"}',
        "[]",
        '[{"a":"1"},{"b":"2"}]',
        '[{"amt":1.25}]',
        '[{"a":"1","a":"2"}]',
        '[{"a":"\\u0000"}]',
        "[NaN]",
        "not json",
        "[" * 3000 + "]" * 3000,
    ],
)
def test_json_that_is_not_one_object_of_strings_is_refused(document: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        provider(BENEFIT).parse_return({"trandata": independent_encrypt(document, KEY_128)})
    assert_echoes_nothing(caught.value)


def test_decrypt_refuses_before_decrypting_what_is_too_long() -> None:
    key = KEY_128.encode()
    with pytest.raises(TranportalFormatError, match="over"):
        decrypt_trandata("0" * (TRANDATA_MAX_CHARS + 32), key, key)


# ---- configuration and refusals


def test_the_terminals_repr_hides_its_secrets() -> None:
    text = repr(terminal()) + str(terminal()) + repr(provider(KNET))
    assert TRANPORTAL_ID in text
    assert PASSWORD not in text and KEY_128 not in text


@pytest.mark.parametrize(
    ("tranportal_id", "password", "key"),
    [
        ("", PASSWORD, KEY_128),
        ("T1", "", KEY_128),
        ("T1", PASSWORD, "short"),
        ("T 1", PASSWORD, KEY_128),
    ],
)
def test_a_malformed_terminal_is_refused_without_naming_its_secrets(
    tranportal_id: str, password: str, key: str
) -> None:
    with pytest.raises(ValueError) as caught:
        TranportalTerminal(tranportal_id, password, key)
    assert (password or "@@") not in str(caught.value) and key not in str(caught.value)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_capabilities(scheme: TranportalScheme) -> None:
    caps = provider(scheme).capabilities
    assert caps.currencies == {scheme.currency} and caps.methods == {scheme.name}
    assert not caps.manual_capture and caps.partial_refund and not caps.livemode
    assert caps.accepts(currency=scheme.currency, method=scheme.name, amount_minor=1, manual=False)
    assert not caps.accepts(
        currency=scheme.currency, method=scheme.name, amount_minor=1, manual=True
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"currency": "BHD"},
        {"method": "card"},
        {"capture": False},
        {"amount_minor": 0},
        {"amount_minor": MAX_AMOUNT_MINOR + 1},
        {"return_url": None},
        {"return_url": "javascript:alert(1)"},
        {"idempotency_key": "has space"},
    ],
)
def test_a_request_the_scheme_cannot_take_is_unavailable_and_sends_nothing(
    changes: dict[str, Any],
) -> None:
    transport = FakeScheme()
    result = provider(KNET, transport).authorize(purchase(KNET, **changes))
    assert result.outcome is Outcome.UNAVAILABLE and result.redirect_url is None
    assert transport.posts == []


def test_authorize_makes_no_call() -> None:
    transport = FakeScheme()
    provider(KNET, transport).authorize(purchase(KNET))
    assert transport.posts == []


def test_an_unknown_language_gets_the_schemes_default() -> None:
    result = provider(KNET).authorize(purchase(KNET, language="fr"))
    assert result.redirect_url is not None
    text = independent_decrypt(redirect_query(result.redirect_url)["trandata"], KEY_128)
    assert dict(urllib.parse.parse_qsl(text))["langid"] == "ARA"


def test_capture_and_cancel_decline() -> None:
    knet = provider(KNET)
    assert knet.capture("k", "r", 1, "KWD").decline_code == "capture_not_supported"
    assert knet.cancel("k", "r").decline_code == "cancel_not_supported"


# ---- what the scheme's server-to-server answers mean


def answering(
    scheme: TranportalScheme, fields: list[tuple[str, str]], status: int = 200
) -> FakeScheme:
    """A scheme that answers every call with these fields, encrypted as it would."""
    trandata = independent_encrypt(fields_text(scheme, fields), KEY_128)
    body = f"trandata={trandata}" if scheme is KNET else json.dumps([{"trandata": trandata}])
    return FakeScheme(lambda _body: Reply(status, body.encode()))


def failing(*, sent: bool) -> FakeScheme:
    def answer(_body: bytes) -> Reply:
        raise TransportError("connection failed: ConnectionError", sent=sent)

    return FakeScheme(answer)


KEY = "att_01jd0000000000000000000001"


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_inquiry_request_is_the_documented_envelope(scheme: TranportalScheme) -> None:
    transport = answering(scheme, result_fields(scheme))
    provider(scheme, transport).status(KEY, None)
    ((url, body),) = transport.posts
    assert url == TRANPORTAL_URL
    if scheme is KNET:
        envelope = dict(urllib.parse.parse_qsl(body.decode(), strict_parsing=True))
        assert envelope["tranportalId"] == TRANPORTAL_ID
        sent = dict(urllib.parse.parse_qsl(independent_decrypt(envelope["trandata"], KEY_128)))
        assert sent["udf5"] == "TrackID" and sent["transid"] == KEY
    else:
        (envelope,) = json.loads(body)
        assert envelope["id"] == TRANPORTAL_ID
        (sent,) = json.loads(independent_decrypt(envelope["trandata"], KEY_128))
        assert sent["trackId"] == KEY
    assert sent["action"] == "8" and sent["password"] == PASSWORD


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_captured_is_approved_with_the_transaction_id(scheme: TranportalScheme) -> None:
    result = provider(scheme, answering(scheme, result_fields(scheme))).status(KEY, None)
    assert result.outcome is Outcome.APPROVED
    assert result.reference == "2024123456789012"
    assert result.amount_captured_minor == result.amount_minor == 1250
    assert result.currency == scheme.currency


@pytest.mark.parametrize(
    ("fields", "outcome", "code"),
    [
        (result_fields(KNET, "NOT CAPTURED"), Outcome.DECLINED, "card_declined"),
        (result_fields(KNET, "CANCELED"), Outcome.DECLINED, "abandoned"),
        (
            result_fields(KNET, "NOT CAPTURED", Error=KNET.error_timed_out),
            Outcome.DECLINED,
            "abandoned",
        ),
        (result_fields(KNET, "INITIALIZED"), Outcome.UNKNOWN, None),
        (result_fields(KNET, "HOST TIMEOUT"), Outcome.UNKNOWN, None),
        ([("Error", KNET.error_not_found), ("ErrorText", "x")], Outcome.UNAVAILABLE, None),
        ([("Error", "SOMETHING_ELSE")], Outcome.UNKNOWN, None),
        (result_fields(KNET, amt="1.2500"), Outcome.UNKNOWN, None),
        ([(k, v) for k, v in result_fields(KNET) if k != "tranid"], Outcome.UNKNOWN, None),
        (replaced(result_fields(KNET), "trackid", "att_other"), Outcome.UNKNOWN, None),
    ],
)
def test_inquiry_answers(fields: list[tuple[str, str]], outcome: Outcome, code: str | None) -> None:
    result = provider(KNET, answering(KNET, fields)).status(KEY, None)
    assert result.outcome is outcome
    assert result.decline_code == code


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(failing(sent=False), id="not sent"),
        pytest.param(failing(sent=True), id="no answer"),
        pytest.param(answering(KNET, result_fields(KNET), status=500), id="HTTP 500"),
        pytest.param(FakeScheme(lambda _b: Reply(200, b"Error=X&ErrorText=no")), id="plain error"),
        pytest.param(FakeScheme(lambda _b: Reply(200, b"trandata=ABCD")), id="garbage"),
        pytest.param(FakeScheme(lambda _b: Reply(200, b"\xff\xfe")), id="not text"),
        pytest.param(FakeScheme(lambda _b: Reply(200, b"x" * 20_000)), id="too long"),
    ],
)
def test_no_readable_answer_is_unknown(transport: FakeScheme) -> None:
    assert provider(KNET, transport).status(KEY, None).outcome is Outcome.UNKNOWN


def test_an_unreadable_answer_logs_no_data(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = answering(KNET, [("result", "CAPTURED")])
    transport.answer = lambda _b: Reply(200, b"trandata=" + GOOD[:-32].encode())
    provider(KNET, transport).status(KEY, None)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert PASSWORD not in logged and GOOD[:16] not in logged


REFUND = RefundRequest("re_01jd0000000000000000000001", "2024123456789012", 250, "KWD")


def refund_fields(result: str = "CAPTURED", amt: str = "0.250") -> list[tuple[str, str]]:
    return [
        ("result", result),
        ("tranid", "5550001112223334"),
        ("trackid", REFUND.idempotency_key),
        ("amt", amt),
    ]


def test_refund_request_names_the_transaction() -> None:
    transport = answering(KNET, refund_fields())
    result = provider(KNET, transport).refund(REFUND)
    assert result.outcome is RefundOutcome.SUCCEEDED and result.reference == "5550001112223334"
    envelope = dict(urllib.parse.parse_qsl(transport.posts[0][1].decode()))
    sent = dict(urllib.parse.parse_qsl(independent_decrypt(envelope["trandata"], KEY_128)))
    assert sent["action"] == "2" and sent["transid"] == "2024123456789012"
    assert sent["trackid"] == REFUND.idempotency_key and sent["amt"] == "0.250"


@pytest.mark.parametrize(
    ("transport", "outcome"),
    [
        (failing(sent=False), RefundOutcome.UNAVAILABLE),
        (failing(sent=True), RefundOutcome.UNKNOWN),
        (answering(KNET, refund_fields(), status=502), RefundOutcome.UNKNOWN),
        (answering(KNET, [("Error", "REFUND_EXCEEDS_CAPTURE")]), RefundOutcome.FAILED),
        (answering(KNET, [("Error", KNET.error_not_found)]), RefundOutcome.FAILED),
        (answering(KNET, refund_fields("NOT CAPTURED")), RefundOutcome.FAILED),
        (answering(KNET, refund_fields(amt="0.300")), RefundOutcome.UNKNOWN),
        (answering(KNET, refund_fields("SOMETHING")), RefundOutcome.UNKNOWN),
    ],
)
def test_refund_answers(transport: FakeScheme, outcome: RefundOutcome) -> None:
    assert provider(KNET, transport).refund(REFUND).outcome is outcome


@pytest.mark.parametrize(
    "request_",
    [
        RefundRequest("re_1", "2024123456789012", 250, "BHD"),
        RefundRequest("re_1", "2024123456789012", 0, "KWD"),
        RefundRequest("re 1", "2024123456789012", 250, "KWD"),
        RefundRequest("re_1", "not/a/tranid", 250, "KWD"),
    ],
)
def test_a_malformed_refund_fails_without_a_call(request_: RefundRequest) -> None:
    transport = FakeScheme()
    assert provider(KNET, transport).refund(request_).outcome is RefundOutcome.FAILED
    assert transport.posts == []


@pytest.mark.parametrize(
    ("transport", "outcome"),
    [
        (answering(KNET, refund_fields()), RefundOutcome.SUCCEEDED),
        (answering(KNET, [("Error", KNET.error_not_found)]), RefundOutcome.UNAVAILABLE),
        (answering(KNET, [("Error", "BAD_REQUEST")]), RefundOutcome.UNKNOWN),
        (answering(KNET, refund_fields("NOT CAPTURED")), RefundOutcome.FAILED),
        # An inquiry that never left knows nothing about the refund: never UNAVAILABLE.
        (failing(sent=False), RefundOutcome.UNKNOWN),
        (failing(sent=True), RefundOutcome.UNKNOWN),
    ],
)
def test_refund_status_answers(transport: FakeScheme, outcome: RefundOutcome) -> None:
    assert provider(KNET, transport).refund_status(REFUND.idempotency_key).outcome is outcome
