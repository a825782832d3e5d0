"""Typed settings and routing rules of the gateway, read from the environment in one place."""

from config.routing import (
    BENEFIT,
    DEFAULT_ROUTING_RULES,
    KNET,
    MADA,
    OMANNET,
    PAYMENT_METHODS,
    SCHEME_RULES,
    AcquirerConfig,
    BreakerConfig,
    RoutingRule,
    SandboxOptions,
    StripeOptions,
)
from config.settings import ConfigurationError, Settings, load_settings

__all__ = [
    "BENEFIT",
    "DEFAULT_ROUTING_RULES",
    "KNET",
    "MADA",
    "OMANNET",
    "PAYMENT_METHODS",
    "SCHEME_RULES",
    "AcquirerConfig",
    "BreakerConfig",
    "ConfigurationError",
    "RoutingRule",
    "SandboxOptions",
    "Settings",
    "StripeOptions",
    "load_settings",
]
