"""Bad credentials and bad ids on every endpoint: 401 for a missing, malformed, unknown or
revoked key; 403 for a role that may not; 404 for an unknown id and for another agency's (or
the other mode's) id, never 403; 422 for an invalid Idempotency-Key. Refused writes write
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from payments.gateway import Gateway
from payments.models import ApiKey
from payments.service import access
from tests.conftest import PAYMENT, auth, card, new_agency
from tests.integration.test_bad_input import (
    POST_ENDPOINTS,
    Objects,
    body_of,
    call,
    expect_error,
    make_objects,
    nothing_written,
    status_of,
)

# Every endpoint of API.md sections 3 and 5 this suite covers, with a body that would succeed.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/payments", PAYMENT),
    ("GET", "/v1/payments", None),
    ("GET", "/v1/payments/{succeeded}", None),
    ("POST", "/v1/payments/{created}/confirm", card()),
    ("POST", "/v1/payments/{authorised}/capture", {"amount": 100}),
    ("POST", "/v1/payments/{created}/cancel", None),
    ("POST", "/v1/payments/{succeeded}/refunds", {"amount": 100}),
    ("GET", "/v1/payments/{succeeded}/refunds", None),
    ("GET", "/v1/refunds/{refund}", None),
    ("GET", "/v1/events", None),
    ("GET", "/v1/events/{event}", None),
    ("GET", "/v1/balance", None),
    ("GET", "/v1/ledger/trial-balance", None),
]
ENDPOINT_IDS = [f"{m} {p}" for m, p, _ in ENDPOINTS]
AGENCY_ONLY = {"/v1/balance"}
FINANCE_ONLY = {"/v1/ledger/trial-balance"}


def _revoked(gw: Gateway, role: str) -> str:
    agency = "om-moh" if role == "agency" else None
    key, secret = access.create_key(gw, agency_id=agency, role=role)
    access.revoke_key(gw, key.id)
    return secret


def _authorizations(
    gw: Gateway, agency_key: str, finance_key: str
) -> list[tuple[str, dict[str, str]]]:
    return [
        ("missing", {}),
        ("empty", {"Authorization": ""}),
        ("scheme-only", {"Authorization": "Bearer"}),
        ("scheme-and-space", {"Authorization": "Bearer   "}),
        ("no-scheme", {"Authorization": agency_key}),
        ("basic", {"Authorization": "Basic b20tbW9oOnNlY3JldA=="}),
        ("token-scheme", {"Authorization": f"Token {agency_key}"}),
        ("malformed", {"Authorization": "Bearer not-a-key"}),
        ("wrong-prefix", {"Authorization": "Bearer sk_test_" + "a" * 40}),
        ("too-short", {"Authorization": "Bearer gw_test_abc"}),
        ("bad-characters", {"Authorization": "Bearer gw_test_" + "!" * 40}),
        ("unknown", {"Authorization": "Bearer gw_test_" + "A" * 40}),
        ("unknown-finance", {"Authorization": "Bearer gw_fin_" + "A" * 40}),
        ("extra-character", {"Authorization": f"Bearer {agency_key}x"}),
        ("truncated", {"Authorization": f"Bearer {agency_key[:-1]}"}),
        ("two-keys", {"Authorization": f"Bearer {agency_key} {finance_key}"}),
        ("revoked-agency", auth(_revoked(gw, "agency"))),
        ("revoked-finance", auth(_revoked(gw, "finance"))),
    ]


@pytest.mark.parametrize(("method", "template", "body"), ENDPOINTS, ids=ENDPOINT_IDS)
def test_a_missing_malformed_unknown_or_revoked_key_is_401(
    client: FlaskClient,
    agency_key: str,
    finance_key: str,
    gw: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    objects = make_objects(client, agency_key)
    path = objects.path(template)
    for name, headers in _authorizations(gw, agency_key, finance_key):
        with nothing_written(gw):
            response = call(
                client,
                method,
                path,
                json_body=body,
                headers={**headers, "Idempotency-Key": f"auth-{name}"},
            )
            error = expect_error(response, 401, "authentication")
        assert agency_key not in str(error), f"{name}: the key is echoed back"
    # The control: the same request with a good key of the right role goes through.
    good = finance_key if template in FINANCE_ONLY else agency_key
    response = call(client, method, path, good, json_body=body)
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def test_a_key_is_refused_from_the_moment_it_is_revoked(client: FlaskClient, gw: Gateway) -> None:
    secret = new_agency(gw, "om-mol")
    assert call(client, "GET", "/v1/payments", secret).status_code == 200
    with gw.db.read() as session:
        key_id = session.execute(
            select(ApiKey.id).where(ApiKey.digest == access.digest(secret))
        ).scalar_one()
    access.revoke_key(gw, key_id)
    with nothing_written(gw):
        expect_error(call(client, "GET", "/v1/payments", secret), 401, "authentication")
        response = call(client, "POST", "/v1/payments", secret, json_body=PAYMENT)
        expect_error(response, 401, "authentication")


def test_a_bad_key_is_401_before_the_body_is_looked_at(client: FlaskClient, gw: Gateway) -> None:
    with nothing_written(gw):
        for raw in (b"{not json", b"[]", b"x" * (70 * 1024)):
            response = call(
                client, "POST", "/v1/payments", data=raw, content_type="application/json"
            )
            expect_error(response, 401, "authentication")


# --- a role that may not -----------------------------------------------------------------------

WRITES = [(m, t, b) for m, t, b in ENDPOINTS if m == "POST"]


@pytest.mark.parametrize(
    ("method", "template", "body"), WRITES, ids=[f"{m} {t}" for m, t, _ in WRITES]
)
def test_a_finance_key_may_not_write(
    client: FlaskClient,
    agency_key: str,
    finance_key: str,
    gw: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    objects = make_objects(client, agency_key)
    statuses = _statuses(client, agency_key, objects)
    with nothing_written(gw):
        response = call(
            client,
            method,
            objects.path(template),
            finance_key,
            json_body=body,
            headers={"Idempotency-Key": "finance-write"},
        )
        expect_error(response, 403, "permission")
    assert _statuses(client, agency_key, objects) == statuses


def _statuses(client: FlaskClient, key: str, objects: Objects) -> dict[str, str]:
    names = ("created", "authorised", "succeeded", "failed", "cancelled")
    return {name: status_of(client, key, getattr(objects, name)) for name in names}


def test_a_finance_key_reads_but_has_no_balance(
    client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    objects = make_objects(client, agency_key)
    # The control: a finance key does read across agencies...
    read = call(client, "GET", f"/v1/payments/{objects.succeeded}", finance_key)
    assert read.status_code == 200
    # ...but an agency balance belongs to an agency key.
    expect_error(call(client, "GET", "/v1/balance", finance_key), 403, "permission")


def test_an_agency_key_has_no_trial_balance(
    client: FlaskClient, agency_key: str, finance_key: str
) -> None:
    make_objects(client, agency_key)
    expect_error(call(client, "GET", "/v1/ledger/trial-balance", agency_key), 403, "permission")
    assert call(client, "GET", "/v1/ledger/trial-balance", finance_key).status_code == 200


# --- unknown ids, another agency's ids, the other mode's ids -----------------------------------

UNKNOWN_IDS = [
    "pay_00000000000000000000000000",
    "pay_zzzzzzzzzzzzzzzzzzzzzzzzzz",
    "re_00000000000000000000000000",
    "evt_00000000000000000000000000",
    "nope",
    "x" * 41,
    "x" * 2000,
    "pay_01%20OR%201=1",
    "pay_%27%3B%20DROP%20TABLE%20payments%3B--",
    "%2e%2e",
    "%00",
    "pay_%00",
    "%ff%fe",
]
BY_ID: list[tuple[str, str, dict[str, Any] | None]] = [
    (m, t, b) for m, t, b in ENDPOINTS if "{" in t
]


def _with_id(template: str, value: str) -> str:
    start, end = template.index("{"), template.index("}")
    return template[:start] + value + template[end + 1 :]


@pytest.mark.parametrize(
    ("method", "template", "body"), BY_ID, ids=[f"{m} {t}" for m, t, _ in BY_ID]
)
def test_an_unknown_id_is_404(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    objects = make_objects(client, agency_key)
    # Ids of the wrong kind are unknown too: a refund id where a payment id belongs, etc.
    wrong_kind = objects.event if "/payments/" in template else objects.succeeded
    for value in [*UNKNOWN_IDS, wrong_kind]:
        with nothing_written(gw):
            response = call(
                client,
                method,
                _with_id(template, value),
                agency_key,
                json_body=body,
                headers={"Idempotency-Key": "unknown-id"},
            )
            expect_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "template", "body"), BY_ID, ids=[f"{m} {t}" for m, t, _ in BY_ID]
)
def test_another_agencys_ids_are_404_never_403(
    client: FlaskClient,
    agency_key: str,
    finance_key: str,
    gw: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    theirs = make_objects(client, agency_key)
    our_key = new_agency(gw, "ae-moi", currency="AED", state="AE")
    _create_aed_payment(client, our_key)
    path = theirs.path(template)
    statuses = _statuses(client, agency_key, theirs)
    with nothing_written(gw):
        response = call(
            client, method, path, our_key, json_body=body, headers={"Idempotency-Key": "theirs"}
        )
        error = expect_error(response, 404, "not_found")
    assert _statuses(client, agency_key, theirs) == statuses
    # Not even the answer to an unknown id may differ: nothing tells "exists elsewhere".
    unknown = call(
        client,
        method,
        _with_id(template, "pay_00000000000000000000000000"),
        our_key,
        json_body=body,
    )
    assert body_of(unknown)["error"]["code"] == error["code"]
    # The control: the id is real, its own agency and a finance key can read it.
    if method == "GET":
        assert call(client, method, path, agency_key).status_code == 200
        assert call(client, method, path, finance_key).status_code == 200


def _create_aed_payment(client: FlaskClient, key: str) -> None:
    response = call(client, "POST", "/v1/payments", key, json_body={**PAYMENT, "currency": "AED"})
    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "template", "body"), BY_ID, ids=[f"{m} {t}" for m, t, _ in BY_ID]
)
def test_the_other_modes_ids_are_404(
    client: FlaskClient,
    agency_key: str,
    gw: Gateway,
    method: str,
    template: str,
    body: dict[str, Any] | None,
) -> None:
    """A live key of the same agency does not see its test-mode objects."""
    objects = make_objects(client, agency_key)
    live_key = access.create_key(gw, agency_id="om-moh", role="agency", mode="live")[1]
    with nothing_written(gw):
        response = call(client, method, objects.path(template), live_key, json_body=body)
        expect_error(response, 404, "not_found")


def test_lists_never_show_another_agencys_objects(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    make_objects(client, agency_key)
    other = new_agency(gw, "ae-moi", currency="AED", state="AE")
    for path in ("/v1/payments", "/v1/events"):
        listed = body_of(call(client, "GET", path, other))
        assert listed == {"object": "list", "data": [], "has_more": False}
    assert body_of(call(client, "GET", "/v1/balance", other))["balances"] == []


def test_an_unknown_route_is_404(client: FlaskClient, agency_key: str) -> None:
    for path in ("/v1/paymentz", "/v1/payments/pay_x/refund", "/v1/refunds"):
        expect_error(call(client, "GET", path, agency_key), 404, "not_found")


# --- Idempotency-Key header --------------------------------------------------------------------

BAD_IDEMPOTENCY_KEYS: list[tuple[str, str]] = [
    ("empty", ""),
    ("256-chars", "k" * 256),
    ("300-chars", "k" * 300),
    ("cyrillic", "ключ-1"),
    ("latin-1", "clé-1"),
    ("tab", "order\t1"),
    ("delete", "order\x7f1"),
]


@pytest.mark.parametrize(
    ("name", "value"), BAD_IDEMPOTENCY_KEYS, ids=[n for n, _ in BAD_IDEMPOTENCY_KEYS]
)
def test_an_invalid_idempotency_key_is_422_on_every_post(
    client: FlaskClient, agency_key: str, gw: Gateway, name: str, value: str
) -> None:
    objects = make_objects(client, agency_key)
    statuses = _statuses(client, agency_key, objects)
    for template, body in POST_ENDPOINTS:
        with nothing_written(gw):
            response = call(
                client,
                "POST",
                objects.path(template),
                agency_key,
                json_body=body,
                headers={"Idempotency-Key": value},
            )
            expect_error(
                response,
                422,
                "invalid_request",
                param="Idempotency-Key",
                fields={"Idempotency-Key"},
            )
    assert _statuses(client, agency_key, objects) == statuses


@pytest.mark.parametrize("value", ["k" * 255, "k", "~!@#$%^&*()_+{}|:<>? []", "order 1"])
def test_the_idempotency_key_limits_themselves_are_accepted(
    client: FlaskClient, agency_key: str, value: str
) -> None:
    headers = {"Idempotency-Key": value}
    first = call(client, "POST", "/v1/payments", agency_key, json_body=PAYMENT, headers=headers)
    assert first.status_code == 201, first.get_data(as_text=True)
    again = call(client, "POST", "/v1/payments", agency_key, json_body=PAYMENT, headers=headers)
    assert again.get_data() == first.get_data()
    assert again.headers.get("Idempotent-Replayed") == "true"
