"""The hot path's storage: payments and attempts read, and new rows and changes written, by
statements built once and run on the driver's cursor; every object stays the session's, and
rows nothing changes once written (events, delivery jobs) are written from their values."""

from payments.store.payments import Scope, payment, payment_with_attempt
from payments.store.rows import append
from payments.store.rows import insert as add

__all__ = ["Scope", "add", "append", "payment", "payment_with_attempt"]
