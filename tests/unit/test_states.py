"""The payment state machine: every legal transition passes, every other one raises."""

from __future__ import annotations

import itertools

import pytest

from payments.errors import Conflict
from payments.states import PAYMENT_EVENTS, TRANSITIONS, PaymentStatus, check_transition

P = PaymentStatus
LEGAL = {
    (P.CREATED, P.PROCESSING),
    (P.CREATED, P.CANCELLED),
    (P.CREATED, P.EXPIRED),
    (P.PROCESSING, P.CREATED),  # a declined try on the hosted page, with tries left
    (P.PROCESSING, P.REQUIRES_CAPTURE),
    (P.PROCESSING, P.SUCCEEDED),
    (P.PROCESSING, P.FAILED),
    (P.PROCESSING, P.CANCELLED),
    (P.REQUIRES_CAPTURE, P.PROCESSING),
    (P.REQUIRES_CAPTURE, P.SUCCEEDED),
    (P.REQUIRES_CAPTURE, P.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(P, P)))
def test_transition_table(current: PaymentStatus, target: PaymentStatus) -> None:
    if (current, target) in LEGAL:
        check_transition(current, target)
    else:
        with pytest.raises(Conflict) as raised:
            check_transition(current, target)
        assert raised.value.status == 409


def test_final_statuses_have_no_way_out() -> None:
    for final in (P.SUCCEEDED, P.FAILED, P.CANCELLED, P.EXPIRED):
        assert TRANSITIONS[final] == frozenset()


def test_every_final_status_announces_an_event() -> None:
    assert PAYMENT_EVENTS[P.SUCCEEDED] == "payment.succeeded"
    assert P.PROCESSING not in PAYMENT_EVENTS
    assert P.CREATED not in PAYMENT_EVENTS
    assert set(PAYMENT_EVENTS) == {
        P.REQUIRES_CAPTURE,
        P.SUCCEEDED,
        P.FAILED,
        P.CANCELLED,
        P.EXPIRED,
    }
