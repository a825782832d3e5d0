"""Acquirer adapters behind one `Provider` protocol, and the registry that builds them."""

from providers.base import (
    AuthorizeRequest,
    Capabilities,
    Card,
    InvalidNotification,
    Notification,
    NotifyingProvider,
    Outcome,
    Provider,
    ProviderResult,
    RedirectProvider,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    SchemeReturn,
)
from providers.registry import ProviderRegistry

__all__ = [
    "AuthorizeRequest",
    "Capabilities",
    "Card",
    "InvalidNotification",
    "Notification",
    "NotifyingProvider",
    "Outcome",
    "Provider",
    "ProviderRegistry",
    "ProviderResult",
    "RedirectProvider",
    "RefundOutcome",
    "RefundRequest",
    "RefundResult",
    "SchemeReturn",
]
