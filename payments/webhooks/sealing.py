"""Webhook secrets at rest: AES-GCM under a key derived from `GATEWAY_ENCRYPTION_KEY`, each
ciphertext bound to the endpoint and purpose it belongs to."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
NONCE_BYTES = 12
KEY_INFO = b"gcc-gateway webhook secrets v1"


class SealError(Exception):
    """A sealed value could not be opened: wrong key, or the stored value was altered."""


class SecretBox:
    """Seal and open small secrets; the `context` (endpoint id and purpose) is authenticated."""

    def __init__(self, encryption_key: str) -> None:
        if not encryption_key:
            raise ValueError("an encryption key is required")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_INFO).derive(
            encryption_key.encode()
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, context.encode())
        return f"{VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, value: str, *, context: str) -> bytes:
        version, _, payload = value.partition(".")
        if version != VERSION:
            raise SealError(f"unknown sealing version {version!r}")
        try:
            raw = base64.urlsafe_b64decode(payload)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealError("the sealed secret does not open with this key") from exc
