"""The delivery worker: claim due jobs under a lease, sign and POST them on a few threads,
record every attempt and schedule the next. At least once: a job whose worker dies comes due
again when its lease ends. Never twice per attempt: a job is claimed by one worker at a time
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config import Settings
from payments import clock, metrics
from payments.gateway import Gateway
from payments.ids import new_id
from payments.models import Event
from payments.webhooks import schedule, signing, transport
from payments.webhooks.guard import UrlRefused, parse_url
from payments.webhooks.models import Delivery, DeliveryJob, WebhookEndpoint
from payments.webhooks.sealing import SealError, SecretBox

log = logging.getLogger(__name__)

SEND_THREADS = 16
MAX_IN_FLIGHT = 2 * SEND_THREADS  # a claimed job waits at most one send for a thread
MAX_JOBS_PER_PASS = 2000
LEASE_TIMEOUTS = 3  # a wait for a thread, the send itself, and as long again to record it
POLL_S = 0.05
RECORD_GATHER_S = 0.005
RESPONSE_EXCERPT_CHARS = 2000
DISABLE_AFTER = dt.timedelta(days=5)


def lease_s(settings: Settings) -> float:
    """How long a claim holds before another worker may take the job again."""
    return LEASE_TIMEOUTS * settings.webhook_timeout_s


def secret_context(endpoint_id: str) -> str:
    return f"{endpoint_id}:whsec"


def signing_key_context(endpoint_id: str) -> str:
    return f"{endpoint_id}:ed25519"


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """Everything one attempt needs, as plain values, so the send runs without the database."""

    job_id: str
    lease: str
    attempt: int
    redelivery: bool
    event_id: str
    event_type: str
    body: bytes
    endpoint_id: str
    url: str
    hmac_keys: tuple[bytes, ...]
    signing_keys: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True)
class Result:
    started_at: dt.datetime
    duration_ms: int
    status: int | None = None
    body: str | None = None
    retry_after: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclasses.dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    endpoints_disabled: int = 0

    def count(self, verdict: str) -> None:
        if verdict == "delivered":
            self.delivered += 1
        elif verdict == "retrying":
            self.retrying += 1
        else:
            self.failed += 1

    def add(self, other: DeliveryReport) -> None:
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.failed += other.failed
        self.endpoints_disabled += other.endpoints_disabled


class _Keys:
    """The keys that sign for each endpoint of one claim, opened once per endpoint."""

    def __init__(self, box: SecretBox, now: dt.datetime) -> None:
        self.box, self.now = box, now
        self._opened: dict[str, tuple[tuple[bytes, ...], tuple[bytes, ...]]] = {}

    def of(self, endpoint: WebhookEndpoint) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        if endpoint.id not in self._opened:
            rotating = (
                endpoint.previous_secret_expires_at is not None
                and endpoint.previous_secret_expires_at > self.now
            )
            secrets: list[str | None] = [endpoint.secret_sealed]
            keys = [endpoint.signing_key_sealed]
            if rotating:
                secrets.append(endpoint.previous_secret_sealed)
                keys.append(endpoint.previous_signing_key_sealed)
            context, key_context = secret_context(endpoint.id), signing_key_context(endpoint.id)
            self._opened[endpoint.id] = (
                tuple(
                    signing.secret_key(self.box.open(s, context=context).decode())
                    for s in secrets
                    if s
                ),
                tuple(self.box.open(k, context=key_context) for k in keys if k),
            )
        return self._opened[endpoint.id]


def _unsent(
    session: Session,
    job: DeliveryJob,
    event_type: str,
    now: dt.datetime,
    *,
    code: str,
    message: str,
) -> None:
    """Log a job the worker will not send now, as an attempt with its reason."""
    session.add(
        Delivery(
            id=new_id("wd"),
            job_id=job.id,
            endpoint_id=job.endpoint_id,
            event_id=job.event_id,
            event_type=event_type,
            attempt=job.attempts,
            redelivery=job.requeued,
            started_at=now,
            duration_ms=0,
            error_code=code,
            error_message=message,
            succeeded=False,
            next_attempt_at=job.next_attempt_at,
        )
    )


def _close_unsendable(
    session: Session, job: DeliveryJob, endpoint: WebhookEndpoint, event_type: str, now: dt.datetime
) -> None:
    """A job owed to an endpoint that was deleted or disabled since: close it, saying why."""
    deleted = endpoint.deleted_at is not None
    job.status = "cancelled" if deleted else "failed"
    job.next_attempt_at, job.lease, job.updated_at = None, None, now
    if deleted:
        _unsent(
            session,
            job,
            event_type,
            now,
            code="endpoint_deleted",
            message="the endpoint was deleted",
        )
    else:
        reason = f"the endpoint is disabled ({endpoint.disabled_reason})"
        _unsent(session, job, event_type, now, code="endpoint_disabled", message=reason)


def _unsealable(
    session: Session, job: DeliveryJob, event_type: str, settings: Settings, now: dt.datetime
) -> None:
    """The endpoint's secret does not open (the encryption key was changed): nothing can be
    signed, so the attempt fails and is retried on the schedule, for the operator to fix."""
    log.error("webhook secret does not open", extra={"endpoint": job.endpoint_id})
    job.lease, job.updated_at = None, now
    job.next_attempt_at = schedule.next_attempt_at(
        settings.webhook_retry_schedule_s, job.attempts, now, None
    )
    if job.next_attempt_at is None:
        job.status = "failed"
    message = "the endpoint's secret does not open with GATEWAY_ENCRYPTION_KEY"
    _unsent(session, job, event_type, now, code="secret_unavailable", message=message)


def _claim(
    session: Session, gw: Gateway, limit: int, now: dt.datetime
) -> tuple[list[Outgoing], int]:
    query = (
        select(DeliveryJob, WebhookEndpoint, Event.type, Event.body)
        .join(WebhookEndpoint, WebhookEndpoint.id == DeliveryJob.endpoint_id)
        .join(Event, Event.id == DeliveryJob.event_id)
        .where(DeliveryJob.status == "pending", DeliveryJob.next_attempt_at <= now)
        .order_by(DeliveryJob.next_attempt_at)
        .limit(limit)
    )
    if gw.db.dialect == "postgresql":
        query = query.with_for_update(of=DeliveryJob, skip_locked=True)
    token = uuid.uuid4().hex
    lease_until = now + dt.timedelta(seconds=lease_s(gw.settings))
    keys = _Keys(SecretBox(gw.settings.encryption_key), now)
    outgoing: list[Outgoing] = []
    rows = session.execute(query).all()
    for job, endpoint, event_type, body in rows:
        if endpoint.deleted_at is not None or endpoint.status != "enabled":
            _close_unsendable(session, job, endpoint, event_type, now)
            continue
        job.attempts += 1
        job.lease, job.next_attempt_at, job.updated_at = token, lease_until, now
        try:
            hmac_keys, signing_keys = keys.of(endpoint)
        except SealError:
            _unsealable(session, job, event_type, gw.settings, now)
            continue
        outgoing.append(
            Outgoing(
                job_id=job.id,
                lease=token,
                attempt=job.attempts,
                redelivery=job.requeued,
                event_id=job.event_id,
                event_type=event_type,
                body=body.encode(),
                endpoint_id=endpoint.id,
                url=endpoint.url,
                hmac_keys=hmac_keys,
                signing_keys=signing_keys,
            )
        )
    return outgoing, len(rows)


def claim(gw: Gateway, limit: int) -> tuple[list[Outgoing], int]:
    """Lease up to `limit` due jobs to this worker; answer what to send and how many due jobs
    were taken (jobs of disabled or deleted endpoints are closed, not sent)."""
    return settle(gw, [], limit, DeliveryReport())


def send(outgoing: Outgoing, settings: Settings) -> Result:
    """One signed POST; never raises: whatever goes wrong becomes the attempt's error class."""
    began = time.perf_counter()
    result = _post(outgoing, settings)
    failure = None
    if not result.succeeded:
        failure = result.error_code or f"http_{(result.status or 0) // 100}xx"
    metrics.webhook_attempt(time.perf_counter() - began, failure)
    return result


def _post(outgoing: Outgoing, settings: Settings) -> Result:
    started_at = clock.now()
    began = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - began) * 1000)

    timestamp = int(started_at.timestamp())
    headers = {
        "webhook-id": outgoing.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            outgoing.event_id,
            timestamp,
            outgoing.body,
            hmac_keys=outgoing.hmac_keys,
            signing_keys=outgoing.signing_keys,
        ),
    }
    try:
        target = parse_url(outgoing.url, https_only=settings.is_production)
        response = transport.post(
            target,
            headers,
            outgoing.body,
            timeout_s=settings.webhook_timeout_s,
            allow=settings.webhook_allow_networks,
        )
    except (UrlRefused, transport.DeliveryError) as exc:
        return Result(started_at, took(), error_code=exc.code, error_message=exc.message[:500])
    except Exception as exc:
        log.exception("webhook send failed unexpectedly", extra={"job": outgoing.job_id})
        return Result(started_at, took(), error_code="internal", error_message=type(exc).__name__)
    redirect = 300 <= response.status < 400
    return Result(
        started_at,
        took(),
        status=response.status,
        body=response.body.decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_CHARS],
        retry_after=response.headers.get("retry-after"),
        error_code="redirect_not_followed" if redirect else None,
        error_message=response.headers.get("location", "")[:500] or None if redirect else None,
    )


def _verdict(job: DeliveryJob, result: Result, settings: Settings, now: dt.datetime) -> str:
    """Move a job this worker still holds: succeeded, failed, or pending again later."""
    job.lease, job.updated_at = None, now
    if result.succeeded:
        job.status, job.next_attempt_at = "succeeded", None
        return "delivered"
    retry_after = schedule.retry_after_s(result.retry_after, now)
    later = None
    if result.status != 410:
        later = schedule.next_attempt_at(
            settings.webhook_retry_schedule_s, job.attempts, now, retry_after
        )
    if later is None:
        job.status, job.next_attempt_at = "failed", None
        return "failed"
    job.next_attempt_at = later
    return "retrying"


def _endpoint_health(session: Session, endpoint_id: str, outcome: str, now: dt.datetime) -> int:
    """Keep the endpoint's failure streak; disable it after a 410 or 5 days without success.
    Answers 1 when this disabled it."""
    table = WebhookEndpoint
    if outcome == "ok":
        session.execute(
            update(table)
            .where(table.id == endpoint_id, table.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return 0
    disable = update(table).where(table.id == endpoint_id, table.status == "enabled")
    if outcome == "gone":
        done = session.execute(
            disable.values(status="disabled", disabled_reason="gone", updated_at=now)
        )
    else:
        session.execute(
            update(table)
            .where(table.id == endpoint_id, table.failing_since.is_(None))
            .values(failing_since=now)
        )
        done = session.execute(
            disable.where(table.failing_since <= now - DISABLE_AFTER).values(
                status="disabled", disabled_reason="failing", updated_at=now
            )
        )
    disabled = int(getattr(done, "rowcount", 0) or 0)
    if disabled:
        log.warning("webhook endpoint disabled", extra={"endpoint": endpoint_id, "why": outcome})
    return disabled


HEALTH_RANK = {"failing": 0, "ok": 1, "gone": 2}  # what one batch says of an endpoint


def _record(
    session: Session,
    gw: Gateway,
    done: list[tuple[Outgoing, Result]],
    report: DeliveryReport,
    now: dt.datetime,
) -> None:
    """Log each attempt and move its job. Jobs are locked in id order and endpoints after them
    in id order, so two workers recording at once cannot deadlock."""
    health: dict[str, str] = {}
    locked = session.execute(
        select(DeliveryJob)
        .where(DeliveryJob.id.in_([outgoing.job_id for outgoing, _ in done]))
        .order_by(DeliveryJob.id)
        .with_for_update()
    ).scalars()
    jobs = {job.id: job for job in locked}
    for outgoing, result in sorted(done, key=lambda pair: pair[0].job_id):
        job = jobs.get(outgoing.job_id)
        next_attempt_at = None
        # A job redelivered or re-leased meanwhile is another attempt's: log this one only.
        if job is not None and job.status == "pending" and job.lease == outgoing.lease:
            report.count(_verdict(job, result, gw.settings, now))
            next_attempt_at = job.next_attempt_at
        session.add(
            Delivery(
                id=new_id("wd"),
                job_id=outgoing.job_id,
                endpoint_id=outgoing.endpoint_id,
                event_id=outgoing.event_id,
                event_type=outgoing.event_type,
                attempt=outgoing.attempt,
                redelivery=outgoing.redelivery,
                started_at=result.started_at,
                duration_ms=result.duration_ms,
                response_status=result.status,
                response_body=result.body,
                error_code=result.error_code,
                error_message=result.error_message,
                succeeded=result.succeeded,
                next_attempt_at=next_attempt_at,
            )
        )
        outcome = "ok" if result.succeeded else "gone" if result.status == 410 else "failing"
        if HEALTH_RANK[outcome] >= HEALTH_RANK[health.get(outgoing.endpoint_id, "failing")]:
            health[outgoing.endpoint_id] = outcome
    session.flush()
    for endpoint_id in sorted(health):
        report.endpoints_disabled += _endpoint_health(
            session, endpoint_id, health[endpoint_id], now
        )


def settle(
    gw: Gateway, done: list[tuple[Outgoing, Result]], want: int, report: DeliveryReport
) -> tuple[list[Outgoing], int]:
    """Record the attempts that ended and claim up to `want` more, in one transaction: one
    turn of the database's write lock where SQLite has only one to share. The claim comes last
    and never waits (`SKIP LOCKED`), so it adds no lock to wait on."""
    now = clock.now()
    with gw.db.transaction() as session:
        if done:
            _record(session, gw, done, report, now)
        return _claim(session, gw, want, now) if want > 0 else ([], 0)


def deliver_due(gw: Gateway, *, max_jobs: int = MAX_JOBS_PER_PASS) -> DeliveryReport:
    """Deliver what is due now: claim, send on `SEND_THREADS` threads, record as each answers.
    Ends when nothing more is due or `max_jobs` have been taken, once every send has ended."""
    report = DeliveryReport()
    in_flight: dict[concurrent.futures.Future[Result], Outgoing] = {}
    done: list[tuple[Outgoing, Result]] = []
    taken, drained = 0, False
    with concurrent.futures.ThreadPoolExecutor(SEND_THREADS, "webhook-send") as pool:
        while True:
            room = MAX_IN_FLIGHT - len(in_flight)
            want = 0
            if not drained and (room >= SEND_THREADS or not in_flight):
                want = min(room, max_jobs - taken)
            if done or want:
                batch, seen = settle(gw, done, want, report)
                done, taken = [], taken + seen
                drained = drained or seen < want
                for outgoing in batch:
                    in_flight[pool.submit(send, outgoing, gw.settings)] = outgoing
            if not in_flight:
                if drained or taken >= max_jobs:
                    return report
                continue  # the whole claim was closed, not sent: there may be more due
            finished, _ = concurrent.futures.wait(
                in_flight, return_when=concurrent.futures.FIRST_COMPLETED
            )
            if len(finished) < len(in_flight):  # a moment more, to record several at once
                finished, _ = concurrent.futures.wait(in_flight, timeout=RECORD_GATHER_S)
            done = [(in_flight.pop(f), f.result()) for f in finished]


def any_due(gw: Gateway) -> bool:
    """A cheap read: is any delivery due now?"""
    with gw.db.read() as session:
        found = session.execute(
            select(DeliveryJob.id)
            .where(DeliveryJob.status == "pending", DeliveryJob.next_attempt_at <= clock.now())
            .limit(1)
        ).first()
    return found is not None


def idle(gw: Gateway, seconds: float, stop: Callable[[], bool]) -> DeliveryReport:
    """Wait up to `seconds` between worker passes, delivering whatever falls due meanwhile, so
    a webhook leaves within a twentieth of a second of its event, not at the next pass."""
    report = DeliveryReport()
    end = time.monotonic() + seconds
    while not stop():
        left = end - time.monotonic()
        if left <= 0:
            break
        if any_due(gw):
            report.add(deliver_due(gw))
        else:
            time.sleep(min(POLL_S, left))
    return report
