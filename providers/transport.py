"""How a scheme adapter's server-to-server calls (inquiries, refunds) reach the scheme: over
HTTP with a timeout, or, for the local simulators, to the simulator's handler in this process
with the very bytes that would cross the wire."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol

import requests
import urllib3.exceptions


class TransportError(Exception):
    """The call failed. `sent` says whether the request may have reached the scheme: False only
    when the connection itself could not be made, so nothing can have happened there."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = ""


class Transport(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply: ...


class HttpTransport:
    """POST over HTTP(S), never following redirects, within `timeout_s`."""

    def __init__(self, timeout_s: float = 20.0) -> None:
        assert timeout_s > 0, "every scheme call needs a timeout"
        self.timeout_s = timeout_s
        self._session = requests.Session()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        try:
            response = self._session.post(
                url, data=body, headers=dict(headers), timeout=self.timeout_s, allow_redirects=False
            )
        except requests.exceptions.ConnectTimeout as exc:
            raise TransportError(f"could not connect: {type(exc).__name__}", sent=False) from None
        except requests.exceptions.ConnectionError as exc:
            sent = not _refused_before_sending(exc)
            raise TransportError(f"connection failed: {type(exc).__name__}", sent=sent) from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(f"request failed: {type(exc).__name__}", sent=True) from None
        return Reply(
            response.status_code, response.content, response.headers.get("Content-Type", "")
        )


def _refused_before_sending(exc: requests.exceptions.ConnectionError) -> bool:
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError):
        inner = inner.reason
    return isinstance(inner, urllib3.exceptions.NewConnectionError)


Handler = Callable[[bytes, Mapping[str, str]], Reply]


class LocalTransport:
    """Hands each request to a simulator's handler in this process, by URL: the same bytes in
    and out as over HTTP, without a socket (a gunicorn worker never waits on its own server)."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers = dict(handlers)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        handler = self._handlers.get(url.split("?", 1)[0])
        if handler is None:
            raise TransportError(f"no simulator answers {url}", sent=False)
        return handler(body, headers)
