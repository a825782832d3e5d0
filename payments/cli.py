"""The `gateway` command: migrations, agencies and keys, demo data, settlements and payouts,
the server and the worker."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from config import ConfigurationError, Settings, load_settings
from payments import logs, migrate, progress
from payments.errors import GatewayError, Unavailable
from payments.finance import accounts
from payments.finance import demo as console_demo
from payments.gateway import Gateway, build_gateway
from payments.money import format_major
from payments.service import access, anchors, audit, demo, demo_payments, resolution
from payments.settlement import imports, reports, sandbox_export
from payments.settlement import payouts as payout_service
from payments.settlement.items import ReconItem
from payments.settlement.statuses import NOT_BREAKS, ItemStatus
from payments.webhooks import delivery
from providers.sandbox import SandboxProvider

WORKER_IDLE_S = 1.0
WORKER_MAX_OUTAGE_WAIT_S = 60.0
log = logging.getLogger("gateway.worker")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def _gateway() -> Gateway:
    settings = _settings()
    logs.configure(settings.log_level)
    try:
        return build_gateway(settings)
    except ConfigurationError as exc:  # e.g. a configured acquirer that cannot be built
        raise click.ClickException(str(exc)) from exc


def _gateway_to_run() -> Gateway:
    """The gateway for a long-running command (`serve`, `worker`): refused when its database
    holds live keys but its environment is development."""
    gw = _gateway()
    try:
        access.refuse_live_keys_outside_production(gw.settings, gw.db)
    except ConfigurationError as exc:
        gw.db.dispose()
        raise click.ClickException(str(exc)) from exc
    return gw


def _run(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from exc


@click.group()
def main() -> None:
    """Operate the GCC e-payment gateway."""


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to GATEWAY_DATABASE_URL."""
    migrate.upgrade(_settings().database_url)
    click.echo("database is up to date")


@main.group()
def demo_group() -> None:
    """Demo data."""


main.add_command(demo_group, "demo")


@demo_group.command("seed")
@click.option(
    "--with-payments",
    is_flag=True,
    help="Also make a few sandbox payments per demo agency (once), as `make run` does.",
)
def demo_seed(with_payments: bool) -> None:
    """Create one demo agency per member state and print a test key for each."""
    gw = _gateway()
    keys = _run(demo.seed, gw)
    click.echo("Demo API keys (test mode: the sandbox and the national schemes' simulators):")
    for who, key in keys:
        click.echo(f"  {who:<10} {key}")
    users = _run(console_demo.seed, gw)
    click.echo(f"Demo finance console users ({gw.settings.public_url}/finance; the admin sets up")
    click.echo("two-step verification at first sign-in):")
    for email, role, password in users:
        click.echo(f"  {role:<10} {email}  {password}")
    if with_payments:
        made = _run(demo_payments.seed_payments, gw)
        click.echo(f"Demo payments made: {made}" if made else "Demo payments were made before")


@main.group()
def users() -> None:
    """Finance console users."""


@users.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["finance", "admin"]), required=True)
def users_create(email: str, role: str) -> None:
    """Create a finance console user; the password is read from standard input."""
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    user = _run(accounts.create_user, _gateway(), email, role, password, actor="cli")
    click.echo(f"created {user.role} user {user.email} ({user.id})")


@main.group()
def agencies() -> None:
    """Agencies."""


@agencies.command("create")
@click.argument("agency_id")
@click.option("--name", required=True)
@click.option("--name-ar", required=True)
@click.option("--state", required=True, type=click.Choice(access.MEMBER_STATES))
@click.option("--currency", "currencies", required=True, multiple=True)
@click.option(
    "--fee-bearer",
    type=click.Choice(access.FEE_BEARERS),
    default="gateway",
    help="Who bears acquirer fees on settled payments (default: the gateway).",
)
def agencies_create(
    *,
    agency_id: str,
    name: str,
    name_ar: str,
    state: str,
    currencies: tuple[str, ...],
    fee_bearer: str,
) -> None:
    """Register an agency."""
    codes = [c.strip().upper() for item in currencies for c in item.split(",") if c.strip()]
    agency = _run(
        access.create_agency,
        _gateway(),
        agency_id,
        name=name,
        name_ar=name_ar,
        state=state,
        currencies=codes,
        fee_bearer=fee_bearer,
    )
    click.echo(f"created agency {agency.id} ({', '.join(agency.currencies)})")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--agency", "agency_id")
@click.option("--role", type=click.Choice(["agency", "finance"]), default="agency")
@click.option("--mode", type=click.Choice(["test", "live"]), default="test")
def keys_create(agency_id: str | None, role: str, mode: str) -> None:
    """Issue an API key; the key alone is the last line printed."""
    key, secret = _run(access.create_key, _gateway(), agency_id=agency_id, role=role, mode=mode)
    click.echo(f"issued {key.id} ({key.role}, {key.mode}); it is shown only now:")
    click.echo(secret)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key."""
    key = _run(access.revoke_key, _gateway(), key_id)
    click.echo(f"revoked {key.id}")


@main.group()
def settlements() -> None:
    """Acquirers' settlement files."""


@settlements.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--provider", required=True, help="The acquirer whose file this is.")
def settlements_import(file: Path, provider: str) -> None:
    """Import an acquirer settlement file; exit 1, naming the bad line, if it is malformed."""
    gw = _gateway()
    with file.open("rb") as stream, progress.bar("importing", _line_count(file)) as advance:

        def report(done: int, total: int, summary: Counter[str]) -> None:
            breaks = sum(count for status, count in summary.items() if status != ItemStatus.MATCHED)
            advance(done, f"matched {summary['matched']}, breaks {breaks}")

        result = _run(
            imports.import_file,
            gw,
            provider,
            stream,
            filename=file.name,
            imported_by="cli",
            progress=report,
        )
    settlement = result.settlement
    what = "imported" if result.created else "already imported as"
    summary = ", ".join(f"{status} {count}" for status, count in settlement.summary.items())
    click.echo(f"{what} {settlement.id}: {settlement.line_count} lines ({summary})")


def _line_count(file: Path) -> int:
    """The file's lines less its header: the progress bar's length (read fast, in blocks)."""
    lines = 0
    with file.open("rb") as stream:
        while block := stream.read(1024 * 1024):
            lines += block.count(b"\n")
    return max(lines - 1, 0)


@settlements.command("export-sandbox")
@click.option("--date", "day", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--provider",
    default="sandbox",
    help="A sandbox instance (mada's acquirer is one), or a national scheme's simulator:"
    " knet, benefit or omannet (default: sandbox).",
)
def settlements_export_sandbox(day: dt.datetime, output: Path, provider: str) -> None:
    """Write the settlement file the sandbox, or a scheme's simulator, sends for that UTC day's
    captures and refunds, in that acquirer's own layout."""
    gw = _gateway()
    desk = gw.scheme_desks.get(provider)
    sandbox = provider in gw.providers and isinstance(gw.providers.get(provider), SandboxProvider)
    if desk is None and not sandbox:
        # Refused before the output is opened: no empty file is left under the name.
        schemes = ", ".join(sorted(gw.scheme_desks)) or "none in production"
        raise click.ClickException(
            f"no simulated settlement file for provider {provider[:40]!r}: name a sandbox"
            f" instance or a scheme simulator ({schemes})"
        )
    with output.open("w", encoding="utf-8", newline="") as out:
        if desk is not None:
            content = desk.settlement_file(day.date())
            out.write(content)
            lines = content.count("\n") - 1  # less the header; every line ends in \n
        else:
            lines = _run(sandbox_export.export_day, gw, provider, day.date(), out)
    click.echo(f"wrote {lines} lines for {day.date().isoformat()} to {output}")


@main.command()
@click.option("--provider", required=True, help="The acquirer to reconcile.")
@click.option("--from", "date_from", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--to", "date_to", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option(
    "--format", "fmt", type=click.Choice(sorted(reports.FORMATS)), default="xlsx", show_default=True
)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False))
def reconcile(
    provider: str, date_from: dt.datetime, date_to: dt.datetime, fmt: str, output: Path
) -> None:
    """Reconcile an acquirer over [FROM, TO] and write the report; each agency concerned is told
    through a `reconciliation.completed` event."""
    gw = _gateway()
    span = _run(reports.period, gw, provider, date_from.date(), date_to.date())
    partial = output.with_name(output.name + ".partial")
    tally = {"done": 0, "matched": 0, "breaks": 0}
    with contextlib.ExitStack() as stack:
        advance: list[Callable[[int, str], None]] = []

        def counted(figures: reports.Figures) -> None:
            total = sum(figures.summary.values())
            advance.append(stack.enter_context(progress.bar("reconciling", total)))

        def seen(item: ReconItem) -> None:
            tally["done"] += 1
            if item.status == ItemStatus.MATCHED:
                tally["matched"] += 1
            elif item.status not in NOT_BREAKS:
                tally["breaks"] += 1
            advance[0](tally["done"], f"matched {tally['matched']}, breaks {tally['breaks']}")

        with partial.open("wb") as out:
            figures = _run(reports.write_report, gw, span, fmt, out, counted=counted, progress=seen)
    partial.replace(output)  # a report is never left half-written under its name
    _run(reports.announce, gw, span, figures)
    summary = ", ".join(f"{status} {count}" for status, count in figures.summary.items())
    ledger_state = "agrees" if figures.ledger_agrees else "DISAGREES"
    click.echo(f"wrote {output}: {summary}; ledger {ledger_state}")


@main.group()
def breaks() -> None:
    """Reconciliation breaks."""


@breaks.command("resolve")
@click.argument("item")
@click.option("--provider", required=True)
@click.option(
    "--note",
    required=True,
    help="Why the break needs no more work: text, line breaks and tabs, no control characters.",
)
@click.option("--by", "resolved_by", required=True, help="Who resolved it.")
def breaks_resolve(item: str, provider: str, note: str, resolved_by: str) -> None:
    """Mark a break (an item id of the report) resolved with a note."""
    done = _run(reports.resolve, _gateway(), provider, item, note, resolved_by=resolved_by)
    click.echo(f"resolved {done.item} ({done.status}) by {done.resolved_by}")


@main.group()
def payouts() -> None:
    """Payouts to agencies."""


@payouts.command("create")
@click.option("--agency", "agency_id", required=True)
@click.option("--currency", required=True)
@click.option("--amount", required=True, type=int, help="In the currency's minor unit.")
@click.option("--reference", required=True, help="The treasury's transfer reference.")
@click.option("--mode", type=click.Choice(["test", "live"]), default="test")
@click.option("--provider", help="Whose settlement account pays (test mode: sandbox).")
def payouts_create(
    *, agency_id: str, currency: str, amount: int, reference: str, mode: str, provider: str | None
) -> None:
    """Record what the treasury paid an agency; the same reference again is a no-op."""
    new = payout_service.NewPayout(
        agency_id=agency_id,
        currency=currency.strip().upper(),
        amount_minor=amount,
        reference=reference,
        livemode=mode == "live",
        provider=provider,
    )
    result = _run(payout_service.create_payout, _gateway(), new)
    payout = result.payout
    what = "recorded payout" if result.created else "already recorded as payout"
    click.echo(
        f"{what} {payout.id}: {format_major(payout.amount_minor, payout.currency)} "
        f"{payout.currency} to {payout.agency_id} ({payout.reference})"
    )


@main.group("ledger")
def ledger_group() -> None:
    """The ledger."""


@ledger_group.command("verify")
@click.option(
    "--anchors",
    "anchor_log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Anchor log to hold the chain to (default: var/ledger-anchors.jsonl, if present).",
)
def ledger_verify(anchor_log: Path | None) -> None:
    """Check every ledger invariant and the journal hash chain; exit 1 if any fails."""
    gw = _gateway()
    path = anchor_log or anchors.default_path(gw)
    try:
        held = anchors.read(path) if anchor_log or path.exists() else []
    except anchors.AnchorLogError as exc:
        raise click.ClickException(str(exc)) from exc
    report = audit.audit(gw, held)
    click.echo(
        f"checked {report.transactions} transactions, {report.postings} postings, "
        f"{report.accounts} accounts, {len(held)} anchors; "
        f"{report.pending} transactions waiting to be sealed"
    )
    if report.ok:
        click.echo("ledger verified: the hash chain is unbroken and every invariant holds")
        return
    click.echo(f"ledger verification FAILED: first broken: {report.problems[0]}", err=True)
    for problem in report.problems[1:]:
        click.echo(f"  also: {problem}", err=True)
    sys.exit(1)


@ledger_group.command("anchor")
@click.option(
    "--log",
    "anchor_log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Anchor log to append to (default: var/ledger-anchors.jsonl).",
)
def ledger_anchor(anchor_log: Path | None) -> None:
    """Append the hash chain's head to the anchor log and print it, to be kept elsewhere too."""
    gw = _gateway()
    path = anchor_log or anchors.default_path(gw)
    try:
        head = anchors.anchor(gw, path)
    except OSError as exc:
        raise click.ClickException(f"cannot write the anchor log {path}: {exc}") from exc
    click.echo(f"anchored link {head.seq}: {head.hash} (appended to {path})")


@main.command()
@click.option("--once", is_flag=True, help="Run one pass and exit.")
def worker(once: bool) -> None:
    """Resolve unknown outcomes, expire abandoned payments, forget old idempotency keys, seal
    the ledger and deliver webhooks."""
    gw = _gateway_to_run()
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    if once:
        report = resolution.run_pass(gw)
        click.echo(
            f"resolved {report.attempts_resolved} attempts "
            f"({report.attempts_waiting} still waiting), {report.refunds_resolved} refunds; "
            f"expired {report.payments_expired} payments; "
            f"sealed {report.ledger_transactions_sealed} ledger transactions; "
            f"delivered {report.webhooks_delivered} webhooks "
            f"({report.webhooks_retrying} to retry, {report.webhooks_failed} failed)"
        )
        return
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    outage_wait_s = WORKER_IDLE_S
    while not stopping:
        try:
            resolution.run_pass(gw)
            delivery.idle(gw, WORKER_IDLE_S, lambda: stopping)  # webhooks go out meanwhile
            outage_wait_s = WORKER_IDLE_S
        except (Unavailable, OperationalError):
            # The database is away: nothing was half-done (each item is its own transaction);
            # wait, up to a minute between tries, and carry on when it is back.
            log.exception("worker pass failed; the database is unavailable")
            resume_at = time.monotonic() + outage_wait_s
            while not stopping and time.monotonic() < resume_at:
                time.sleep(0.2)
            outage_wait_s = min(outage_wait_s * 2, WORKER_MAX_OUTAGE_WAIT_S)


@main.command()
@click.option("--port", type=int, default=None, help="Default: PORT or 8000.")
@click.option("--host", default="127.0.0.1")
@click.option(
    "--workers", type=int, default=None, help="Default: GATEWAY_WORKERS, else 2 per core + 1."
)
@click.option("--no-worker", is_flag=True, help="Do not start the background worker.")
def serve(port: int | None, host: str, workers: int | None, no_worker: bool) -> None:
    """Serve the API with gunicorn, with one background worker beside it."""
    from payments import metrics
    from payments.api.server import METRICS_DIR, GatewayServer

    settings = _settings()
    # Refuse to start on acquirers that cannot be built or live keys in development, before
    # forking.
    _gateway_to_run().db.dispose()
    port = port or settings.port
    try:
        server = GatewayServer(settings, bind=f"{host}:{port}", workers=workers)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    # Every process of this node (gunicorn's workers and the worker below) counts its metrics
    # in one fresh directory, which /metrics adds up.
    metrics.use_directory(settings.var_dir / METRICS_DIR)
    background = None
    if not no_worker:
        background = subprocess.Popen([sys.executable, "-m", "payments.cli", "worker"])
    try:
        server.run()
    finally:
        if background is not None:
            background.terminate()
            background.wait(timeout=10)
            metrics.process_exited(background.pid)


if __name__ == "__main__":
    main()
