"""Bad input to the payment actions: confirm, capture, cancel and refunds. Bad bodies answer
422 naming the field; a status that forbids the action answers 409 `conflict`. Either way
nothing is written and the payment keeps its status and amounts."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient

from payments import clock
from payments.gateway import Gateway
from tests.conftest import PAYMENT, card, count_rows
from tests.integration.test_bad_input import (
    Objects,
    body_of,
    call,
    confirm,
    create_payment,
    expect_error,
    make_objects,
    nothing_written,
    status_of,
)

AMOUNT = 12500
assert PAYMENT["amount"] == AMOUNT
PM = "payment_method"
CARD = "payment_method.card"


def _card(**changes: Any) -> dict[str, Any]:
    """A valid confirm body with card fields changed (a value of ... drops the field)."""
    body = card()
    fields = body[PM]["card"]
    for name, value in changes.items():
        if value is ...:
            fields.pop(name)
        else:
            fields[name] = value
    return body


def _method(**changes: Any) -> dict[str, Any]:
    body = card()
    for name, value in changes.items():
        if value is ...:
            body[PM].pop(name)
        else:
            body[PM][name] = value
    return body


BAD_CONFIRMS: list[tuple[str, dict[str, Any], str]] = [
    ("empty", {}, PM),
    ("method-null", {PM: None}, PM),
    ("method-string", {PM: "card"}, PM),
    ("method-list", {PM: [card()[PM]]}, PM),
    ("type-missing", _method(type=...), f"{PM}.type"),
    ("type-knet", _method(type="knet"), f"{PM}.type"),
    ("type-null", _method(type=None), f"{PM}.type"),
    ("card-missing", _method(card=...), CARD),
    ("card-null", _method(card=None), CARD),
    ("card-string", _method(card="4242424242424242"), CARD),
    ("number-not-luhn", _card(number="4242424242424241"), f"{CARD}.number"),
    ("number-not-luhn-spaced", _card(number="4242 4242 4242 4241"), f"{CARD}.number"),
    ("number-dashes", _card(number="4242-4242-4242-4242"), f"{CARD}.number"),
    ("number-letters", _card(number="4242abcd42424242"), f"{CARD}.number"),
    ("number-short", _card(number="42424242424"), f"{CARD}.number"),
    ("number-long", _card(number="4" * 24), f"{CARD}.number"),
    ("number-integer", _card(number=4242424242424242), f"{CARD}.number"),
    ("number-newline", _card(number="4242424242424242\n"), f"{CARD}.number"),
    ("number-missing", _card(number=...), f"{CARD}.number"),
    ("exp-month-string", _card(exp_month="12"), f"{CARD}.exp_month"),
    ("exp-month-float", _card(exp_month=12.0), f"{CARD}.exp_month"),
    ("exp-month-13", _card(exp_month=13), f"{CARD}.exp_month"),
    ("exp-month-0", _card(exp_month=0), f"{CARD}.exp_month"),
    ("exp-month-true", _card(exp_month=True), f"{CARD}.exp_month"),
    ("exp-month-null", _card(exp_month=None), f"{CARD}.exp_month"),
    ("exp-month-missing", _card(exp_month=...), f"{CARD}.exp_month"),
    ("exp-year-string", _card(exp_year="2034"), f"{CARD}.exp_year"),
    ("exp-year-float", _card(exp_year=2034.0), f"{CARD}.exp_year"),
    ("exp-year-two-digits", _card(exp_year=34), f"{CARD}.exp_year"),
    ("exp-year-past", _card(exp_year=2020), f"{CARD}.exp_year"),
    ("exp-year-missing", _card(exp_year=...), f"{CARD}.exp_year"),
    ("cvc-letters", _card(cvc="abc"), f"{CARD}.cvc"),
    ("cvc-two-digits", _card(cvc="12"), f"{CARD}.cvc"),
    ("cvc-five-digits", _card(cvc="12345"), f"{CARD}.cvc"),
    ("cvc-integer", _card(cvc=123), f"{CARD}.cvc"),
    ("cvc-empty", _card(cvc=""), f"{CARD}.cvc"),
    ("cvc-newline", _card(cvc="123\n"), f"{CARD}.cvc"),
    ("cvc-missing", _card(cvc=...), f"{CARD}.cvc"),
    ("name-201", _card(name="N" * 201), f"{CARD}.name"),
    ("name-empty", _card(name=""), f"{CARD}.name"),
    ("unknown-card-field", _card(pin="1234"), f"{CARD}.pin"),
    ("unknown-method-field", _method(billing_address="Muscat"), f"{PM}.billing_address"),
    ("unknown-top-field", {**card(), "amount": 1}, "amount"),
]


@pytest.mark.parametrize(
    ("case", "body", "param"), BAD_CONFIRMS, ids=[case for case, _, _ in BAD_CONFIRMS]
)
def test_a_bad_confirm_is_422_and_charges_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway, case: str, body: Any, param: str
) -> None:
    payment = create_payment(client, agency_key)["id"]
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            f"/v1/payments/{payment}/confirm",
            agency_key,
            json_body=body,
            headers={"Idempotency-Key": f"confirm-{case}"},
        )
        expect_error(response, 422, "invalid_request", param=param, fields={param})
    read = body_of(call(client, "GET", f"/v1/payments/{payment}", agency_key))
    assert (read["status"], read["payment_method"]) == ("created", None)
    # The payment is still payable: the same call with a good card goes through.
    assert confirm(client, agency_key, payment, "4242424242424242")["status"] == "succeeded"


def test_a_confirm_maps_every_bad_card_field(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = create_payment(client, agency_key)["id"]
    body = _card(number="not a number", exp_month=13, cvc="abc", colour="blue")
    with nothing_written(gw):
        response = call(
            client, "POST", f"/v1/payments/{payment}/confirm", agency_key, json_body=body
        )
        expect_error(
            response,
            422,
            "invalid_request",
            param=f"{CARD}.number",
            fields={f"{CARD}.{f}" for f in ("number", "exp_month", "cvc", "colour")},
        )


@pytest.mark.parametrize(
    ("exp_month", "exp_year", "ok"),
    [(5, 2030, False), (12, 2029, False), (6, 2030, True), (1, 2031, True)],
)
def test_a_card_expires_at_the_end_of_its_month(
    client: FlaskClient, agency_key: str, gw: Gateway, exp_month: int, exp_year: int, ok: bool
) -> None:
    clock.set_clock(lambda: dt.datetime(2030, 6, 30, 23, 0, tzinfo=dt.UTC))
    payment = create_payment(client, agency_key)["id"]
    path = f"/v1/payments/{payment}/confirm"
    body = _card(exp_month=exp_month, exp_year=exp_year)
    if ok:
        response = call(client, "POST", path, agency_key, json_body=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert body_of(response)["status"] == "succeeded"
        return
    with nothing_written(gw):
        response = call(client, "POST", path, agency_key, json_body=body)
        expect_error(response, 422, "invalid_request", param=f"{CARD}.exp_year")


def test_confirming_an_expired_payment_is_409(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    start = dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC)
    clock.set_clock(lambda: start)
    payment = create_payment(client, agency_key)
    expires_at = dt.datetime.fromisoformat(payment["expires_at"].replace("Z", "+00:00"))
    clock.set_clock(lambda: expires_at + dt.timedelta(seconds=1))
    with nothing_written(gw):
        response = call(
            client, "POST", f"/v1/payments/{payment['id']}/confirm", agency_key, json_body=card()
        )
        expect_error(response, 409, "conflict")


BAD_CAPTURES: list[tuple[str, dict[str, Any], str]] = [
    ("zero", {"amount": 0}, "amount"),
    ("negative", {"amount": -1}, "amount"),
    ("float", {"amount": 12.5}, "amount"),
    ("integral-float", {"amount": 100.0}, "amount"),
    ("string", {"amount": "100"}, "amount"),
    ("true", {"amount": True}, "amount"),
    ("null", {"amount": None}, "amount"),
    ("list", {"amount": [100]}, "amount"),
    ("over-max", {"amount": 10**12 + 1}, "amount"),
    ("over-authorised", {"amount": AMOUNT + 1}, "amount"),
    ("unknown-field", {"amount_to_capture": 100}, "amount_to_capture"),
    ("currency", {"amount": 100, "currency": "OMR"}, "currency"),
]


@pytest.mark.parametrize(
    ("case", "body", "param"), BAD_CAPTURES, ids=[case for case, _, _ in BAD_CAPTURES]
)
def test_a_bad_capture_is_422_and_captures_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway, case: str, body: Any, param: str
) -> None:
    payment = create_payment(client, agency_key, capture_method="manual")["id"]
    assert confirm(client, agency_key, payment, "4242424242424242")["status"] == "requires_capture"
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            f"/v1/payments/{payment}/capture",
            agency_key,
            json_body=body,
            headers={"Idempotency-Key": f"capture-{case}"},
        )
        expect_error(response, 422, "invalid_request", param=param, fields={param})
    read = body_of(call(client, "GET", f"/v1/payments/{payment}", agency_key))
    assert (read["status"], read["amount_captured"]) == ("requires_capture", 0)


def test_a_capture_over_the_authorised_amount_says_so(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    payment = create_payment(client, agency_key, capture_method="manual")["id"]
    confirm(client, agency_key, payment, "4242424242424242")
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            f"/v1/payments/{payment}/capture",
            agency_key,
            json_body={"amount": AMOUNT + 1},
        )
        expect_error(
            response, 422, "invalid_request", code="amount_exceeds_authorized", param="amount"
        )
    # The control: the whole authorised amount itself can be captured.
    done = call(
        client,
        "POST",
        f"/v1/payments/{payment}/capture",
        agency_key,
        json_body={"amount": AMOUNT},
    )
    assert done.status_code == 200
    assert body_of(done)["amount_captured"] == AMOUNT


BAD_REFUNDS: list[tuple[str, dict[str, Any], str]] = [
    ("zero", {"amount": 0}, "amount"),
    ("negative", {"amount": -5}, "amount"),
    ("float", {"amount": 2.5}, "amount"),
    ("integral-float", {"amount": 100.0}, "amount"),
    ("string", {"amount": "100"}, "amount"),
    ("true", {"amount": True}, "amount"),
    ("null", {"amount": None}, "amount"),
    ("over-max", {"amount": 10**12 + 1}, "amount"),
    ("over-refundable", {"amount": AMOUNT - 100 + 1}, "amount"),
    ("reason-256", {"reason": "R" * 256}, "reason"),
    ("reason-empty", {"reason": ""}, "reason"),
    ("reason-number", {"reason": 5}, "reason"),
    ("reason-null", {"reason": None}, "reason"),
    ("unknown-field", {"amount": 100, "payment": "pay_x"}, "payment"),
    ("metadata-not-accepted", {"metadata": {"k": "v"}}, "metadata"),
]


@pytest.mark.parametrize(
    ("case", "body", "param"), BAD_REFUNDS, ids=[case for case, _, _ in BAD_REFUNDS]
)
def test_a_bad_refund_is_422_and_refunds_nothing(
    client: FlaskClient, agency_key: str, gw: Gateway, case: str, body: Any, param: str
) -> None:
    objects = make_objects(client, agency_key)  # its succeeded payment has 100 refunded
    path = f"/v1/payments/{objects.succeeded}/refunds"
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            path,
            agency_key,
            json_body=body,
            headers={"Idempotency-Key": f"refund-{case}"},
        )
        expect_error(response, 422, "invalid_request", param=param, fields={param})
    read = body_of(call(client, "GET", f"/v1/payments/{objects.succeeded}", agency_key))
    assert (read["status"], read["amount_refunded"]) == ("succeeded", 100)
    assert len(body_of(call(client, "GET", path, agency_key))["data"]) == 1


def test_a_refund_over_what_remains_says_so(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    objects = make_objects(client, agency_key)
    path = f"/v1/payments/{objects.succeeded}/refunds"
    remaining = AMOUNT - 100
    with nothing_written(gw):
        response = call(client, "POST", path, agency_key, json_body={"amount": remaining + 1})
        expect_error(
            response, 422, "invalid_request", code="amount_exceeds_refundable", param="amount"
        )
    # The control: exactly what remains can be refunded, and then nothing more, not even 1.
    done = call(client, "POST", path, agency_key, json_body={"amount": remaining})
    assert done.status_code == 201, done.get_data(as_text=True)
    for body in ({"amount": 1}, {}):
        with nothing_written(gw):
            response = call(client, "POST", path, agency_key, json_body=body)
            expect_error(
                response, 422, "invalid_request", code="amount_exceeds_refundable", param="amount"
            )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"colour": "blue"}, "colour"),
        ({"amount": 100}, "amount"),
        ({"cancellation_reason": "duplicate"}, "cancellation_reason"),
    ],
)
def test_a_cancel_with_unknown_fields_is_422(
    client: FlaskClient, agency_key: str, gw: Gateway, body: dict[str, Any], param: str
) -> None:
    """`cancel` takes no fields, and API.md rejects unknown fields in every body."""
    payment = create_payment(client, agency_key)["id"]
    with nothing_written(gw):
        response = call(
            client, "POST", f"/v1/payments/{payment}/cancel", agency_key, json_body=body
        )
        expect_error(response, 422, "invalid_request", param=param, fields={param})
    assert status_of(client, agency_key, payment) == "created"


# --- a status that forbids the action ----------------------------------------------------------

ACTION_BODIES: dict[str, dict[str, Any]] = {
    "confirm": card(),
    "capture": {},
    "cancel": {},
    "refunds": {},
}
CONFLICTS: list[tuple[str, str]] = [
    ("capture", "failed"),
    ("capture", "created"),
    ("capture", "succeeded"),
    ("capture", "cancelled"),
    ("cancel", "succeeded"),
    ("cancel", "failed"),
    ("cancel", "cancelled"),
    ("refunds", "created"),
    ("refunds", "failed"),
    ("refunds", "authorised"),
    ("refunds", "cancelled"),
    ("confirm", "succeeded"),
    ("confirm", "failed"),
    ("confirm", "authorised"),
    ("confirm", "cancelled"),
]


@pytest.mark.parametrize(("action", "target"), CONFLICTS, ids=[f"{a}-{t}" for a, t in CONFLICTS])
def test_an_action_the_status_forbids_is_409(
    client: FlaskClient, agency_key: str, gw: Gateway, action: str, target: str
) -> None:
    objects = make_objects(client, agency_key)
    payment = getattr(objects, target)
    before = body_of(call(client, "GET", f"/v1/payments/{payment}", agency_key))
    with nothing_written(gw):
        response = call(
            client,
            "POST",
            f"/v1/payments/{payment}/{action}",
            agency_key,
            json_body=ACTION_BODIES[action],
        )
        expect_error(response, 409, "conflict")
    after = body_of(call(client, "GET", f"/v1/payments/{payment}", agency_key))
    assert after == before


def test_a_conflict_under_an_idempotency_key_is_replayed_not_redone(
    client: FlaskClient, agency_key: str, gw: Gateway
) -> None:
    """A 409 for the payment's status is a response the endpoint produced, so (as at Stripe)
    its key keeps it: only the key's row is written, and a retry replays the same 409."""
    objects = make_objects(client, agency_key)
    path = f"/v1/payments/{objects.failed}/capture"
    headers = {"Idempotency-Key": "capture-failed-1"}
    before = count_rows(gw)
    first = call(client, "POST", path, agency_key, json_body={}, headers=headers)
    expect_error(first, 409, "conflict")
    after = count_rows(gw)
    changed = {t: after[t] - before[t] for t in after if after[t] != before[t]}
    assert changed == {"idempotency_keys": 1}
    again = call(client, "POST", path, agency_key, json_body={}, headers=headers)
    assert again.status_code == 409
    assert again.get_data() == first.get_data()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert count_rows(gw) == after


def test_objects_fixture_statuses(client: FlaskClient, agency_key: str) -> None:
    """The statuses the conflict table relies on."""
    objects: Objects = make_objects(client, agency_key)
    statuses = {
        name: status_of(client, agency_key, getattr(objects, name))
        for name in ("created", "authorised", "succeeded", "failed", "cancelled")
    }
    assert statuses == {
        "created": "created",
        "authorised": "requires_capture",
        "succeeded": "succeeded",
        "failed": "failed",
        "cancelled": "cancelled",
    }
