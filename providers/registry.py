"""The registry: the configured acquirers by name, built once per process."""

from __future__ import annotations

from collections.abc import Iterable

from providers.base import Provider


class UnknownProvider(KeyError):
    """No acquirer of that name is configured."""


class ProviderRegistry:
    """Name -> configured `Provider`; the composition root fills it from settings."""

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            self.add(provider)

    def add(self, provider: Provider) -> None:
        self._providers[provider.name] = provider

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProvider(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def names(self) -> list[str]:
        return sorted(self._providers)
