"""A real webhook receiver on loopback for the webhook tests: it records every request and
answers as the test tells it (a status, a delay, headers, a hold until released)."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from collections.abc import Callable

MAX_HOLD_S = 30.0  # a held request is answered after this at the latest
MAX_WAIT_S = 20.0


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the body had arrived


@dataclasses.dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay_s: float = 0.0


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it receives. `answers` are used in order,
    one per request, then `default`; `hold()` keeps requests waiting until `release()`."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self.answers: list[Answer] = []
        self.default = Answer()
        self._gate = threading.Event()
        self._gate.set()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- life cycle

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._keep(
                    Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.time(),
                    )
                )
                receiver._gate.wait(MAX_HOLD_S)
                receiver._respond(self)

            def do_GET(self) -> None:
                receiver._keep(Received(self.path, dict(self.headers), b"", time.time()))
                receiver._respond(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128  # several workers' threads connect at once
            daemon_threads = True

        server = Server(("127.0.0.1", self._port), Handler)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until `start()` again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self._port}{path}"

    # ---- behaviour

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def _next_answer(self) -> Answer:
        with self._lock:
            return self.answers.pop(0) if self.answers else self.default

    def _respond(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        answer = self._next_answer()
        if answer.delay_s:
            time.sleep(answer.delay_s)
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            handler.wfile.write(answer.body)
        except OSError:
            pass  # the sender gave up (a timeout): nobody is listening any more

    # ---- what arrived

    def _keep(self, item: Received) -> None:
        with self._lock:
            self._received.append(item)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def posts(self, path: str = "/hooks") -> list[Received]:
        return [r for r in self.received if r.path == path and r.body]

    def wait_for(
        self,
        condition: Callable[[list[Received]], bool],
        timeout_s: float = MAX_WAIT_S,
        *,
        tick: Callable[[], object] | None = None,
    ) -> list[Received]:
        """Wait (bounded) until `condition(received)` holds, calling `tick` between looks."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = self.received
            if condition(seen):
                return seen
            if tick is not None:
                tick()
            else:
                time.sleep(0.02)
        raise AssertionError(f"receiver: condition not met within {timeout_s} s: {self.received}")
