"""The sandbox acquirer: deterministic test cards, with its own store of charges and refunds.

It keeps a record of every charge under the caller's idempotency key (never the card number),
so that a status query after a simulated timeout answers truthfully and a retried request
does not charge twice: the promise a real acquirer makes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
import secrets
import sqlite3
import time
from collections.abc import Callable

from providers.base import (
    AuthorizeRequest,
    Capabilities,
    Outcome,
    ProviderResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
)
from providers.cards import digits_only
from providers.sqlite_store import SqliteStore

# Card number -> what the sandbox does with it.
SUCCEED = "succeed"
ERROR_BEFORE_CHARGE = "error_before_charge"
TIMEOUT_AFTER_CHARGE = "timeout_after_charge"
NEEDS_3DS = "needs_3ds"
TEST_CARDS: dict[str, str] = {
    "4242424242424242": SUCCEED,
    "5555555555554444": SUCCEED,
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000119": ERROR_BEFORE_CHARGE,
    "4000000000005126": TIMEOUT_AFTER_CHARGE,
    "4000000000003220": NEEDS_3DS,
}
# The national schemes' simulators decline amounts whose minor units end so (API.md).
SCHEME_DECLINED_ENDING = 13
# A payer who neither completes nor fails the challenge within this time has failed it, as an
# issuer's access control server times out a challenge.
CHALLENGE_TIMEOUT_S = 15 * 60


@dataclasses.dataclass(frozen=True)
class SandboxFaults:
    """Faults the sandbox injects at random into charges, whatever the card, for fault drills
    (`GATEWAY_SANDBOX_FAULTS`; refused in production): each a probability per charge."""

    error_before_charge: float = 0.0  # unavailable, nothing charged
    timeout_after_charge: float = 0.0  # charged, but the answer is lost: unknown outcome
    slow: float = 0.0  # answered after `slow_s`
    slow_s: float = 2.0

    def draw(self, rng: random.Random) -> str | None:
        """The fault for one charge, if any."""
        roll = rng.random()
        for fault, chance in (
            (ERROR_BEFORE_CHARGE, self.error_before_charge),
            (TIMEOUT_AFTER_CHARGE, self.timeout_after_charge),
            ("slow", self.slow),
        ):
            if roll < chance:
                return fault
            roll -= chance
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    decline_code TEXT,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount_captured_minor INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    idempotency_key TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    charge_reference TEXT NOT NULL REFERENCES charges(reference),
    amount_minor INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS challenges (
    reference TEXT PRIMARY KEY REFERENCES charges(reference),
    state TEXT NOT NULL,
    capture INTEGER NOT NULL,
    return_url TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    idempotency_key TEXT PRIMARY KEY,
    charge_reference TEXT NOT NULL REFERENCES charges(reference),
    action TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


class SandboxStore(SqliteStore):
    """The sandbox acquirer's own database: a SQLite file shared by every gateway process."""

    SCHEMA = _SCHEMA


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclasses.dataclass(frozen=True)
class Challenge:
    """A 3-D Secure challenge the sandbox is waiting for the payer to answer."""

    reference: str
    amount_minor: int
    currency: str
    state: str  # pending | succeeded | failed | expired
    return_url: str


class SandboxProvider:
    """Deterministic acquirer for test keys: outcomes follow the test card numbers."""

    def __init__(
        self,
        store: SandboxStore,
        *,
        name: str = "sandbox",
        currencies: frozenset[str] | None = None,
        errors_before_charge: bool = True,
        challenge_url: str = "http://127.0.0.1:8000/sandbox/3ds",
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        faults: SandboxFaults | None = None,
        methods: frozenset[str] = frozenset({"card"}),
        manual_capture: bool = True,
        scheme_rules: bool = False,
    ) -> None:
        """`scheme_rules`: behave as a national scheme's acquirer does in its simulator (mada):
        every payer on the hosted page is asked for 3-D Secure, and amounts ending in 13 minor
        units are declined."""
        self.name = name
        self.scheme_rules = scheme_rules
        self.store = store
        self.faults = faults
        self._rng = random.Random()
        self.errors_before_charge = errors_before_charge
        self.challenge_url = challenge_url.rstrip("/")
        self.clock = clock
        self.capabilities = Capabilities(
            currencies=currencies or frozenset({"SAR", "AED", "QAR", "KWD", "BHD", "OMR", "USD"}),
            methods=methods,
            manual_capture=manual_capture,
            partial_refund=True,
            livemode=False,
        )

    def _charge(self, conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM charges WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return row

    def _by_reference(self, conn: sqlite3.Connection, reference: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM charges WHERE reference = ?", (reference,)
        ).fetchone()
        return row

    def _result(self, row: sqlite3.Row) -> ProviderResult:
        """The charge's state, saying what the charge is for, as a real acquirer's answer does."""
        result = functools.partial(
            ProviderResult,
            reference=row["reference"],
            amount_minor=row["amount_minor"],
            currency=row["currency"],
        )
        state = row["state"]
        if state == "requires_action":
            return result(Outcome.REDIRECT, redirect_url=f"{self.challenge_url}/{row['reference']}")
        if state == "declined":
            return result(Outcome.DECLINED, decline_code=row["decline_code"])
        outcome = {
            "captured": Outcome.APPROVED,
            "authorized": Outcome.REQUIRES_CAPTURE,
            "voided": Outcome.CANCELLED,
        }[state]
        return result(outcome, amount_captured_minor=row["amount_captured_minor"])

    def authorize(self, request: AuthorizeRequest) -> ProviderResult:
        if request.card is None:
            return ProviderResult(Outcome.DECLINED, decline_code="card_declined")
        behaviour = TEST_CARDS.get(digits_only(request.card.number), SUCCEED)
        fault = self.faults.draw(self._rng) if self.faults is not None else None
        if fault == "slow":
            assert self.faults is not None
            time.sleep(self.faults.slow_s)
        elif fault is not None and behaviour == SUCCEED:
            behaviour = fault
        if behaviour == ERROR_BEFORE_CHARGE and self.errors_before_charge:
            return ProviderResult(Outcome.UNAVAILABLE, message="sandbox acquirer error")
        if self.scheme_rules and request.amount_minor % 100 == SCHEME_DECLINED_ENDING:
            behaviour = "card_declined"
        asks_3ds = behaviour == NEEDS_3DS or (self.scheme_rules and behaviour == SUCCEED)
        challenge = asks_3ds and request.payer_present
        if behaviour == NEEDS_3DS and not challenge:
            behaviour = SUCCEED  # server-to-server confirm is MOTO: exempt from 3-D Secure
        with self.store.transaction() as conn:
            existing = self._charge(conn, request.idempotency_key)
            if existing is None:
                declined = behaviour not in (
                    SUCCEED,
                    TIMEOUT_AFTER_CHARGE,
                    ERROR_BEFORE_CHARGE,
                    NEEDS_3DS,
                )
                state = (
                    "declined" if declined else ("captured" if request.capture else "authorized")
                )
                if challenge:
                    state = "requires_action"
                reference = "sbx_ch_" + secrets.token_hex(12)
                conn.execute(
                    "INSERT INTO charges (idempotency_key, reference, state, decline_code,"
                    " amount_minor, currency, amount_captured_minor, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request.idempotency_key,
                        reference,
                        state,
                        behaviour if declined else None,
                        request.amount_minor,
                        request.currency,
                        request.amount_minor if state == "captured" else 0,
                        _now(),
                    ),
                )
                if challenge:
                    conn.execute(
                        "INSERT INTO challenges VALUES (?, 'pending', ?, ?, ?)",
                        (reference, int(request.capture), request.return_url or "", self._stamp()),
                    )
                existing = self._charge(conn, request.idempotency_key)
        assert existing is not None
        if behaviour == TIMEOUT_AFTER_CHARGE:
            return ProviderResult(Outcome.UNKNOWN, message="sandbox acquirer timed out")
        return self._result(existing)

    def _operate(self, key: str, reference: str, action: str, amount_minor: int) -> ProviderResult:
        with self.store.transaction() as conn:
            charge = self._by_reference(conn, reference)
            if charge is None:
                return ProviderResult(Outcome.DECLINED, decline_code="no_such_charge")
            done = conn.execute(
                "SELECT 1 FROM operations WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if done is None and charge["state"] == "requires_action" and action == "void":
                conn.execute(
                    "UPDATE charges SET state = 'voided' WHERE reference = ?", (reference,)
                )
                conn.execute(
                    "UPDATE challenges SET state = 'expired' WHERE reference = ?", (reference,)
                )
                conn.execute(
                    "INSERT INTO operations VALUES (?, ?, ?, ?)", (key, reference, action, _now())
                )
            if done is None and charge["state"] == "authorized":
                if action == "capture":
                    conn.execute(
                        "UPDATE charges SET state = 'captured', amount_captured_minor = ?"
                        " WHERE reference = ?",
                        (amount_minor, reference),
                    )
                else:
                    conn.execute(
                        "UPDATE charges SET state = 'voided' WHERE reference = ?", (reference,)
                    )
                conn.execute(
                    "INSERT INTO operations VALUES (?, ?, ?, ?)", (key, reference, action, _now())
                )
            charge = self._by_reference(conn, reference)
        assert charge is not None
        return self._result(charge)

    def capture(
        self, idempotency_key: str, reference: str, amount_minor: int, currency: str
    ) -> ProviderResult:
        return self._operate(idempotency_key, reference, "capture", amount_minor)

    def cancel(self, idempotency_key: str, reference: str) -> ProviderResult:
        return self._operate(idempotency_key, reference, "void", 0)

    def status(self, idempotency_key: str, reference: str | None) -> ProviderResult:
        with self.store.transaction() as conn:
            charge = self._charge(conn, idempotency_key)
            if charge is not None and charge["state"] == "requires_action":
                self._time_out_challenge(conn, charge["reference"])
                charge = self._charge(conn, idempotency_key)
        if charge is None:
            return ProviderResult(Outcome.UNAVAILABLE, message="no charge under this key")
        return self._result(charge)

    # ---- the 3-D Secure challenge, answered by the payer on the simulator's page

    def _stamp(self) -> str:
        return self.clock().astimezone(dt.UTC).isoformat()

    def _time_out_challenge(self, conn: sqlite3.Connection, reference: str) -> None:
        """A challenge left pending past CHALLENGE_TIMEOUT_S fails, as an issuer's would."""
        row = conn.execute(
            "SELECT created_at FROM challenges WHERE reference = ? AND state = 'pending'",
            (reference,),
        ).fetchone()
        if row is None:
            return
        age = self.clock() - dt.datetime.fromisoformat(row["created_at"])
        if age.total_seconds() >= CHALLENGE_TIMEOUT_S:
            self._settle_challenge(conn, reference, succeeded=False, state="expired")

    @staticmethod
    def _settle_challenge(
        conn: sqlite3.Connection, reference: str, *, succeeded: bool, state: str
    ) -> None:
        row = conn.execute(
            "SELECT c.capture, ch.amount_minor FROM challenges c"
            " JOIN charges ch ON ch.reference = c.reference WHERE c.reference = ?",
            (reference,),
        ).fetchone()
        conn.execute("UPDATE challenges SET state = ? WHERE reference = ?", (state, reference))
        if succeeded and row["capture"]:
            conn.execute(
                "UPDATE charges SET state = 'captured', amount_captured_minor = ?"
                " WHERE reference = ?",
                (row["amount_minor"], reference),
            )
        elif succeeded:
            conn.execute(
                "UPDATE charges SET state = 'authorized' WHERE reference = ?", (reference,)
            )
        else:
            conn.execute(
                "UPDATE charges SET state = 'declined', decline_code = 'authentication_failed'"
                " WHERE reference = ?",
                (reference,),
            )

    def challenge(self, reference: str) -> Challenge | None:
        """The challenge behind a charge, for the simulator's page; None if there is none."""
        with self.store.transaction() as conn:
            self._time_out_challenge(conn, reference)
            row = conn.execute(
                "SELECT c.reference, c.state, c.return_url, ch.amount_minor, ch.currency"
                " FROM challenges c JOIN charges ch ON ch.reference = c.reference"
                " WHERE c.reference = ?",
                (reference,),
            ).fetchone()
        if row is None:
            return None
        return Challenge(
            reference=row["reference"],
            amount_minor=row["amount_minor"],
            currency=row["currency"],
            state=row["state"],
            return_url=row["return_url"],
        )

    def complete_challenge(self, reference: str, *, succeeded: bool) -> str | None:
        """Record the payer's answer to a pending challenge; the address to send them back to,
        or None when there is no such challenge or it was already answered or timed out."""
        with self.store.transaction() as conn:
            self._time_out_challenge(conn, reference)
            row = conn.execute(
                "SELECT return_url FROM challenges WHERE reference = ? AND state = 'pending'",
                (reference,),
            ).fetchone()
            if row is None:
                return None
            state = "succeeded" if succeeded else "failed"
            self._settle_challenge(conn, reference, succeeded=succeeded, state=state)
        return str(row["return_url"])

    def refund(self, request: RefundRequest) -> RefundResult:
        with self.store.transaction() as conn:
            existing = conn.execute(
                "SELECT reference FROM refunds WHERE idempotency_key = ?",
                (request.idempotency_key,),
            ).fetchone()
            if existing is not None:
                return RefundResult(RefundOutcome.SUCCEEDED, reference=existing["reference"])
            charge = self._by_reference(conn, request.payment_reference)
            if charge is None or charge["state"] != "captured":
                return RefundResult(RefundOutcome.FAILED, message="charge is not captured")
            refunded = conn.execute(
                "SELECT COALESCE(SUM(amount_minor), 0) FROM refunds WHERE charge_reference = ?",
                (request.payment_reference,),
            ).fetchone()[0]
            if refunded + request.amount_minor > charge["amount_captured_minor"]:
                return RefundResult(RefundOutcome.FAILED, message="refund exceeds the capture")
            reference = "sbx_re_" + secrets.token_hex(12)
            conn.execute(
                "INSERT INTO refunds VALUES (?, ?, ?, ?, ?)",
                (
                    request.idempotency_key,
                    reference,
                    request.payment_reference,
                    request.amount_minor,
                    _now(),
                ),
            )
        return RefundResult(RefundOutcome.SUCCEEDED, reference=reference)

    def refund_status(self, idempotency_key: str) -> RefundResult:
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT reference FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        if row is None:
            return RefundResult(RefundOutcome.UNAVAILABLE, message="no refund under this key")
        return RefundResult(RefundOutcome.SUCCEEDED, reference=row["reference"])
