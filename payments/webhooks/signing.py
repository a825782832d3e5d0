"""Standard Webhooks signatures: `v1` (HMAC-SHA256 with the endpoint's `whsec_` secret) and
`v1a` (Ed25519), each over `{webhook-id}.{webhook-timestamp}.{body}`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_PREFIX = "whsec_"  # noqa: S105 - the public prefix of Standard Webhooks secrets
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32


def new_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_`."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def new_signing_key() -> bytes:
    """A fresh Ed25519 private key, as its 32 raw bytes."""
    return secrets.token_bytes(32)


def public_key(private_raw: bytes) -> str:
    """`whpk_` and the base64 of the raw Ed25519 public key."""
    public = Ed25519PrivateKey.from_private_bytes(private_raw).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(public).decode()


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def v1(key: bytes, content: bytes) -> str:
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def v1a(private_raw: bytes, content: bytes) -> str:
    signature = Ed25519PrivateKey.from_private_bytes(private_raw).sign(content)
    return "v1a," + base64.b64encode(signature).decode()


def signature_header(
    msg_id: str,
    timestamp: int,
    body: bytes,
    *,
    hmac_keys: Sequence[bytes],
    signing_keys: Sequence[bytes] = (),
) -> str:
    """The `webhook-signature` value: every signature, space-separated, newest key first."""
    content = signed_content(msg_id, timestamp, body)
    parts = [v1(key, content) for key in hmac_keys]
    parts += [v1a(key, content) for key in signing_keys]
    return " ".join(parts)
