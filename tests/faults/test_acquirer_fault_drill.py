"""The acquirer fault drill: the sandbox injects faults at random into charges (an error
before charging, a timeout after charging, a slow answer) while backends pay; after the
worker's pass, every payment ends as the acquirer's own record says, and none is charged twice.

Size by `GATEWAY_DRILL_FAULT_PAYMENTS` (per client); the default fits CI.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from config import ConfigurationError, load_settings
from tests.e2e.conftest import BACKENDS, database_for
from tests.faults.books import settle_and_read
from tests.faults.load import CARD
from tests.faults.servers import Server, drill_gateway

pytestmark = pytest.mark.e2e

CLIENTS = 4
PAYMENTS = int(os.environ.get("GATEWAY_DRILL_FAULT_PAYMENTS", "8"))
FAULTS = "error_before_charge=0.2,timeout_after_charge=0.2,slow=0.1,slow_s=1"


def _client(base_url: str, key: str, prefix: str, told: dict[str, str]) -> None:
    with requests.Session() as session:
        headers = {"Authorization": f"Bearer {key}"}
        for n in range(PAYMENTS):
            created = session.post(
                base_url + "/v1/payments",
                json={
                    "amount": 2000 + n,
                    "currency": "OMR",
                    "reference": f"{prefix}-{n}",
                    "description": "Acquirer fault drill",
                    "return_url": "https://moh.example.om/done",
                },
                headers=headers,
                timeout=(2.0, 30.0),
            )
            assert created.status_code == 201, created.text
            payment_id = created.json()["id"]
            confirmed = session.post(
                f"{base_url}/v1/payments/{payment_id}/confirm",
                json={"payment_method": {"type": "card", "card": CARD}},
                headers=headers,
                timeout=(2.0, 30.0),
            )
            assert confirmed.status_code == 200, confirmed.text
            told[payment_id] = confirmed.json()["status"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_outcome_ends_as_the_acquirers_truth(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    report_counts: Callable[[str], None],
) -> None:
    workdir = tmp_path_factory.mktemp(f"fault-drill-{backend}")
    with database_for(backend, workdir) as url:
        gw, port = drill_gateway(backend, workdir, url, GATEWAY_SANDBOX_FAULTS=FAULTS)
        server = Server(gw, port)
        server.start()
        told: dict[str, str] = {}
        clients = [
            threading.Thread(
                target=_client, args=(gw.base_url, gw.keys["om-moh"], f"FAULT-{n}", told)
            )
            for n in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=PAYMENTS * 120)
        server.stop()
        # The worker asks an acquirer that answers truthfully now.
        books = settle_and_read(gw, GATEWAY_SANDBOX_FAULTS="")

    charged = books.charged_per_payment
    report_counts(
        f"\nacquirer fault drill ({backend}, {FAULTS}): {len(told)} payments; told "
        f"{dict(Counter(told.values()))}; final {dict(Counter(books.status.values()))}; "
        f"failures {dict(Counter(f for f in books.failure.values() if f))}; "
        f"worker resolved {books.resolved}"
    )
    assert len(told) == CLIENTS * PAYMENTS
    assert "processing" not in books.status.values(), books.status
    for payment_id, final in books.status.items():
        # The acquirer's record decides: charged once and succeeded, or never charged.
        assert charged[payment_id] == (1 if final == "succeeded" else 0), (payment_id, final)
        assert final in ("succeeded", "failed"), (payment_id, final)
        if told[payment_id] != "processing":
            assert told[payment_id] == final, (payment_id, told[payment_id], final)
    assert books.verified.returncode == 0, books.verified.stdout + books.verified.stderr


@pytest.mark.parametrize(
    "value",
    [
        "slow=2",
        "error_before_charge=0.7,timeout_after_charge=0.7",
        "often=0.1",
        "slow=x",
        "slow=0.1,slow=0.2",
        "slow_s=99",
    ],
)
def test_bad_fault_settings_are_refused(tmp_path: Path, value: str) -> None:
    env = {"GATEWAY_VAR_DIR": str(tmp_path), "GATEWAY_SANDBOX_FAULTS": value}
    with pytest.raises(ConfigurationError, match="GATEWAY_SANDBOX_FAULTS"):
        load_settings(env)
    env["GATEWAY_SANDBOX_FAULTS"] = FAULTS
    assert dict(load_settings(env).sandbox_faults)["slow_s"] == 1.0
