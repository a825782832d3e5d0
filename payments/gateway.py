"""The composition root: settings, database, acquirers, routing rules and breakers, built once."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from config import (
    DEFAULT_ROUTING_RULES,
    MADA,
    AcquirerConfig,
    ConfigurationError,
    RoutingRule,
    SandboxOptions,
    Settings,
)
from payments.breaker import Breakers
from payments.cache import TtlCache
from payments.db import Database, make_engine
from payments.schemes import build_schemes
from providers import Provider, ProviderRegistry
from providers.sandbox import SandboxFaults, SandboxProvider, SandboxStore
from providers.simulators import SchemeDesk

if TYPE_CHECKING:
    from payments.principal import Principal

# How long a process keeps an API key it verified: a revoked key is refused by every node
# within this, and a request under a known key costs no database look-up.
VERIFIED_KEY_TTL_S = 1.0
VERIFIED_KEYS_MAX = 10_000


def _verified_keys() -> TtlCache[str, Principal]:
    return TtlCache(VERIFIED_KEY_TTL_S, VERIFIED_KEYS_MAX)


@dataclasses.dataclass
class Gateway:
    """What every service function needs: passed in, never imported as a global."""

    settings: Settings
    db: Database
    providers: ProviderRegistry
    routing_rules: tuple[RoutingRule, ...] = DEFAULT_ROUTING_RULES
    # Per process: each gunicorn worker keeps its own (see payments/breaker.py).
    breakers: Breakers = dataclasses.field(default_factory=Breakers)
    # Per process too: API keys by digest, verified in the last VERIFIED_KEY_TTL_S.
    verified_keys: TtlCache[str, Principal] = dataclasses.field(default_factory=_verified_keys)
    # The national schemes' simulators, by scheme, outside production (payments/checkout).
    scheme_desks: dict[str, SchemeDesk] = dataclasses.field(default_factory=dict)

    @property
    def fingerprint_key(self) -> bytes:
        return ("card-fingerprint:" + self.settings.secret_key).encode()


def _stripe(
    settings: Settings, name: str, api_key: str | None, api_base: str | None, secret: str | None
) -> Provider:
    # Imported here so that a gateway without Stripe never loads the SDK.
    from providers.stripe import StripeProvider

    if not api_key:
        raise ConfigurationError(f"acquirer {name}: no api_key and no GATEWAY_STRIPE_API_KEY")
    return StripeProvider(
        name=name,
        api_key=api_key,
        api_base=api_base or settings.stripe_api_base,
        webhook_secret=secret or settings.stripe_webhook_secret,
        sdk_console_log=settings.stripe_sdk_log,
    )


def _faults(settings: Settings) -> SandboxFaults | None:
    """The faults a fault drill asked the sandbox to inject, if any."""
    return SandboxFaults(**dict(settings.sandbox_faults)) if settings.sandbox_faults else None


def _challenge_url(settings: Settings) -> str:
    """The sandbox's 3-D Secure simulator page, served by the gateway outside production."""
    return f"{settings.public_url}/sandbox/3ds"


def _instance(settings: Settings, store: SandboxStore, acquirer: AcquirerConfig) -> Provider:
    options = acquirer.options
    if isinstance(options, SandboxOptions):
        return SandboxProvider(
            store,
            name=acquirer.name,
            errors_before_charge=options.errors_before_charge,
            challenge_url=_challenge_url(settings),
            faults=_faults(settings),
        )
    return _stripe(
        settings,
        acquirer.name,
        options.api_key or settings.stripe_api_key,
        options.api_base,
        options.webhook_secret,
    )


def _mada(settings: Settings, store: SandboxStore) -> Provider:
    """The test-mode mada acquirer: the sandbox under mada's rules (SAR, purchase only, every
    payer on the hosted page asked for 3-D Secure, amounts ending in 13 declined)."""
    return SandboxProvider(
        store,
        name=MADA,
        currencies=frozenset({"SAR"}),
        methods=frozenset({MADA}),
        manual_capture=False,
        scheme_rules=True,
        challenge_url=_challenge_url(settings),
    )


def build_providers(settings: Settings, schemes: Sequence[Provider] = ()) -> ProviderRegistry:
    """The built-in `sandbox`, every configured instance, `stripe` when it has a key, and
    outside production mada's acquirer and the national `schemes`."""
    # One store for every sandbox instance: a charge made through one is visible to all.
    store = SandboxStore(settings.sandbox_database)
    providers: list[Provider] = [
        SandboxProvider(store, challenge_url=_challenge_url(settings), faults=_faults(settings))
    ]
    if settings.stripe_api_key:
        providers.append(_stripe(settings, "stripe", settings.stripe_api_key, None, None))
    providers += [_instance(settings, store, acquirer) for acquirer in settings.acquirers]
    if not settings.is_production:
        providers.append(_mada(settings, store))
    providers += schemes
    names = [provider.name for provider in providers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigurationError(f"acquirer names used twice: {', '.join(duplicates)}")
    return ProviderRegistry(providers)


def build_gateway(settings: Settings, *, pool_size: int = 5) -> Gateway:
    schemes, desks = build_schemes(settings)
    return Gateway(
        settings=settings,
        db=Database(make_engine(settings.database_url, pool_size=pool_size)),
        providers=build_providers(settings, schemes),
        routing_rules=settings.routing_rules,
        breakers=Breakers(settings.breaker),
        scheme_desks=desks,
    )
