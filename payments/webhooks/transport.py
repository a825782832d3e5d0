"""One webhook POST over HTTP/1.1: to an address the guard has checked, under one deadline
for the whole exchange (DNS, connect, TLS, send, response), never following a redirect, and
reading at most 64 KiB of the response."""

from __future__ import annotations

import dataclasses
import functools
import socket
import ssl
import time
from collections.abc import Mapping, Sequence

from payments.webhooks.guard import Address, Network, Target, UrlRefused, checked_addresses

MAX_RESPONSE_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_INTERIM_RESPONSES = 5
READ_CHUNK = 16 * 1024
USER_AGENT = "gcc-gateway-webhooks/1"


class DeliveryError(Exception):
    """The POST did not produce an HTTP response; `code` is the error class of the log."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._end = time.monotonic() + timeout_s

    def left(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise DeliveryError("timeout", f"no complete answer within {self.timeout_s:g} s")
        return remaining


def post(
    target: Target,
    headers: Mapping[str, str],
    body: bytes,
    *,
    timeout_s: float,
    allow: Sequence[Network],
) -> Response:
    """POST `body` to the target; a `DeliveryError` says why no response came back."""
    deadline = _Deadline(timeout_s)
    try:
        addresses = checked_addresses(target, allow, timeout_s=deadline.left())
    except UrlRefused as exc:
        raise DeliveryError(exc.code, exc.message) from None
    sock = _connect(addresses, target, deadline)
    try:
        sock.settimeout(deadline.left())
        sock.sendall(_request(target, headers, body))
        return _read_response(sock, deadline)
    except DeliveryError:
        raise
    except TimeoutError:
        raise DeliveryError("timeout", f"no complete answer within {timeout_s:g} s") from None
    except ssl.SSLError as exc:
        raise DeliveryError("tls", f"TLS failed: {exc}") from None
    except ConnectionResetError:
        raise DeliveryError("connection_reset", "the receiver reset the connection") from None
    except OSError as exc:
        raise DeliveryError("connection_error", f"the connection failed: {exc}") from None
    finally:
        sock.close()


def _connect(addresses: list[Address], target: Target, deadline: _Deadline) -> socket.socket:
    """Connect to the first checked address that answers; wrap in TLS for https."""
    last: DeliveryError | None = None
    for address in addresses:
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.left())
            sock.connect(address.sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.scheme == "https":
                sock = _tls_context().wrap_socket(sock, server_hostname=target.host)
            return sock
        except DeliveryError:
            sock.close()
            raise
        except TimeoutError:
            sock.close()
            raise DeliveryError(
                "timeout", f"could not connect within {deadline.timeout_s:g} s"
            ) from None
        except ssl.SSLError as exc:
            sock.close()
            raise DeliveryError("tls", f"TLS failed: {exc}") from None
        except ConnectionRefusedError:
            sock.close()
            last = DeliveryError("connection_refused", f"{address.ip} refused the connection")
        except OSError as exc:
            sock.close()
            last = DeliveryError("connection_error", f"could not connect to {address.ip}: {exc}")
    assert last is not None
    raise last


def _request(target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class _Reader:
    """Bytes from the socket, each receive bounded by what is left of the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        self.sock.settimeout(self.deadline.left())
        chunk = self.sock.recv(READ_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def line(self, limit: int) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise DeliveryError("protocol", "the response has an over-long line")
            if not self.fill():
                raise DeliveryError("protocol", "the response ended early")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def take(self, count: int) -> bytes:
        """Up to `count` bytes (fewer only at the end of the stream)."""
        while len(self.buffer) < count and self.fill():
            pass
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


def _read_head(reader: _Reader) -> tuple[int, dict[str, str]]:
    while b"\r\n\r\n" not in reader.buffer:
        if len(reader.buffer) > MAX_HEADER_BYTES:
            raise DeliveryError("protocol", "the response headers are over 16 KiB")
        if not reader.fill():
            raise DeliveryError("protocol", "the connection closed before a full response")
    head, _, reader.buffer = reader.buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise DeliveryError("protocol", f"not an HTTP/1.x response: {status_line[:80]!r}")
    found: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return int(parts[1]), found


def _read_response(sock: socket.socket, deadline: _Deadline) -> Response:
    reader = _Reader(sock, deadline)
    for _ in range(MAX_INTERIM_RESPONSES + 1):
        status, headers = _read_head(reader)
        if not 100 <= status < 200:
            try:
                body = _read_body(reader, headers)
            except (DeliveryError, OSError):  # the status is the answer; the body is a courtesy
                body = reader.buffer[:MAX_RESPONSE_BYTES]
            return Response(status, headers, body)
    raise DeliveryError("protocol", "too many interim (1xx) responses")


def _read_body(reader: _Reader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(reader)
    length = headers.get("content-length", "")
    if length.isdigit():
        return reader.take(min(int(length), MAX_RESPONSE_BYTES))
    return reader.take(MAX_RESPONSE_BYTES)


def _read_chunked(reader: _Reader) -> bytes:
    body = b""
    while len(body) < MAX_RESPONSE_BYTES:  # each chunk adds at least one byte, or ends
        size_text = reader.line(1024).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise DeliveryError("protocol", "a malformed chunked response") from None
        if size == 0:
            break
        want = min(size, MAX_RESPONSE_BYTES - len(body))
        body += reader.take(want)
        if want < size:
            break
        reader.take(2)  # the CRLF after the chunk
    return body
