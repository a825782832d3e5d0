"""Routing: the ordered acquirers a payment may go to, the rule that chose them, and why not others.

Routing only looks: it asks each breaker `available()`, which claims nothing. Whoever calls an
acquirer claims the breaker with `allow()` just before the call (a half-open breaker lets one
trial through) and reports the result with `record_success()` or `record_unavailable()`.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from config import PAYMENT_METHODS, RoutingRule
from payments.breaker import Breakers
from payments.models import Payment
from providers import ProviderRegistry

NOT_CONFIGURED = "not configured"
WRONG_MODE = "wrong mode"
CANNOT_TAKE = "cannot take this currency, method, amount or capture method"
BREAKER_OPEN = "circuit breaker open"


class AgencyFacts(Protocol):
    """What routing reads of an agency: an `Agency` row, or what a request's key says of it."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Route:
    """The rule that matched (None: no rule did), the acquirers to try in order, and the
    acquirers of that rule left out, each with the reason."""

    rule: str | None
    providers: tuple[str, ...]
    skipped: dict[str, str]

    def as_record(self) -> dict[str, object]:
        return {"rule": self.rule, "providers": list(self.providers), "skipped": self.skipped}


def _matches(rule: RoutingRule, payment: Payment, agency: AgencyFacts, method: str) -> bool:
    return (
        (rule.livemode is None or rule.livemode == payment.livemode)
        and (not rule.states or agency.state in rule.states)
        and (not rule.currencies or payment.currency in rule.currencies)
        and (not rule.agencies or agency.id in rule.agencies)
        and (not rule.methods or method in rule.methods)
        and (rule.min_amount is None or payment.amount_minor >= rule.min_amount)
        and (rule.max_amount is None or payment.amount_minor <= rule.max_amount)
    )


def _skip_reason(
    name: str,
    registry: ProviderRegistry,
    payment: Payment,
    method: str,
    breakers: Breakers | None,
) -> str | None:
    if name not in registry:
        return NOT_CONFIGURED
    caps = registry.get(name).capabilities
    if caps.livemode != payment.livemode:
        return WRONG_MODE
    if not caps.accepts(
        currency=payment.currency,
        method=method,
        amount_minor=payment.amount_minor,
        manual=payment.capture_method == "manual",
    ):
        return CANNOT_TAKE
    # Last, so that an acquirer that could never take the payment says so instead.
    if breakers is not None and not breakers.for_name(name).available():
        return BREAKER_OPEN
    return None


def route(  # noqa: PLR0917 - the positional order every caller already uses
    rules: tuple[RoutingRule, ...],
    registry: ProviderRegistry,
    payment: Payment,
    agency: AgencyFacts,
    method: str,
    breakers: Breakers | None = None,
) -> Route:
    """The first matching rule's acquirers that are configured, can take this payment and
    whose breaker is not open; `breakers=None` checks no breaker."""
    for rule in rules:
        if not _matches(rule, payment, agency, method):
            continue
        chosen: list[str] = []
        skipped: dict[str, str] = {}
        for name in rule.providers:
            reason = _skip_reason(name, registry, payment, method, breakers)
            if reason is None:
                chosen.append(name)
            else:
                skipped[name] = reason
        return Route(rule=rule.name, providers=tuple(chosen), skipped=skipped)
    return Route(rule=None, providers=(), skipped={})


def methods_for(
    rules: tuple[RoutingRule, ...],
    registry: ProviderRegistry,
    payment: Payment,
    agency: AgencyFacts,
    breakers: Breakers | None,
) -> tuple[str, ...]:
    """The payment methods that some acquirer could take this payment by, right now."""
    return tuple(
        method
        for method in PAYMENT_METHODS
        if route(rules, registry, payment, agency, method, breakers).providers
    )
