"""Routing rules as ordered data: which acquirers may take a payment, in what order."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RoutingRule:
    """A rule matches a payment when every field that is set matches; the first match wins."""

    name: str
    providers: tuple[str, ...]
    livemode: bool | None = None
    states: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    agencies: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    min_amount: int | None = None
    max_amount: int | None = None


DEFAULT_ROUTING_RULES: tuple[RoutingRule, ...] = (
    RoutingRule(name="test-mode-sandbox", livemode=False, providers=("sandbox",)),
    RoutingRule(name="live-cards-stripe", livemode=True, methods=("card",), providers=("stripe",)),
)
