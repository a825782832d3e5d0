"""Routing: the ordered acquirers a payment may go to, and the rule that chose them."""

from __future__ import annotations

import dataclasses

from config import RoutingRule
from payments.models import Agency, Payment
from providers import ProviderRegistry


@dataclasses.dataclass(frozen=True)
class Route:
    rule: str | None
    providers: tuple[str, ...]
    skipped: dict[str, str]

    def as_record(self) -> dict[str, object]:
        return {"rule": self.rule, "providers": list(self.providers), "skipped": self.skipped}


def _matches(rule: RoutingRule, payment: Payment, agency: Agency, method: str) -> bool:
    return (
        (rule.livemode is None or rule.livemode == payment.livemode)
        and (not rule.states or agency.state in rule.states)
        and (not rule.currencies or payment.currency in rule.currencies)
        and (not rule.agencies or agency.id in rule.agencies)
        and (not rule.methods or method in rule.methods)
        and (rule.min_amount is None or payment.amount_minor >= rule.min_amount)
        and (rule.max_amount is None or payment.amount_minor <= rule.max_amount)
    )


def route(
    rules: tuple[RoutingRule, ...],
    registry: ProviderRegistry,
    payment: Payment,
    agency: Agency,
    method: str,
) -> Route:
    """The first matching rule's acquirers that are configured and can take this payment."""
    for rule in rules:
        if not _matches(rule, payment, agency, method):
            continue
        chosen: list[str] = []
        skipped: dict[str, str] = {}
        for name in rule.providers:
            if name not in registry:
                skipped[name] = "not configured"
                continue
            caps = registry.get(name).capabilities
            if caps.livemode != payment.livemode:
                skipped[name] = "wrong mode"
            elif not caps.accepts(
                currency=payment.currency,
                method=method,
                amount_minor=payment.amount_minor,
                manual=payment.capture_method == "manual",
            ):
                skipped[name] = "cannot take this currency, method, amount or capture method"
            else:
                chosen.append(name)
        return Route(rule=rule.name, providers=tuple(chosen), skipped=skipped)
    return Route(rule=None, providers=(), skipped={})
