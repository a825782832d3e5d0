"""Gunicorn for the gateway: the one set of server settings that both `gateway serve` and
`gunicorn -c gunicorn.conf.py wsgi:app` use, JSON access and error logs, and the metrics hooks."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from config import ConfigurationError, Settings, load_settings
from payments import logs, metrics
from payments.api.app import create_app
from payments.db import Database, make_engine
from payments.service import access

TIMEOUT_S = 60  # a worker silent this long is killed; longer than any acquirer call
GRACEFUL_TIMEOUT_S = 20  # requests in flight get this long to finish on stop or restart
KEEPALIVE_S = 5  # idle keep-alive connections (threaded workers), under a load balancer's 60
LIMIT_REQUEST_LINE = 8190  # bytes of the request line
LIMIT_REQUEST_FIELDS = 50  # headers per request
LIMIT_REQUEST_FIELD_SIZE = 8190  # bytes of one header
MAX_WORKERS = 64
METRICS_DIR = "metrics"  # under the settings' var dir
# A hosted-page link lets whoever holds it pay that payment: the access log keeps it out.
PAGE_TOKEN = re.compile(r"^(/pay/)[^/]+")


def default_workers() -> int:
    """gunicorn's rule of thumb for sync workers: two per core, and one."""
    return 2 * (os.cpu_count() or 1) + 1


def workers_from(environ: Mapping[str, str]) -> int:
    raw = environ.get("GATEWAY_WORKERS", "").strip()
    if not raw:
        return default_workers()
    try:
        count = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"GATEWAY_WORKERS: {exc}") from exc
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigurationError(f"GATEWAY_WORKERS must be from 1 to {MAX_WORKERS}")
    return count


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(environ: Mapping[str, str]) -> tuple[Network, ...]:
    """GATEWAY_TRUSTED_PROXIES: the load balancers' addresses or networks, comma-separated;
    none when unset, and never everyone."""
    raw = environ.get("GATEWAY_TRUSTED_PROXIES", "")
    networks: list[Network] = []
    for part in (part.strip() for part in raw.split(",")):
        if not part:
            continue
        if part == "*":
            raise ConfigurationError(
                "GATEWAY_TRUSTED_PROXIES may not be '*': name the load balancers' addresses"
            )
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ConfigurationError(f"GATEWAY_TRUSTED_PROXIES: {exc}") from exc
    return tuple(networks)


def trusted_proxies(environ: Mapping[str, str]) -> str:
    """gunicorn's `forwarded_allow_ips`: whose X-Forwarded-Proto it believes."""
    return ",".join(str(network) for network in proxy_networks(environ))


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(text: str, networks: tuple[Network, ...]) -> bool:
    address = _address(text)
    return address is not None and any(address in network for network in networks)


class ForwardedFor:
    """WSGI middleware: behind trusted proxies, the client's address is the last one in
    X-Forwarded-For that no trusted proxy added; from anyone else the header is ignored, so
    a client cannot choose the address its rate limit counts against."""

    MAX_HOPS = 20

    def __init__(self, app: Any, networks: tuple[Network, ...]) -> None:
        self.app = app
        self.networks = networks

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        peer = environ.get("REMOTE_ADDR", "")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and _trusted(peer, self.networks):
            client = peer
            for hop in reversed(forwarded.split(",")[-self.MAX_HOPS :]):
                if _address(hop) is None:
                    break  # not an address: keep the last proxy's word
                client = hop.strip()
                if not _trusted(hop, self.networks):
                    break
            environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)


def behind_proxies(app: Flask, environ: Mapping[str, str]) -> Flask:
    """The app, reading the client's address from X-Forwarded-For of trusted proxies only."""
    networks = proxy_networks(environ)
    if networks:
        app.wsgi_app = ForwardedFor(app.wsgi_app, networks)  # type: ignore[method-assign]
    return app


def on_starting(server: Any) -> None:
    """In gunicorn's master, before any worker: refuse unsafe settings, and give the node's
    metrics a fresh directory unless the operator named one (`gateway serve` has)."""
    try:
        settings = load_settings()
        db = Database(make_engine(settings.database_url, pool_size=1))
        try:
            access.refuse_live_keys_outside_production(settings, db)
        finally:
            db.dispose()
    except ConfigurationError as exc:
        server.log.error("refusing to start: %s", exc)
        raise SystemExit(1) from None
    if not os.environ.get(metrics.MULTIPROC_ENV):
        metrics.use_directory(settings.var_dir / METRICS_DIR)


def child_exit(_server: Any, worker: Any) -> None:
    """A gunicorn worker ended: its live gauges leave the sums."""
    metrics.process_exited(worker.pid)


def server_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every gunicorn setting of the gateway, hooks included; `bind` defaults to loopback."""
    port = environ.get("PORT", "8000")
    return {
        "bind": f"127.0.0.1:{port}",
        "workers": workers_from(environ),
        "worker_class": "sync",
        "timeout": TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": KEEPALIVE_S,
        "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
        "forwarded_allow_ips": trusted_proxies(environ),
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": JsonLogger,
        "control_socket_disable": True,  # one per host otherwise, shared by every server
        "on_starting": on_starting,
        "child_exit": child_exit,
    }


class JsonLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own lines as JSON like the gateway's; the access line names the request, never
    its headers or body (no API key, no card data)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(logs.JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        headers = resp.headers.items() if hasattr(resp.headers, "items") else resp.headers
        request_id = next((v for k, v in headers if k.lower() == "x-request-id"), None)
        took: dt.timedelta = request_time
        path = PAGE_TOKEN.sub(r"\1<token>", environ.get("PATH_INFO") or "")
        self.access_log.info(
            "%s %s %s",
            environ.get("REQUEST_METHOD"),
            path,
            status,
            extra={
                "method": environ.get("REQUEST_METHOD"),
                "path": path,
                "status": int(status),
                "duration_ms": round(took.total_seconds() * 1000, 3),
                "bytes": getattr(resp, "sent", None),
                "remote": environ.get("REMOTE_ADDR"),
                "request_id": request_id,
            },
        )


class GatewayServer(BaseApplication):  # type: ignore[misc]
    """`gateway serve`: `server_options`, with the command line's bind and worker count."""

    def __init__(
        self,
        settings: Settings,
        *,
        bind: str,
        workers: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.options = server_options(self.environ)
        self.options["bind"] = bind
        if workers is not None:
            self.options["workers"] = workers
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return behind_proxies(create_app(self.settings), self.environ)

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None
