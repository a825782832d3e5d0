"""Importing an acquirer's settlement file: each use case one function over the `Gateway`.

An import is idempotent twice over: a file already imported for the acquirer (the same SHA-256
digest) answers the first import and writes nothing, and a line already imported from another
file (the same line key) is not stored or posted again. A file is read once into a spool while
its digest is computed, and parsed through once to validate it before anything is written
(a malformed file never takes the write lock), its lines written aside on disk as they pass.
Then one write transaction loads them into a staging table, judges them all in one query
(`payments.settlement.matching`), and books them as batches, one ledger transaction each, the
lines stored beneath (`payments.settlement.batches`).

Imports of one acquirer's files run one at a time: on PostgreSQL an advisory lock per
acquirer, taken first in the transaction, makes a second import wait until the first has
committed and then see its lines, so two files settling the same payment never both settle it;
SQLite's `BEGIN IMMEDIATE` serialises every write already. Imports are rare batch jobs, so
serialising them per acquirer costs nothing.

The same transaction writes a `settlement.imported` event for finance keys' endpoints, in the
acquirer's mode, so a finance system hears of the file exactly when its lines are committed.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

import ledger
from config.tolerance import EXACT
from payments import clock, db, outbox
from payments.errors import NotFound, PermissionDenied, ValidationFailed
from payments.gateway import Gateway
from payments.ids import is_id, new_id
from payments.models import Settlement
from payments.principal import Principal
from payments.service.payments import Page, paginate
from payments.settlement import batches, disputes, matching, staging
from payments.settlement.formats import parser_for
from payments.settlement.parsers import MalformedFile, SettlementParser
from payments.settlement.statuses import LINE_STATUSES
from providers.sandbox import SandboxProvider

STATUSES = LINE_STATUSES
PROGRESS_LINES = 5000  # validated lines between two reports of progress
READ_CHUNK_BYTES = 1024 * 1024
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024
INVALID_FILE = "settlement_file_invalid"


@dataclasses.dataclass(frozen=True)
class ImportResult:
    settlement: Settlement
    created: bool  # False: the same file was imported before, and this is that import


# Told, after each chunk, how many of the file's lines are stored and what they matched so far.
Progress = Callable[[int, int, collections.Counter[str]], None]


def import_file(
    gw: Gateway,
    provider: str,
    stream: IO[bytes],
    *,
    filename: str,
    imported_by: str,
    progress: Progress | None = None,
) -> ImportResult:
    """Import `provider`'s settlement file: store its lines, match each to the gateway's
    payments and refunds, and post the file's settlement batches.

    `progress(done, total, summary)` hears how many lines are validated as the file is read,
    and at the end what they matched."""
    parser = _parser(gw, provider)
    limit = gw.settings.max_settlement_file_bytes
    livemode = gw.providers.get(provider).capabilities.livemode
    with (
        tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as spool,
        tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n") as staged,
    ):
        digest = _spool(stream, spool, limit)
        with gw.db.read() as session:
            first = _imported(session, provider, digest)
        if first is not None:
            return ImportResult(first, created=False)
        spool.seek(0)
        total = 0
        with _refused_as_invalid():  # the whole file, before a row is written
            for line in parser.parse(spool):  # type: ignore[arg-type]
                staged.write(staging.row(line))
                total += 1
                if progress is not None and total % PROGRESS_LINES == 0:
                    progress(total, total, collections.Counter())
        staged.seek(0)
        with gw.db.transaction() as session:
            _lock_provider(session, provider)
            db.batch_job(session)
            first = _imported(session, provider, digest)  # a racing import of the same file
            if first is not None:
                return ImportResult(first, created=False)
            now = clock.now()
            settlement = Settlement(
                id=new_id("stl"),
                provider=provider,
                digest=digest,
                filename=filename[:255],
                line_count=total,
                summary={},
                imported_by=imported_by,
                created_at=now,
            )
            session.add(settlement)
            session.flush()
            staging.load(session, staged)
            summary = matching.judge(
                session,
                provider,
                gw.settings.settlement_tolerances.get(provider, EXACT),
                gw.settings.settlement_lag_days,
            )
            batches.book(session, settlement, livemode=livemode, now=now)
            disputes.apply(session, settlement, now)
            staging.drop(session, matching.TABLE, staging.TABLE)
            settlement.summary = {status.value: summary[status] for status in STATUSES}
            event = settlement_json(settlement) | {
                "livemode": livemode,
                "created_at": clock.rfc3339(now),
            }
            outbox.finance_event(
                session,
                "settlement.imported",
                object_id=settlement.id,
                livemode=livemode,
                data=event,
            )
    if progress is not None:
        progress(total, total, summary)
    # A file can double the lines table: without fresh statistics, PostgreSQL plans the next
    # reconciliation as if it were still empty (nested loops over every line).
    gw.db.refresh_statistics(
        "settlement_lines", "settlement_batches", "ledger_transactions", "ledger_postings"
    )
    _seal_ledger(gw)
    return ImportResult(settlement, created=True)


def _seal_ledger(gw: Gateway) -> None:
    """Chain the settlement transactions the import queued, a bounded batch per transaction
    (the worker would, later; a finance officer verifying the ledger next should not wait)."""
    while True:
        with gw.db.transaction() as session:
            sealed = ledger.seal(session)
        if sealed < ledger.SEAL_LIMIT:
            return


@contextlib.contextmanager
def _refused_as_invalid() -> Iterator[None]:
    try:
        yield
    except MalformedFile as exc:
        raise ValidationFailed(
            f"the settlement file is malformed: {exc}",
            code=INVALID_FILE,
            param="file",
            details={"file": [str(exc)]},
        ) from None


def _parser(gw: Gateway, provider: str) -> SettlementParser:
    file_format = provider
    if provider in gw.providers and isinstance(gw.providers.get(provider), SandboxProvider):
        file_format = "sandbox"
    parser = parser_for(file_format, max_file_bytes=gw.settings.max_settlement_file_bytes)
    if parser is None:
        raise ValidationFailed(
            f"no settlement file format is known for provider {provider[:40]!r}",
            param="provider",
        )
    return parser


def _spool(stream: IO[bytes], spool: IO[bytes], limit: int) -> str:
    """Copy the upload aside, at most `limit` bytes, and return its SHA-256 hex digest."""
    digest = hashlib.sha256()
    total = 0
    while True:  # bounded by `limit`
        block = stream.read(READ_CHUNK_BYTES)
        if not block:
            break
        total += len(block)
        if total > limit:
            raise ValidationFailed(
                f"the settlement file is over the limit of {limit} bytes",
                code=INVALID_FILE,
                param="file",
            )
        digest.update(block)
        spool.write(block)
    return digest.hexdigest()


def _imported(session: Session, provider: str, digest: str) -> Settlement | None:
    return session.execute(
        select(Settlement).where(Settlement.provider == provider, Settlement.digest == digest)
    ).scalar_one_or_none()


def _lock_provider(session: Session, provider: str) -> None:
    if session.get_bind().dialect.name != "postgresql":
        return  # the write transaction holds SQLite's one write lock already
    key = int.from_bytes(hashlib.sha256(f"settlement:{provider}".encode()).digest()[:8], "big")
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key - 2**63})


def settlement_json(settlement: Settlement) -> dict[str, Any]:
    return {
        "id": settlement.id,
        "object": "settlement",
        "provider": settlement.provider,
        "filename": settlement.filename,
        "lines": settlement.line_count,
        "summary": dict(settlement.summary),
        "created_at": settlement.created_at,
    }


def _finance_only(principal: Principal) -> None:
    if not principal.is_finance:
        raise PermissionDenied("settlements are for finance keys")


def import_for(
    gw: Gateway, principal: Principal, provider: str, stream: IO[bytes], filename: str
) -> ImportResult:
    """`import_file` on behalf of an API key, which must be a finance key."""
    _finance_only(principal)
    return import_file(gw, provider, stream, filename=filename, imported_by=principal.key_id)


def list_settlements(
    gw: Gateway, principal: Principal, page: Page
) -> tuple[list[Settlement], bool]:
    _finance_only(principal)
    with gw.db.read() as session:
        return paginate(session, select(Settlement), Settlement, page)


def get_settlement(gw: Gateway, principal: Principal, settlement_id: str) -> Settlement:
    _finance_only(principal)
    found = None
    if is_id(settlement_id, "stl"):
        with gw.db.read() as session:
            found = session.get(Settlement, settlement_id)
    if found is None:
        raise NotFound(f"no settlement {settlement_id[:40]!r}", param="id")
    return found
