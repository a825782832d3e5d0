"""The composition root: settings, database, acquirers and routing rules, built once."""

from __future__ import annotations

import dataclasses

from config import DEFAULT_ROUTING_RULES, RoutingRule, Settings
from payments.db import Database, make_engine
from providers import ProviderRegistry
from providers.sandbox import SandboxProvider, SandboxStore


@dataclasses.dataclass
class Gateway:
    """What every service function needs: passed in, never imported as a global."""

    settings: Settings
    db: Database
    providers: ProviderRegistry
    routing_rules: tuple[RoutingRule, ...] = DEFAULT_ROUTING_RULES

    @property
    def fingerprint_key(self) -> bytes:
        return ("card-fingerprint:" + self.settings.secret_key).encode()


def build_gateway(settings: Settings, *, pool_size: int = 5) -> Gateway:
    registry = ProviderRegistry([SandboxProvider(SandboxStore(settings.sandbox_database))])
    return Gateway(
        settings=settings,
        db=Database(make_engine(settings.database_url, pool_size=pool_size)),
        providers=registry,
    )
