"""Hosted-page links: `next_url` and its signed, unguessable token that names one payment,
made by the payment service and read by the page."""

from __future__ import annotations

import functools

from itsdangerous import BadSignature, URLSafeSerializer

from payments.ids import is_id

_SALT = "checkout-page"
MAX_TOKEN_CHARS = 200


@functools.lru_cache(maxsize=4)  # one secret key in a process, a few in the tests
def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SALT)


def make_token(secret_key: str, payment_id: str) -> str:
    """A token for `payment_id`; the same payment always gets the same token."""
    return str(_serializer(secret_key).dumps(payment_id))


def read_token(secret_key: str, token: str, previous_key: str | None = None) -> str | None:
    """The payment id a token names, or None when it is forged, altered or not a payment's.
    A token signed with the secret key replaced at the last rotation (`previous_key`) still
    names its payment: links handed out before the rotation keep working."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None
    for key in (secret_key, previous_key) if previous_key else (secret_key,):
        try:
            payment_id = _serializer(key).loads(token)
        except BadSignature:
            continue
        if not isinstance(payment_id, str) or not is_id(payment_id, "pay"):
            return None
        # Base64 leaves spare bits in a last character: a token that differs from the
        # payment's one token only there still verifies. Only the token itself names it.
        return payment_id if token == make_token(key, payment_id) else None
    return None


def page_url(public_url: str, secret_key: str, payment_id: str) -> str:
    """The hosted page of a payment: its `next_url`."""
    return f"{public_url}/pay/{make_token(secret_key, payment_id)}"
