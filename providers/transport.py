"""How a scheme adapter's server-to-server calls (inquiries, refunds) reach the scheme: the
`Transport` protocol, and for the local simulators the simulator's handler in this process,
with the very bytes that would cross the wire. A live terminal's HTTP transport (a timeout on
every call, no redirects followed) comes with the configuration of live terminals."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Protocol


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
