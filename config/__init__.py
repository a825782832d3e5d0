"""Typed settings and routing rules of the gateway, read from the environment in one place."""

from config.routing import (
    DEFAULT_ROUTING_RULES,
    PAYMENT_METHODS,
    AcquirerConfig,
    BreakerConfig,
    RoutingRule,
    SandboxOptions,
    StripeOptions,
)
from config.settings import ConfigurationError, Settings, load_settings

__all__ = [
    "DEFAULT_ROUTING_RULES",
    "PAYMENT_METHODS",
    "AcquirerConfig",
    "BreakerConfig",
    "ConfigurationError",
    "RoutingRule",
    "SandboxOptions",
    "Settings",
    "StripeOptions",
    "load_settings",
]
