"""The `Provider` protocol and the plain request and result types every adapter speaks."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Protocol, runtime_checkable


class Outcome(enum.StrEnum):
    """What an acquirer said about a charge."""

    APPROVED = "approved"  # captured
    REQUIRES_CAPTURE = "requires_capture"  # authorised, waiting for capture
    DECLINED = "declined"  # final; `decline_code` says why
    CANCELLED = "cancelled"  # authorisation voided
    REDIRECT = "redirect"  # the payer must continue on the scheme's page
    UNAVAILABLE = "unavailable"  # known not to have charged: failover allowed
    UNKNOWN = "unknown"  # the request left and no answer came back


class RefundOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Card:
    """Card data held in memory for one call; its repr never shows the number or the code."""

    number: str = dataclasses.field(repr=False)
    exp_month: int
    exp_year: int
    cvc: str = dataclasses.field(repr=False)
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What routing needs to know about an acquirer before offering it a payment."""

    currencies: frozenset[str]
    methods: frozenset[str]
    manual_capture: bool = True
    partial_refund: bool = True
    livemode: bool = False
    # Minor units must be a multiple of this for the currency (Stripe: 3-decimal amounts end in 0).
    amount_multiple: tuple[tuple[str, int], ...] = ()

    def accepts(self, *, currency: str, method: str, amount_minor: int, manual: bool) -> bool:
        if currency not in self.currencies or method not in self.methods:
            return False
        if manual and not self.manual_capture:
            return False
        multiple = dict(self.amount_multiple).get(currency, 1)
        return amount_minor % multiple == 0


@dataclasses.dataclass(frozen=True)
class AuthorizeRequest:
    idempotency_key: str
    amount_minor: int
    currency: str
    method: str
    capture: bool
    description: str
    card: Card | None = None
    # Where the acquirer's page (3-D Secure, a scheme's page) sends the payer back: the
    # gateway's own return address, never the agency's `return_url`.
    return_url: str | None = None
    # True on the hosted page (the payer is present: 3-D Secure may be asked); False for
    # server-to-server confirm, a MOTO payment that is exempt from it.
    payer_present: bool = False
    # The payer's language (`ar` or `en`), for a scheme's own payment page.
    language: str = "ar"


@dataclasses.dataclass(frozen=True)
class ProviderResult:
    outcome: Outcome
    reference: str | None = None
    decline_code: str | None = None
    message: str | None = None
    redirect_url: str | None = None
    amount_captured_minor: int | None = None
    # What the acquirer says the charge is for (the amount asked for, not what was captured),
    # whenever its answer names it. The gateway refuses an answer whose charge is for another
    # amount or currency than the attempt's: it is about some other payment.
    amount_minor: int | None = None
    currency: str | None = None  # ISO 4217, upper case


@dataclasses.dataclass(frozen=True)
class RefundRequest:
    idempotency_key: str
    payment_reference: str
    amount_minor: int
    currency: str


@dataclasses.dataclass(frozen=True)
class RefundResult:
    outcome: RefundOutcome
    reference: str | None = None
    message: str | None = None


@dataclasses.dataclass(frozen=True)
class Notification:
    """A verified notification from an acquirer: only a hint to ask for the charge's status."""

    event_id: str
    type: str
    reference: str | None  # the acquirer's reference of the charge it concerns, if any


class InvalidNotification(Exception):
    """A notification whose signature, timestamp or body does not verify."""


@dataclasses.dataclass(frozen=True)
class SchemeReturn:
    """What a national scheme's callback says, once its encryption or signature verified. Only
    a hint: the gateway checks it names the open attempt, then asks the scheme itself."""

    attempt_key: str  # the track id / merchant reference sent: the attempt's idempotency key
    amount_minor: int
    currency: str
    result: str  # the scheme's own word for the outcome (CAPTURED, NOT CAPTURED, CANCELED, ...)
    reference: str | None = None  # the scheme's payment or transaction id, if it gave one


class Provider(Protocol):
    """One acquirer. Every call is idempotent on its `idempotency_key` and has a timeout."""

    name: str
    capabilities: Capabilities

    def authorize(self, request: AuthorizeRequest) -> ProviderResult: ...

    def capture(
        self, idempotency_key: str, reference: str, amount_minor: int, currency: str
    ) -> ProviderResult: ...

    def cancel(self, idempotency_key: str, reference: str) -> ProviderResult: ...

    def status(self, idempotency_key: str, reference: str | None) -> ProviderResult:
        """The acquirer's truth about the charge made under `idempotency_key`."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult: ...

    def refund_status(self, idempotency_key: str) -> RefundResult: ...


@runtime_checkable
class RedirectProvider(Provider, Protocol):
    """A national scheme: `authorize` answers REDIRECT to the scheme's own payment page, whose
    result comes back to the request's `return_url` as a callback (query string or form)."""

    # The fields that carry the scheme's encrypted or signed result: a return without any of
    # them (a scheme's plain error page, a payer coming back by hand) carries no callback.
    callback_fields: frozenset[str]

    def parse_return(self, fields: Mapping[str, str]) -> SchemeReturn:
        """Decrypt or verify a callback's fields; raise `InvalidNotification` if they do not."""
        ...


class NotifyingProvider(Provider, Protocol):
    """An acquirer that also tells the gateway about changes through signed notifications."""

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Verify and parse one notification; raise `InvalidNotification` if it fails."""
        ...
