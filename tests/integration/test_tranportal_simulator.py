"""The tranportal adapter and the scheme simulator together, through `LocalTransport`, for KNET
and BENEFIT: the payer's trip to the page and back, the inquiry that decides, refunds, time-outs
on a controlled clock, and the day's settlement file."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import urllib.parse
from pathlib import Path

import pytest

from providers.base import (
    AuthorizeRequest,
    Outcome,
    RefundOutcome,
    RefundRequest,
    SchemeReturn,
)
from providers.tranportal import (
    BENEFIT,
    KNET,
    TranportalProvider,
    TranportalScheme,
    TranportalTerminal,
)
from providers.tranportal_simulator import (
    PAGE_TIMEOUT_S,
    PageExpired,
    PaymentPage,
    SimulatorRefused,
    State,
    TranportalSimulator,
)
from providers.transport import LocalTransport

START = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
RETURN_URL = "https://gw.test/pay/return?token=t1"
TERMINAL = TranportalTerminal("TP10021", "pass!word1", "A1B2C3D4E5F6G7H8")
FEE_MINOR = 100


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclasses.dataclass
class World:
    scheme: TranportalScheme
    simulator: TranportalSimulator
    provider: TranportalProvider
    clock: Clock

    def authorize(self, key: str, amount_minor: int, language: str = "en") -> str:
        result = self.provider.authorize(
            AuthorizeRequest(
                idempotency_key=key,
                amount_minor=amount_minor,
                currency=self.scheme.currency,
                method=self.scheme.name,
                capture=True,
                description="Visa fee",
                return_url=RETURN_URL,
                language=language,
            )
        )
        assert result.outcome is Outcome.REDIRECT and result.redirect_url is not None
        return result.redirect_url

    def open(self, redirect_url: str) -> PaymentPage:
        parts = urllib.parse.urlsplit(redirect_url)
        page_url = self.scheme.urls("https://sim.test/" + self.scheme.name)[0]
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == page_url
        return self.simulator.open_page(dict(urllib.parse.parse_qsl(parts.query)))

    def pay(self, key: str, amount_minor: int, choice: str = "approve") -> str:
        """Authorize, open the page and answer it; the callback URL."""
        page = self.open(self.authorize(key, amount_minor))
        return self.simulator.answer(page.page_id, choice)

    def come_back(self, callback_url: str) -> SchemeReturn:
        """What the gateway's return view hands the adapter: the merged query fields."""
        return self.provider.parse_return(
            dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback_url).query))
        )

    def captured(self, key: str, amount_minor: int) -> str:
        """A captured purchase's reference, as the gateway keeps it from the inquiry."""
        self.pay(key, amount_minor)
        result = self.provider.status(key, None)
        assert result.outcome is Outcome.APPROVED and result.reference is not None
        return result.reference

    def refund(self, key: str, reference: str, amount_minor: int) -> RefundOutcome:
        request = RefundRequest(key, reference, amount_minor, self.scheme.currency)
        return self.provider.refund(request).outcome


def make_world(scheme: TranportalScheme, tmp_path: Path, *, key: str | None = None) -> World:
    clock = Clock()
    simulator = TranportalSimulator(
        scheme, TERMINAL, tmp_path / "schemes.db", clock=clock, capture_fee_minor=FEE_MINOR
    )
    page_url, tranportal_url = scheme.urls("https://sim.test/" + scheme.name)
    terminal = TERMINAL if key is None else dataclasses.replace(TERMINAL, resource_key=key)
    provider = TranportalProvider(
        scheme.name,
        scheme,
        terminal,
        page_url,
        tranportal_url,
        LocalTransport({tranportal_url: simulator.handle_tranportal}),
    )
    return World(scheme, simulator, provider, clock)


@pytest.fixture(params=[KNET, BENEFIT], ids=lambda s: s.name)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    scheme: TranportalScheme = request.param
    return make_world(scheme, tmp_path)


# ---- the payer's trip


def test_approve_round_trip(world: World) -> None:
    page = world.open(world.authorize("att_a1", 1250, language="ar"))
    assert (page.amount_minor, page.currency, page.amount_text) == (
        1250,
        world.scheme.currency,
        "1.250",
    )
    assert (page.language, page.state, page.track_id) == ("ar", State.INITIATED, "att_a1")
    assert page.tranportal_id == TERMINAL.tranportal_id

    callback_url = world.simulator.answer(page.page_id, "approve")
    assert callback_url.startswith(RETURN_URL + "&trandata=")
    returned = world.come_back(callback_url)
    assert returned.attempt_key == "att_a1"
    assert (returned.amount_minor, returned.currency) == (1250, world.scheme.currency)
    assert returned.result == "CAPTURED"

    status = world.provider.status("att_a1", returned.reference)
    assert status.outcome is Outcome.APPROVED
    assert status.amount_captured_minor == status.amount_minor == 1250
    assert status.currency == world.scheme.currency
    assert status.reference == returned.reference  # the transaction id, for refunds


def test_a_second_open_shows_the_same_transaction(world: World) -> None:
    redirect_url = world.authorize("att_a2", 2000)
    first = world.open(redirect_url)
    again = world.open(world.authorize("att_a2", 2000))
    assert again == first
    callback_url = world.simulator.answer(first.page_id, "approve")
    answered = world.open(redirect_url)
    assert answered.state is State.CAPTURED and answered.callback_url == callback_url


def test_an_answered_page_answers_the_same_again(world: World) -> None:
    page = world.open(world.authorize("att_a3", 1000))
    callback_url = world.simulator.answer(page.page_id, "approve")
    assert world.simulator.answer(page.page_id, "decline") == callback_url
    assert world.provider.status("att_a3", None).outcome is Outcome.APPROVED


@pytest.mark.parametrize(("amount_minor", "choice"), [(1013, "approve"), (1000, "decline")])
def test_decline(world: World, amount_minor: int, choice: str) -> None:
    callback_url = world.pay("att_d1", amount_minor, choice)
    assert callback_url.startswith(RETURN_URL)
    returned = world.come_back(callback_url)
    assert (returned.result, returned.amount_minor) == ("NOT CAPTURED", amount_minor)
    status = world.provider.status("att_d1", None)
    assert status.outcome is Outcome.DECLINED and status.decline_code == "card_declined"
    assert status.amount_minor == amount_minor


def test_cancel_is_abandoned(world: World) -> None:
    returned = world.come_back(world.pay("att_c1", 1000, "cancel"))
    assert returned.result == "CANCELED"
    assert returned.reference is not None  # the payment id: there is no transaction
    status = world.provider.status("att_c1", None)
    assert status.outcome is Outcome.DECLINED and status.decline_code == "abandoned"


def test_a_lost_callback_is_found_by_inquiry(world: World) -> None:
    world.pay("att_l1", 4321)  # the payer never comes back
    status = world.provider.status("att_l1", None)
    assert status.outcome is Outcome.APPROVED and status.amount_captured_minor == 4321


def test_an_unknown_track_id_is_unavailable(world: World) -> None:
    assert world.provider.status("att_nobody", None).outcome is Outcome.UNAVAILABLE


def test_an_open_page_is_unknown_until_it_times_out(world: World) -> None:
    page = world.open(world.authorize("att_t1", 1000))
    assert world.provider.status("att_t1", None).outcome is Outcome.UNKNOWN
    world.clock.advance(seconds=PAGE_TIMEOUT_S)
    assert world.provider.status("att_t1", None).outcome is Outcome.UNKNOWN
    world.clock.advance(seconds=1)
    status = world.provider.status("att_t1", None)
    assert status.outcome is Outcome.DECLINED and status.decline_code == "abandoned"
    with pytest.raises(PageExpired):
        world.simulator.answer(page.page_id, "approve")
    with pytest.raises(PageExpired):
        world.open(world.authorize("att_t1", 1000))
    assert world.provider.status("att_t1", None).outcome is Outcome.DECLINED


def test_a_timed_out_page_refuses_even_before_any_inquiry(world: World) -> None:
    page = world.open(world.authorize("att_t2", 1000))
    world.clock.advance(minutes=16)
    with pytest.raises(PageExpired):
        world.simulator.answer(page.page_id, "approve")
    assert world.provider.status("att_t2", None).decline_code == "abandoned"


# ---- refunds


def test_full_and_partial_refunds(world: World) -> None:
    reference = world.captured("att_r1", 10_000)
    assert world.refund("re_r1", reference, 2_500) is RefundOutcome.SUCCEEDED
    assert world.refund("re_r2", reference, 7_500) is RefundOutcome.SUCCEEDED
    assert world.refund("re_r3", reference, 1) is RefundOutcome.FAILED
    other = world.captured("att_r2", 3_000)
    assert world.refund("re_r4", other, 3_000) is RefundOutcome.SUCCEEDED


def test_an_over_refund_is_refused_and_changes_nothing(world: World) -> None:
    reference = world.captured("att_r3", 1_000)
    assert world.refund("re_o1", reference, 1_001) is RefundOutcome.FAILED
    assert world.provider.refund_status("re_o1").outcome is RefundOutcome.UNAVAILABLE
    assert world.refund("re_o1", reference, 1_000) is RefundOutcome.SUCCEEDED


def test_a_refund_error_that_is_not_a_refusal_is_unknown(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheme's system fault says nothing about the refund: never `failed`, which would
    let an agency refund a second time."""
    import providers.tranportal_simulator as simulator_module

    reference = world.captured("att_r4", 1_000)
    monkeypatch.setattr(simulator_module, "ERROR_OVER_REFUND", "SYSTEM_BUSY")
    assert world.refund("re_s1", reference, 1_001) is RefundOutcome.UNKNOWN


def test_the_same_refund_key_twice_is_one_refund(world: World) -> None:
    reference = world.captured("att_r4", 1_000)
    request = RefundRequest("re_s1", reference, 600, world.scheme.currency)
    first = world.provider.refund(request)
    second = world.provider.refund(request)
    assert first.outcome is second.outcome is RefundOutcome.SUCCEEDED
    assert first.reference == second.reference
    # Were it two refunds, this one would exceed the capture.
    assert world.refund("re_s2", reference, 400) is RefundOutcome.SUCCEEDED
    refunds = [r for r in settlement(world, START.date()) if r["type"] == "refund"]
    assert [r["track_id"] for r in refunds] == ["re_s1", "re_s2"]


def test_refund_status(world: World) -> None:
    reference = world.captured("att_r5", 1_000)
    refund = world.provider.refund(RefundRequest("re_q1", reference, 100, world.scheme.currency))
    status = world.provider.refund_status("re_q1")
    assert status.outcome is RefundOutcome.SUCCEEDED and status.reference == refund.reference
    assert world.provider.refund_status("re_never").outcome is RefundOutcome.UNAVAILABLE


def test_only_a_captured_purchase_is_refunded(world: World) -> None:
    world.pay("att_r6", 1_013)  # declined
    declined = world.provider.status("att_r6", None).reference
    assert declined is not None
    assert world.refund("re_d1", declined, 1) is RefundOutcome.FAILED
    assert world.refund("re_d2", "9999999999999999", 1) is RefundOutcome.FAILED


# ---- the settlement file


def settlement(world: World, day: dt.date) -> list[dict[str, str]]:
    """The file's lines, by the logical names of the scheme's layout."""
    layout = world.scheme.settlement
    rows = list(csv.reader(io.StringIO(world.simulator.settlement_file(day))))
    assert tuple(rows[0]) == layout.columns
    names: tuple[str, ...] = ("date", "tran_id", "track_id", "payment_id", "auth", "type")
    names += ("currency", "amount", "fee", "net")
    lines = [dict(zip(names, row, strict=True)) for row in rows[1:]]
    for line in lines:
        line["type"] = {layout.purchase_type: "purchase", layout.refund_type: "refund"}[
            line["type"]
        ]
    return lines


def test_the_settlement_file_lists_the_days_captures_and_refunds(world: World) -> None:
    first = world.captured("att_s1", 12_345)
    world.captured("att_s2", 50)  # under the fee: the fee is capped at the amount
    world.pay("att_s3", 2_013)  # declined: not settled
    world.open(world.authorize("att_s4", 700))  # still open: not settled
    refund = world.provider.refund(RefundRequest("re_s1", first, 2_345, world.scheme.currency))
    world.clock.advance(days=1)
    world.captured("att_s5", 1_000)  # the next day

    day = START.date()
    lines = settlement(world, day)
    date = day.strftime(world.scheme.settlement.date_format)
    currency = world.scheme.currency
    assert [(line["track_id"], line["type"]) for line in lines] == [
        ("att_s1", "purchase"),
        ("att_s2", "purchase"),
        ("re_s1", "refund"),
    ]
    assert all(line["date"] == date and line["currency"] == currency for line in lines)
    assert [(line["amount"], line["fee"], line["net"]) for line in lines] == [
        ("12.345", "0.100", "12.245"),
        ("0.050", "0.050", "0.000"),
        ("-2.345", "0.000", "-2.345"),
    ]
    assert lines[0]["tran_id"] == first and lines[2]["tran_id"] == refund.reference
    assert lines[0]["auth"] and lines[2]["auth"] == ""
    assert [line["track_id"] for line in settlement(world, day + dt.timedelta(days=1))] == [
        "att_s5"
    ]
    assert settlement(world, day - dt.timedelta(days=1)) == []


def test_the_layouts_differ_per_scheme() -> None:
    assert KNET.settlement.columns[0] == "POST_DATE"
    assert BENEFIT.settlement.columns[0] == "SETTLEMENT_DATE"
    assert KNET.settlement.columns != BENEFIT.settlement.columns


# ---- bad input changes nothing


def page_query(world: World, key: str, amount_minor: int) -> dict[str, str]:
    parts = urllib.parse.urlsplit(world.authorize(key, amount_minor))
    return dict(urllib.parse.parse_qsl(parts.query))


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda q: q | {"tranportalId": "TP99999"}, id="another terminal"),
        pytest.param(lambda q: q | {"param": "other"}, id="not paymentInit"),
        pytest.param(lambda q: q | {"trandata": q["trandata"][:-32]}, id="truncated"),
        pytest.param(lambda q: q | {"trandata": "00" + q["trandata"][2:]}, id="tampered"),
        pytest.param(lambda q: q | {"trandata": "zz"}, id="not hex"),
        pytest.param(lambda q: {k: v for k, v in q.items() if k != "trandata"}, id="no trandata"),
        pytest.param(lambda q: q | {"responseURL": "https://evil.test/"}, id="other URL"),
    ],
)
def test_a_bad_page_request_is_refused_and_records_nothing(world: World, spoil: object) -> None:
    query = page_query(world, "att_b1", 1000)
    with pytest.raises(SimulatorRefused) as caught:
        world.simulator.open_page(spoil(query))  # type: ignore[operator]
    assert query["trandata"][:16] not in str(caught.value)
    assert TERMINAL.password not in str(caught.value)
    assert world.provider.status("att_b1", None).outcome is Outcome.UNAVAILABLE


def test_a_track_id_cannot_be_reused_for_another_amount(world: World) -> None:
    world.open(world.authorize("att_b2", 1000))
    with pytest.raises(SimulatorRefused):
        world.open(world.authorize("att_b2", 2000))
    assert world.provider.status("att_b2", None).amount_minor == 1000


def test_another_terminals_request_is_refused(tmp_path: Path) -> None:
    intruder = make_world(KNET, tmp_path, key="Z" * 16)
    with pytest.raises(SimulatorRefused):
        intruder.open(intruder.authorize("att_b3", 1000))
    # Its inquiry cannot even be read by the scheme: unknown, never a guess.
    assert intruder.provider.status("att_b3", None).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(("page_id", "choice"), [("x" * 24, "approve"), ("bad id", "approve")])
def test_answering_no_such_page_is_refused(world: World, page_id: str, choice: str) -> None:
    with pytest.raises(SimulatorRefused):
        world.simulator.answer(page_id, choice)


def test_an_unknown_choice_is_refused(world: World) -> None:
    page = world.open(world.authorize("att_b4", 1000))
    with pytest.raises(SimulatorRefused):
        world.simulator.answer(page.page_id, "maybe")
    assert world.provider.status("att_b4", None).outcome is Outcome.UNKNOWN


@pytest.mark.parametrize(
    "body", [b"", b"\xff" * 10, b"trandata=ABCD", b"[{}]", b"x" * 20_000, b"tranportalId=TP10021"]
)
def test_the_endpoint_answers_unreadable_requests_with_400(world: World, body: bytes) -> None:
    reply = world.simulator.handle_tranportal(body, {})
    assert reply.status in (400, 413)
    assert b"Error" in reply.body  # in clear: nothing was decrypted to answer
    assert not reply.body.startswith((b"trandata=", b'[{"trandata"'))
