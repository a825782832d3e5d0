"""Demo payments for `make run`: a few sandbox payments per demo agency (paid by two card
brands, declined, and one still waiting for its payer), so that a fresh clone's finance
console and reports have money to show. Made through the same use cases as the API."""

from __future__ import annotations

from sqlalchemy import select

from payments.errors import GatewayError
from payments.gateway import Gateway
from payments.models import Payment
from payments.service import access, demo
from payments.service.payments import NewPayment, confirm_payment, create_payment
from providers import Card

# Each demo agency's fee in its own currency's minor units (KWD, BHD and OMR: three decimals).
FEES = {"SAR": 15000, "AED": 20000, "KWD": 12500, "QAR": 10000, "BHD": 7500, "OMR": 12500}
# (card number or None for a payer who has not paid yet, share of the fee in percent)
TRIES = (
    ("4242424242424242", 100),
    ("5555555555554444", 40),
    ("4000000000000002", 100),
    (None, 60),
)
RETURN_URL = "http://127.0.0.1:8000/"


def seed_payments(gw: Gateway) -> int:
    """Make the demo payments of every demo agency that has none; how many were made."""
    made = 0
    for agency in demo.DEMO_AGENCIES:
        with gw.db.read() as session:
            if session.scalar(select(Payment.id).where(Payment.agency_id == agency.id).limit(1)):
                continue
        principal = access.verify(gw, demo.demo_key(gw, agency.id))
        for n, (number, share) in enumerate(TRIES, 1):
            amount = FEES[agency.currency] * share // 100
            payment = create_payment(
                gw,
                principal,
                NewPayment(
                    amount_minor=amount,
                    currency=agency.currency,
                    reference=f"DEMO-{agency.id.upper()}-{n}",
                    description="Demo service fee",
                    return_url=RETURN_URL,
                ),
            )
            made += 1
            if number is None:
                continue
            card = Card(number=number, exp_month=12, exp_year=2034, cvc="123", name="Demo Payer")
            try:
                confirm_payment(gw, principal, payment.id, card)
            except GatewayError:  # a declined card is an answer, not a failure of the seed
                continue
    return made
