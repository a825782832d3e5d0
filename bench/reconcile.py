"""Settlement import and reconciliation of N captures on PostgreSQL, beside pandas as yardstick.

Run by hand: `.venv/bin/python -m bench.reconcile [--n 100000]` (with the `bench` extra
installed). It drops and recreates the database `bench_reconcile` on 127.0.0.1:5432 and writes
N sandbox captures and a few % refunds straight into its tables (COPY, not the API), each with
its ledger capture or refund transaction and postings, hashed and chained as the ledger seals
them, and a sandbox settlement file for them with about 1% of each break: amount_mismatch,
currency_mismatch, missing_in_gateway, missing_in_settlement and duplicate (today's captures,
and a few of yesterday's, are pending_settlement). Then, each in a spawned child process so
that each side's peak RSS is its own and the generator's memory counts for neither:

- the gateway imports the file (`payments.settlement.imports.import_file`) and writes the
  reconciliation report as CSV (`payments.settlement.reports.write_report`);
- pandas reads the same file and the same captures and refunds from the same database, merges
  them on provider reference and type, and classifies every item by the engine's rules.

It checks that both give every (provider reference, type) the same statuses and that the book
passes what `gateway ledger verify` checks after the run, and prints seconds and peak RSS per
side and phase, the JSON report (and the XLSX one up to 100,000 captures) as extra rows, and
the verdicts on the targets: the gateway's import + reconcile within twice pandas's time, and
under 300 MB peak RSS at a million. `--py-spy DIR` records the gateway's child with py-spy
(idle time included, collapsed stacks). The database is kept for inspection unless `--drop` is
given. Every loop is bounded by N, at most 2,000,000.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import multiprocessing
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DBNAME = "bench_reconcile"
LIBPQ = f"postgresql://postgres@127.0.0.1:5432/{DBNAME}"
URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DBNAME}"
PROVIDER = "sandbox"
MAX_N = 2_000_000
DAYS = 60  # the report's period: this many days, up to today
BREAK_RATE = 0.01  # of each kind
REFUND_RATE = 0.03
LATE_RATE = 0.05  # of yesterday's captures and refunds, not in the file yet
XLSX_MAX_N = 100_000
TARGET_N = 1_000_000
TARGET_RSS_MB = 300.0
TARGET_RATIO = 2.0  # the gateway's import + reconcile, at most this many times pandas's
COPY_ROWS = 50_000
# id, state, currency, fee bearer
AGENCIES = (
    ("om-moh", "OM", "OMR", None),
    ("om-rop", "OM", "OMR", "agency"),
    ("kw-moi", "KW", "KWD", "gateway"),
    ("sa-moj", "SA", "SAR", "agency"),
)
# The currency a currency_mismatch line states instead of the gateway's.
OTHER_CURRENCY = {"OMR": "KWD", "KWD": "BHD", "SAR": "AED"}
# Import statuses of a line that pairs with the payment or refund it names (as the engine's).
PAIRING = ("matched", "amount_mismatch", "currency_mismatch")


def _peak_mb() -> float:
    """This process's peak resident set so far: VmHWM, which starts afresh in a spawned child
    (ru_maxrss would carry over the parent's, generator included, across fork and exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    peak_mb: float  # the process's peak so far, at the end of the phase


@dataclasses.dataclass(frozen=True)
class Side:
    """What one child process did: its phases in order, and what it counted."""

    phases: list[Phase]
    info: dict[str, Any]

    def seconds(self, *names: str) -> float:
        return sum(phase.seconds for phase in self.phases if phase.name in names)

    @property
    def peak_mb(self) -> float:
        return max(phase.peak_mb for phase in self.phases)


@dataclasses.dataclass(frozen=True)
class Generated:
    date_from: dt.date
    date_to: dt.date
    captures: int
    refunds: int
    lines: int
    intended: collections.Counter[str]  # status -> items the data was made to give
    seconds: float


# -- the data ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Item:
    """A capture or refund as the settlement file sees it."""

    at: dt.datetime
    type: str
    reference: str
    currency: str
    gross: int  # signed as settled: a refund's is negative


def _wrong(gross: int, delta: int) -> int:
    """Another amount of the same sign, `delta` further from zero."""
    return gross + delta if gross > 0 else gross - delta


class _File:
    """The settlement file's lines, sorted by date and then capture time when written."""

    def __init__(self) -> None:
        self.lines: list[tuple[dt.date, dt.datetime, int, str, str, str, int]] = []
        self.intended: collections.Counter[str] = collections.Counter()

    def add(self, date: dt.date, item: _Item, gross: int, currency: str | None = None) -> None:
        seq = len(self.lines)
        line = (date, item.at, seq, item.reference, item.type, currency or item.currency, gross)
        self.lines.append(line)

    def write(self, path: Path) -> int:
        from payments.money import format_major
        from payments.settlement.sandbox_export import sandbox_fee
        from payments.settlement.sandbox_file import HEADER

        self.lines.sort()
        with path.open("w", encoding="utf-8", newline="") as out:
            out.write(HEADER + "\n")
            for date, _at, _seq, reference, kind, currency, gross in self.lines:
                fee = sandbox_fee(gross, currency) if kind == "payment" else 0
                out.write(
                    f"{date.isoformat()},{reference},{kind},{currency},"
                    f"{format_major(gross, currency)},{format_major(fee, currency)},"
                    f"{format_major(gross - fee, currency)}\n"
                )
        return len(self.lines)


def _settle(rng: random.Random, item: _Item, today: dt.date, file: _File) -> None:
    """Put `item`'s line(s) in the file, or leave it out, with about 1% of each break."""
    day = item.at.date()
    if day == today or (day == today - dt.timedelta(days=1) and rng.random() < LATE_RATE):
        file.intended["pending_settlement"] += 1
        return
    date = day + dt.timedelta(days=1)
    draw = rng.random() / BREAK_RATE if day <= today - dt.timedelta(days=3) else 99.0
    if draw < 1:
        file.intended["missing_in_settlement"] += 1
    elif draw < 2:
        file.add(date, item, _wrong(item.gross, rng.randint(1, 999)))
        file.intended["amount_mismatch"] += 1
    elif draw < 3:
        file.add(date, item, item.gross, OTHER_CURRENCY[item.currency])
        file.intended["currency_mismatch"] += 1
    elif draw < 4:
        # The same payment or refund settled twice, by lines of different line keys.
        flavour = rng.randrange(3)
        delta = rng.randint(1, 999)
        if flavour == 0:  # stated again the next day: matched, then duplicate
            file.add(date, item, item.gross)
            file.add(date + dt.timedelta(days=1), item, item.gross)
            file.intended.update(("matched", "duplicate"))
        elif flavour == 1:  # a wrong amount, then the right one: duplicate, then matched
            file.add(date, item, _wrong(item.gross, delta))
            file.add(date, item, item.gross)
            file.intended.update(("duplicate", "matched"))
        else:  # two wrong amounts: the first pairs, the second is a duplicate
            file.add(date, item, _wrong(item.gross, delta))
            file.add(date, item, _wrong(item.gross, delta + 1))
            file.intended.update(("amount_mismatch", "duplicate"))
    else:
        file.add(date, item, item.gross)
        file.intended["matched"] += 1


def _recreate_database() -> None:
    from payments.migrate import upgrade

    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DBNAME}"')
    upgrade(URL)


STAGING = """
CREATE UNLOGGED TABLE bench_captures (
    n integer, id text, agency_id text, livemode boolean, currency text, amount bigint,
    provider_reference text, at timestamptz, clearing text, payable text);
CREATE UNLOGGED TABLE bench_refunds (
    id text, payment_id text, agency_id text, livemode boolean, currency text, amount bigint,
    provider_reference text, at timestamptz, clearing text, payable text);
"""

# From the staging tables into the gateway's: payments, refunds, and the ledger's capture and
# refund transactions with their postings, and the accounts' totals that those add up to.
LOAD = (
    """
INSERT INTO payments (id, agency_id, livemode, status, amount_minor, currency,
    amount_captured_minor, amount_refunded_minor, reference, description, language,
    capture_method, return_url, next_url, metadata, payment_method, provider,
    provider_reference, created_at, updated_at, expires_at)
SELECT c.id, c.agency_id, c.livemode, 'succeeded', c.amount, c.currency, c.amount,
    coalesce(r.amount, 0), 'B-' || c.n, 'bench capture', 'en', 'automatic',
    'https://agency.example/done', 'https://gateway.test/pay/' || c.id, '{}',
    '{"type": "card"}', 'sandbox', c.provider_reference, c.at - interval '1 minute',
    coalesce(r.at, c.at), c.at + interval '89 minutes'
FROM bench_captures c LEFT JOIN bench_refunds r ON r.payment_id = c.id
""",
    """
INSERT INTO refunds (id, payment_id, agency_id, livemode, amount_minor, currency, status,
    reason, provider, provider_reference, checks, created_at, updated_at)
SELECT id, payment_id, agency_id, livemode, amount, currency, 'succeeded', 'bench', 'sandbox',
    provider_reference, 0, at, at
FROM bench_refunds
""",
    """
INSERT INTO ledger_accounts (code, currency, kind, min_balance_minor, debits_minor,
    credits_minor, created_at)
SELECT code, currency, kind, NULL, sum(debit), sum(credit), min(at)
FROM (
    SELECT clearing AS code, currency, 'asset' AS kind, amount AS debit, 0 AS credit, at
    FROM bench_captures
    UNION ALL SELECT payable, currency, 'liability', 0, amount, at FROM bench_captures
    UNION ALL SELECT payable, currency, 'liability', amount, 0, at FROM bench_refunds
    UNION ALL SELECT clearing, currency, 'asset', 0, amount, at FROM bench_refunds
) AS legs GROUP BY code, currency, kind
""",
    """
INSERT INTO ledger_postings (transaction_id, account_id, direction, amount_minor)
SELECT t.id, a.id, leg.direction, m.amount
FROM (
    SELECT 'capture:' || id AS external_id, currency, amount, clearing AS debited,
        payable AS credited
    FROM bench_captures
    UNION ALL
    SELECT 'refund:' || id, currency, amount, payable, clearing FROM bench_refunds
) AS m
JOIN ledger_transactions t ON t.external_id = m.external_id
CROSS JOIN LATERAL (VALUES (m.debited, 'debit'), (m.credited, 'credit')) AS leg(code, direction)
JOIN ledger_accounts a ON a.code = leg.code AND a.currency = m.currency
ORDER BY t.id, leg.direction DESC
""",
    "DROP TABLE bench_captures, bench_refunds",
    "SELECT setval('ledger_transactions_id_seq', (SELECT max(id) FROM ledger_transactions))",
)


def _journal(
    captures: list[str], refunds: list[str]
) -> tuple[Iterator[str], Iterator[str], tuple[int, str]]:
    """The captures' and refunds' ledger transactions as the gateway would have posted and
    sealed them: each with its content hash, chained in order of time, so that `gateway ledger
    verify` holds the generated book as it holds a real one. Returns the journal's and the
    chain's COPY rows and the chain's head."""
    from ledger.encoding import content_hash, link_hash, timestamp
    from ledger.models import GENESIS_HASH

    entries: list[tuple[str, str, str, str, str, str, int]] = []
    for rows, refund in ((captures, False), (refunds, True)):
        for row in rows:
            fields = row.rstrip("\n").split("\t")
            currency, text, at, clearing, payable = fields[4], fields[5], *fields[7:10]
            # A capture's id is its row's second field, a refund's its first.
            made = fields[0] if refund else fields[1]
            if refund:
                leg = (at, f"refund:{made}", f"refund {made}", payable, clearing)
            else:
                leg = (at, f"capture:{made}", f"capture of {made}", clearing, payable)
            entries.append((*leg, currency, int(text)))
    entries.sort(key=lambda entry: (dt.datetime.fromisoformat(entry[0]), entry[1]))
    journal: list[str] = []
    chain: list[str] = []
    link = GENESIS_HASH
    for seq, (at, external_id, description, debited, credited, currency, amount) in enumerate(
        entries, start=1
    ):
        moment = dt.datetime.fromisoformat(at)
        digest = content_hash(
            external_id=external_id,
            description=description,
            effective_at=moment,
            metadata={},
            reverses=None,
            postings=[
                (debited, currency, "debit", amount),
                (credited, currency, "credit", amount),
            ],
        )
        link = link_hash(link, digest)
        stamp = timestamp(moment)
        journal.append(f"{seq}\t{external_id}\t{description}\t{stamp}\t{stamp}\t{{}}\t{digest}\n")
        chain.append(f"{seq}\t{seq}\t{link}\n")
    return iter(journal), iter(chain), (len(entries), link)


def _copy(conn: psycopg.Connection[Any], table: str, rows: Iterator[str]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
        block: list[str] = []
        for row in rows:
            block.append(row)
            if len(block) >= COPY_ROWS:
                copy.write("".join(block))
                block = []
        if block:
            copy.write("".join(block))


def generate(n: int, csv_path: Path, seed: int) -> Generated:
    """A fresh database with `n` captures, their refunds and ledger transactions, and the
    settlement file for them at `csv_path`."""
    from payments.ids import new_id
    from payments.postings import CLEARING, PAYABLE, account_code

    started = time.perf_counter()
    _recreate_database()
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    today = now.date()
    date_from = today - dt.timedelta(days=DAYS - 1)
    start = dt.datetime.combine(date_from, dt.time(), tzinfo=dt.UTC)
    span = (now - start).total_seconds() - 60
    offsets = sorted(rng.random() * span for _ in range(n))
    file = _File()
    refunds: list[str] = []
    captures: list[str] = []
    codes = {
        (agency, live): (
            account_code(CLEARING[0], livemode=live, provider=PROVIDER),
            account_code(PAYABLE[0], livemode=live, agency=agency),
        )
        for agency, *_ in AGENCIES
        for live in (True, False)
    }
    for number, offset in enumerate(offsets):
        agency, _state, currency, _bearer = AGENCIES[rng.randrange(len(AGENCIES))]
        live = rng.random() < 0.5
        clearing, payable = codes[(agency, live)]
        payment_id = new_id("pay")
        amount = rng.randint(100, 2_000_000)
        at = start + dt.timedelta(seconds=offset)
        capture = _Item(at, "payment", f"sbx_ch_{rng.getrandbits(96):024x}", currency, amount)
        captures.append(
            f"{number}\t{payment_id}\t{agency}\t{live}\t{currency}\t{amount}\t"
            f"{capture.reference}\t{at.isoformat()}\t{clearing}\t{payable}\n"
        )
        _settle(rng, capture, today, file)
        if rng.random() < REFUND_RATE:
            refunded = rng.randint(1, amount)
            moment = min(at + dt.timedelta(seconds=rng.uniform(600, 5 * 86400)), now)
            reference = f"sbx_re_{rng.getrandbits(96):024x}"
            refund = _Item(moment, "refund", reference, currency, -refunded)
            refunds.append(
                f"{new_id('re')}\t{payment_id}\t{agency}\t{live}\t{currency}\t{refunded}\t"
                f"{refund.reference}\t{moment.isoformat()}\t{clearing}\t{payable}\n"
            )
            _settle(rng, refund, today, file)
    # Lines for references the gateway never saw, dated anywhere in the period.
    for _ in range(round((n + len(refunds)) * BREAK_RATE)):
        kind = "refund" if rng.random() < 0.2 else "payment"
        currency = AGENCIES[rng.randrange(len(AGENCIES))][2]
        amount = rng.randint(100, 2_000_000)
        date = date_from + dt.timedelta(days=rng.randint(1, DAYS - 1))
        at = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC) - dt.timedelta(seconds=1)
        prefix = "sbx_re_" if kind == "refund" else "sbx_ch_"
        ghost = _Item(at, kind, f"{prefix}{rng.getrandbits(96):024x}", currency, 0)
        file.add(date, ghost, amount if kind == "payment" else -amount)
        file.intended["missing_in_gateway"] += 1
    lines = file.write(csv_path)

    with psycopg.connect(LIBPQ) as conn:
        for agency, state, currency, bearer in AGENCIES:
            conn.execute(
                "INSERT INTO agencies (id, name, name_ar, state, currencies, fee_bearer,"
                " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (agency, f"Agency {agency}", "جهة", state, f'["{currency}"]', bearer, start),
            )
        conn.execute(STAGING)
        _copy(conn, "bench_captures", iter(captures))
        _copy(conn, "bench_refunds", iter(refunds))
        journal, chain, (seq, link) = _journal(captures, refunds)
        columns = "id, external_id, description, effective_at, created_at, metadata, content_hash"
        _copy(conn, f"ledger_transactions ({columns})", journal)
        _copy(conn, "ledger_chain (seq, transaction_id, hash)", chain)
        conn.execute("UPDATE ledger_chain_head SET seq = %s, hash = %s WHERE id = 1", (seq, link))
        for statement in LOAD:
            conn.execute(statement)
    with psycopg.connect(LIBPQ, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return Generated(
        date_from=date_from,
        date_to=today,
        captures=n,
        refunds=len(refunds),
        lines=lines,
        intended=file.intended,
        seconds=time.perf_counter() - started,
    )


# -- the gateway's side --------------------------------------------------------------------------


def _settings(var_dir: str) -> Any:
    from config import Settings

    var = Path(var_dir)
    return Settings(
        env="test",
        database_url=URL,
        var_dir=var,
        secret_key="bench-secret-key-" + "s" * 32,
        encryption_key="bench-encryption-key-" + "e" * 32,
        public_url="http://gateway.test",
        sandbox_database=var / "sandbox.db",
        log_level="WARNING",
    )


def gateway_side(
    csv_path: str, report_path: str, var_dir: str, date_from: dt.date, date_to: dt.date
) -> Side:
    """Import the file and write the CSV report, as the gateway does."""
    from payments.gateway import build_gateway
    from payments.settlement import imports, reports

    phases = [Phase("startup", 0.0, _peak_mb())]
    gw = build_gateway(_settings(var_dir), pool_size=2)
    started = time.perf_counter()
    with open(csv_path, "rb") as stream:
        result = imports.import_file(
            gw, PROVIDER, stream, filename=Path(csv_path).name, imported_by="bench"
        )
    imported = time.perf_counter()
    phases.append(Phase("import", imported - started, _peak_mb()))
    span = reports.period(gw, PROVIDER, date_from, date_to)
    with open(report_path, "wb") as out:
        figures = reports.write_report(gw, span, "csv", out)
    phases.append(Phase("reconcile", time.perf_counter() - imported, _peak_mb()))
    gw.db.dispose()
    return Side(
        phases,
        {
            "import_summary": dict(result.settlement.summary),
            "summary": dict(figures.summary),
            "ledger_agrees": figures.ledger_agrees,
            "missing_before": span.missing_before,
        },
    )


def report_side(
    fmt: str, report_path: str, var_dir: str, date_from: dt.date, date_to: dt.date
) -> Side:
    """Write the report again in another format (the file is imported already)."""
    from payments.gateway import build_gateway
    from payments.settlement import reports

    phases = [Phase("startup", 0.0, _peak_mb())]
    gw = build_gateway(_settings(var_dir), pool_size=2)
    started = time.perf_counter()
    span = reports.period(gw, PROVIDER, date_from, date_to)
    with open(report_path, "wb") as out:
        reports.write_report(gw, span, fmt, out)
    phases.append(Phase(f"report {fmt}", time.perf_counter() - started, _peak_mb()))
    gw.db.dispose()
    return Side(phases, {})


def verify_side(var_dir: str) -> Side:
    """What `gateway ledger verify` checks, over the book the run left: the ledger's own
    invariants and hash chain, and the gateway's (payable, clearing, bank, suspense, fees)."""
    from payments.gateway import build_gateway
    from payments.service.audit import audit

    phases = [Phase("startup", 0.0, _peak_mb())]
    gw = build_gateway(_settings(var_dir), pool_size=2)
    started = time.perf_counter()
    report = audit(gw)
    phases.append(Phase("ledger verify", time.perf_counter() - started, _peak_mb()))
    gw.db.dispose()
    return Side(phases, {"ok": report.ok, "problems": [str(p) for p in report.problems[:5]]})


# -- the yardstick -------------------------------------------------------------------------------

CAPTURES_SQL = """
SELECT 'payment' AS type, p.id AS target_id, p.provider_reference, p.currency,
    p.amount_captured_minor AS expected, t.effective_at AS gateway_at
FROM payments p LEFT JOIN ledger_transactions t ON t.external_id = 'capture:' || p.id
WHERE p.provider = 'sandbox' AND p.amount_captured_minor > 0
"""
REFUNDS_SQL = """
SELECT 'refund' AS type, r.id AS target_id, r.provider_reference, r.currency,
    -r.amount_minor AS expected, t.effective_at AS gateway_at
FROM refunds r LEFT JOIN ledger_transactions t ON t.external_id = 'refund:' || r.id
WHERE r.provider = 'sandbox' AND r.status = 'succeeded'
"""


def pandas_side(
    csv_path: str, out_path: str, date_from: dt.date, date_to: dt.date, missing_before: dt.datetime
) -> Side:
    """The same reconciliation in pandas: read, merge on provider reference and type, classify
    by the rules of `payments.settlement.imports` and `payments.settlement.reconcile`."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import create_engine, text

    phases = [Phase("startup", 0.0, _peak_mb())]
    started = time.perf_counter()
    lines = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    lines["line_no"] = np.arange(2, len(lines) + 2)  # the header is line 1
    lines["gross_minor"] = lines["gross"].str.replace(".", "", regex=False).astype("int64")
    lines["settlement_date"] = pd.to_datetime(lines["settlement_date"], format="%Y-%m-%d")
    engine = create_engine(URL)
    with engine.connect() as conn:
        targets = pd.concat(
            [
                pd.read_sql(text(sql), conn, parse_dates={"gateway_at": {"utc": True}})
                for sql in (CAPTURES_SQL, REFUNDS_SQL)
            ],
            ignore_index=True,
        )
    engine.dispose()
    read = time.perf_counter()
    phases.append(Phase("import", read - started, _peak_mb()))

    # Import: each line against the payment or refund of its reference (the first by id).
    known = (
        targets.dropna(subset=["provider_reference"])
        .sort_values("target_id")
        .drop_duplicates(["type", "provider_reference"])
    )
    m = lines.merge(known, how="left", on=["type", "provider_reference"], suffixes=("", "_gw"))
    base = pd.Series(
        np.select(
            [
                m["target_id"].isna().to_numpy(),
                (m["currency"] != m["currency_gw"]).to_numpy(),
                (m["gross_minor"] != m["expected"]).to_numpy(),
            ],
            ["missing_in_gateway", "currency_mismatch", "amount_mismatch"],
            "matched",
        ),
        index=m.index,
    )
    # A line after the first matched line of its payment or refund is a duplicate.
    first_match = m.loc[base == "matched"].groupby("target_id")["line_no"].min()
    imported = base.where(~(m["line_no"] > m["target_id"].map(first_match)), "duplicate")
    # Report: a payment or refund pairs with its matched line, or else its first mismatched one.
    pairing = imported.isin(PAIRING)
    has_match = m["target_id"].isin(m.loc[imported == "matched", "target_id"])
    first_pairing = m.loc[pairing].groupby("target_id")["line_no"].min()
    pairs = (imported == "matched") | (
        pairing & ~has_match & (m["line_no"] == m["target_id"].map(first_pairing))
    )
    status = imported.where(~pairing | pairs, "duplicate")
    start = pd.Timestamp(date_from, tz="UTC")
    end = pd.Timestamp(date_to + dt.timedelta(days=1), tz="UTC")
    in_period = m["settlement_date"].between(pd.Timestamp(date_from), pd.Timestamp(date_to)) | (
        pairing & pairs & (m["gateway_at"] >= start) & (m["gateway_at"] < end)
    )
    reported = pd.DataFrame(
        {"provider_reference": m["provider_reference"], "type": m["type"], "status": status}
    ).loc[in_period]
    # The captures and refunds of the period that no line pairs with.
    paired = m.loc[pairing, "target_id"]
    unpaired = targets.loc[
        (targets["gateway_at"] >= start)
        & (targets["gateway_at"] < end)
        & ~targets["target_id"].isin(paired)
    ]
    late = unpaired["gateway_at"] < pd.Timestamp(missing_before)
    left_out = pd.DataFrame(
        {
            "provider_reference": unpaired["provider_reference"],
            "type": unpaired["type"],
            "status": np.where(late, "missing_in_settlement", "pending_settlement"),
        }
    )
    result = pd.concat([reported, left_out], ignore_index=True)
    result.to_csv(out_path, index=False)
    phases.append(Phase("reconcile", time.perf_counter() - read, _peak_mb()))
    return Side(phases, {"summary": result["status"].value_counts().to_dict()})


# -- running, checking, printing -----------------------------------------------------------------


def _child_main(queue: Any, target: Callable[..., Side], args: tuple[Any, ...]) -> None:
    try:
        queue.put(target(*args))
    except BaseException:
        queue.put(traceback.format_exc())


def in_child(target: Callable[..., Side], *args: Any, profile: Path | None = None) -> Side:
    """Run `target(*args)` in a spawned process of its own, optionally under py-spy."""
    context = multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    process = context.Process(target=_child_main, args=(queue, target, args))
    process.start()
    spy = None
    if profile is not None:
        command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid"]
        command += [str(process.pid), "--idle", "--format", "raw", "--output", str(profile)]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outcome = queue.get()
    process.join(timeout=60)
    if spy is not None:
        spy.wait(timeout=300)
    if not isinstance(outcome, Side):
        raise RuntimeError(f"{target.__name__} failed in its child process:\n{outcome}")
    return outcome


@dataclasses.dataclass(frozen=True)
class Agreement:
    gateway_items: int
    pandas_items: int
    keys_differing: int  # (provider reference, type) whose statuses differ
    examples: list[str]

    @property
    def ok(self) -> bool:
        return self.keys_differing == 0 and self.gateway_items == self.pandas_items


def agreement(report_path: Path, pandas_path: Path) -> Agreement:
    """Compare the statuses each side gave each (provider reference, type), as multisets."""
    import numpy as np
    import pandas as pd

    columns = ["status", "payment_id", "refund_id", "provider_reference"]
    report = pd.read_csv(
        report_path, dtype=str, keep_default_na=False, encoding="utf-8-sig", usecols=columns
    )
    reference = report["provider_reference"].str.removeprefix("'")
    # An item names its refund or payment; a missing_in_gateway line neither, and its type is
    # told by the reference's prefix (the generator's, sbx_re_ for refunds).
    kind = np.where(
        report["refund_id"] != "",
        "refund",
        np.where(
            (report["payment_id"] == "") & reference.str.startswith("sbx_re_"),
            "refund",
            "payment",
        ),
    )
    gateway = pd.DataFrame({"provider_reference": reference, "type": kind, "status": report.status})
    yardstick = pd.read_csv(pandas_path, dtype=str, keep_default_na=False)
    keys = ["provider_reference", "type", "status"]
    counts = pd.concat(
        [gateway.value_counts(keys).rename("gateway"), yardstick.value_counts(keys).rename("pd")],
        axis=1,
    ).fillna(0)
    differing = counts.loc[counts["gateway"] != counts["pd"]].reset_index()
    refs = differing[["provider_reference", "type"]].drop_duplicates()
    examples = [
        f"{row.provider_reference} {row.type} {row.status}: gateway {row.gateway:.0f} item(s), "
        f"pandas {row.pd:.0f}"
        for row in differing.head(5).itertuples()
    ]
    return Agreement(len(gateway), len(yardstick), len(refs), examples)


def _table(rows: list[tuple[str, str, str, str, str, str]]) -> None:
    header = ("N", "side", "phase", "seconds", "peak RSS MB", "agreement")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [
            cell.rjust(width) if i in (0, 3, 4) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="captures (refunds come on top)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--py-spy", type=Path, help="record the gateway's child into this folder")
    args = parser.parse_args()
    n = max(1, min(args.n, MAX_N))
    scratch = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    try:
        run(n, args.seed, scratch, args.py_spy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.drop:
            with psycopg.connect(SERVER, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{DBNAME}" WITH (FORCE)')


def run(n: int, seed: int, scratch: Path, py_spy: Path | None) -> None:
    csv_path = scratch / f"sandbox-settlement-{n}.csv"
    made = generate(n, csv_path, seed)
    generated_mb = _peak_mb()
    print(
        f"generated: {made.captures:,} captures, {made.refunds:,} refunds, {made.lines:,} "
        f"settlement lines ({csv_path.stat().st_size / 2**20:.1f} MiB), period "
        f"{made.date_from} to {made.date_to}",
        flush=True,
    )
    var_dir = str(scratch / "var")
    report_path = scratch / "report.csv"
    profile = None
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)
        profile = py_spy / f"gateway-{n}.txt"
    span = (made.date_from, made.date_to)
    gateway = in_child(
        gateway_side, str(csv_path), str(report_path), var_dir, *span, profile=profile
    )
    pandas_path = scratch / "pandas.csv"
    missing_before = gateway.info["missing_before"]
    yardstick = in_child(pandas_side, str(csv_path), str(pandas_path), *span, missing_before)
    extras = [in_child(report_side, "json", str(scratch / "report.json"), var_dir, *span)]
    if n <= XLSX_MAX_N:
        extras.append(in_child(report_side, "xlsx", str(scratch / "report.xlsx"), var_dir, *span))
    agreed = agreement(report_path, pandas_path)
    verified = in_child(verify_side, var_dir)

    label = f"{n:,}"
    rows = [(label, "generator", "generate", f"{made.seconds:.1f}", f"{generated_mb:.0f}", "")]
    verdict = (
        f"agree on {agreed.gateway_items:,} items"
        if agreed.ok
        else f"DISAGREE: {agreed.keys_differing:,} references"
    )
    for name, side in (("gateway", gateway), ("pandas", yardstick)):
        for phase in side.phases:
            rows.append(
                (label, name, phase.name, f"{phase.seconds:.1f}", f"{phase.peak_mb:.0f}", "")
            )
        total = side.seconds("import", "reconcile")
        rows.append((label, name, "total", f"{total:.1f}", f"{side.peak_mb:.0f}", verdict))
    for extra in extras:
        phase = extra.phases[-1]
        rows.append(
            (label, "gateway", phase.name, f"{phase.seconds:.1f}", f"{extra.peak_mb:.0f}", "")
        )
    print()
    _table(rows)
    print()
    for line in agreed.examples:
        print("  differs:", line)
    print("items by status (intended by the generator / gateway / pandas):")
    for status in (*PAIRING, "duplicate", "missing_in_gateway", "missing_in_settlement"):
        _status_line(status, made, gateway, yardstick)
    _status_line("pending_settlement", made, gateway, yardstick)
    print(f"gateway import summary: {gateway.info['import_summary']}")
    print(f"ledger agrees with the gateway (report's ledger side): {gateway.info['ledger_agrees']}")
    seconds = verified.seconds("ledger verify")
    verdict = "passes" if verified.info["ok"] else f"FAILS: {verified.info['problems']}"
    print(f"gateway ledger verify after the run ({seconds:.1f} s): {verdict}")
    ours = gateway.seconds("import", "reconcile")
    theirs = yardstick.seconds("import", "reconcile")
    met = "MET" if ours <= TARGET_RATIO * theirs else "NOT MET"
    print(
        f"target 1, gateway import + reconcile within {TARGET_RATIO:.0f}x pandas: {ours:.1f} s vs "
        f"{theirs:.1f} s ({ours / theirs:.2f}x): {met}"
    )
    under = gateway.peak_mb < TARGET_RSS_MB
    where = "" if n == TARGET_N else f" (measured at N = {n:,}; the target is for {TARGET_N:,})"
    print(
        f"target 2, gateway peak RSS under {TARGET_RSS_MB:.0f} MB at N = {TARGET_N:,}: "
        f"{gateway.peak_mb:.0f} MB{where}: {'MET' if under else 'NOT MET'}"
    )
    if profile is not None:
        print(f"py-spy profile of the gateway's child (collapsed stacks): {profile}")


def _status_line(status: str, made: Generated, gateway: Side, yardstick: Side) -> None:
    counts = (
        made.intended[status],
        gateway.info["summary"].get(status, 0),
        yardstick.info["summary"].get(status, 0),
    )
    print(f"  {status:<22} {counts[0]:>10,} {counts[1]:>10,} {counts[2]:>10,}")


if __name__ == "__main__":
    main()
