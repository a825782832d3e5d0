"""The private-network guard: webhook URLs must resolve only to public addresses, unless the
operator allows a network (`GATEWAY_WEBHOOK_ALLOW_NETWORKS`). The addresses checked are the
ones the transport then connects to, so a second DNS answer cannot slip past the check."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ADDRESSES = 16  # a DNS answer longer than this is cut
RESOLVER_THREADS = 4
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
MAX_URL_LENGTH = 2048


class UrlRefused(Exception):
    """The URL may not receive webhooks; `code` says why (for the API and the delivery log)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to connect to and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Address:
    """One checked address, with the socket family and address to connect to."""

    ip: IPAddress
    family: int
    sockaddr: tuple[Any, ...]


def parse_url(url: str, *, https_only: bool) -> Target:
    """Split a webhook URL, refusing what no webhook should use."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused("url_invalid", "the URL is longer than 2048 characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused("url_invalid", f"the URL is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("url_invalid", "the URL must start with https:// (or http://)")
    if https_only and parts.scheme != "https":
        raise UrlRefused("https_required", "webhook URLs must use https in production")
    if not parts.hostname:
        raise UrlRefused("url_invalid", "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("url_invalid", "the URL must not carry a user name or password")
    if port == 0:  # no server listens there; never quietly the scheme's default instead
        raise UrlRefused("url_invalid", "the URL's port must be 1 to 65535")
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in url):
        raise UrlRefused("url_invalid", "the URL must be printable ASCII without spaces")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port if port is not None else (443 if parts.scheme == "https" else 80),
        path=path,
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address; False for private, loopback, link-local,
    multicast, reserved, unspecified or shared space, also when wrapped in IPv6."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
        if ip.is_site_local:
            return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def is_allowed(ip: IPAddress, allow: Sequence[Network]) -> bool:
    """A public address, or one inside a network the operator allows."""
    if is_public(ip):
        return True
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
    return any(candidate in network for candidate in candidates for network in allow)


_resolver: concurrent.futures.ThreadPoolExecutor | None = None
_resolver_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _resolver
    with _resolver_lock:
        if _resolver is None:
            _resolver = concurrent.futures.ThreadPoolExecutor(
                RESOLVER_THREADS, thread_name_prefix="webhook-dns"
            )
        return _resolver


def _getaddrinfo(host: str, port: int) -> list[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)


def resolve(host: str, port: int, *, timeout_s: float) -> list[Address]:
    """The host's addresses; an IP literal is taken as it is, a name is looked up with a
    deadline (getaddrinfo has none of its own, so it runs on a resolver thread)."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if isinstance(literal, ipaddress.IPv6Address):
            return [Address(literal, socket.AF_INET6, (str(literal), port, 0, 0))]
        return [Address(literal, socket.AF_INET, (str(literal), port))]
    future = _executor().submit(_getaddrinfo, host, port)
    try:
        infos = future.result(timeout=max(timeout_s, 0.001))
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise UrlRefused("dns", f"{host} did not resolve within {timeout_s:.1f} s") from None
    except (OSError, UnicodeError) as exc:
        raise UrlRefused("dns", f"{host} does not resolve: {exc}") from None
    found: list[Address] = []
    for family, _type, _proto, _name, sockaddr in infos[:MAX_ADDRESSES]:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        found.append(Address(ip, family, tuple(sockaddr)))
    if not found:
        raise UrlRefused("dns", f"{host} has no address")
    return found


def checked_addresses(
    target: Target, allow: Sequence[Network], *, timeout_s: float
) -> list[Address]:
    """Resolve and check every address; refuse the URL if any one is not allowed, so that a
    name mixing public and private answers is refused whichever one would be picked."""
    addresses = resolve(target.host, target.port, timeout_s=timeout_s)
    for address in addresses:
        if not is_allowed(address.ip, allow):
            raise UrlRefused(
                "blocked_address",
                f"{target.host} resolves to {address.ip}, a private or reserved address",
            )
    return addresses
