"""The canonical encoding of a journal transaction and the hashes computed over it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

# (account code, currency, direction, amount in minor units)
PostingKey = tuple[str, str, str, int]


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_hash(
    *,
    external_id: str,
    description: str,
    effective_at: dt.datetime,
    metadata: dict[str, Any],
    reverses: str | None,
    postings: Iterable[PostingKey],
) -> str:
    """SHA-256 over sorted-key compact JSON of the transaction and its sorted postings."""
    document = {
        "description": description,
        "effective_at": timestamp(effective_at),
        "external_id": external_id,
        "metadata": metadata,
        "postings": sorted([list(p) for p in postings]),
        "reverses": reverses,
    }
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def link_hash(previous: str, content: str) -> str:
    """The chain: each link hashes the previous link with one transaction's content hash."""
    return hashlib.sha256(f"{previous}{content}".encode()).hexdigest()
