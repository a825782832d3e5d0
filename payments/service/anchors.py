"""The ledger's anchor log: chain heads appended to a file kept apart from the database, one
JSON object a line, and read back so that `ledger verify` can hold the chain to them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ledger
from payments import clock
from payments.gateway import Gateway

FILE_NAME = "ledger-anchors.jsonl"
HEX = set("0123456789abcdef")


class AnchorLogError(Exception):
    """The anchor log cannot be read: it names the file and the line."""


def default_path(gw: Gateway) -> Path:
    return gw.settings.var_dir / FILE_NAME


def anchor(gw: Gateway, path: Path) -> ledger.Anchor:
    """Append the chain's current head to `path`, on disk before this returns."""
    with gw.db.read() as session:
        head = ledger.head(session)
    line = json.dumps({"seq": head.seq, "hash": head.hash, "anchored_at": clock.now().isoformat()})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())
    return head


def _parse(line: str) -> ledger.Anchor | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    seq, digest = record.get("seq"), record.get("hash")
    if type(seq) is not int or seq < 0:
        return None
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= HEX:
        return None
    return ledger.Anchor(seq, digest)


def read(path: Path) -> list[ledger.Anchor]:
    """Every anchor in the log; a line that is not one is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnchorLogError(f"cannot read the anchor log {path}: {exc}") from exc
    anchors = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _parse(line)
        if parsed is None:
            raise AnchorLogError(
                f"line {number} of {path} is not an anchor "
                '({"seq": <link number>, "hash": <64 hex digits>, ...})'
            )
        anchors.append(parsed)
    return anchors
