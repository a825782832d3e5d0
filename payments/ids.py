"""Prefixed, URL-safe identifiers that sort by creation time."""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
# RFC 4648 base32's digits, written as Crockford's.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
_BITS = 130  # 26 base32 digits: 50 bits of milliseconds, then 80 of randomness
_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)


def _encode(value: int) -> str:
    """`value` (below 2**130) as 26 Crockford base32 digits, most significant first: the low
    26 digits of its 20-byte (32-digit) RFC 4648 form."""
    digits = base64.b32encode(value.to_bytes(20, "big"))[32 - _BITS // 5 :]
    return digits.translate(_CROCKFORD).decode("ascii")


def new_id(prefix: str) -> str:
    """`prefix_` + 10 chars of milliseconds + 16 chars of randomness, monotonic per process."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_ms, last_rand = _last
        if millis <= last_ms:
            millis, rand = last_ms, last_rand + 1
        else:
            rand = secrets.randbits(80) >> 1  # leave room to increment within one millisecond
        _last = (millis, rand)
    return f"{prefix}_{_encode(millis << 80 | rand)}"


ID_PATTERN = re.compile(r"[a-z]{2,4}_[0-9a-z]{26}")


def is_id(value: str, prefix: str | None = None) -> bool:
    """Whether `value` has the shape of a gateway id (of `prefix`, if given)."""
    if ID_PATTERN.fullmatch(value) is None:
        return False
    return prefix is None or value.startswith(f"{prefix}_")
