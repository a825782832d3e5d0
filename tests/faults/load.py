"""The drills' backends: clients that create and confirm payments through a fault, retrying
each request with its Idempotency-Key as API.md tells a backend to, and a tally of what they
were told."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

RETRY_BUDGET_S = 60.0  # what a client spends on one request before giving up
REQUEST_TIMEOUT = (2.0, 15.0)
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "737"}


@dataclasses.dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    created: dict[str, str] = dataclasses.field(default_factory=dict)  # reference -> id
    confirmed: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> status
    gave_up: list[str] = dataclasses.field(default_factory=list)
    answers: Counter[str] = dataclasses.field(default_factory=Counter)
    # 5xx answers that are not API.md's 503 `unavailable` with `Retry-After`.
    bad_refusals: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def saw(self, what: str) -> None:
        with self.lock:
            self.answers[what] += 1


def is_unavailable(response: requests.Response) -> bool:
    """API.md's answer while the database is away: 503 `unavailable`, with `Retry-After`."""
    if response.status_code != 503 or not response.headers.get("Retry-After", "").isdigit():
        return False
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and error.get("code") == "unavailable"


def retry_after(response: requests.Response) -> float:
    """The seconds a 429 asks the client to wait (API.md: always a `Retry-After`)."""
    value = response.headers.get("Retry-After", "")
    assert value.isdigit(), f"429 without a Retry-After in seconds: {response.headers}"
    return float(value)


def send(
    session: requests.Session, tally: Tally, url: str, key: str, idem: str, body: dict[str, Any]
) -> requests.Response | None:
    """POST until a definitive answer, as a backend following API.md would: the same key and
    body again after a lost connection, a 5xx, or 409 `idempotency_key_in_use`, and after
    a 429 `rate_limited` once its `Retry-After` has passed."""
    deadline = time.monotonic() + RETRY_BUDGET_S
    while time.monotonic() < deadline:
        try:
            response = session.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException:
            tally.saw("connection lost")
            time.sleep(0.2)
            continue
        if response.status_code >= 500:
            if is_unavailable(response):
                tally.saw("HTTP 503 unavailable")
            else:
                tally.saw(f"HTTP {response.status_code}")
                with tally.lock:
                    tally.bad_refusals.append(f"{response.status_code}: {response.text[:300]}")
            time.sleep(0.2)
            continue
        if response.status_code == 409 and "idempotency_key_in_use" in response.text:
            tally.saw("409 idempotency_key_in_use")
            time.sleep(0.5)
            continue
        if response.status_code == 429:
            tally.saw("429 rate_limited")
            time.sleep(min(retry_after(response), max(0.0, deadline - time.monotonic())))
            continue
        tally.saw(f"HTTP {response.status_code}")
        return response
    return None


def client(
    base_url: str,
    key: str,
    name: str,
    tally: Tally,
    *,
    at_least: int,
    done: Callable[[], bool],
) -> None:
    """At least `at_least` payments, and on until `done()` (at most ten times as many)."""
    with requests.Session() as session:
        for n in range(at_least * 10):
            if n >= at_least and done():
                return
            reference = f"DRILL-{name}-{n}"
            body = {
                "amount": 1000 + n,
                "currency": "OMR",
                "reference": reference,
                "description": "Drill",
                "return_url": "https://moh.example.om/done",
            }
            made = send(session, tally, base_url + "/v1/payments", key, f"{reference}-c", body)
            if made is None or made.status_code != 201:
                tally.gave_up.append(f"create {reference}: {made and made.text[:200]}")
                continue
            payment_id = made.json()["id"]
            with tally.lock:
                tally.created[reference] = payment_id
            confirmed = send(
                session,
                tally,
                f"{base_url}/v1/payments/{payment_id}/confirm",
                key,
                f"{reference}-p",
                {"payment_method": {"type": "card", "card": CARD}},
            )
            if confirmed is None or confirmed.status_code != 200:
                tally.gave_up.append(f"confirm {payment_id}: {confirmed and confirmed.text[:200]}")
                continue
            with tally.lock:
                tally.confirmed[payment_id] = confirmed.json()["status"]
