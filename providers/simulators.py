"""The national schemes' simulators as the gateway serves them outside production: each one's
payment pages, its server-to-server handler, and the errors by which it refuses a request."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Protocol

from providers.transport import Reply


class SimulatedPage(Protocol):
    """What a simulator's payment page shows."""

    @property
    def page_id(self) -> str: ...

    @property
    def amount_minor(self) -> int: ...

    @property
    def currency(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def language(self) -> str:
        """`ar` or `en`: the language the gateway asked the scheme's page for."""
        ...


class PageSimulator(Protocol):
    def open_page(self, query: Mapping[str, str]) -> SimulatedPage: ...

    def answer(self, page_id: str, choice: str) -> str: ...


@dataclasses.dataclass(frozen=True)
class SchemeDesk:
    """One scheme's simulator as the gateway serves it: its pages, its server-to-server
    handler, and the errors by which it refuses a request."""

    scheme: str
    simulator: PageSimulator
    serve: Callable[[bytes, Mapping[str, str]], Reply]
    refused: tuple[type[Exception], ...]
    # The scheme's daily settlement file of that UTC day's captures and refunds.
    settlement_file: Callable[[dt.date], str]
