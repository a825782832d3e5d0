"""Fuzz tests of signed outside messages: Stripe notifications, checkout tokens, 3-DS callbacks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from payments.ids import ID_PATTERN
from payments.links import MAX_TOKEN_CHARS, make_token, read_token
from providers.base import AuthorizeRequest, Card, InvalidNotification, Notification, Outcome
from providers.sandbox import SandboxProvider, SandboxStore
from providers.stripe import WEBHOOK_TOLERANCE_S, StripeProvider
from tests.unit.fuzz_support import fuzz

SECRET = "whsec_fuzz_" + "s" * 24
PROVIDER = StripeProvider(api_key="sk_test_fuzz", webhook_secret=SECRET)

# What a WSGI server hands the gateway: header values decoded as Latin-1, never surrogates.
latin1_text = st.text(st.characters(max_codepoint=0xFF), max_size=60)
any_text = st.text(st.characters(exclude_categories=()), max_size=60)  # surrogates too


def sign(body: str, timestamp: int, secret: str = SECRET) -> str:
    """Stripe's `v1` signature: hex HMAC-SHA256 of `{timestamp}.{body}` keyed by the secret."""
    message = f"{timestamp}.{body}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def parse(body: bytes, headers: dict[str, str]) -> Notification | str:
    """The notification, or the refusal's message; any other exception propagates."""
    try:
        return PROVIDER.parse_notification(body, headers)
    except InvalidNotification as exc:
        assert str(exc)
        return str(exc)


# ---- Stripe: arbitrary requests -------------------------------------------------------------

signature_values = st.one_of(
    latin1_text,
    st.builds(lambda t, v: f"t={t},v1={v}", st.integers(-(10**12), 10**12), latin1_text),
    st.builds(
        lambda t, v: f"t={t},v1={v}",
        st.integers(-(10**12), 10**12),
        st.text(st.sampled_from("0123456789abcdef"), min_size=64, max_size=64),
    ),
    st.sampled_from(["", "t=", "v1=", ",", "t=1,v1=", "t=1,t=2,v1=x", "t=" + "9" * 5000]),
)
header_names = st.sampled_from(["Stripe-Signature", "stripe-signature", "STRIPE-SIGNATURE"])


@fuzz(300)
@given(
    body=st.one_of(
        st.binary(max_size=300), any_text.map(lambda text: text.encode(errors="replace"))
    ),
    signature=st.one_of(st.none(), signature_values),
    name=header_names,
    others=st.dictionaries(latin1_text, latin1_text, max_size=3),
)
@example(body=b"{}", signature="t=1,v1=\xe9", name="Stripe-Signature", others={})
def test_an_unsigned_request_is_refused(
    body: bytes, signature: str | None, name: str, others: dict[str, str]
) -> None:
    headers = {k: v for k, v in others.items() if k.lower() != "stripe-signature"}
    if signature is not None:
        headers[name] = signature
    assert isinstance(parse(body, headers), str)


@fuzz(50)
@given(body=st.binary(max_size=100), signature=signature_values, secret=st.sampled_from([None, ""]))
def test_without_a_webhook_secret_everything_is_refused(
    body: bytes, signature: str, secret: str | None
) -> None:
    provider = StripeProvider(api_key="sk_test_fuzz", webhook_secret=secret)
    with pytest.raises(InvalidNotification):
        provider.parse_notification(body, {"Stripe-Signature": signature})


# ---- Stripe: signed events ------------------------------------------------------------------

ids = st.text(min_size=1, max_size=40)


@st.composite
def events(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A Stripe event, and the PaymentIntent it concerns."""
    reference = draw(st.one_of(st.none(), ids))
    shape = draw(st.sampled_from(["intent", "field", "expanded", "none"]))
    extra = draw(st.dictionaries(st.sampled_from(["amount", "status", "x"]), ids, max_size=2))
    if shape == "intent" and reference is not None:
        obj: dict[str, Any] = {**extra, "object": "payment_intent", "id": reference}
    elif shape == "expanded" and reference is not None:
        obj = {**extra, "object": "charge", "payment_intent": {"id": reference}}
    elif reference is not None:
        obj = {**extra, "object": "refund", "payment_intent": reference}
    else:
        obj = {**extra, "object": "charge", "payment_intent": None}
    event = {
        "id": draw(ids),
        "object": "event",
        "type": draw(ids),
        "created": draw(st.integers(0, 2**40)),
        "data": {"object": obj},
    }
    return event, reference


@st.composite
def signature_headers(draw: st.DrawFn, body: str, timestamp: int) -> str:
    """A header carrying the right `v1` signature, perhaps among others, in any order."""
    items = [f"t={timestamp}", f"v1={sign(body, timestamp)}"]
    items += draw(
        st.lists(
            st.one_of(
                st.builds(lambda s: f"v0={s}", st.text(string.hexdigits, max_size=64)),
                st.builds(lambda s: f"v1={s}", st.text(string.hexdigits, max_size=64)),
            ),
            max_size=2,
        )
    )
    return ",".join(draw(st.permutations(items)))


@fuzz(200)
@given(
    event=events(),
    ascii_only=st.booleans(),
    age=st.integers(0, WEBHOOK_TOLERANCE_S - 30),
    name=header_names,
    data=st.data(),
)
def test_a_correctly_signed_event_is_accepted(
    event: tuple[dict[str, Any], str | None],
    ascii_only: bool,
    age: int,
    name: str,
    data: st.DataObject,
) -> None:
    content, reference = event
    body = json.dumps(content, ensure_ascii=ascii_only)
    timestamp = int(time.time()) - age
    header = data.draw(signature_headers(body, timestamp), label="header")
    parsed = parse(body.encode(), {name: header, "Content-Type": "application/json"})
    assert parsed == Notification(content["id"], content["type"], reference)


TAMPERS = (
    "flip a body bit",
    "append to the body",
    "move the timestamp",
    "alter the signature",
    "another secret",
    "only a v0 signature",
    "no timestamp",
    "too old",
)


@fuzz(300)
@given(event=events(), tamper=st.sampled_from(TAMPERS), data=st.data())
def test_a_tampered_or_late_event_is_refused(
    event: tuple[dict[str, Any], str | None], tamper: str, data: st.DataObject
) -> None:
    body = json.dumps(event[0]).encode()
    timestamp = int(time.time())
    signature = sign(body.decode(), timestamp)
    if tamper == "flip a body bit":
        at = data.draw(st.integers(0, len(body) - 1), label="at")
        bit = data.draw(st.integers(0, 7), label="bit")
        body = body[:at] + bytes([body[at] ^ (1 << bit)]) + body[at + 1 :]
    elif tamper == "append to the body":
        body += data.draw(st.sampled_from([b" ", b"\n", b"{}", b"\x00"]), label="tail")
    elif tamper == "move the timestamp":
        timestamp += data.draw(st.integers(-(10**9), 10**9).filter(bool), label="shift")
    elif tamper == "alter the signature":
        at = data.draw(st.integers(0, len(signature) - 1), label="at")
        char = data.draw(st.sampled_from("0123456789abcdefABCDEF"), label="char")
        assume(char != signature[at])
        signature = signature[:at] + char + signature[at + 1 :]
    elif tamper == "another secret":
        other = data.draw(st.text(min_size=1, max_size=40).filter(lambda s: s != SECRET))
        signature = sign(body.decode(), timestamp, other)
    elif tamper == "too old":
        age = data.draw(st.integers(WEBHOOK_TOLERANCE_S + 2, 10**9), label="age")
        timestamp -= age
        signature = sign(body.decode(), timestamp)
    header = f"t={timestamp},v1={signature}"
    if tamper == "only a v0 signature":
        header = f"t={timestamp},v0={signature}"
    elif tamper == "no timestamp":
        header = f"v1={signature}"
    assert isinstance(parse(body, {"Stripe-Signature": header}), str)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "object", "type", "data", "x"]), children, max_size=4
        )
        | st.builds(
            lambda obj: {"object": "event", "id": "evt_1", "type": "t", "data": obj}, children
        )
    ),
    max_leaves=10,
)


def _is_event(value: object) -> bool:
    """What the module reads as a Stripe event: an id, a type and a non-empty object."""
    if not isinstance(value, dict) or value.get("object") != "event":
        return False
    data = value.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return (
        isinstance(value.get("id"), str)
        and bool(value["id"])
        and isinstance(value.get("type"), str)
        and bool(value["type"])
        and isinstance(obj, dict)
        and bool(obj)
    )


@fuzz(200)
@given(value=json_values)
@example(value=[[[[[]]]]])
def test_a_signed_body_that_is_not_an_event_is_refused(value: object) -> None:
    body = json.dumps(value)
    timestamp = int(time.time())
    parsed = parse(body.encode(), {"Stripe-Signature": f"t={timestamp},v1={sign(body, timestamp)}"})
    assert isinstance(parsed, Notification) == _is_event(value), parsed


@pytest.mark.parametrize(
    "body",
    [
        "[" * 30_000 + "]" * 30_000,  # nested past the JSON decoder's recursion limit
        '{"a":' * 30_000 + "1" + "}" * 30_000,
        "1" * 5000,  # past Python's integer digits limit
        "not json",
        '"event"',
        "\ufeff{}",
    ],
)
def test_a_signed_body_the_json_decoder_chokes_on_is_refused(body: str) -> None:
    timestamp = int(time.time())
    parsed = parse(body.encode(), {"Stripe-Signature": f"t={timestamp},v1={sign(body, timestamp)}"})
    assert isinstance(parsed, str)


# ---- checkout tokens ------------------------------------------------------------------------

TOKEN_SECRET = "test-secret-key-" + "s" * 32
payment_ids = st.from_regex(ID_PATTERN.pattern.replace("[a-z]{2,4}", "pay"), fullmatch=True)


@fuzz(300)
@given(
    token=st.one_of(
        any_text,
        st.text(string.ascii_letters + string.digits + "-_.", max_size=120),
        # a URL-safe token with a lone surrogate or another non-ASCII character in it
        st.text(
            st.one_of(
                st.sampled_from(string.ascii_letters + "._"),
                st.characters(min_codepoint=128, exclude_categories=()),
            ),
            min_size=1,
            max_size=60,
        ),
    )
)
@example(token="\ud800")
@example(token="x" * (MAX_TOKEN_CHARS + 1))
def test_a_random_token_resolves_to_nothing(token: str) -> None:
    assert read_token(TOKEN_SECRET, token) is None


URL_SAFE = string.ascii_letters + string.digits + "-_."


@fuzz(300)
@given(payment=payment_ids, other=payment_ids, data=st.data())
def test_a_tampered_token_resolves_to_nothing(
    payment: str, other: str, data: st.DataObject
) -> None:
    token = make_token(TOKEN_SECRET, payment)
    assert read_token(TOKEN_SECRET, token) == payment
    tamper = data.draw(
        st.sampled_from(["change", "drop", "insert", "swap payload", "other key", "case"])
    )
    dot = token.rindex(".")  # between the payload and the signature
    ends = [0, dot - 1, dot + 1, len(token) - 1]  # where base64 has spare bits
    at = data.draw(st.one_of(st.sampled_from(ends), st.integers(0, len(token) - 1)), label="at")
    if tamper == "change":  # every other character there: none may name a payment
        for char in URL_SAFE.replace(token[at], ""):
            altered = token[:at] + char + token[at + 1 :]
            assert read_token(TOKEN_SECRET, altered) is None, (token, altered)
        return
    if tamper == "drop":
        altered = token[:at] + token[at + 1 :]
    elif tamper == "insert":
        altered = token[:at] + data.draw(st.sampled_from(URL_SAFE)) + token[at:]
    elif tamper == "swap payload":
        assume(other != payment)
        altered = make_token(TOKEN_SECRET, other).split(".")[0] + "." + token.split(".")[1]
    elif tamper == "other key":
        altered = make_token(TOKEN_SECRET[::-1], payment)
    else:
        altered = token.swapcase()
    assume(altered != token)
    assert read_token(TOKEN_SECRET, altered) is None, (tamper, token, altered)


# ---- the sandbox's 3-D Secure callback ------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxProvider, str]]:
    """A sandbox acquirer with one pending challenge, and that challenge's reference."""
    store = SandboxStore(Path(tmp_path_factory.mktemp("sandbox")) / "sandbox.db")
    provider = SandboxProvider(store, clock=lambda: dt.datetime.now(dt.UTC))
    result = provider.authorize(
        AuthorizeRequest(
            idempotency_key="att_fuzz",
            amount_minor=12_500,
            currency="OMR",
            method="card",
            capture=True,
            description="fuzz",
            card=Card(number="4000000000003220", exp_month=12, exp_year=2040, cvc="123"),
            return_url="http://gateway.test/back",
            payer_present=True,
        )
    )
    assert result.outcome is Outcome.REDIRECT and result.reference is not None
    yield provider, result.reference


# What a path segment can carry to the simulator: Werkzeug decodes it with replacement, so
# never a surrogate.
references = st.one_of(st.text(max_size=120), st.from_regex(r"sbx_ch_[0-9a-f]{24}", fullmatch=True))


@fuzz(150)
@given(reference=references)
@example(reference="sbx_ch_' OR 1=1 --")
@example(reference="%")
def test_an_unknown_challenge_resolves_to_nothing_and_changes_nothing(
    sandbox: tuple[SandboxProvider, str], reference: str
) -> None:
    provider, pending = sandbox
    assume(reference[:100] != pending)
    assert provider.challenge(reference[:100]) is None
    assert provider.complete_challenge(reference[:100], succeeded=True) is None
    found = provider.challenge(pending)
    assert found is not None and found.state == "pending"
