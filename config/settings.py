"""Gateway settings: built once from `GATEWAY_*` variables; nothing else reads the environment."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from config.routing import (
    DEFAULT_BREAKER,
    DEFAULT_ROUTING_RULES,
    AcquirerConfig,
    BreakerConfig,
    RoutingConfigError,
    RoutingRule,
    load_routing,
)

ENVIRONMENTS = ("development", "test", "production")
DEV_SECRET_MARKER = "dev-"  # noqa: S105 - marks generated development secrets
WEBHOOK_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
MAX_WEBHOOK_RETRIES = 20
MAX_WEBHOOK_DELAY_S = 7 * 24 * 3600.0
WEBHOOK_TIMEOUT_S = 15.0
MAX_WEBHOOK_TIMEOUT_S = 60.0
MAX_SETTLEMENT_LAG_DAYS = 60
MAX_IDEMPOTENCY_LEASE_S = 3600.0


class ConfigurationError(Exception):
    """The environment does not describe a gateway that may start."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the gateway; tests build one directly instead of touching `os.environ`."""

    env: str = "development"
    database_url: str = "sqlite:///var/gateway.db"
    var_dir: Path = Path("var")
    secret_key: str = ""
    encryption_key: str = ""
    public_url: str = "http://127.0.0.1:8000"
    port: int = 8000
    webhook_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Seconds after each failed attempt before the next: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
    # 14 h, 20 h, 24 h (API.md section 4); jitter is added on top.
    webhook_retry_schedule_s: tuple[float, ...] = WEBHOOK_RETRY_SCHEDULE_S
    webhook_timeout_s: float = WEBHOOK_TIMEOUT_S
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str | None = None
    sandbox_database: Path = Path("var/sandbox.db")
    payment_expiry_s: int = 90 * 60
    max_body_bytes: int = 64 * 1024
    # The largest settlement file an import accepts (CLI and `POST /v1/settlements`).
    max_settlement_file_bytes: int = 256 * 1024 * 1024
    idempotency_ttl_s: int = 24 * 60 * 60
    # How long a request holds its Idempotency-Key before a retry may take it over (API.md:
    # "about a minute"); longer than any acquirer call, so a live holder is never overtaken.
    idempotency_lease_s: float = 60.0
    # Days a capture or refund may wait for its settlement line before reconciliation calls it
    # `missing_in_settlement` rather than `pending_settlement`.
    settlement_lag_days: int = 2
    log_level: str = "INFO"
    # Routing (config/routing.py): ordered rules, acquirer instances beside the built-in
    # `sandbox` and `stripe`, and when an instance's circuit breaker opens.
    routing_rules: tuple[RoutingRule, ...] = DEFAULT_ROUTING_RULES
    acquirers: tuple[AcquirerConfig, ...] = ()
    breaker: BreakerConfig = DEFAULT_BREAKER

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def _var_secret(var_dir: Path, name: str, nbytes: int) -> str:
    """Read, or create once, a development secret kept under `var/`."""
    path = var_dir / name
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = DEV_SECRET_MARKER + base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_WEBHOOK_ALLOW_NETWORKS: {exc}") from exc


def _retry_schedule(raw: str | None) -> tuple[float, ...]:
    if raw is None or not raw.strip():
        return WEBHOOK_RETRY_SCHEDULE_S
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_WEBHOOK_RETRY_SCHEDULE: {exc}") from exc
    if not 1 <= len(delays) <= MAX_WEBHOOK_RETRIES or not all(
        0 < d <= MAX_WEBHOOK_DELAY_S for d in delays
    ):
        raise ConfigurationError(
            "GATEWAY_WEBHOOK_RETRY_SCHEDULE: 1 to 20 comma-separated delays in seconds, "
            "each above 0 and at most 7 days"
        )
    return delays


def _webhook_timeout(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return WEBHOOK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_WEBHOOK_TIMEOUT_S: {exc}") from exc
    if not 0 < value <= MAX_WEBHOOK_TIMEOUT_S:
        raise ConfigurationError("GATEWAY_WEBHOOK_TIMEOUT_S must be above 0 and at most 60")
    return value


def _settlement_lag(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return 2
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_SETTLEMENT_LAG_DAYS: {exc}") from exc
    if not 0 <= value <= MAX_SETTLEMENT_LAG_DAYS:
        raise ConfigurationError(
            f"GATEWAY_SETTLEMENT_LAG_DAYS must be a whole number of days from 0 to "
            f"{MAX_SETTLEMENT_LAG_DAYS}"
        )
    return value


def _lease(raw: str | None) -> float:
    if raw is None or raw == "":
        return 60.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_IDEMPOTENCY_LEASE_S: {exc}") from exc
    if not 1 <= value <= MAX_IDEMPOTENCY_LEASE_S:
        raise ConfigurationError(
            f"GATEWAY_IDEMPOTENCY_LEASE_S must be from 1 to {MAX_IDEMPOTENCY_LEASE_S:.0f} seconds"
        )
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `GATEWAY_*` variables; production refuses development secrets."""
    env_vars = os.environ if environ is None else environ
    get = env_vars.get
    env = get("GATEWAY_ENV", "development")
    if env not in ENVIRONMENTS:
        raise ConfigurationError(f"GATEWAY_ENV must be one of {', '.join(ENVIRONMENTS)}")
    var_dir = Path(get("GATEWAY_VAR_DIR", "var"))
    try:
        port = int(get("PORT", "8000"))
    except ValueError as exc:
        raise ConfigurationError("PORT must be an integer") from exc
    secret_key = get("GATEWAY_SECRET_KEY", "")
    encryption_key = get("GATEWAY_ENCRYPTION_KEY", "")
    if env == "production":
        for name, value in (
            ("GATEWAY_SECRET_KEY", secret_key),
            ("GATEWAY_ENCRYPTION_KEY", encryption_key),
        ):
            if len(value) < 32 or value.startswith(DEV_SECRET_MARKER):
                raise ConfigurationError(f"{name} must be a real secret of 32+ characters")
        if not get("GATEWAY_DATABASE_URL"):
            raise ConfigurationError("GATEWAY_DATABASE_URL is required in production")
    else:
        secret_key = secret_key or _var_secret(var_dir, "secret_key", 32)
        encryption_key = encryption_key or _var_secret(var_dir, "encryption_key", 32)
    stripe_api_key = get("GATEWAY_STRIPE_API_KEY") or None
    try:
        routing = load_routing(env_vars, stripe_configured=stripe_api_key is not None)
    except RoutingConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
    return Settings(
        env=env,
        database_url=get("GATEWAY_DATABASE_URL", f"sqlite:///{var_dir}/gateway.db"),
        var_dir=var_dir,
        secret_key=secret_key,
        encryption_key=encryption_key,
        public_url=get("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{port}").rstrip("/"),
        port=port,
        webhook_allow_networks=_networks(get("GATEWAY_WEBHOOK_ALLOW_NETWORKS", "")),
        webhook_retry_schedule_s=_retry_schedule(get("GATEWAY_WEBHOOK_RETRY_SCHEDULE")),
        webhook_timeout_s=_webhook_timeout(get("GATEWAY_WEBHOOK_TIMEOUT_S")),
        stripe_api_key=stripe_api_key,
        stripe_api_base=get("GATEWAY_STRIPE_API_BASE") or None,
        stripe_webhook_secret=get("GATEWAY_STRIPE_WEBHOOK_SECRET") or None,
        sandbox_database=Path(get("GATEWAY_SANDBOX_DATABASE", str(var_dir / "sandbox.db"))),
        settlement_lag_days=_settlement_lag(get("GATEWAY_SETTLEMENT_LAG_DAYS")),
        idempotency_lease_s=_lease(get("GATEWAY_IDEMPOTENCY_LEASE_S")),
        log_level=get("GATEWAY_LOG_LEVEL", "INFO"),
        routing_rules=routing.rules,
        acquirers=routing.acquirers,
        breaker=routing.breaker,
    )
