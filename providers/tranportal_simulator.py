"""A simulator of one tranportal scheme's side (KNET's or BENEFIT's), for development and
tests: the payment page's logic, the server-to-server tranportal endpoint (inquiry and refund)
and the daily settlement file, with its own SQLite store. It is not the scheme and never
moves money. No Flask here: the gateway's sandbox views call these methods, and
`handle_tranportal` plugs into `LocalTransport` or an HTTP view as it is.

It speaks the protocol of `providers.tranportal` (see there), with these rules of its own:
- The page (`open_page`, then `answer`) records a transaction `initiated` under its track id;
  opening the same track id again shows the same transaction. `approve` captures, except an
  amount whose minor units end in 13, which is declined (API.md); `decline` declines;
  `cancel` cancels. The payer goes back to `responseURL` (CAPTURED, NOT CAPTURED) or
  `errorURL` (CANCELED) with the encrypted result as `?trandata=...`. Answering again gives
  the same URL back.
- A page left unanswered longer than PAGE_TIMEOUT_S times out: the page refuses it
  (`PageExpired`) and the inquiry answers NOT CAPTURED with the scheme's timeout error.
- The inquiry (action 8) answers the transaction's result fields; INITIALIZED while the payer
  is still on the page; the scheme's not-found error for an unknown track id.
- A refund (action 2) names the captured purchase by its transaction id; refunds never add up
  past the captured amount; the same refund track id twice is one refund (the second answers
  the first). Every refusal is an encrypted error answer and changes nothing.
- A request that cannot be read (too large, not the scheme's encoding, another terminal, not
  decrypting) answers HTTP 400 with an unencrypted `Error`/`ErrorText`.

The settlement file (`settlement_file(day)`) is CSV, `\\n`-terminated, with a header line of the
scheme's own column names (`TranportalScheme.settlement`) and one line per capture and per
refund made that UTC day, in the order they were made:

    KNET:    POST_DATE,TRAN_ID,TRACK_ID,PAYMENT_ID,AUTH_CODE,TYPE,CURRENCY,AMOUNT,FEE,NET
    BENEFIT: SETTLEMENT_DATE,TRANSACTION_ID,MERCHANT_TRACK_ID,PAYMENT_ID,APPROVAL_CODE,
             TRANSACTION_TYPE,CURRENCY,GROSS_AMOUNT,COMMISSION,NET_AMOUNT

- date: the UTC day, KNET `YYYY-MM-DD`, BENEFIT `DD/MM/YYYY`;
- transaction id: the capture's or the refund's own id (what the adapter reports as the
  reference); track id: the merchant's (the attempt's or the refund's idempotency key);
  payment id: the scheme's page id; auth code: empty for refunds;
- type: KNET `PURCHASE`/`REFUND`, BENEFIT `SALE`/`CREDIT`; currency: ISO 4217 alphabetic;
- amount, fee, net: decimal major units with the currency's exponent (`1.250`); a refund's
  amount and net are negative and its fee is zero; a capture's fee is the simulator's
  `capture_fee_minor` (never more than the amount), and net = amount - fee.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import hmac
import io
import json
import re
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from providers.scheme_amounts import SchemeAmountError, format_amount, parse_amount
from providers.sqlite_store import SqliteStore
from providers.tranportal import (
    ACTION_INQUIRY,
    ACTION_PURCHASE,
    ACTION_REFUND,
    CANCELED,
    CAPTURED,
    INITIALIZED,
    NOT_CAPTURED,
    REFERENCE_RE,
    TRACK_ID_RE,
    UDF_FIELDS,
    TrandataCodec,
    TranportalFormatError,
    TranportalScheme,
    TranportalTerminal,
    decode_fields,
    encode_fields,
    valid_url,
    with_query,
)
from providers.transport import Reply

PAGE_TIMEOUT_S = 15 * 60
# API.md: amounts ending in 13 minor units are declined by the national-scheme simulators.
DECLINED_ENDING = 13
REQUEST_BODY_MAX_BYTES = 16 * 1024
QUERY_FIELDS_MAX = 20
UDF_MAX_CHARS = 255
PAGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,64}", re.ASCII)
SETTLEMENT_ROWS_PER_FETCH = 500

# The simulator's error codes, beside the scheme's own not-found and timeout codes.
ERROR_BAD_REQUEST = "BAD_REQUEST"
ERROR_AUTHENTICATION = "AUTHENTICATION_FAILED"
ERROR_UNSUPPORTED_ACTION = "UNSUPPORTED_ACTION"
ERROR_NOT_REFUNDABLE = "ORIGINAL_NOT_CAPTURED"
ERROR_OVER_REFUND = "REFUND_EXCEEDS_CAPTURE"
ERROR_TRACK_ID_IN_USE = "TRACK_ID_IN_USE"


class Choice(enum.StrEnum):
    """The buttons of the simulated payment page."""

    APPROVE = "approve"
    DECLINE = "decline"
    CANCEL = "cancel"


class State(enum.StrEnum):
    INITIATED = "initiated"  # the payer is on the page
    CAPTURED = "captured"  # a purchase paid, or a refund made
    NOT_CAPTURED = "not_captured"  # declined
    CANCELED = "canceled"  # the payer pressed cancel
    TIMED_OUT = "timed_out"  # the payer left the page unanswered


class SimulatorRefused(Exception):
    """Input the simulated scheme does not accept. Nothing was recorded; the message never
    repeats the input."""


class PageExpired(SimulatorRefused):
    """The payment page was left unanswered past PAGE_TIMEOUT_S."""


@dataclasses.dataclass(frozen=True)
class PaymentPage:
    """What the simulated payment page shows."""

    page_id: str  # opaque, for the page's form
    tranportal_id: str  # the merchant's terminal
    track_id: str
    payment_id: str
    amount_minor: int
    currency: str
    language: str  # the gateway's `ar` or `en`
    state: State
    callback_url: str | None  # once answered: where the payer is sent back to

    @property
    def amount_text(self) -> str:
        """The amount as the page shows it: `1.250`."""
        return format_amount(self.amount_minor, self.currency)


@dataclasses.dataclass(frozen=True)
class _Purchase:
    track_id: str
    amount_minor: int
    language: str
    response_url: str
    error_url: str
    udfs: tuple[str, ...]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tranportal_transactions (
    scheme TEXT NOT NULL,
    track_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('purchase', 'refund')),
    state TEXT NOT NULL,
    page_id TEXT UNIQUE,
    payment_id TEXT NOT NULL,
    tran_id TEXT,
    auth_code TEXT,
    ref TEXT,
    original_tran_id TEXT,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    language TEXT,
    response_url TEXT,
    error_url TEXT,
    udfs TEXT NOT NULL,
    error_code TEXT,
    callback_url TEXT,
    created_at TEXT NOT NULL,
    answered_at TEXT,
    PRIMARY KEY (scheme, track_id),
    UNIQUE (scheme, payment_id),
    UNIQUE (scheme, tran_id)
);
CREATE INDEX IF NOT EXISTS tranportal_transactions_answered
    ON tranportal_transactions (scheme, state, answered_at);
CREATE INDEX IF NOT EXISTS tranportal_transactions_original
    ON tranportal_transactions (scheme, original_tran_id);
"""


class TranportalSimulatorStore(SqliteStore):
    """The simulated schemes' own database: one SQLite file, one table with a scheme column,
    shared by every gateway process."""

    SCHEMA = _SCHEMA


def _stamp(moment: dt.datetime) -> str:
    """A fixed-width UTC time, so that stored times compare as strings."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unstamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _digits(count: int) -> str:
    """A random numeric id, as the schemes' ids are."""
    return f"{secrets.randbelow(10**count):0{count}d}"


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a credential."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TranportalSimulator:
    """One scheme's side for one merchant terminal, over its own store."""

    def __init__(
        self,
        scheme: TranportalScheme,
        terminal: TranportalTerminal,
        store_path: Path | str,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        capture_fee_minor: int = 0,
    ) -> None:
        assert capture_fee_minor >= 0, "a fee is not negative"
        self.scheme = scheme
        self.terminal = terminal
        self.store = TranportalSimulatorStore(Path(store_path))
        self.clock = clock
        self.capture_fee_minor = capture_fee_minor
        self.codec = TrandataCodec(scheme, terminal)

    def __repr__(self) -> str:
        return f"TranportalSimulator({self.scheme.name}, {self.terminal!r})"

    def _w(self, name: str) -> str:
        return self.scheme.wire(name)

    def _now(self) -> dt.datetime:
        now = self.clock()
        assert now.tzinfo is not None, "the simulator's clock is aware"
        return now

    # ---- rows

    def _by_track(self, conn: sqlite3.Connection, track_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM tranportal_transactions WHERE scheme = ? AND track_id = ?",
            (self.scheme.name, track_id),
        ).fetchone()
        return row

    def _by_tran_id(self, conn: sqlite3.Connection, tran_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM tranportal_transactions WHERE scheme = ? AND tran_id = ?",
            (self.scheme.name, tran_id),
        ).fetchone()
        return row

    def _by_page(self, conn: sqlite3.Connection, page_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM tranportal_transactions WHERE scheme = ? AND page_id = ?",
            (self.scheme.name, page_id),
        ).fetchone()
        return row

    def _expire(self, conn: sqlite3.Connection, row: sqlite3.Row) -> sqlite3.Row:
        """The row, timed out first if its page was left unanswered too long."""
        if row["kind"] != "purchase" or row["state"] != State.INITIATED:
            return row
        opened = _unstamp(row["created_at"])
        if self._now() - opened <= dt.timedelta(seconds=PAGE_TIMEOUT_S):
            return row
        conn.execute(
            "UPDATE tranportal_transactions SET state = ?, error_code = ?, answered_at = ?"
            " WHERE scheme = ? AND track_id = ?",
            (
                State.TIMED_OUT,
                self.scheme.error_timed_out,
                _stamp(opened + dt.timedelta(seconds=PAGE_TIMEOUT_S)),
                self.scheme.name,
                row["track_id"],
            ),
        )
        fresh = self._by_track(conn, row["track_id"])
        assert fresh is not None
        return fresh

    def _page(self, row: sqlite3.Row) -> PaymentPage:
        return PaymentPage(
            page_id=row["page_id"],
            tranportal_id=self.terminal.tranportal_id,
            track_id=row["track_id"],
            payment_id=row["payment_id"],
            amount_minor=row["amount_minor"],
            currency=row["currency"],
            language=row["language"],
            state=State(row["state"]),
            callback_url=row["callback_url"],
        )

    def _result_fields(self, row: sqlite3.Row) -> list[tuple[str, str]]:
        """The scheme's result fields for a transaction, in the callback and the inquiry."""
        state = State(row["state"])
        result = {
            State.INITIATED: INITIALIZED,
            State.CAPTURED: CAPTURED,
            State.NOT_CAPTURED: NOT_CAPTURED,
            State.CANCELED: CANCELED,
            State.TIMED_OUT: NOT_CAPTURED,
        }[state]
        fields = [
            (self._w("paymentid"), row["payment_id"]),
            (self._w("result"), result),
        ]
        if row["auth_code"]:
            fields.append((self._w("auth"), row["auth_code"]))
        if row["ref"]:
            fields.append((self._w("ref"), row["ref"]))
        if row["tran_id"]:
            fields.append((self._w("tranid"), row["tran_id"]))
        fields += [
            (self._w("trackid"), row["track_id"]),
            (self._w("amt"), format_amount(row["amount_minor"], row["currency"])),
        ]
        if row["answered_at"] and state is State.CAPTURED:
            fields.append(("postdate", _unstamp(row["answered_at"]).strftime("%m%d")))
        udfs = json.loads(row["udfs"])
        fields += [(self._w(name), value) for name, value in zip(UDF_FIELDS, udfs, strict=True)]
        if state is State.TIMED_OUT:
            fields += [
                ("Error", self.scheme.error_timed_out),
                ("ErrorText", "the payer did not finish on the payment page in time"),
            ]
        return fields

    # ---- the payment page

    def _purchase(self, fields: Mapping[str, str]) -> _Purchase:
        """The purchase request in decrypted trandata, or SimulatorRefused."""
        if not (
            _same(fields.get(self._w("id")), self.terminal.tranportal_id)
            and _same(fields.get(self._w("password")), self.terminal.password)
        ):
            raise SimulatorRefused("the tranportal id or password is wrong")
        if fields.get(self._w("action")) != ACTION_PURCHASE:
            raise SimulatorRefused("the payment page takes purchases (action 1) only")
        if fields.get(self._w("currencycode")) != self.scheme.currency_code:
            raise SimulatorRefused(f"this terminal takes {self.scheme.currency} only")
        try:
            amount_minor = parse_amount(fields.get(self._w("amt"), ""), self.scheme.currency)
        except SchemeAmountError as exc:
            raise SimulatorRefused(f"the amount: {exc}") from None
        track_id = fields.get(self._w("trackid"), "")
        if not TRACK_ID_RE.fullmatch(track_id):
            raise SimulatorRefused("the track id is missing or malformed")
        language = self.scheme.language(fields.get(self._w("langid"), ""))
        if language is None:
            raise SimulatorRefused("the language is not one of the scheme's")
        response_url = fields.get(self._w("responseURL"))
        error_url = fields.get(self._w("errorURL"))
        if not valid_url(response_url) or not valid_url(error_url):
            raise SimulatorRefused("the response or error URL is missing or not http(s)")
        assert response_url is not None and error_url is not None
        udfs = tuple(fields.get(self._w(name), "") for name in UDF_FIELDS)
        if any(len(udf) > UDF_MAX_CHARS for udf in udfs):
            raise SimulatorRefused("a user-defined field is too long")
        return _Purchase(track_id, amount_minor, language, response_url, error_url, udfs)

    def open_page(self, query: Mapping[str, str]) -> PaymentPage:
        """The payment page for the query the merchant sent the payer with: the transaction
        is recorded `initiated` the first time, and shown as it stands after that."""
        if len(query) > QUERY_FIELDS_MAX:
            raise SimulatorRefused("too many query fields")
        if query.get("param") != "paymentInit":
            raise SimulatorRefused("not a paymentInit request")
        if not _same(query.get("tranportalId"), self.terminal.tranportal_id):
            raise SimulatorRefused("unknown tranportal id")
        trandata = query.get("trandata")
        if not isinstance(trandata, str):
            raise SimulatorRefused("no trandata")
        try:
            fields = self.codec.open(trandata)
        except TranportalFormatError as exc:
            raise SimulatorRefused(f"the trandata {exc}") from None
        purchase = self._purchase(fields)
        for name, url in (("responseURL", purchase.response_url), ("errorURL", purchase.error_url)):
            if name in query and query[name] != url:
                raise SimulatorRefused("the query's return URLs differ from the trandata's")
        with self.store.transaction() as conn:
            row = self._by_track(conn, purchase.track_id)
            if row is None:
                conn.execute(
                    "INSERT INTO tranportal_transactions (scheme, track_id, kind, state,"
                    " page_id, payment_id, amount_minor, currency, language, response_url,"
                    " error_url, udfs, created_at)"
                    " VALUES (?, ?, 'purchase', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.scheme.name,
                        purchase.track_id,
                        State.INITIATED,
                        secrets.token_urlsafe(18),
                        _digits(18),
                        purchase.amount_minor,
                        self.scheme.currency,
                        purchase.language,
                        purchase.response_url,
                        purchase.error_url,
                        json.dumps(purchase.udfs),
                        _stamp(self._now()),
                    ),
                )
                row = self._by_track(conn, purchase.track_id)
                assert row is not None
            elif (
                row["kind"] != "purchase"
                or row["amount_minor"] != purchase.amount_minor
                or row["response_url"] != purchase.response_url
                or row["error_url"] != purchase.error_url
            ):
                raise SimulatorRefused("this track id is already another transaction's")
            row = self._expire(conn, row)
        # Outside the transaction, so that the time-out is recorded before the refusal.
        if row["state"] == State.TIMED_OUT:
            raise PageExpired("this payment page has timed out")
        return self._page(row)

    def answer(self, page_id: str, choice: str) -> str:
        """Record the payer's choice on the page; the URL to send the payer back to, with the
        encrypted result. A page already answered gives its first answer's URL again."""
        try:
            chosen = Choice(choice)
        except ValueError:
            raise SimulatorRefused("the choice is approve, decline or cancel") from None
        if not isinstance(page_id, str) or not PAGE_ID_RE.fullmatch(page_id):
            raise SimulatorRefused("no such payment page")
        with self.store.transaction() as conn:
            row = self._by_page(conn, page_id)
            if row is None:
                raise SimulatorRefused("no such payment page")
            row = self._expire(conn, row)
            if row["state"] not in (State.INITIATED, State.TIMED_OUT):
                return str(row["callback_url"])
            if row["state"] == State.INITIATED:
                self._record_answer(conn, row, chosen)
                row = self._by_page(conn, page_id)
                assert row is not None
        if row["state"] == State.TIMED_OUT:
            raise PageExpired("this payment page has timed out")
        return str(row["callback_url"])

    def _record_answer(self, conn: sqlite3.Connection, row: sqlite3.Row, choice: Choice) -> None:
        declined = choice is Choice.DECLINE or (
            choice is Choice.APPROVE and row["amount_minor"] % 100 == DECLINED_ENDING
        )
        if choice is Choice.CANCEL:
            state, tran_id, auth, ref = State.CANCELED, None, None, None
        elif declined:
            state, tran_id, auth, ref = State.NOT_CAPTURED, _digits(16), None, _digits(12)
        else:
            state, tran_id, auth, ref = State.CAPTURED, _digits(16), _digits(6), _digits(12)
        conn.execute(
            "UPDATE tranportal_transactions SET state = ?, tran_id = ?, auth_code = ?, ref = ?,"
            " answered_at = ? WHERE scheme = ? AND track_id = ?",
            (state, tran_id, auth, ref, _stamp(self._now()), self.scheme.name, row["track_id"]),
        )
        answered = self._by_track(conn, row["track_id"])
        assert answered is not None
        target = row["error_url"] if state is State.CANCELED else row["response_url"]
        callback_url = with_query(
            target, [("trandata", self.codec.seal(self._result_fields(answered)))]
        )
        conn.execute(
            "UPDATE tranportal_transactions SET callback_url = ? WHERE scheme = ? AND track_id = ?",
            (callback_url, self.scheme.name, row["track_id"]),
        )

    # ---- the tranportal endpoint

    def _plain_error(self, status: int, code: str, text: str) -> Reply:
        body = encode_fields(self.scheme.encoding, [("Error", code), ("ErrorText", text)])
        return Reply(status, body.encode("ascii"), self.scheme.encoding.content_type)

    @staticmethod
    def _error(code: str, text: str) -> list[tuple[str, str]]:
        return [("Error", code), ("ErrorText", text)]

    def handle_tranportal(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        """The scheme's server-to-server endpoint: an envelope holding encrypted trandata in,
        an envelope holding the encrypted answer out."""
        if len(body) > REQUEST_BODY_MAX_BYTES:
            return self._plain_error(413, ERROR_BAD_REQUEST, "the request is too large")
        try:
            envelope = decode_fields(self.scheme.encoding, body.decode("ascii"))
        except (TranportalFormatError, UnicodeDecodeError):
            return self._plain_error(400, ERROR_BAD_REQUEST, "the request cannot be read")
        if not _same(envelope.get(self.scheme.envelope_id_field), self.terminal.tranportal_id):
            return self._plain_error(400, ERROR_AUTHENTICATION, "unknown tranportal id")
        try:
            fields = self.codec.open(envelope.get("trandata", ""))
        except TranportalFormatError:
            return self._plain_error(400, ERROR_BAD_REQUEST, "the trandata does not decrypt")
        if not (
            _same(fields.get(self._w("id")), self.terminal.tranportal_id)
            and _same(fields.get(self._w("password")), self.terminal.password)
        ):
            answer = self._error(ERROR_AUTHENTICATION, "the tranportal id or password is wrong")
        elif fields.get(self._w("action")) == ACTION_INQUIRY:
            answer = self._inquiry(fields)
        elif fields.get(self._w("action")) == ACTION_REFUND:
            answer = self._refund(fields)
        else:
            answer = self._error(ERROR_UNSUPPORTED_ACTION, "the endpoint takes actions 2 and 8")
        sealed = encode_fields(self.scheme.encoding, [("trandata", self.codec.seal(answer))])
        return Reply(200, sealed.encode("ascii"), self.scheme.encoding.content_type)

    def _inquiry(self, fields: Mapping[str, str]) -> list[tuple[str, str]]:
        """Action 8: by track id when the scheme's marker says so, else by transaction id."""
        value = fields.get(self._w(self.scheme.inquiry_key_field), "")
        by_track = all(
            fields.get(self._w(name)) == marker for name, marker in self.scheme.inquiry_marker
        )
        pattern = TRACK_ID_RE if by_track else REFERENCE_RE
        if not pattern.fullmatch(value):
            return self._error(ERROR_BAD_REQUEST, "the inquiry names no transaction")
        with self.store.transaction() as conn:
            row = self._by_track(conn, value) if by_track else self._by_tran_id(conn, value)
            if row is None:
                return self._error(self.scheme.error_not_found, "no such transaction")
            return self._result_fields(self._expire(conn, row))

    def _refund(self, fields: Mapping[str, str]) -> list[tuple[str, str]]:
        """Action 2: a credit against a captured purchase, once per refund track id."""
        original_tran_id = fields.get(self._w("transid"), "")
        track_id = fields.get(self._w("trackid"), "")
        if not REFERENCE_RE.fullmatch(original_tran_id) or not TRACK_ID_RE.fullmatch(track_id):
            return self._error(ERROR_BAD_REQUEST, "the refund names no transaction or track id")
        if fields.get(self._w("currencycode")) != self.scheme.currency_code:
            return self._error(ERROR_BAD_REQUEST, f"refunds are in {self.scheme.currency}")
        try:
            amount_minor = parse_amount(fields.get(self._w("amt"), ""), self.scheme.currency)
        except SchemeAmountError:
            return self._error(ERROR_BAD_REQUEST, "the amount cannot be read")
        with self.store.transaction() as conn:
            existing = self._by_track(conn, track_id)
            if existing is not None:
                if existing["kind"] == "refund":
                    return self._result_fields(existing)  # the same refund, asked again
                return self._error(ERROR_TRACK_ID_IN_USE, "the track id is a purchase's")
            original = self._by_tran_id(conn, original_tran_id)
            if original is None or original["kind"] != "purchase":
                return self._error(self.scheme.error_not_found, "no such transaction")
            if original["state"] != State.CAPTURED:
                return self._error(ERROR_NOT_REFUNDABLE, "the transaction is not captured")
            refunded = conn.execute(
                "SELECT COALESCE(SUM(amount_minor), 0) FROM tranportal_transactions"
                " WHERE scheme = ? AND kind = 'refund' AND original_tran_id = ?",
                (self.scheme.name, original_tran_id),
            ).fetchone()[0]
            if refunded + amount_minor > original["amount_minor"]:
                return self._error(ERROR_OVER_REFUND, "the refunds would exceed the capture")
            now = _stamp(self._now())
            conn.execute(
                "INSERT INTO tranportal_transactions (scheme, track_id, kind, state, payment_id,"
                " tran_id, ref, original_tran_id, amount_minor, currency, udfs, created_at,"
                " answered_at) VALUES (?, ?, 'refund', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.scheme.name,
                    track_id,
                    State.CAPTURED,
                    _digits(18),
                    _digits(16),
                    _digits(12),
                    original_tran_id,
                    amount_minor,
                    self.scheme.currency,
                    json.dumps(["" for _ in UDF_FIELDS]),
                    now,
                    now,
                ),
            )
            refund = self._by_track(conn, track_id)
            assert refund is not None
            return self._result_fields(refund)

    # ---- settlement

    def settlement_file(self, day: dt.date) -> str:
        """The scheme's settlement file for the captures and refunds of one UTC day (the
        layout is in the module's docstring)."""
        layout = self.scheme.settlement
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(layout.columns)
        date = day.strftime(layout.date_format)
        cursor = self.store.reader().execute(
            "SELECT * FROM tranportal_transactions WHERE scheme = ? AND state = ?"
            " AND answered_at >= ? AND answered_at < ? ORDER BY answered_at, rowid",
            (self.scheme.name, State.CAPTURED, _stamp(start), _stamp(end)),
        )
        while rows := cursor.fetchmany(SETTLEMENT_ROWS_PER_FETCH):
            for row in rows:
                purchase = row["kind"] == "purchase"
                amount = row["amount_minor"] if purchase else -row["amount_minor"]
                fee = min(self.capture_fee_minor, row["amount_minor"]) if purchase else 0
                currency = row["currency"]
                writer.writerow(
                    [
                        date,
                        row["tran_id"],
                        row["track_id"],
                        row["payment_id"],
                        row["auth_code"] or "",
                        layout.purchase_type if purchase else layout.refund_type,
                        currency,
                        format_amount(amount, currency),
                        format_amount(fee, currency),
                        format_amount(amount - fee, currency),
                    ]
                )
        return out.getvalue()
