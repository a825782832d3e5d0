"""Gateway settings: built once from `GATEWAY_*` variables; nothing else reads the environment."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from limits import parse_many

from config.routing import (
    DEFAULT_BREAKER,
    SANDBOX,
    AcquirerConfig,
    BreakerConfig,
    RoutingConfig,
    RoutingConfigError,
    RoutingRule,
    StripeOptions,
    default_rules,
    load_routing,
)
from config.tolerance import Tolerance, ToleranceError, parse_tolerances

ENVIRONMENTS = ("development", "test", "production")
# Outside production the national schemes' simulators are built in, with their rules first.
WITH_SCHEME_SIMULATORS = default_rules(simulators=True)
DEV_SECRET_MARKER = "dev-"  # noqa: S105 - marks generated development secrets
WEBHOOK_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0)
MAX_WEBHOOK_RETRIES = 20
MAX_WEBHOOK_DELAY_S = 7 * 24 * 3600.0
WEBHOOK_TIMEOUT_S = 15.0
MAX_WEBHOOK_TIMEOUT_S = 60.0
MAX_SETTLEMENT_LAG_DAYS = 60
MAX_IDEMPOTENCY_LEASE_S = 3600.0
DEFAULT_RATE_LIMIT = "100/second;3000/minute"
DEFAULT_RATE_LIMIT_UNAUTHENTICATED = "10/second;300/minute"
DEFAULT_RATE_LIMIT_CHECKOUT = "300/minute"
DEFAULT_RATE_LIMIT_CHECKOUT_POST = "60/minute"
MAX_RATE_LIMITS_FILE_BYTES = 1024 * 1024
RATE_LIMIT_AGENCY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")  # an agency id's shape
REDIS_URL_SCHEMES = ("redis://", "rediss://", "redis+unix://")
METRICS_SAMPLE_S = 5.0
MAX_METRICS_SAMPLE_S = 300.0
# A bearer token as an HTTP header carries it: visible ASCII, long enough not to be guessed.
METRICS_TOKEN_RE = re.compile(r"^[\x21-\x7e]{32,256}\Z")
# Stripe's secret and restricted keys that move real money.
LIVE_STRIPE_KEY_PREFIXES = ("sk_live_", "rk_live_")


class ConfigurationError(Exception):
    """The environment does not describe a gateway that may start."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob of the gateway; tests build one directly instead of touching `os.environ`."""

    env: str = "development"
    database_url: str = "sqlite:///var/gateway.db"
    var_dir: Path = Path("var")
    secret_key: str = ""
    # The secret key replaced at the last rotation, kept for a day so that hosted-page links
    # and idempotency fingerprints made under it still verify (README: key rotation).
    previous_secret_key: str | None = None
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
    # `STRIPE_LOG`, the Stripe SDK's own console switch (refused in production): the Stripe
    # acquirer holds it at `info` so that the SDK never prints a request body.
    stripe_sdk_log: str | None = None
    sandbox_database: Path = Path("var/sandbox.db")
    # Faults the sandbox injects at random for fault drills (`GATEWAY_SANDBOX_FAULTS`, e.g.
    # `error_before_charge=0.1,timeout_after_charge=0.1,slow=0.1,slow_s=2`); empty: none.
    sandbox_faults: tuple[tuple[str, float], ...] = ()
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
    # Per acquirer, how far a settlement line may drift and still settle (config/tolerance.py).
    settlement_tolerances: Mapping[str, Tolerance] = dataclasses.field(default_factory=dict)
    log_level: str = "INFO"
    # Routing (config/routing.py): ordered rules, acquirer instances beside the built-in
    # `sandbox` and `stripe`, and when an instance's circuit breaker opens.
    routing_rules: tuple[RoutingRule, ...] = WITH_SCHEME_SIMULATORS
    acquirers: tuple[AcquirerConfig, ...] = ()
    breaker: BreakerConfig = DEFAULT_BREAKER
    # Rate limits (payments/api/limits.py), each a string of one or more limits (`limits` notation):
    # per API key, or per agency instead (agency id, limit); per client address for /v1 calls
    # without a valid key; per address on the hosted page, its POSTs more tightly.
    rate_limit: str = DEFAULT_RATE_LIMIT
    rate_limits_by_agency: tuple[tuple[str, str], ...] = ()
    rate_limit_unauthenticated: str = DEFAULT_RATE_LIMIT_UNAUTHENTICATED
    rate_limit_checkout: str = DEFAULT_RATE_LIMIT_CHECKOUT
    rate_limit_checkout_post: str = DEFAULT_RATE_LIMIT_CHECKOUT_POST
    # Where the rate limits count: unset, in each process; a Redis URL shares the counts.
    redis_url: str | None = None
    # `GET /metrics` answers only `Authorization: Bearer <token>` when set; and reads the
    # backlogs from the database at most once per `metrics_sample_s` in each process.
    metrics_token: str | None = None
    metrics_sample_s: float = METRICS_SAMPLE_S

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


def _tolerances(raw: str | None) -> dict[str, Tolerance]:
    try:
        return parse_tolerances(raw or "")
    except ToleranceError as exc:
        raise ConfigurationError(f"GATEWAY_SETTLEMENT_TOLERANCES: {exc}") from exc


SANDBOX_FAULTS = ("error_before_charge", "timeout_after_charge", "slow", "slow_s")


def _sandbox_faults(raw: str | None) -> tuple[tuple[str, float], ...]:
    """`name=value` pairs: three probabilities that add up to at most 1, and `slow_s`."""
    if not raw:
        return ()
    faults: dict[str, float] = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in SANDBOX_FAULTS or name in faults:
            raise ConfigurationError(
                f"GATEWAY_SANDBOX_FAULTS: {name!r} is not one of {', '.join(SANDBOX_FAULTS)} "
                "(each at most once)"
            )
        try:
            faults[name] = float(value)
        except ValueError as exc:
            raise ConfigurationError(f"GATEWAY_SANDBOX_FAULTS: {name}: {exc}") from exc
    chances = [faults.get(name, 0.0) for name in SANDBOX_FAULTS[:3]]
    if not all(0 <= chance <= 1 for chance in chances) or sum(chances) > 1:
        raise ConfigurationError(
            "GATEWAY_SANDBOX_FAULTS: probabilities are from 0 to 1 and add up to at most 1"
        )
    if not 0 <= faults.get("slow_s", 0.0) <= 30:
        raise ConfigurationError("GATEWAY_SANDBOX_FAULTS: slow_s is from 0 to 30 seconds")
    return tuple(sorted(faults.items()))


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


def check_rate_limit(value: str, where: str) -> str:
    """`value` if it is a string of one or more limits (`limits` notation), each of at least 1."""
    try:
        items = parse_many(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"{where}: {exc}; write one or more limits such as 100/second;3000/minute"
        ) from exc
    if any(item.amount < 1 for item in items):
        raise ConfigurationError(f"{where}: every limit must allow at least 1 request")
    return value.strip()


def _rate_limit(name: str, raw: str | None, default: str) -> str:
    if raw is None or not raw.strip():
        return default
    return check_rate_limit(raw, name)


def _agency_rate_limits(path: str) -> tuple[tuple[str, str], ...]:
    """The `[agencies]` table of `GATEWAY_RATE_LIMITS_FILE`: agency id = "limit string"."""
    if not path.strip():
        return ()
    where = f"GATEWAY_RATE_LIMITS_FILE {path}"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_RATE_LIMITS_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"{where}: cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_RATE_LIMITS_FILE_BYTES:
        raise ConfigurationError(f"{where}: larger than {MAX_RATE_LIMITS_FILE_BYTES} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{where}: not UTF-8 TOML: {exc}") from exc
    unknown = sorted(set(data) - {"agencies"})
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {unknown[0]!r}; only [agencies] is read")
    agencies = data.get("agencies", {})
    if not isinstance(agencies, dict):
        raise ConfigurationError(f"{where}: agencies must be a table of agency id = limit")
    limits: list[tuple[str, str]] = []
    for agency_id, value in agencies.items():
        if not RATE_LIMIT_AGENCY_RE.match(agency_id):
            raise ConfigurationError(f"{where}: {agency_id!r} is not an agency id")
        if not isinstance(value, str):
            raise ConfigurationError(f"{where}: agencies.{agency_id} must be a string")
        limits.append((agency_id, check_rate_limit(value, f"{where}: agencies.{agency_id}")))
    return tuple(limits)


def _redis_url(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    if not raw.strip().startswith(REDIS_URL_SCHEMES):
        # The URL may hold a password: the message never repeats it.
        raise ConfigurationError(
            f"GATEWAY_REDIS_URL must start with one of {', '.join(REDIS_URL_SCHEMES)}"
        )
    return raw.strip()


def _metrics_token(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    if not METRICS_TOKEN_RE.match(raw.strip()):
        # The message never repeats the token.
        raise ConfigurationError(
            "GATEWAY_METRICS_TOKEN must be 32 to 256 visible ASCII characters, no spaces"
        )
    return raw.strip()


def _metrics_sample(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return METRICS_SAMPLE_S
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_METRICS_SAMPLE_S: {exc}") from exc
    if not 0 < value <= MAX_METRICS_SAMPLE_S:
        raise ConfigurationError(
            f"GATEWAY_METRICS_SAMPLE_S must be above 0 and at most {MAX_METRICS_SAMPLE_S:.0f}"
        )
    return value


def _refuse_stripe_console_log(get: Callable[[str], str | None]) -> None:
    """`STRIPE_LOG` is the Stripe SDK's own switch: at `debug` it prints every request body,
    a card's number and security code among them, to stderr past the gateway's log filter, and
    at `info` a line per call. Any value is refused: one this SDK ignores may be honoured by
    the next."""
    if get("STRIPE_LOG"):
        raise ConfigurationError(
            "STRIPE_LOG turns on the Stripe SDK's console log, which can print card data to "
            "stderr: unset it in production"
        )


def _refuse_unsafe_production(get: Callable[[str], str | None], routing: RoutingConfig) -> None:
    """Production runs on PostgreSQL, behind https, with no simulator: refuse anything else."""
    _refuse_stripe_console_log(get)
    database_url = get("GATEWAY_DATABASE_URL") or ""
    if database_url.startswith("sqlite"):
        raise ConfigurationError(
            "GATEWAY_DATABASE_URL names SQLite; production needs PostgreSQL "
            "(postgresql+psycopg://...)"
        )
    public_url = get("GATEWAY_PUBLIC_URL") or ""
    if not public_url.startswith("https://"):
        raise ConfigurationError(
            "GATEWAY_PUBLIC_URL must be the gateway's https:// address in production"
        )
    if get("GATEWAY_SANDBOX_FAULTS"):
        raise ConfigurationError(
            "GATEWAY_SANDBOX_FAULTS injects acquirer faults: not in production"
        )
    simulators = {SANDBOX} | {a.name for a in routing.acquirers if a.adapter == SANDBOX}
    extra = sorted(simulators - {SANDBOX})
    if extra:
        raise ConfigurationError(
            f"sandbox simulator instances configured ({', '.join(extra)}): not in production; "
            "unset GATEWAY_SANDBOX_BACKUP and remove sandbox acquirers from the routing file"
        )
    for rule in routing.rules:
        if rule.livemode is not False and simulators & set(rule.providers):
            raise ConfigurationError(
                f"routing rule {rule.name} may send live payments to the sandbox simulator; "
                "give it livemode = false or route it to a real acquirer"
            )


def _refuse_live_acquirers_outside_production(
    env: str, stripe_api_key: str | None, routing: RoutingConfig
) -> None:
    """A live acquirer key moves real money: never under development's generated secrets,
    SQLite, plain http and simulators, which is what a missing GATEWAY_ENV gives."""
    if env == "production":
        return
    keys = [("GATEWAY_STRIPE_API_KEY", stripe_api_key)]
    keys += [
        (f"acquirers.{a.name}.api_key (GATEWAY_ROUTING_FILE)", a.options.api_key)
        for a in routing.acquirers
        if isinstance(a.options, StripeOptions)
    ]
    for name, key in keys:
        if key is not None and key.startswith(LIVE_STRIPE_KEY_PREFIXES):
            raise ConfigurationError(
                f"{name} is a live Stripe key, but GATEWAY_ENV is {env}: set "
                "GATEWAY_ENV=production (with its real secrets), or use a test key"
            )


def _previous_secret_key(raw: str | None, current: str, production: bool) -> str | None:
    if not raw:
        return None
    if raw == current:
        raise ConfigurationError("GATEWAY_SECRET_KEY_PREVIOUS must differ from GATEWAY_SECRET_KEY")
    if production and (len(raw) < 32 or raw.startswith(DEV_SECRET_MARKER)):
        raise ConfigurationError(
            "GATEWAY_SECRET_KEY_PREVIOUS must be a real secret of 32+ characters"
        )
    return raw


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from `GATEWAY_*` variables; production refuses development secrets, SQLite,
    a plain-http public URL and the sandbox's simulators."""
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
        routing = load_routing(
            env_vars,
            stripe_configured=stripe_api_key is not None,
            simulators=env != "production",
        )
    except RoutingConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
    if env == "production":
        _refuse_unsafe_production(get, routing)
    _refuse_live_acquirers_outside_production(env, stripe_api_key, routing)
    return Settings(
        env=env,
        database_url=get("GATEWAY_DATABASE_URL", f"sqlite:///{var_dir}/gateway.db"),
        var_dir=var_dir,
        secret_key=secret_key,
        previous_secret_key=_previous_secret_key(
            get("GATEWAY_SECRET_KEY_PREVIOUS"), secret_key, env == "production"
        ),
        encryption_key=encryption_key,
        public_url=get("GATEWAY_PUBLIC_URL", f"http://127.0.0.1:{port}").rstrip("/"),
        port=port,
        webhook_allow_networks=_networks(get("GATEWAY_WEBHOOK_ALLOW_NETWORKS", "")),
        webhook_retry_schedule_s=_retry_schedule(get("GATEWAY_WEBHOOK_RETRY_SCHEDULE")),
        webhook_timeout_s=_webhook_timeout(get("GATEWAY_WEBHOOK_TIMEOUT_S")),
        stripe_api_key=stripe_api_key,
        stripe_api_base=get("GATEWAY_STRIPE_API_BASE") or None,
        stripe_webhook_secret=get("GATEWAY_STRIPE_WEBHOOK_SECRET") or None,
        stripe_sdk_log=get("STRIPE_LOG") or None,
        sandbox_database=Path(get("GATEWAY_SANDBOX_DATABASE", str(var_dir / "sandbox.db"))),
        sandbox_faults=_sandbox_faults(get("GATEWAY_SANDBOX_FAULTS")),
        settlement_lag_days=_settlement_lag(get("GATEWAY_SETTLEMENT_LAG_DAYS")),
        settlement_tolerances=_tolerances(get("GATEWAY_SETTLEMENT_TOLERANCES")),
        idempotency_lease_s=_lease(get("GATEWAY_IDEMPOTENCY_LEASE_S")),
        log_level=get("GATEWAY_LOG_LEVEL", "INFO"),
        routing_rules=routing.rules,
        acquirers=routing.acquirers,
        breaker=routing.breaker,
        rate_limit=_rate_limit("GATEWAY_RATE_LIMIT", get("GATEWAY_RATE_LIMIT"), DEFAULT_RATE_LIMIT),
        rate_limits_by_agency=_agency_rate_limits(get("GATEWAY_RATE_LIMITS_FILE", "")),
        rate_limit_unauthenticated=_rate_limit(
            "GATEWAY_RATE_LIMIT_UNAUTHENTICATED",
            get("GATEWAY_RATE_LIMIT_UNAUTHENTICATED"),
            DEFAULT_RATE_LIMIT_UNAUTHENTICATED,
        ),
        rate_limit_checkout=_rate_limit(
            "GATEWAY_RATE_LIMIT_CHECKOUT",
            get("GATEWAY_RATE_LIMIT_CHECKOUT"),
            DEFAULT_RATE_LIMIT_CHECKOUT,
        ),
        rate_limit_checkout_post=_rate_limit(
            "GATEWAY_RATE_LIMIT_CHECKOUT_POST",
            get("GATEWAY_RATE_LIMIT_CHECKOUT_POST"),
            DEFAULT_RATE_LIMIT_CHECKOUT_POST,
        ),
        redis_url=_redis_url(get("GATEWAY_REDIS_URL")),
        metrics_token=_metrics_token(get("GATEWAY_METRICS_TOKEN")),
        metrics_sample_s=_metrics_sample(get("GATEWAY_METRICS_SAMPLE_S")),
    )
