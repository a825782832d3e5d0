"""Acquirers' notifications: verified before anything is written, kept raw, and then only a
prompt to ask the acquirer for the status of the charge they name."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.exc import IntegrityError

from payments import clock
from payments.errors import InvalidRequest, NotFound
from payments.gateway import Gateway
from payments.ids import new_id
from payments.models import Attempt, Payment, ProviderNotification
from payments.service.outcomes import ask_status
from payments.service.resolution import PassReport, resolve_attempt
from providers import InvalidNotification, NotifyingProvider, Outcome

log = logging.getLogger(__name__)
MAX_ATTEMPTS_PER_NOTIFICATION = 10  # one charge has a handful of attempts at most


@dataclasses.dataclass(frozen=True)
class Receipt:
    event_id: str
    duplicate: bool
    attempts_checked: int


def _notifying(gw: Gateway, provider_name: str) -> NotifyingProvider:
    if provider_name not in gw.providers:
        raise NotFound(f"no acquirer {provider_name[:40]!r}", code="route_missing")
    provider = gw.providers.get(provider_name)
    if not callable(getattr(provider, "parse_notification", None)):
        raise NotFound(f"{provider_name} sends no notifications", code="route_missing")
    return provider  # type: ignore[return-value]


def _open_attempts(
    gw: Gateway, provider_name: str, *conditions: ColumnElement[bool]
) -> Sequence[Row[Attempt, str]]:
    """The acquirer's attempts that match, newest first, each with its payment's currency."""
    with gw.db.read() as session:
        return session.execute(
            select(Attempt, Payment.currency)
            .join(Payment, Payment.id == Attempt.payment_id)
            .where(Attempt.provider == provider_name, *conditions)
            .order_by(Attempt.id.desc())
            .limit(MAX_ATTEMPTS_PER_NOTIFICATION)
        ).all()


def _unanswered(
    gw: Gateway, provider: NotifyingProvider, provider_name: str, reference: str
) -> Sequence[Row[Attempt, str]]:
    """The open authorisation the charge `reference` belongs to when its answer never reached
    the gateway (a timeout, a lost 5xx), so the attempt does not know the reference yet. Each
    such attempt is asked about by its own key and this reference: the acquirer answers for
    the charge only to the attempt it belongs to, and says `unknown` to any other."""
    candidates = _open_attempts(
        gw,
        provider_name,
        Attempt.provider_reference.is_(None),
        Attempt.pending_action == "authorize",
    )
    for row in candidates:
        try:
            result = ask_status(provider, row[0].id, reference)
        except Exception:
            log.exception("status query failed", extra={"attempt": row[0].id})
            continue
        if result.outcome is not Outcome.UNKNOWN and result.reference == reference:
            row[0].provider_reference = reference  # detached: what the status query asks by
            return [row]
    return []


def receive(gw: Gateway, provider_name: str, body: bytes, headers: Mapping[str, str]) -> Receipt:
    """Verify a notification, store it once, and ask the acquirer about the charge it names.
    A notification that does not verify (forged, altered, replayed late) changes nothing."""
    provider = _notifying(gw, provider_name)
    try:
        note = provider.parse_notification(body, headers)
    except InvalidNotification as exc:
        log.warning("notification refused", extra={"provider": provider_name, "why": str(exc)})
        raise InvalidRequest(
            f"the notification did not verify: {exc}", code="notification_invalid"
        ) from None
    duplicate = False
    try:
        with gw.db.transaction() as session:
            session.add(
                ProviderNotification(
                    id=new_id("ntf"),
                    provider=provider_name,
                    event_id=note.event_id[:255],
                    type=note.type[:100],
                    reference=note.reference[:255] if note.reference else None,
                    body=body.decode("utf-8", errors="replace"),
                    received_at=clock.now(),
                )
            )
    except IntegrityError:
        duplicate = True  # acquirers redeliver: the status query below is harmless again
    checked = 0
    if note.reference:
        open_attempts = _open_attempts(
            gw,
            provider_name,
            Attempt.provider_reference == note.reference,
            Attempt.pending_action.is_not(None),
        )
        if not open_attempts:
            open_attempts = _unanswered(gw, provider, provider_name, note.reference)
        for attempt, currency in open_attempts:
            resolve_attempt(
                gw, attempt, currency, PassReport(), payer_may_retry=attempt.channel == "page"
            )
            checked += 1
    log.info(
        "notification received",
        extra={"provider": provider_name, "event": note.event_id, "attempts": checked},
    )
    return Receipt(event_id=note.event_id, duplicate=duplicate, attempts_checked=checked)
