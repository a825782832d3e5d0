"""Routing rules and acquirer instances as data, from the defaults, a TOML file or shortcuts.

Built-in acquirer instances: `sandbox` always, and `stripe` when `GATEWAY_STRIPE_API_KEY` is
set. The default rules send test-mode payments to `sandbox` and live card payments to `stripe`.

Environment variables (read by `load_settings`, which hands them in here):

`GATEWAY_ROUTING_FILE`
    Path of a TOML file (format below) that adds acquirer instances, sets the circuit breaker
    and may replace the default rules. It cannot be combined with the shortcuts below: a
    deployment that has a file keeps all of its routing in it.
`GATEWAY_SANDBOX_BACKUP`
    `1` adds the instance `sandbox-backup` (a sandbox that never errors on the test card
    ending 0119, so failover can be seen) after `sandbox` in the test-mode rule; `0` or unset
    adds nothing.
`GATEWAY_ROUTING_TEST_PROVIDERS`, `GATEWAY_ROUTING_LIVE_PROVIDERS`
    Comma-separated acquirer names, in order, that replace the provider list of the default
    test-mode rule or live-card rule (for example `stripe` to send test-mode payments to Stripe
    with a test key). Every name must be configured.

The file; every table is optional and unknown keys are refused:

    # extra acquirer instances beside the built-in ones; a name is 1-40 of a-z, 0-9, - and _
    [acquirers.sandbox-backup]
    adapter = "sandbox"            # sandbox | stripe
    errors_before_charge = false   # sandbox only, default true: false never errors on …0119

    [acquirers.stripe-uae]
    adapter = "stripe"
    api_key = "sk_live_…"          # stripe only; each of the three defaults to its
    api_base = "https://…"         # GATEWAY_STRIPE_API_KEY, GATEWAY_STRIPE_API_BASE and
    webhook_secret = "whsec_…"     # GATEWAY_STRIPE_WEBHOOK_SECRET value

    [breaker]
    failures = 5        # `unavailable` results within the window that open the breaker
    window_s = 60
    cooldown_s = 30     # how long it stays open before one trial call is let through

    [[rules]]           # in order: the first rule that matches a payment wins
    name = "test-mode"
    livemode = false    # optional: only test-mode (false) or only live (true) payments
    providers = ["sandbox", "sandbox-backup"]
    # optional, each a non-empty list or a number: states = ["OM"], currencies = ["OMR"],
    # agencies = ["om-moh"], methods = ["card"], min_amount = 1000, max_amount = 500000
    # (amounts in minor units, both inclusive)

When the file has `[[rules]]` they replace the default rules entirely; without them the
defaults stay. A rule may only name configured instances, so a file that routes to `stripe`
needs `GATEWAY_STRIPE_API_KEY`. A file that cannot be read, parsed or checked stops the gateway
at start with a message naming the file and the key that is wrong.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, get_args

Adapter = Literal["sandbox", "stripe"]
ADAPTERS: tuple[str, ...] = get_args(Adapter)
SANDBOX: Final = "sandbox"
STRIPE: Final = "stripe"
SANDBOX_BACKUP = "sandbox-backup"
# These three lists repeat payments' own (the member states agencies may belong to, the
# currencies of payments.money, the methods the service offers) because config imports nothing
# from payments; a unit test keeps them equal.
MEMBER_STATES = ("SA", "AE", "KW", "QA", "BH", "OM")
CURRENCIES = ("SAR", "AED", "QAR", "KWD", "BHD", "OMR", "USD")
# `card` is any card; `mada` a Saudi mada card (recognised by its BIN, taken by a mada-capable
# acquirer, purchase only); the others pay on a national scheme's own page.
PAYMENT_METHODS = ("card", "mada", "knet", "benefit", "omannet")
AGENCY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
# 40 characters: the width of the `provider` columns that store an instance's name.
ACQUIRER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}\Z")
MAX_AMOUNT_MINOR = 10**12
MAX_ACQUIRERS = 32
MAX_RULES = 100
MAX_LIST_ITEMS = 64
MAX_RULE_NAME_CHARS = 64
MAX_ROUTING_FILE_BYTES = 256 * 1024
MAX_BREAKER_FAILURES = 1000
MAX_BREAKER_SECONDS = 24 * 3600.0


class RoutingConfigError(ValueError):
    """The routing file or shortcuts do not describe routing the gateway can use."""


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


@dataclasses.dataclass(frozen=True)
class SandboxOptions:
    """A sandbox instance; `errors_before_charge=False` never answers `unavailable`."""

    errors_before_charge: bool = True


@dataclasses.dataclass(frozen=True)
class StripeOptions:
    """A Stripe instance; each `None` means the matching `GATEWAY_STRIPE_*` setting."""

    api_key: str | None = dataclasses.field(default=None, repr=False)
    api_base: str | None = None
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class AcquirerConfig:
    """One acquirer instance beside the built-in ones: its name, adapter and options."""

    name: str
    adapter: Adapter
    options: SandboxOptions | StripeOptions

    def __post_init__(self) -> None:
        expected = SandboxOptions if self.adapter == SANDBOX else StripeOptions
        if not isinstance(self.options, expected):
            raise TypeError(f"acquirer {self.name}: {self.adapter} takes {expected.__name__}")


@dataclasses.dataclass(frozen=True)
class BreakerConfig:
    """When an acquirer's circuit breaker opens, and for how long it stays open."""

    failures: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0


DEFAULT_BREAKER = BreakerConfig()


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
    """Everything routing takes from configuration."""

    acquirers: tuple[AcquirerConfig, ...] = ()
    rules: tuple[RoutingRule, ...] = ()
    breaker: BreakerConfig = DEFAULT_BREAKER


TEST_RULE = RoutingRule(name="test-mode-sandbox", livemode=False, providers=(SANDBOX,))
# The national schemes' simulators, built in outside production, and the test-mode rules that
# offer each scheme to its own member state's agencies (DESIGN.md, "Acquirers").
KNET: Final = "knet"
BENEFIT: Final = "benefit"
OMANNET: Final = "omannet"
MADA: Final = "mada"
SCHEME_SIMULATORS: tuple[str, ...] = (KNET, BENEFIT, OMANNET, MADA)
SCHEME_RULES: tuple[RoutingRule, ...] = tuple(
    RoutingRule(
        name=f"test-mode-{scheme}",
        livemode=False,
        states=(state,),
        methods=(scheme,),
        providers=(scheme,),
    )
    for scheme, state in ((KNET, "KW"), (BENEFIT, "BH"), (OMANNET, "OM"), (MADA, "SA"))
)
LIVE_RULE = RoutingRule(
    name="live-cards-stripe", livemode=True, methods=("card",), providers=(STRIPE,)
)
DEFAULT_ROUTING_RULES: tuple[RoutingRule, ...] = (TEST_RULE, LIVE_RULE)


def builtin_acquirers(*, stripe_configured: bool, simulators: bool = True) -> tuple[str, ...]:
    names = (SANDBOX, STRIPE) if stripe_configured else (SANDBOX,)
    return names + (SCHEME_SIMULATORS if simulators else ())


def default_rules(*, simulators: bool) -> tuple[RoutingRule, ...]:
    """The default rules: the schemes' test-mode rules while their simulators run, then cards."""
    return (SCHEME_RULES if simulators else ()) + DEFAULT_ROUTING_RULES


def load_routing(
    environ: Mapping[str, str], *, stripe_configured: bool, simulators: bool = True
) -> RoutingConfig:
    """Routing from `GATEWAY_ROUTING_FILE`, or the defaults changed by the shortcuts.
    `simulators`: the national schemes' simulators are built in (never in production)."""
    path = environ.get("GATEWAY_ROUTING_FILE", "").strip()
    backup = _flag(environ.get("GATEWAY_SANDBOX_BACKUP", ""), "GATEWAY_SANDBOX_BACKUP")
    shortcuts = {
        variable: environ.get(variable, "").strip()
        for variable in ("GATEWAY_ROUTING_TEST_PROVIDERS", "GATEWAY_ROUTING_LIVE_PROVIDERS")
    }
    if path:
        used = [variable for variable, raw in shortcuts.items() if raw]
        used += ["GATEWAY_SANDBOX_BACKUP"] if backup else []
        if used:
            raise RoutingConfigError(
                f"GATEWAY_ROUTING_FILE is set, so {' and '.join(used)} must not be: "
                "put all routing in the file"
            )
        return read_routing_file(
            Path(path), stripe_configured=stripe_configured, simulators=simulators
        )
    acquirers: tuple[AcquirerConfig, ...] = ()
    test_rule, live_rule = TEST_RULE, LIVE_RULE
    if backup:
        acquirers = (
            AcquirerConfig(SANDBOX_BACKUP, SANDBOX, SandboxOptions(errors_before_charge=False)),
        )
        test_rule = dataclasses.replace(TEST_RULE, providers=(SANDBOX, SANDBOX_BACKUP))
    configured = builtin_acquirers(stripe_configured=stripe_configured, simulators=simulators) + (
        (SANDBOX_BACKUP,) if backup else ()
    )
    variable = "GATEWAY_ROUTING_TEST_PROVIDERS"
    if shortcuts[variable]:
        names = _env_names(shortcuts[variable], variable, configured)
        test_rule = dataclasses.replace(TEST_RULE, name="test-mode-env", providers=names)
    variable = "GATEWAY_ROUTING_LIVE_PROVIDERS"
    if shortcuts[variable]:
        names = _env_names(shortcuts[variable], variable, configured)
        live_rule = dataclasses.replace(LIVE_RULE, name="live-cards-env", providers=names)
    schemes = SCHEME_RULES if simulators else ()
    return RoutingConfig(acquirers=acquirers, rules=(*schemes, test_rule, live_rule))


def read_routing_file(
    path: Path, *, stripe_configured: bool, simulators: bool = True
) -> RoutingConfig:
    """Read and check a routing file; every error names the file."""
    prefix = f"GATEWAY_ROUTING_FILE {path}"
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_ROUTING_FILE_BYTES + 1)
    except OSError as exc:
        raise RoutingConfigError(f"{prefix}: cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_ROUTING_FILE_BYTES:
        raise RoutingConfigError(f"{prefix}: larger than {MAX_ROUTING_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RoutingConfigError(f"{prefix}: not UTF-8 ({exc.reason})") from exc
    try:
        return parse_routing(text, stripe_configured=stripe_configured, simulators=simulators)
    except RoutingConfigError as exc:
        raise RoutingConfigError(f"{prefix}: {exc}") from exc


def parse_routing(text: str, *, stripe_configured: bool, simulators: bool = True) -> RoutingConfig:
    """Parse and check the TOML text of a routing file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutingConfigError(f"not valid TOML: {exc}") from exc
    _only(data, {"acquirers", "breaker", "rules"}, "the file")
    builtin = builtin_acquirers(stripe_configured=stripe_configured, simulators=simulators)
    acquirers = _acquirers(data.get("acquirers", {}), stripe_configured)
    breaker = _breaker(data.get("breaker", {}))
    configured = builtin + tuple(a.name for a in acquirers)
    rules = default_rules(simulators=simulators)
    if "rules" in data:
        rules = _rules(data["rules"], configured)
    return RoutingConfig(acquirers=acquirers, rules=rules, breaker=breaker)


def _acquirers(value: object, stripe_configured: bool) -> tuple[AcquirerConfig, ...]:
    tables = _table(value, "acquirers")
    if len(tables) > MAX_ACQUIRERS:
        raise RoutingConfigError(f"acquirers: at most {MAX_ACQUIRERS} instances")
    found: list[AcquirerConfig] = []
    for name, raw in tables.items():
        where = f"acquirers.{name}"
        if not ACQUIRER_NAME_RE.match(name):
            raise RoutingConfigError(
                f"{where}: a name is 1 to 40 of a-z, 0-9, '-' and '_', starting with a letter "
                "or digit"
            )
        # `stripe` is reserved even without a key, so setting one later cannot clash.
        if name in (SANDBOX, STRIPE, *SCHEME_SIMULATORS):
            raise RoutingConfigError(f"{where}: {name!r} is a built-in instance; pick another name")
        table = _table(raw, where)
        adapter = table.get("adapter")
        if adapter is None:
            raise RoutingConfigError(f"{where}: adapter is required ({' or '.join(ADAPTERS)})")
        if adapter == SANDBOX:
            _only(table, {"adapter", "errors_before_charge"}, where)
            errors = _bool(table.get("errors_before_charge", True), f"{where}.errors_before_charge")
            found.append(AcquirerConfig(name, SANDBOX, SandboxOptions(errors_before_charge=errors)))
        elif adapter == STRIPE:
            _only(table, {"adapter", "api_key", "api_base", "webhook_secret"}, where)
            options = StripeOptions(
                api_key=_optional_str(table.get("api_key"), f"{where}.api_key"),
                api_base=_optional_str(table.get("api_base"), f"{where}.api_base"),
                webhook_secret=_optional_str(
                    table.get("webhook_secret"), f"{where}.webhook_secret"
                ),
            )
            if options.api_key is None and not stripe_configured:
                raise RoutingConfigError(
                    f"{where}: api_key is required when GATEWAY_STRIPE_API_KEY is not set"
                )
            found.append(AcquirerConfig(name, STRIPE, options))
        else:
            raise RoutingConfigError(
                f"{where}: unknown adapter {adapter!r}; one of {', '.join(ADAPTERS)}"
            )
    return tuple(found)


def _breaker(value: object) -> BreakerConfig:
    table = _table(value, "breaker")
    _only(table, {"failures", "window_s", "cooldown_s"}, "breaker")
    default = DEFAULT_BREAKER
    failures = table.get("failures", default.failures)
    if isinstance(failures, bool) or not isinstance(failures, int):
        raise RoutingConfigError("breaker.failures: must be an integer")
    if not 1 <= failures <= MAX_BREAKER_FAILURES:
        raise RoutingConfigError(f"breaker.failures: must be 1 to {MAX_BREAKER_FAILURES}")
    return BreakerConfig(
        failures=failures,
        window_s=_seconds(table.get("window_s", default.window_s), "breaker.window_s"),
        cooldown_s=_seconds(table.get("cooldown_s", default.cooldown_s), "breaker.cooldown_s"),
    )


def _rules(value: object, configured: tuple[str, ...]) -> tuple[RoutingRule, ...]:
    if not isinstance(value, list):
        raise RoutingConfigError("rules: must be an array of tables, written [[rules]]")
    if not 1 <= len(value) <= MAX_RULES:
        raise RoutingConfigError(
            f"rules: 1 to {MAX_RULES} [[rules]] tables; leave rules out for the default rules"
        )
    rules: list[RoutingRule] = []
    for index, raw in enumerate(value, start=1):
        where = f"rules #{index}"
        rule = _rule(_table(raw, where), where, configured)
        if any(r.name == rule.name for r in rules):
            raise RoutingConfigError(f"rules #{index}: duplicate rule name {rule.name!r}")
        rules.append(rule)
    return tuple(rules)


_RULE_KEYS = {
    "name",
    "providers",
    "livemode",
    "states",
    "currencies",
    "agencies",
    "methods",
    "min_amount",
    "max_amount",
}


def _rule(table: dict[str, object], where: str, configured: tuple[str, ...]) -> RoutingRule:
    name = table.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_RULE_NAME_CHARS:
        raise RoutingConfigError(
            f"{where}: name is required, 1 to {MAX_RULE_NAME_CHARS} characters"
        )
    where = f"{where} ({name!r})"
    _only(table, _RULE_KEYS, where)
    if "providers" not in table:
        raise RoutingConfigError(f"{where}: providers is required")
    livemode = table.get("livemode")
    min_amount = _amount(table.get("min_amount"), f"{where}.min_amount")
    max_amount = _amount(table.get("max_amount"), f"{where}.max_amount")
    if min_amount is not None and max_amount is not None and min_amount > max_amount:
        raise RoutingConfigError(
            f"{where}: min_amount {min_amount} is above max_amount {max_amount}"
        )
    return RoutingRule(
        name=name,
        providers=_names(table["providers"], f"{where}.providers", configured, "acquirer"),
        livemode=None if livemode is None else _bool(livemode, f"{where}.livemode"),
        states=_names(table.get("states"), f"{where}.states", MEMBER_STATES, "member state"),
        currencies=_names(table.get("currencies"), f"{where}.currencies", CURRENCIES, "currency"),
        agencies=_agencies(table.get("agencies"), f"{where}.agencies"),
        methods=_names(table.get("methods"), f"{where}.methods", PAYMENT_METHODS, "method"),
        min_amount=min_amount,
        max_amount=max_amount,
    )


def _names(value: object, where: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A non-empty list of distinct strings, each one of `allowed`; absent means ()."""
    items = _strings(value, where)
    for item in items:
        if item not in allowed:
            configured = "configured " if what == "acquirer" else ""
            raise RoutingConfigError(
                f"{where}: {item!r} is not a {configured}{what}; one of {', '.join(allowed)}"
            )
    return items


def _agencies(value: object, where: str) -> tuple[str, ...]:
    items = _strings(value, where)
    for item in items:
        if not AGENCY_ID_RE.match(item):
            raise RoutingConfigError(f"{where}: {item!r} is not an agency id")
    return items


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RoutingConfigError(f"{where}: must be a list of strings")
    if not 1 <= len(value) <= MAX_LIST_ITEMS:
        raise RoutingConfigError(
            f"{where}: 1 to {MAX_LIST_ITEMS} entries; leave it out to match any"
        )
    if len(set(value)) != len(value):
        raise RoutingConfigError(f"{where}: names an entry twice")
    return tuple(value)


def _amount(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RoutingConfigError(f"{where}: must be an integer amount in minor units")
    if not 0 <= value <= MAX_AMOUNT_MINOR:
        raise RoutingConfigError(f"{where}: must be 0 to {MAX_AMOUNT_MINOR}")
    return value


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RoutingConfigError(f"{where}: must be a number of seconds")
    if not 0 < value <= MAX_BREAKER_SECONDS:
        raise RoutingConfigError(f"{where}: must be above 0 and at most {MAX_BREAKER_SECONDS:g}")
    return float(value)


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise RoutingConfigError(f"{where}: must be true or false")
    return value


def _optional_str(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RoutingConfigError(f"{where}: must be a non-empty string")
    return value


def _table(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise RoutingConfigError(f"{where}: must be a table")
    return value


def _only(table: Mapping[str, object], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RoutingConfigError(
            f"{where}: unknown key {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _flag(raw: str, variable: str) -> bool:
    value = raw.strip()
    if value not in ("", "0", "1"):
        raise RoutingConfigError(f"{variable} must be 1 or 0")
    return value == "1"


def _env_names(raw: str, variable: str, configured: tuple[str, ...]) -> tuple[str, ...]:
    names = [part.strip() for part in raw.split(",")]
    if not all(names):
        raise RoutingConfigError(f"{variable}: an empty name in {raw!r}")
    return _names(names, variable, configured, "acquirer")
