"""Routing configuration: the TOML file, the environment shortcuts and the refusals."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import config.routing
from config import (
    DEFAULT_ROUTING_RULES,
    AcquirerConfig,
    BreakerConfig,
    ConfigurationError,
    RoutingRule,
    SandboxOptions,
    Settings,
    StripeOptions,
    load_settings,
)
from config.routing import SCHEME_RULES, RoutingConfigError, parse_routing
from payments.money import CURRENCY_EXPONENTS
from payments.service.access import AGENCY_ID_RE, MEMBER_STATES

BACKUP = AcquirerConfig("sandbox-backup", "sandbox", SandboxOptions(errors_before_charge=False))


def _load(tmp_path: Path, toml: str | None = None, **env: str) -> Settings:
    environ = {"GATEWAY_VAR_DIR": str(tmp_path), **env}
    if toml is not None:
        path = tmp_path / "routing.toml"
        path.write_text(textwrap.dedent(toml))
        environ["GATEWAY_ROUTING_FILE"] = str(path)
    return load_settings(environ)


def test_without_configuration_the_defaults_hold(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.routing_rules == SCHEME_RULES + DEFAULT_ROUTING_RULES
    assert settings.acquirers == ()
    assert settings.breaker == BreakerConfig(failures=5, window_s=60.0, cooldown_s=30.0)
    assert [r.providers for r in DEFAULT_ROUTING_RULES] == [("sandbox",), ("stripe",)]
    assert Settings().routing_rules == SCHEME_RULES + DEFAULT_ROUTING_RULES


def test_each_scheme_is_offered_to_its_own_member_state_in_test_mode(tmp_path: Path) -> None:
    offered = {(r.states, r.methods, r.providers, r.livemode) for r in SCHEME_RULES}
    assert offered == {
        (("KW",), ("knet",), ("knet",), False),
        (("BH",), ("benefit",), ("benefit",), False),
        (("OM",), ("omannet",), ("omannet",), False),
        (("SA",), ("mada",), ("mada",), False),
    }


def test_production_has_no_scheme_simulators(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "GATEWAY_ENV": "production",
            "GATEWAY_VAR_DIR": str(tmp_path),
            "GATEWAY_DATABASE_URL": "postgresql+psycopg://db.internal/gateway",
            "GATEWAY_PUBLIC_URL": "https://pay.example.gov.om",
            "GATEWAY_SECRET_KEY": "k" * 48,
            "GATEWAY_ENCRYPTION_KEY": "e" * 48,
        }
    )
    assert settings.routing_rules == DEFAULT_ROUTING_RULES


def test_a_file_adds_instances_sets_the_breaker_and_replaces_the_rules(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
        [acquirers.sandbox-backup]
        adapter = "sandbox"
        errors_before_charge = false

        [breaker]
        failures = 3
        window_s = 10
        cooldown_s = 2.5

        [[rules]]
        name = "big-omani-payments"
        livemode = false
        states = ["OM"]
        currencies = ["OMR"]
        agencies = ["om-moh"]
        methods = ["card"]
        min_amount = 100000
        max_amount = 100000
        providers = ["sandbox-backup"]

        [[rules]]
        name = "test-mode"
        providers = ["sandbox", "sandbox-backup"]
        """,
    )
    assert settings.acquirers == (BACKUP,)
    assert settings.breaker == BreakerConfig(failures=3, window_s=10.0, cooldown_s=2.5)
    assert settings.routing_rules == (
        RoutingRule(
            name="big-omani-payments",
            livemode=False,
            states=("OM",),
            currencies=("OMR",),
            agencies=("om-moh",),
            methods=("card",),
            min_amount=100000,
            max_amount=100000,
            providers=("sandbox-backup",),
        ),
        RoutingRule(name="test-mode", providers=("sandbox", "sandbox-backup")),
    )


def test_a_file_without_rules_keeps_the_default_rules(tmp_path: Path) -> None:
    settings = _load(tmp_path, "[breaker]\nfailures = 2\n")
    assert settings.routing_rules == SCHEME_RULES + DEFAULT_ROUTING_RULES
    assert settings.breaker.failures == 2


def test_stripe_instances_take_options_or_the_stripe_settings(tmp_path: Path) -> None:
    toml = """
        [acquirers.stripe-ae]
        adapter = "stripe"
        api_key = "sk_test_ae"
        api_base = "http://127.0.0.1:12111"

        [acquirers.stripe-sa]
        adapter = "stripe"

        [[rules]]
        name = "live"
        livemode = true
        providers = ["stripe-ae", "stripe-sa", "stripe"]
        """
    settings = _load(tmp_path, toml, GATEWAY_STRIPE_API_KEY="sk_test_default")
    assert settings.acquirers == (
        AcquirerConfig(
            "stripe-ae", "stripe", StripeOptions("sk_test_ae", "http://127.0.0.1:12111")
        ),
        AcquirerConfig("stripe-sa", "stripe", StripeOptions()),
    )
    assert "sk_test_ae" not in repr(settings.acquirers)
    with pytest.raises(ConfigurationError, match=r"acquirers\.stripe-sa: api_key is required"):
        _load(tmp_path, toml.replace('"stripe"]', '"sandbox"]'))


def test_the_documented_example_is_valid() -> None:
    doc = config.routing.__doc__
    assert doc is not None
    example = doc.split("unknown keys are refused:\n", 1)[1].split("\nWhen the file", 1)[0]
    parsed = parse_routing(textwrap.dedent(example), stripe_configured=False)
    assert [a.name for a in parsed.acquirers] == ["sandbox-backup", "stripe-uae"]
    assert parsed.rules == (
        RoutingRule(name="test-mode", livemode=False, providers=("sandbox", "sandbox-backup")),
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("rules = [", "not valid TOML"),
        ("routes = []", r"the file: unknown key 'routes'"),
        ("[acquirers.x]\nadapter = 'sandbox'\nerrors = false", r"acquirers\.x: unknown key"),
        ("[acquirers.x]\nadapter = 'paypal'", r"acquirers\.x: unknown adapter 'paypal'"),
        ("[acquirers.x]\nerrors_before_charge = false", r"acquirers\.x: adapter is required"),
        ("[acquirers.x]\nadapter = 'sandbox'\nerrors_before_charge = 'no'", "true or false"),
        ("[acquirers.x]\nadapter = 'sandbox'\napi_key = 'k'", r"unknown key 'api_key'"),
        ("[acquirers.x]\nadapter = 'stripe'", "api_key is required"),
        ("[acquirers.sandbox]\nadapter = 'sandbox'", "'sandbox' is a built-in instance"),
        ("[acquirers.stripe]\nadapter = 'sandbox'", "'stripe' is a built-in instance"),
        ("[acquirers.Backup]\nadapter = 'sandbox'", "a name is 1 to 40"),
        (f"[acquirers.{'b' * 41}]\nadapter = 'sandbox'", "a name is 1 to 40"),
        ("[acquirers.x]\nadapter = 'sandbox'\n[acquirers.x]\nadapter = 'sandbox'", "TOML"),
        ("acquirers = 3", "acquirers: must be a table"),
        ("[breaker]\nfailures = 0", r"breaker\.failures: must be 1 to 1000"),
        ("[breaker]\nfailures = 2.5", r"breaker\.failures: must be an integer"),
        ("[breaker]\nfailures = true", r"breaker\.failures: must be an integer"),
        ("[breaker]\nwindow_s = -1", r"breaker\.window_s: must be above 0"),
        ("[breaker]\ncooldown_s = '30'", r"breaker\.cooldown_s: must be a number"),
        ("[breaker]\ncooldown = 30", r"breaker: unknown key 'cooldown'"),
        ("[rules]\nname = 'a'", r"rules: must be an array of tables"),
        ("rules = []", r"rules: 1 to 100"),
        ("rules = [1]", r"rules #1: must be a table"),
        ("[[rules]]\nproviders = ['sandbox']", r"rules #1: name is required"),
        ("[[rules]]\nname = 'a'", r"rules #1 \('a'\): providers is required"),
        ("[[rules]]\nname = 'a'\nproviders = []", r"providers: 1 to 64 entries"),
        ("[[rules]]\nname = 'a'\nproviders = 'sandbox'", "must be a list of strings"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox', 'sandbox']", "names an entry twice"),
        (
            "[[rules]]\nname = 'a'\nproviders = ['sandbox-backup']",
            r"'sandbox-backup' is not a configured acquirer; "
            r"one of sandbox, knet, benefit, omannet, mada$",
        ),
        ("[[rules]]\nname = 'a'\nproviders = ['stripe']", "'stripe' is not a configured"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nmode = 'test'", "unknown key 'mode'"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nlivemode = 0", "true or false"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nstates = ['EG']", "not a member state"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\ncurrencies = ['EUR']", "not a currency"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nmethods = ['cash']", "not a method"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nagencies = ['MoH']", "not an agency id"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nstates = []", "leave it out"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nmin_amount = '1'", "integer amount"),
        ("[[rules]]\nname = 'a'\nproviders = ['sandbox']\nmax_amount = -1", "0 to"),
        (
            "[[rules]]\nname = 'a'\nproviders = ['sandbox']\nmin_amount = 5\nmax_amount = 4",
            "min_amount 5 is above max_amount 4",
        ),
        (
            "[[rules]]\nname = 'a'\nproviders = ['sandbox']\n[[rules]]\nname = 'a'\n"
            "providers = ['sandbox']",
            r"rules #2: duplicate rule name 'a'",
        ),
    ],
)
def test_mistakes_are_refused_with_what_is_wrong(toml: str, message: str) -> None:
    with pytest.raises(RoutingConfigError, match=message):
        parse_routing(toml, stripe_configured=False)


def test_a_bad_file_stops_the_gateway_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    with pytest.raises(ConfigurationError, match=f"GATEWAY_ROUTING_FILE {path}: rules #1"):
        _load(tmp_path, "[[rules]]\nname = 'a'\nproviders = ['nowhere']\n")
    with pytest.raises(ConfigurationError, match=f"GATEWAY_ROUTING_FILE {path}: not valid TOML"):
        _load(tmp_path, "[[rules]\n")
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigurationError, match=f"GATEWAY_ROUTING_FILE {missing}: cannot be"):
        load_settings({"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_ROUTING_FILE": str(missing)})
    path.write_bytes(b"# \xff\n")
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_settings({"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_ROUTING_FILE": str(path)})
    path.write_text("#" * (config.routing.MAX_ROUTING_FILE_BYTES + 1))
    with pytest.raises(ConfigurationError, match="larger than"):
        load_settings({"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_ROUTING_FILE": str(path)})


def test_sandbox_backup_shortcut(tmp_path: Path) -> None:
    settings = _load(tmp_path, GATEWAY_SANDBOX_BACKUP="1")
    assert settings.acquirers == (BACKUP,)
    *schemes, test_rule, live_rule = settings.routing_rules
    assert tuple(schemes) == SCHEME_RULES
    assert test_rule.livemode is False
    assert test_rule.providers == ("sandbox", "sandbox-backup")
    assert live_rule == DEFAULT_ROUTING_RULES[1]
    assert _load(tmp_path, GATEWAY_SANDBOX_BACKUP="0").acquirers == ()
    with pytest.raises(ConfigurationError, match="GATEWAY_SANDBOX_BACKUP must be 1 or 0"):
        _load(tmp_path, GATEWAY_SANDBOX_BACKUP="yes")


def test_provider_list_shortcuts(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        GATEWAY_STRIPE_API_KEY="sk_test_x",
        GATEWAY_SANDBOX_BACKUP="1",
        GATEWAY_ROUTING_TEST_PROVIDERS="stripe, sandbox-backup",
        GATEWAY_ROUTING_LIVE_PROVIDERS="stripe",
    )
    assert settings.routing_rules == (
        *SCHEME_RULES,
        RoutingRule(name="test-mode-env", livemode=False, providers=("stripe", "sandbox-backup")),
        RoutingRule(name="live-cards-env", livemode=True, methods=("card",), providers=("stripe",)),
    )
    with pytest.raises(
        ConfigurationError,
        match=r"GATEWAY_ROUTING_TEST_PROVIDERS: 'stripe' is not a configured acquirer",
    ):
        _load(tmp_path, GATEWAY_ROUTING_TEST_PROVIDERS="stripe")
    with pytest.raises(ConfigurationError, match="GATEWAY_ROUTING_LIVE_PROVIDERS: an empty name"):
        _load(tmp_path, GATEWAY_ROUTING_LIVE_PROVIDERS="sandbox,,sandbox")
    with pytest.raises(ConfigurationError, match="names an entry twice"):
        _load(tmp_path, GATEWAY_ROUTING_TEST_PROVIDERS="sandbox,sandbox")


@pytest.mark.parametrize(
    "variable",
    ["GATEWAY_SANDBOX_BACKUP", "GATEWAY_ROUTING_TEST_PROVIDERS", "GATEWAY_ROUTING_LIVE_PROVIDERS"],
)
def test_a_file_and_a_shortcut_together_are_refused(tmp_path: Path, variable: str) -> None:
    value = "1" if variable == "GATEWAY_SANDBOX_BACKUP" else "sandbox"
    with pytest.raises(ConfigurationError, match=f"so {variable} must not be"):
        _load(tmp_path, "", **{variable: value})


def test_config_lists_agree_with_the_payments_ones() -> None:
    assert set(config.routing.CURRENCIES) == set(CURRENCY_EXPONENTS)
    assert config.routing.MEMBER_STATES == MEMBER_STATES
    assert config.routing.AGENCY_ID_RE.pattern == AGENCY_ID_RE.pattern


def test_acquirer_options_must_fit_the_adapter() -> None:
    with pytest.raises(TypeError, match="sandbox takes SandboxOptions"):
        AcquirerConfig("x", "sandbox", StripeOptions())
