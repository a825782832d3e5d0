"""A simulator of a bank's hosted OmanNet gateway in the VPC style, for development and tests:
the payment page's logic, the 2-party endpoint (`queryDR`, `refund`) and the daily settlement
file, over its own SQLite store. It speaks the protocol that `providers.omannet` documents; the
gateway's Flask views (under `/sandbox/omannet/`, refused in production) call these methods.

Response codes it gives (`vpc_TxnResponseCode`):

- `0`: the payer chose Approve; a refund was made.
- `2`: the payer chose Decline, or Approve of an amount ending in `13` minor units (API.md: the
  national-scheme simulators decline those); a refund refused (over the amount left to refund,
  or no approved payment under that transaction number).
- `C`: the payer chose Cancel.
- `P` (`queryDR` only): the page is open and the payer has not answered yet.
- `A` (`queryDR` only): the page was left unanswered for PAGE_TIMEOUT_S and timed out; the page
  refuses every answer after that.

`queryDR` of a reference the simulator has never seen answers `vpc_DRExists=N`. A request the
simulator refuses outright (unknown merchant, wrong access code or credentials, a secure hash
that does not verify, a malformed field, a reference already used for something else) gets
HTTP 400 with unsigned `vpc_TxnResponseCode=7` and a message, and changes nothing.

Settlement file (`settlement_file(day)`): UTF-8 CSV, `\\n` line ends, this header line, then one
line per approved payment (by the time the payer approved it) and per refund made, that UTC
day, in time order:

`SETTLEMENT_DATE,MERCHANT_ID,MERCHANT_TXN_REF,TRANSACTION_NO,RECEIPT_NO,TRANSACTION_TIME,TYPE,CURRENCY,AMOUNT,FEE,NET`

- `SETTLEMENT_DATE`: the day, `YYYY-MM-DD`; `TRANSACTION_TIME`: UTC, `YYYY-MM-DDTHH:MM:SSZ`.
- `MERCHANT_TXN_REF`: the merchant's `vpc_MerchTxnRef` (the attempt's or the refund's key);
  `TRANSACTION_NO`: the bank's `vpc_TransactionNo` (the gateway's provider reference);
  `RECEIPT_NO`: the bank's `vpc_ReceiptNo`.
- `TYPE`: `PURCHASE` or `REFUND`; `CURRENCY`: `OMR`.
- `AMOUNT`, `FEE`, `NET`: decimal major units with exactly three decimals (`12.500`). A purchase
  has AMOUNT > 0, FEE = 1% of AMOUNT rounded half up to the baisa, at least 0.050 and never
  more than AMOUNT, and NET = AMOUNT - FEE. A refund has AMOUNT < 0, FEE = 0.000, NET = AMOUNT.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hmac
import io
import secrets
import sqlite3
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from providers.base import InvalidNotification
from providers.omannet import (
    CURRENCY,
    FORM_TYPE,
    LOCALES,
    MERCH_TXN_REF_RE,
    TRANSACTION_NO_RE,
    VPC_VERSION,
    InvalidAmount,
    OmanNetTerminal,
    check_fields,
    encode_form,
    parse_amount,
    parse_form,
    sign,
    verify,
)
from providers.sqlite_store import SqliteStore
from providers.transport import Reply

PAGE_TIMEOUT_S = 15 * 60
CHOICES = ("approve", "decline", "cancel")
DECLINED_ENDING = 13  # approve of an amount whose minor units end in this is a decline
FEE_PER_CENT = 1
FEE_MIN_MINOR = 50
CURRENCY_EXPONENT = 3
TRANSACTION_NO_BASE = 3_000_000_000
COLUMNS = (
    "SETTLEMENT_DATE",
    "MERCHANT_ID",
    "MERCHANT_TXN_REF",
    "TRANSACTION_NO",
    "RECEIPT_NO",
    "TRANSACTION_TIME",
    "TYPE",
    "CURRENCY",
    "AMOUNT",
    "FEE",
    "NET",
)

# state -> (vpc_TxnResponseCode, vpc_Message)
_PAYMENT_CODES: dict[str, tuple[str, str]] = {
    "initiated": ("P", "Awaiting the payer"),
    "approved": ("0", "Approved"),
    "declined": ("2", "Declined by the bank"),
    "cancelled": ("C", "Cancelled by the payer"),
    "timed_out": ("A", "Aborted: the payment page timed out"),
}

# One fixed statement per way of finding a payment: no SQL is ever built from input.
_PAYMENT_BY: dict[str, str] = {
    "merch_txn_ref": "SELECT * FROM omannet_payments WHERE merch_txn_ref = ?",
    "page_id": "SELECT * FROM omannet_payments WHERE page_id = ?",
    "transaction_no": "SELECT * FROM omannet_payments WHERE transaction_no = ?",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS omannet_payments (
    merch_txn_ref TEXT PRIMARY KEY,
    page_id TEXT NOT NULL UNIQUE,
    merchant TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('initiated', 'approved', 'declined', 'cancelled', 'timed_out')),
    choice TEXT,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    locale TEXT NOT NULL,
    order_info TEXT NOT NULL,
    return_url TEXT NOT NULL,
    transaction_no TEXT UNIQUE,
    receipt_no TEXT,
    authorize_id TEXT,
    opened_at TEXT NOT NULL,
    answered_at TEXT
);
CREATE INDEX IF NOT EXISTS omannet_payments_answered ON omannet_payments (answered_at);
CREATE TABLE IF NOT EXISTS omannet_refunds (
    merch_txn_ref TEXT PRIMARY KEY,
    merchant TEXT NOT NULL,
    original_transaction_no TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('refunded', 'refused')),
    response_code TEXT NOT NULL,
    message TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    transaction_no TEXT NOT NULL UNIQUE,
    receipt_no TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS omannet_refunds_original ON omannet_refunds (original_transaction_no);
CREATE INDEX IF NOT EXISTS omannet_refunds_created ON omannet_refunds (created_at);
CREATE TABLE IF NOT EXISTS omannet_sequence (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class SimulatorRefused(Exception):
    """The simulator refuses the request; nothing changed. `reason` is one of `bad_request`,
    `not_found`, `conflict` (already answered, a reference used for something else) and
    `expired` (the page timed out), for a view to choose its HTTP status. The message never
    repeats what the request carried."""

    def __init__(self, message: str, *, reason: str = "bad_request") -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class PaymentPage:
    """What the bank's payment page shows."""

    page_id: str
    merchant: str
    merch_txn_ref: str
    order_info: str
    amount_minor: int
    currency: str
    locale: str  # ar | en
    state: str  # initiated | approved | declined | cancelled | timed_out
    expires_at: dt.datetime

    @property
    def open(self) -> bool:
        """True while the payer may still answer."""
        return self.state == "initiated"

    @property
    def language(self) -> str:
        """The page's language, `ar` or `en`, as the gateway asked for it."""
        return self.locale


class OmanNetStore(SqliteStore):
    """The simulator's own database: a SQLite file shared by every gateway process."""

    SCHEMA = _SCHEMA


def _stamp(moment: dt.datetime) -> str:
    """A fixed-width UTC time, so that text order is time order in the store's queries."""
    assert moment.tzinfo is not None, "the simulator's clock must give aware times"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def format_major(amount_minor: int) -> str:
    """Minor units as the settlement file writes them: `12.500`, `-0.013`."""
    sign_ = "-" if amount_minor < 0 else ""
    whole, frac = divmod(abs(amount_minor), 10**CURRENCY_EXPONENT)
    return f"{sign_}{whole}.{frac:0{CURRENCY_EXPONENT}d}"


def settlement_fee(gross_minor: int) -> int:
    """The bank's fee on a purchase: 1% half up, at least FEE_MIN_MINOR, at most the gross."""
    variable = (gross_minor * FEE_PER_CENT + 50) // 100
    return min(gross_minor, max(FEE_MIN_MINOR, variable))


class OmanNetSimulator:
    """The bank's gateway for one merchant terminal, simulated."""

    def __init__(
        self,
        terminal: OmanNetTerminal,
        store_path: Path,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.terminal = terminal
        self.store = OmanNetStore(store_path)
        self.clock = clock

    # ------------------------------------------------------------------ checking a request

    def _verified(self, fields: Mapping[str, str], command: str) -> dict[str, str]:
        """The signed fields of a merchant request that is this terminal's, well formed and
        signed with its secret; `SimulatorRefused` otherwise."""
        try:
            check_fields(fields)
        except InvalidNotification as exc:
            raise SimulatorRefused(str(exc)) from None
        if fields.get("vpc_Merchant") != self.terminal.merchant_id:
            raise SimulatorRefused("unknown merchant")
        access_code = fields.get("vpc_AccessCode", "")
        if not hmac.compare_digest(access_code.encode(), self.terminal.access_code.encode()):
            raise SimulatorRefused("wrong access code for this merchant")
        try:
            signed = verify(fields, self.terminal.key)
        except InvalidNotification as exc:
            raise SimulatorRefused(str(exc)) from None
        if signed.get("vpc_Version") != VPC_VERSION:
            raise SimulatorRefused("vpc_Version must be 1")
        if signed.get("vpc_Command") != command:
            raise SimulatorRefused(f"vpc_Command must be {command}")
        if MERCH_TXN_REF_RE.fullmatch(signed.get("vpc_MerchTxnRef", "")) is None:
            raise SimulatorRefused("vpc_MerchTxnRef is missing or malformed")
        return signed

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC)

    def _next_transaction_no(self, conn: sqlite3.Connection) -> str:
        conn.execute(
            "INSERT OR IGNORE INTO omannet_sequence (name, value) VALUES ('transaction_no', 0)"
        )
        conn.execute("UPDATE omannet_sequence SET value = value + 1 WHERE name = 'transaction_no'")
        value = conn.execute(
            "SELECT value FROM omannet_sequence WHERE name = 'transaction_no'"
        ).fetchone()[0]
        return str(TRANSACTION_NO_BASE + int(value))

    @staticmethod
    def _receipt_no() -> str:
        return f"{secrets.randbelow(10**12):012d}"

    # ------------------------------------------------------------------ the payment page

    def _payment(self, conn: sqlite3.Connection, column: str, value: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(_PAYMENT_BY[column], (value,)).fetchone()
        if row is not None and row["state"] == "initiated":
            row = self._time_out(conn, row)
        return row

    def _time_out(self, conn: sqlite3.Connection, row: sqlite3.Row) -> sqlite3.Row:
        """A page left unanswered for PAGE_TIMEOUT_S is aborted, as the bank's page would be:
        written when it is next read (there is no background timer)."""
        deadline = _parse_stamp(row["opened_at"]) + dt.timedelta(seconds=PAGE_TIMEOUT_S)
        if self._now() < deadline:
            return row
        conn.execute(
            "UPDATE omannet_payments SET state = 'timed_out', transaction_no = ?,"
            " receipt_no = ?, authorize_id = '', answered_at = ? WHERE merch_txn_ref = ?",
            (
                self._next_transaction_no(conn),
                self._receipt_no(),
                _stamp(deadline),
                row["merch_txn_ref"],
            ),
        )
        fresh: sqlite3.Row = conn.execute(
            "SELECT * FROM omannet_payments WHERE merch_txn_ref = ?", (row["merch_txn_ref"],)
        ).fetchone()
        return fresh

    @staticmethod
    def _page(row: sqlite3.Row) -> PaymentPage:
        return PaymentPage(
            page_id=row["page_id"],
            merchant=row["merchant"],
            merch_txn_ref=row["merch_txn_ref"],
            order_info=row["order_info"],
            amount_minor=row["amount_minor"],
            currency=row["currency"],
            locale=row["locale"],
            state=row["state"],
            expires_at=_parse_stamp(row["opened_at"]) + dt.timedelta(seconds=PAGE_TIMEOUT_S),
        )

    def open_page(self, query: Mapping[str, str]) -> PaymentPage:
        """The page for the merchant's signed request (the redirect's query string), recorded
        as `initiated` the first time; the same request again shows the same page. A caller
        must refuse a query string that repeats a field before making it a mapping."""
        signed = self._verified(query, "pay")
        try:
            amount = parse_amount(signed.get("vpc_Amount", ""))
        except InvalidAmount as exc:
            raise SimulatorRefused(str(exc)) from None
        if signed.get("vpc_Currency") != CURRENCY:
            raise SimulatorRefused("vpc_Currency must be OMR")
        locale = signed.get("vpc_Locale", "")
        if locale not in LOCALES:
            raise SimulatorRefused("vpc_Locale must be ar or en")
        return_url = signed.get("vpc_ReturnURL", "")
        if not return_url.startswith(("https://", "http://")) or " " in return_url:
            raise SimulatorRefused("vpc_ReturnURL must be an http(s) URL")
        order_info = signed.get("vpc_OrderInfo", "")
        if not order_info:
            raise SimulatorRefused("vpc_OrderInfo is missing")
        ref = signed["vpc_MerchTxnRef"]
        with self.store.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM omannet_refunds WHERE merch_txn_ref = ?", (ref,)
            ).fetchone():
                raise SimulatorRefused("this reference names a refund", reason="conflict")
            row = self._payment(conn, "merch_txn_ref", ref)
            if row is None:
                conn.execute(
                    "INSERT INTO omannet_payments (merch_txn_ref, page_id, merchant, state,"
                    " amount_minor, currency, locale, order_info, return_url, opened_at)"
                    " VALUES (?, ?, ?, 'initiated', ?, ?, ?, ?, ?, ?)",
                    (
                        ref,
                        secrets.token_urlsafe(18),
                        self.terminal.merchant_id,
                        amount,
                        CURRENCY,
                        locale,
                        order_info,
                        return_url,
                        _stamp(self._now()),
                    ),
                )
                row = self._payment(conn, "merch_txn_ref", ref)
                assert row is not None
            elif (row["amount_minor"], row["currency"], row["return_url"]) != (
                amount,
                CURRENCY,
                return_url,
            ):
                raise SimulatorRefused(
                    "this reference was already used for another payment", reason="conflict"
                )
        return self._page(row)

    def page(self, page_id: str) -> PaymentPage:
        """The page as it stands now."""
        with self.store.transaction() as conn:
            row = self._payment(conn, "page_id", page_id)
        if row is None:
            raise SimulatorRefused("no such payment page", reason="not_found")
        return self._page(row)

    def answer(self, page_id: str, choice: str) -> str:
        """Record the payer's `approve`, `decline` or `cancel`; the merchant's return address
        with the signed response fields. The same answer again gives the same address; another
        answer to an answered page, or any answer to a timed-out one, is refused."""
        if choice not in CHOICES:
            raise SimulatorRefused("the choice must be approve, decline or cancel")
        with self.store.transaction() as conn:
            row = self._payment(conn, "page_id", page_id)
            if row is None:
                raise SimulatorRefused("no such payment page", reason="not_found")
            if row["state"] == "timed_out":
                raise SimulatorRefused("the payment page timed out", reason="expired")
            if row["state"] == "initiated":
                state = {"approve": "approved", "decline": "declined", "cancel": "cancelled"}[
                    choice
                ]
                if state == "approved" and row["amount_minor"] % 100 == DECLINED_ENDING:
                    state = "declined"
                authorize_id = f"{secrets.randbelow(10**6):06d}" if state == "approved" else ""
                conn.execute(
                    "UPDATE omannet_payments SET state = ?, choice = ?, transaction_no = ?,"
                    " receipt_no = ?, authorize_id = ?, answered_at = ?"
                    " WHERE page_id = ? AND state = 'initiated'",
                    (
                        state,
                        choice,
                        self._next_transaction_no(conn),
                        self._receipt_no(),
                        authorize_id,
                        _stamp(self._now()),
                        page_id,
                    ),
                )
                row = self._payment(conn, "page_id", page_id)
                assert row is not None
            elif row["choice"] != choice:
                raise SimulatorRefused("the payment page was already answered", reason="conflict")
        return self._return_url(row)

    def _payment_fields(self, row: sqlite3.Row, command: str) -> dict[str, str]:
        code, message = _PAYMENT_CODES[row["state"]]
        fields = {
            "vpc_Version": VPC_VERSION,
            "vpc_Command": command,
            "vpc_Merchant": row["merchant"],
            "vpc_MerchTxnRef": row["merch_txn_ref"],
            "vpc_OrderInfo": row["order_info"],
            "vpc_Amount": str(row["amount_minor"]),
            "vpc_Currency": row["currency"],
            "vpc_Locale": row["locale"],
            "vpc_TxnResponseCode": code,
            "vpc_Message": message,
        }
        if row["transaction_no"] is not None:
            fields["vpc_TransactionNo"] = row["transaction_no"]
            fields["vpc_ReceiptNo"] = row["receipt_no"]
        if row["authorize_id"]:
            # Only an approval has an authorisation code. An empty field is left out, not sent
            # blank: a reader that drops blank query fields would otherwise fail the hash.
            fields["vpc_AuthorizeId"] = row["authorize_id"]
        return fields

    def _return_url(self, row: sqlite3.Row) -> str:
        signed = sign(self._payment_fields(row, "pay"), self.terminal.key)
        url: str = row["return_url"]
        return f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(signed)}"

    # ------------------------------------------------------------------ the 2-party endpoint

    def handle_query(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        """The bank's 2-party endpoint: `queryDR` and `refund`, form-encoded both ways, signed.
        A refused request gets HTTP 400 with an unsigned error and changes nothing."""
        try:
            content_type = next(
                (value for name, value in headers.items() if name.lower() == "content-type"), ""
            )
            if content_type.split(";", 1)[0].strip().lower() != FORM_TYPE:
                raise SimulatorRefused(f"the body must be {FORM_TYPE}")
            try:
                fields = parse_form(body)
            except InvalidNotification as exc:
                raise SimulatorRefused(str(exc)) from None
            command = fields.get("vpc_Command")
            if command not in ("queryDR", "refund"):
                raise SimulatorRefused("vpc_Command must be queryDR or refund")
            signed = self._verified(fields, command)
            user_ok = hmac.compare_digest(
                signed.get("vpc_User", "").encode(), self.terminal.user.encode()
            )
            password_ok = hmac.compare_digest(
                signed.get("vpc_Password", "").encode(), self.terminal.password.encode()
            )
            if not (user_ok and password_ok):
                raise SimulatorRefused("wrong vpc_User or vpc_Password")
            answer = self._query(signed) if command == "queryDR" else self._refund(signed)
        except SimulatorRefused as exc:
            error = {"vpc_TxnResponseCode": "7", "vpc_Message": f"E5000: {exc}"}
            return Reply(400, encode_form(error), FORM_TYPE)
        return Reply(200, encode_form(sign(answer, self.terminal.key)), FORM_TYPE)

    def _query(self, signed: Mapping[str, str]) -> dict[str, str]:
        ref = signed["vpc_MerchTxnRef"]
        base = {
            "vpc_Version": VPC_VERSION,
            "vpc_Command": "queryDR",
            "vpc_Merchant": self.terminal.merchant_id,
            "vpc_MerchTxnRef": ref,
            "vpc_FoundMultipleDRs": "N",
        }
        with self.store.transaction() as conn:
            payment = self._payment(conn, "merch_txn_ref", ref)
            refund = conn.execute(
                "SELECT * FROM omannet_refunds WHERE merch_txn_ref = ?", (ref,)
            ).fetchone()
        if payment is not None:
            return {**self._payment_fields(payment, "queryDR"), **base, "vpc_DRExists": "Y"}
        if refund is not None:
            return {**self._refund_fields(refund, "queryDR"), **base, "vpc_DRExists": "Y"}
        return {**base, "vpc_DRExists": "N"}

    def _refund_fields(self, row: sqlite3.Row, command: str) -> dict[str, str]:
        return {
            "vpc_Version": VPC_VERSION,
            "vpc_Command": command,
            "vpc_Merchant": row["merchant"],
            "vpc_MerchTxnRef": row["merch_txn_ref"],
            "vpc_Amount": str(row["amount_minor"]),
            "vpc_Currency": row["currency"],
            "vpc_TxnResponseCode": row["response_code"],
            "vpc_Message": row["message"],
            "vpc_TransactionNo": row["transaction_no"],
            "vpc_ShopTransactionNo": row["original_transaction_no"],
            "vpc_ReceiptNo": row["receipt_no"],
        }

    def _refund(self, signed: Mapping[str, str]) -> dict[str, str]:
        """Refund (part of) an approved payment, once per merchant reference: the same request
        again answers the same refund; a refused refund is recorded as refused, so that asking
        again gives the same answer."""
        ref = signed["vpc_MerchTxnRef"]
        original = signed.get("vpc_TransNo", "")
        if TRANSACTION_NO_RE.fullmatch(original) is None:
            raise SimulatorRefused("vpc_TransNo is missing or malformed")
        try:
            amount = parse_amount(signed.get("vpc_Amount", ""))
        except InvalidAmount as exc:
            raise SimulatorRefused(str(exc)) from None
        with self.store.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM omannet_payments WHERE merch_txn_ref = ?", (ref,)
            ).fetchone():
                raise SimulatorRefused("this reference names a payment", reason="conflict")
            existing = conn.execute(
                "SELECT * FROM omannet_refunds WHERE merch_txn_ref = ?", (ref,)
            ).fetchone()
            if existing is not None:
                if (existing["original_transaction_no"], existing["amount_minor"]) != (
                    original,
                    amount,
                ):
                    raise SimulatorRefused(
                        "this reference was already used for another refund", reason="conflict"
                    )
                return self._refund_fields(existing, "refund")
            payment = self._payment(conn, "transaction_no", original)
            code, message = "2", "No approved payment has this transaction number"
            currency = CURRENCY
            if payment is not None and payment["state"] == "approved":
                currency = payment["currency"]
                refunded = conn.execute(
                    "SELECT COALESCE(SUM(amount_minor), 0) FROM omannet_refunds"
                    " WHERE original_transaction_no = ? AND state = 'refunded'",
                    (original,),
                ).fetchone()[0]
                if refunded + amount > payment["amount_minor"]:
                    message = "The refund exceeds the amount left to refund"
                else:
                    code, message = "0", "Refunded"
            conn.execute(
                "INSERT INTO omannet_refunds (merch_txn_ref, merchant, original_transaction_no,"
                " state, response_code, message, amount_minor, currency, transaction_no,"
                " receipt_no, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ref,
                    self.terminal.merchant_id,
                    original,
                    "refunded" if code == "0" else "refused",
                    code,
                    message,
                    amount,
                    currency,
                    self._next_transaction_no(conn),
                    self._receipt_no(),
                    _stamp(self._now()),
                ),
            )
            row = conn.execute(
                "SELECT * FROM omannet_refunds WHERE merch_txn_ref = ?", (ref,)
            ).fetchone()
        return self._refund_fields(row, "refund")

    # ------------------------------------------------------------------ settlement

    def settlement_file(self, day: dt.date) -> str:
        """The bank's settlement file for `day` (UTC): the layout is in the module docstring."""
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        bounds = (_stamp(start), _stamp(start + dt.timedelta(days=1)))
        with self.store.transaction() as conn:
            purchases = conn.execute(
                "SELECT merch_txn_ref, transaction_no, receipt_no, answered_at AS at,"
                " currency, amount_minor FROM omannet_payments"
                " WHERE state = 'approved' AND answered_at >= ? AND answered_at < ?",
                bounds,
            ).fetchall()
            refunds = conn.execute(
                "SELECT merch_txn_ref, transaction_no, receipt_no, created_at AS at,"
                " currency, amount_minor FROM omannet_refunds"
                " WHERE state = 'refunded' AND created_at >= ? AND created_at < ?",
                bounds,
            ).fetchall()
        lines = [(row, "PURCHASE") for row in purchases] + [(row, "REFUND") for row in refunds]
        lines.sort(key=lambda line: (line[0]["at"], line[0]["transaction_no"]))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row, kind in lines:
            gross = row["amount_minor"] if kind == "PURCHASE" else -row["amount_minor"]
            fee = settlement_fee(gross) if kind == "PURCHASE" else 0
            writer.writerow(
                (
                    day.isoformat(),
                    self.terminal.merchant_id,
                    row["merch_txn_ref"],
                    row["transaction_no"],
                    row["receipt_no"],
                    _parse_stamp(row["at"]).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    kind,
                    row["currency"],
                    format_major(gross),
                    format_major(fee),
                    format_major(gross - fee),
                )
            )
        return out.getvalue()
