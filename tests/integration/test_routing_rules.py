"""Routing from configuration: instances and rules from a TOML file, breakers that skip."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import (
    AcquirerConfig,
    BreakerConfig,
    ConfigurationError,
    RoutingRule,
    SandboxOptions,
    Settings,
    load_settings,
)
from payments.api.app import create_app
from payments.breaker import Breakers
from payments.gateway import Gateway, build_gateway, build_providers
from payments.models import Agency, Attempt, Payment
from payments.routing import methods_for, route
from providers import ProviderRegistry
from providers.sandbox import SandboxProvider, SandboxStore
from tests.conftest import PAYMENT, auth, card, new_agency

ROUTING = """
    [acquirers.sandbox-backup]
    adapter = "sandbox"
    errors_before_charge = false

    [breaker]
    failures = 2
    window_s = 60
    cooldown_s = 30

    [[rules]]
    name = "test-mode"
    livemode = false
    providers = ["sandbox", "sandbox-backup"]
"""


@pytest.fixture
def configured(database_url: str, tmp_path: Path) -> Iterator[Gateway]:
    """A gateway built the way `gateway` and gunicorn build it: environment, then settings."""
    routing_file = tmp_path / "routing.toml"
    routing_file.write_text(textwrap.dedent(ROUTING))
    settings = load_settings(
        {
            "GATEWAY_ENV": "test",
            "GATEWAY_VAR_DIR": str(tmp_path),
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_PUBLIC_URL": "http://gateway.test",
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_ROUTING_FILE": str(routing_file),
        }
    )
    gateway = build_gateway(settings)
    yield gateway
    gateway.db.dispose()


def test_a_routing_file_adds_an_instance_and_its_rule(configured: Gateway) -> None:
    # Beside the schemes' test-mode acquirers, built in outside production.
    schemes = ["benefit", "knet", "mada", "omannet"]
    assert configured.providers.names() == sorted(["sandbox", "sandbox-backup", *schemes])
    sandbox = configured.providers.get("sandbox")
    backup = configured.providers.get("sandbox-backup")
    assert isinstance(sandbox, SandboxProvider) and isinstance(backup, SandboxProvider)
    assert sandbox.errors_before_charge and not backup.errors_before_charge
    assert sandbox.store is backup.store
    assert configured.routing_rules == (
        RoutingRule(name="test-mode", livemode=False, providers=("sandbox", "sandbox-backup")),
    )
    assert configured.breakers.config == BreakerConfig(failures=2, window_s=60.0, cooldown_s=30.0)


def _confirm(configured: Gateway, key: str, number: str) -> str:
    client = create_app(gw=configured).test_client()
    created = client.post("/v1/payments", json=PAYMENT, headers=auth(key))
    assert created.status_code == 201 and created.json is not None
    confirmed = client.post(
        f"/v1/payments/{created.json['id']}/confirm", json=card(number), headers=auth(key)
    )
    assert confirmed.status_code == 200 and confirmed.json is not None
    assert confirmed.json["status"] == "succeeded"
    assert confirmed.json["provider"] == "sandbox-backup"
    payment_id: str = confirmed.json["id"]
    return payment_id


def test_repeated_unavailable_results_open_the_breaker_and_the_payment_says_so(
    configured: Gateway,
) -> None:
    key = new_agency(configured)
    for _ in range(2):
        _confirm(configured, key, "4000000000000119")  # sandbox errors before charging
    assert not configured.breakers.for_name("sandbox").available()
    payment_id = _confirm(configured, key, "4242424242424242")
    with configured.db.read() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert payment.routing == {
            "rule": "test-mode",
            "providers": ["sandbox-backup"],
            "skipped": {"sandbox": "circuit breaker open"},
        }
        attempts = session.query(Attempt).filter_by(payment_id=payment_id)
        assert [a.provider for a in attempts] == ["sandbox-backup"]


# route() and methods_for() read plain attributes, so unsaved rows are enough here.
def _payment(livemode: bool = False, currency: str = "OMR", capture: str = "automatic") -> Payment:
    return Payment(livemode=livemode, currency=currency, amount_minor=12500, capture_method=capture)


AGENCY = Agency(id="om-moh", state="OM")


@pytest.fixture
def registry(tmp_path: Path) -> ProviderRegistry:
    store = SandboxStore(tmp_path / "sandbox.db")
    return ProviderRegistry(
        [
            SandboxProvider(store, name="sandbox"),
            SandboxProvider(store, name="sandbox-backup", currencies=frozenset({"SAR"})),
            SandboxProvider(store, name="sandbox-third"),
        ]
    )


RULES = (
    RoutingRule(
        name="test-mode",
        livemode=False,
        providers=("stripe", "sandbox-backup", "sandbox", "sandbox-third"),
    ),
    RoutingRule(name="live", livemode=True, providers=("sandbox",)),
)


def _open(breakers: Breakers, name: str) -> None:
    for _ in range(breakers.config.failures):
        breakers.for_name(name).record_unavailable()


def test_route_records_why_each_acquirer_was_left_out(registry: ProviderRegistry) -> None:
    breakers = Breakers(BreakerConfig(failures=1))
    _open(breakers, "sandbox")
    chosen = route(RULES, registry, _payment(), AGENCY, "card", breakers)
    assert chosen.as_record() == {
        "rule": "test-mode",
        "providers": ["sandbox-third"],
        "skipped": {
            "stripe": "not configured",
            "sandbox-backup": "cannot take this currency, method, amount or capture method",
            "sandbox": "circuit breaker open",
        },
    }
    live = route(RULES, registry, _payment(livemode=True), AGENCY, "card", breakers)
    assert live.as_record() == {
        "rule": "live",
        "providers": [],
        "skipped": {"sandbox": "wrong mode"},
    }
    # Without breakers nothing is skipped for being open.
    assert route(RULES, registry, _payment(), AGENCY, "card").providers == (
        "sandbox",
        "sandbox-third",
    )
    nothing = route(RULES[1:], registry, _payment(), AGENCY, "card", breakers)
    assert nothing.as_record() == {"rule": None, "providers": [], "skipped": {}}


def test_routing_looks_at_a_half_open_breaker_without_taking_its_trial(
    registry: ProviderRegistry,
) -> None:
    now = [0.0]
    breakers = Breakers(BreakerConfig(failures=1, cooldown_s=30.0), clock=lambda: now[0])
    _open(breakers, "sandbox")
    _open(breakers, "sandbox-third")
    now[0] = 30.0
    for _ in range(3):
        chosen = route(RULES, registry, _payment(), AGENCY, "card", breakers)
        assert chosen.providers == ("sandbox", "sandbox-third")
    # The caller claims the trial of the acquirer it actually calls; the next one keeps its own.
    assert breakers.for_name("sandbox").allow()
    after = route(RULES, registry, _payment(), AGENCY, "card", breakers)
    assert after.providers == ("sandbox-third",)
    assert after.skipped["sandbox"] == "circuit breaker open"
    assert breakers.for_name("sandbox-third").allow()


def test_methods_offered_are_those_some_acquirer_can_take(registry: ProviderRegistry) -> None:
    breakers = Breakers(BreakerConfig(failures=1))
    assert methods_for(RULES, registry, _payment(), AGENCY, breakers) == ("card",)
    _open(breakers, "sandbox")
    assert methods_for(RULES, registry, _payment(), AGENCY, breakers) == ("card",)
    _open(breakers, "sandbox-third")
    assert methods_for(RULES, registry, _payment(), AGENCY, breakers) == ()
    assert methods_for(RULES, registry, _payment(currency="SAR"), AGENCY, breakers) == ("card",)
    assert methods_for(RULES, registry, _payment(), AGENCY, None) == ("card",)


def test_stripe_instances_use_their_options_or_the_stripe_settings(tmp_path: Path) -> None:
    routing_file = tmp_path / "routing.toml"
    routing_file.write_text(
        textwrap.dedent(
            """
            [acquirers.stripe-ae]
            adapter = "stripe"
            api_key = "sk_test_ae"
            webhook_secret = "whsec_ae"

            [[rules]]
            name = "live"
            livemode = true
            providers = ["stripe-ae", "stripe"]
            """
        )
    )
    settings = load_settings(
        {
            "GATEWAY_VAR_DIR": str(tmp_path),
            "GATEWAY_STRIPE_API_KEY": "sk_test_default",
            "GATEWAY_STRIPE_WEBHOOK_SECRET": "whsec_default",
            "GATEWAY_ROUTING_FILE": str(routing_file),
        }
    )
    registry = build_providers(settings)
    assert registry.names() == ["mada", "sandbox", "stripe", "stripe-ae"]
    assert getattr(registry.get("stripe"), "webhook_secret", None) == "whsec_default"
    assert getattr(registry.get("stripe-ae"), "webhook_secret", None) == "whsec_ae"


def test_an_instance_may_not_take_a_built_in_name(tmp_path: Path) -> None:
    clash = AcquirerConfig("sandbox", "sandbox", SandboxOptions())
    settings = Settings(sandbox_database=tmp_path / "sandbox.db", acquirers=(clash,))
    with pytest.raises(ConfigurationError, match="acquirer names used twice: sandbox"):
        build_providers(settings)
