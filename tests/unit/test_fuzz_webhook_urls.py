"""Fuzz tests of webhook URL parsing, the private-network guard and the API's `url` field."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from marshmallow import ValidationError

from payments.webhooks.guard import (
    MAX_URL_LENGTH,
    IPAddress,
    Network,
    Target,
    UrlRefused,
    checked_addresses,
    is_public,
    parse_url,
)
from payments.webhooks.schemas import EndpointCreateSchema, EndpointUpdateSchema
from tests.unit.fuzz_support import fuzz

# Networks the module promises to refuse: private, loopback, link-local, multicast, reserved,
# unspecified and shared space (RFC 6890's special-purpose registries, non-global entries).
NON_PUBLIC_NETWORKS: list[Network] = [
    ipaddress.ip_network(text)
    for text in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "2001:db8::/32",
        "100::/64",
    )
]
non_public_addresses = st.sampled_from(NON_PUBLIC_NETWORKS).flatmap(
    lambda network: st.ip_addresses(network=network)
)
non_public_ipv4 = st.sampled_from(
    [net for net in NON_PUBLIC_NETWORKS if isinstance(net, ipaddress.IPv4Network)]
).flatmap(lambda network: st.ip_addresses(network=network))


def wrapped(ip: ipaddress.IPv4Address, form: str) -> ipaddress.IPv6Address:
    """An IPv6 address that stands for `ip`: mapped, IPv4-compatible, NAT64 or 6to4."""
    value = int(ip)
    prefix = {
        "mapped": 0xFFFF << 32,
        "compatible": 0,
        "nat64": 0x0064_FF9B << 96,
        "6to4": (0x2002 << 112) | (value << 80),
    }[form]
    return ipaddress.IPv6Address(prefix if form == "6to4" else prefix | value)


def host_literal(ip: IPAddress) -> str:
    return f"[{ip}]" if ip.version == 6 else str(ip)


def assert_sound_target(target: Target, url: str, *, https_only: bool) -> None:
    """What an accepted URL must be: http(s) (https where required), a host, a real port, no
    credentials, printable ASCII without spaces."""
    assert target.scheme in ("http", "https")
    assert not https_only or target.scheme == "https"
    assert target.host
    assert 1 <= target.port <= 65535
    assert target.path.startswith("/")
    assert len(url) <= MAX_URL_LENGTH
    assert url.isascii() and url.isprintable() and " " not in url
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    assert "@" not in authority


def outcome(url: str, https_only: bool) -> Target | str:
    try:
        return parse_url(url, https_only=https_only)
    except UrlRefused as exc:
        assert exc.code in ("url_invalid", "https_required") and exc.message
        return exc.code


# ---- arbitrary text -------------------------------------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=80)  # surrogates too
url_parts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "@", ":", "[", "]", "%", "%00", "%2e", "#", "?", "\\", "//", " ", "\t", "\n", "\x00"]
    ),
    st.text(st.characters(codec="ascii"), max_size=12),
)


@st.composite
def url_like(draw: st.DrawFn) -> str:
    """Text shaped like a URL, each part a little wrong or exotic."""
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "ftp", "javascript", "", "h\ttp"]))
    userinfo = draw(st.sampled_from(["", "user@", "user:pass@", ":@", "@"]))
    host = draw(
        st.one_of(
            st.sampled_from(["example.com", "[::1]", "[fe80::1%25eth0]", "127.0.0.1", "[::1", ""]),
            url_parts,
        )
    )
    port = draw(
        st.one_of(
            st.just(""),
            st.integers(-1, 70_000).map(lambda n: f":{n}"),
            url_parts.map(lambda text: ":" + text),
        )
    )
    path = draw(st.one_of(st.just(""), url_parts.map(lambda text: "/" + text)))
    return f"{scheme}://{userinfo}{host}{port}{path}"


@fuzz(400)
@given(
    url=st.one_of(any_text, url_like(), st.just("https://a.example/" + "x" * 2100)),
    https=st.booleans(),
)
@example(url="http://[::1", https=False)
@example(url="http://example.com:99999/", https=False)
@example(url="http://example.com:\u0661\u0662/", https=False)
@example(url="http://\udcff/", https=False)
def test_any_text_is_parsed_or_refused(url: str, https: bool) -> None:
    result = outcome(url, https)
    assert outcome(url, https) == result, "the parse is not deterministic"
    if isinstance(result, Target):
        assert_sound_target(result, url, https_only=https)


@fuzz(200)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "Https"]),
    host=st.sampled_from(["example.com", "hooks.example.om", "[2001:4860::8888]", "8.8.8.8"]),
    port=st.one_of(st.none(), st.integers(0, 65535)),
    path=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=30
    ),
)
@example(scheme="http", host="example.com", port=0, path="hook")
def test_a_stated_port_is_the_port_used(
    scheme: str, host: str, port: int | None, path: str
) -> None:
    """The URL's own port, or the scheme's default when it states none: port 0 is refused,
    never quietly turned into the default."""
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/{path}"
    result = outcome(url, False)
    if port == 0:
        assert result == "url_invalid"
        return
    assert isinstance(result, Target), result
    default = 443 if scheme.lower() == "https" else 80
    assert result.port == (default if port is None else port)
    assert_sound_target(result, url, https_only=False)


@fuzz(150)
@given(
    scheme=st.from_regex(r"[A-Za-z][A-Za-z0-9+.\-]{0,10}", fullmatch=True).filter(
        lambda scheme: scheme.lower() not in ("http", "https")
    ),
    https=st.booleans(),
)
def test_other_schemes_are_refused(scheme: str, https: bool) -> None:
    assert outcome(f"{scheme}://example.com/hook", https) == "url_invalid"


@fuzz(50)
@given(host=st.sampled_from(["example.com", "8.8.8.8", "[2001:4860::8888]"]))
def test_plain_http_is_refused_where_https_is_required(host: str) -> None:
    assert outcome(f"http://{host}/hook", True) == "https_required"
    assert isinstance(outcome(f"https://{host}/hook", True), Target)


# ---- the private-network guard --------------------------------------------------------------


@fuzz(300)
@given(ip=non_public_addresses, port=st.integers(1, 65535), https=st.booleans())
@example(ip=ipaddress.ip_address("127.0.0.1"), port=80, https=False)
@example(ip=ipaddress.ip_address("169.254.169.254"), port=80, https=False)
def test_a_non_public_address_is_refused(ip: IPAddress, port: int, https: bool) -> None:
    assert not is_public(ip)
    url = f"{'https' if https else 'http'}://{host_literal(ip)}:{port}/hook"
    target = parse_url(url, https_only=https)
    with pytest.raises(UrlRefused) as refused:
        checked_addresses(target, [], timeout_s=1.0)
    assert refused.value.code == "blocked_address"
    # Unless the operator allows that network.
    allowed = ipaddress.ip_network(f"{ip}/{ip.max_prefixlen}")
    assert [a.ip for a in checked_addresses(target, [allowed], timeout_s=1.0)] == [ip]


@fuzz(200)
@given(ip=non_public_ipv4, form=st.sampled_from(["mapped", "compatible", "nat64", "6to4"]))
def test_a_non_public_ipv4_address_wrapped_in_ipv6_is_refused(
    ip: ipaddress.IPv4Address, form: str
) -> None:
    inner = wrapped(ip, form)
    assert not is_public(inner), f"{inner} stands for {ip}"
    target = parse_url(f"https://[{inner}]/hook", https_only=True)
    with pytest.raises(UrlRefused) as refused:
        checked_addresses(target, [], timeout_s=1.0)
    assert refused.value.code == "blocked_address"


@fuzz(100)
@given(
    ip=non_public_ipv4,
    spelling=st.sampled_from(["decimal", "hex", "octal", "hex dotted", "short"]),
)
def test_other_spellings_of_a_non_public_ipv4_address_are_refused(
    ip: ipaddress.IPv4Address, spelling: str
) -> None:
    """Spellings the C resolver reads as that address (`127.1`, `2130706433`, `0x7f.0.0.1`)
    are refused by the address they resolve to, not let through as names."""
    value = int(ip)
    octets = ip.packed
    host = {
        "decimal": str(value),
        "hex": hex(value),
        "octal": "0" + oct(value)[2:],
        "hex dotted": ".".join(hex(octet) for octet in octets),
        "short": f"{octets[0]}.{value & 0xFFFFFF}",
    }[spelling]
    target = parse_url(f"http://{host}/hook", https_only=False)
    with pytest.raises(UrlRefused) as refused:
        checked_addresses(target, [], timeout_s=2.0)
    assert refused.value.code in ("blocked_address", "dns"), refused.value.message


# ---- the API's url field --------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), any_text),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@fuzz(200)
@given(
    url=st.one_of(json_values, url_like(), st.text(min_size=2040, max_size=2060)),
    update=st.booleans(),
)
def test_the_url_field_loads_text_or_refuses(url: Any, update: bool) -> None:
    schema = EndpointUpdateSchema() if update else EndpointCreateSchema()
    try:
        loaded = schema.load({"url": url, "events": ["*"]})
    except ValidationError as exc:
        assert isinstance(exc.messages, dict) and exc.messages
        if isinstance(url, str) and 1 <= len(url) <= MAX_URL_LENGTH:
            assert "url" not in exc.messages, exc.messages
        return
    assert isinstance(url, str) and 1 <= len(url) <= MAX_URL_LENGTH
    assert loaded["url"] == url
    # What the field passes on, the guard then parses or refuses (never crashes on).
    result = outcome(url, False)
    if isinstance(result, Target):
        assert_sound_target(result, url, https_only=False)
