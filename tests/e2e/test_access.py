"""Who may see and do what: agencies apart, finance across, and keys that do not authenticate."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
import requests

from payments.gateway import VERIFIED_KEY_TTL_S
from tests.e2e.conftest import (
    Api,
    LiveGateway,
    card_body,
    expect_error,
    json_of,
    payment_body,
)

pytestmark = pytest.mark.e2e
VISA = "4242424242424242"


@dataclasses.dataclass(frozen=True)
class AgencyObjects:
    """Objects of one agency in every state another agency might poke at."""

    created: dict[str, Any]
    authorised: dict[str, Any]
    paid: dict[str, Any]
    refund: dict[str, Any]
    event: dict[str, Any]

    @property
    def payment_ids(self) -> set[str]:
        return {self.created["id"], self.authorised["id"], self.paid["id"]}


def make_objects(agency: Api) -> AgencyObjects:
    created = agency.create_payment()
    authorised = agency.confirm(agency.create_payment(capture_method="manual")["id"], VISA)
    assert authorised["status"] == "requires_capture"
    paid = agency.confirm(agency.create_payment()["id"], VISA)
    assert paid["status"] == "succeeded"
    refunded = agency.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 100})
    assert refunded.status_code == 201, refunded.text
    [event] = agency.events_for(paid["id"], "payment.succeeded")
    return AgencyObjects(
        created=created,
        authorised=authorised,
        paid=agency.ok(f"/v1/payments/{paid['id']}"),
        refund=json_of(refunded),
        event=event,
    )


def not_found(response: requests.Response) -> None:
    expect_error(response, 404, "not_found")


def test_agencies_never_see_each_other(gateway: LiveGateway) -> None:
    a, b = gateway.api("om-moh"), gateway.api("ae-icp")
    mine = make_objects(a)
    theirs = make_objects(b)

    for objects, other in ((mine, b), (theirs, a)):
        created, authorised, paid = objects.created, objects.authorised, objects.paid
        for payment in (created, authorised, paid):
            not_found(other.get(f"/v1/payments/{payment['id']}"))
            not_found(other.get(f"/v1/payments/{payment['id']}/refunds"))
        not_found(other.post(f"/v1/payments/{created['id']}/confirm", card_body(VISA)))
        not_found(other.post(f"/v1/payments/{created['id']}/cancel"))
        not_found(other.post(f"/v1/payments/{authorised['id']}/capture", {"amount": 100}))
        not_found(other.post(f"/v1/payments/{authorised['id']}/cancel"))
        not_found(other.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 100}))
        not_found(other.post(f"/v1/payments/{paid['id']}/refunds"))
        not_found(other.get(f"/v1/refunds/{objects.refund['id']}"))
        not_found(other.get(f"/v1/events/{objects.event['id']}"))

    # The answer for another agency's object is the answer for no object at all.
    foreign = b.get(f"/v1/payments/{mine.paid['id']}")
    missing = b.get("/v1/payments/pay_0000000000000000000000000x")
    assert json_of(foreign)["error"]["code"] == json_of(missing)["error"]["code"]

    # Nothing the other agency tried changed anything.
    for objects, owner in ((mine, a), (theirs, b)):
        assert owner.ok(f"/v1/payments/{objects.created['id']}") == objects.created
        assert owner.ok(f"/v1/payments/{objects.authorised['id']}") == objects.authorised
        assert owner.ok(f"/v1/payments/{objects.paid['id']}") == objects.paid
        assert owner.list_all(f"/v1/payments/{objects.paid['id']}/refunds") == [objects.refund]
        assert owner.ok(f"/v1/events/{objects.event['id']}") == objects.event

    # Lists hold the caller's own objects and never the other's.
    for objects, owner, other in ((mine, a, b), (theirs, b, a)):
        payments = other.list_all("/v1/payments")
        assert {p["agency"] for p in payments} == {other.agency}
        assert not objects.payment_ids & {p["id"] for p in payments}
        assert objects.payment_ids <= {p["id"] for p in owner.list_all("/v1/payments")}
        reference = other.ok("/v1/payments", params={"reference": objects.paid["reference"]})
        assert reference["data"] == []
        events = other.list_all("/v1/events")
        assert {e["data"]["agency"] for e in events if "agency" in e["data"]} == {other.agency}
        assert not {objects.paid["id"], objects.refund["id"]} & {e["data"]["id"] for e in events}
        assert objects.event["id"] not in {e["id"] for e in events}
        assert objects.event["id"] in {e["id"] for e in owner.list_all("/v1/events")}


def test_finance_reads_across_agencies_and_writes_nothing(gateway: LiveGateway) -> None:
    agency, finance = gateway.api("om-moh"), gateway.api("finance")
    paid = agency.confirm(agency.create_payment()["id"], VISA)
    refund = json_of(agency.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 500}))
    paid = agency.ok(f"/v1/payments/{paid['id']}")

    assert finance.ok(f"/v1/payments/{paid['id']}") == paid
    assert finance.ok(f"/v1/refunds/{refund['id']}") == refund
    listed = finance.ok("/v1/payments", params={"reference": paid["reference"]})
    assert [p["id"] for p in listed["data"]] == [paid["id"]]

    create = finance.post("/v1/payments", payment_body("OMR"))
    expect_error(create, 403, "permission")
    assert finance.ok("/v1/payments", params={"reference": paid["reference"]}) == listed
    fresh = agency.create_payment()
    expect_error(
        finance.post(f"/v1/payments/{fresh['id']}/confirm", card_body(VISA)),
        403,
        "permission",
    )
    expect_error(finance.post(f"/v1/payments/{paid['id']}/refunds"), 403, "permission")
    assert agency.ok(f"/v1/payments/{fresh['id']}")["status"] == "created"
    assert agency.ok(f"/v1/payments/{paid['id']}") == paid


def test_a_live_key_does_not_see_test_objects(gateway: LiveGateway) -> None:
    """Keys of one agency in another mode are another scope (API.md: test keys, sandbox)."""
    agency = gateway.api("om-moh")
    test_payment = agency.create_payment()
    live_key = gateway.cli("keys", "create", "--agency", "om-moh", "--mode", "live")
    live = gateway.with_key(live_key.stdout.strip().splitlines()[-1], "om-moh")
    assert live.key is not None and live.key.startswith("gw_live_")
    not_found(live.get(f"/v1/payments/{test_payment['id']}"))
    assert test_payment["id"] not in {p["id"] for p in live.list_all("/v1/payments")}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic Z3c6dGVzdA==",
        "Bearer not-a-key",
        "Bearer gw_test_" + "0" * 40,
        "Bearer gw_fin_" + "0" * 40,
        "Token gw_test_" + "0" * 40,
    ],
)
def test_requests_without_a_valid_key_are_401(
    gateway: LiveGateway, authorization: str | None
) -> None:
    anonymous = gateway.api(None)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in (
        ("GET", "/v1/payments", None),
        ("POST", "/v1/payments", payment_body("OMR")),
        ("GET", "/v1/balance", None),
    ):
        response = anonymous.request(method, path, json=body, headers=headers)
        expect_error(response, 401, "authentication")


def test_a_revoked_key_stops_working(gateway: LiveGateway) -> None:
    issued = gateway.cli("keys", "create", "--agency", "om-moh").stdout.strip().splitlines()
    key_id = issued[0].split()[1]
    assert key_id.startswith("key_"), issued
    api = gateway.with_key(issued[-1], "om-moh")
    assert api.get("/v1/payments", params={"limit": 1}).status_code == 200
    gateway.cli("keys", "revoke", key_id)
    # Each server process keeps a key it verified for up to VERIFIED_KEY_TTL_S, counted from
    # before the revocation committed: by then every process refuses it.
    time.sleep(VERIFIED_KEY_TTL_S + 0.1)
    expect_error(api.get("/v1/payments", params={"limit": 1}), 401, "authentication")
    expect_error(api.post("/v1/payments", payment_body("OMR")), 401, "authentication")
