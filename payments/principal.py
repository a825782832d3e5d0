"""Who is calling: the principal an API key authenticates as, and what a request needs of
its agency."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class KeyAgency:
    """What a request needs of the key's agency, read with the key: routing's facts and the
    currencies it accepts."""

    id: str
    state: str
    currencies: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: an agency in one mode, or finance staff across agencies."""

    key_id: str
    role: str
    agency_id: str | None
    livemode: bool
    agency: KeyAgency | None = None

    @property
    def is_finance(self) -> bool:
        return self.role == "finance"
