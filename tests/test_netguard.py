"""The private-address guard (RELIABILITY F5): which addresses a feed at a public host name may reach.

Unit tables for :func:`is_forbidden_address` and :func:`may_connect`, then the same hostile addresses served
by an injected resolver to :func:`fetch_feed`: the guard refuses them before any connection is attempted, so
no traffic is ever sent to them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from alertd.fetch import FetchPolicy, fetch_feed, make_client
from alertd.netguard import IPNetwork, Resolver, embedded_ipv4, is_forbidden_address, may_connect

PUBLIC_FEED_URL = "http://feeds.example.test/rss"

FORBIDDEN = {
    # IPv4
    "0.0.0.0": "unspecified",
    "0.1.2.3": "this network 0/8",
    "10.0.0.1": "RFC 1918",
    "172.16.0.1": "RFC 1918",
    "172.31.255.254": "RFC 1918",
    "192.168.1.1": "RFC 1918",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.169.254": "link-local (cloud metadata)",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "192.0.0.1": "IETF protocol assignments",
    "192.0.0.9": "IETF protocol assignments (PCP anycast)",
    "192.0.0.50": "IETF protocol assignments",
    "192.0.0.170": "IETF protocol assignments (NAT64 discovery)",
    "192.0.2.1": "documentation TEST-NET-1",
    "198.51.100.1": "documentation TEST-NET-2",
    "203.0.113.1": "documentation TEST-NET-3",
    "198.18.0.1": "benchmarking",
    "198.19.255.254": "benchmarking",
    "192.88.99.1": "deprecated 6to4 relay anycast",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast (SSDP)",
    "233.252.0.1": "multicast (MCAST-TEST-NET)",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    # IPv6
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "ULA",
    "fd12:3456:789a::1": "ULA",
    "fec0::1": "site-local (deprecated)",
    "ff02::1": "multicast",
    "ff0e::1": "multicast, global scope",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation (RFC 9637)",
    "100::1": "discard-only",
    "5f00::1": "reserved",
    "::ffff:127.0.0.1": "IPv4-mapped loopback",
    "::ffff:10.0.0.1": "IPv4-mapped RFC 1918",
    "::ffff:8.8.8.8": "IPv4-mapped, even of a public address",
    "::7f00:1": "IPv4-compatible 127.0.0.1",
    "::a00:1": "IPv4-compatible 10.0.0.1",
    "::808:808": "IPv4-compatible, even of a public address",
    "2002:7f00:1::1": "6to4 of 127.0.0.1",
    "2002:c0a8:101::1": "6to4 of 192.168.1.1",
    "2002:a9fe:a9fe::1": "6to4 of 169.254.169.254",
    "2002:808:808::1": "6to4, even of a public address",
    "2001::1": "Teredo",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo with a public server",
    "64:ff9b::a00:1": "NAT64 of 10.0.0.1",
    "64:ff9b::7f00:1": "NAT64 of 127.0.0.1",
    "64:ff9b::808:808": "NAT64, even of a public address",
    "64:ff9b:1::a00:1": "NAT64 local use",
}

PUBLIC = {
    "93.184.216.34": "example.com",
    "8.8.8.8": "public resolver",
    "1.1.1.1": "public resolver",
    "100.128.0.1": "just past CGNAT",
    "192.0.1.1": "just past 192.0.0.0/24",
    "198.20.0.1": "just past benchmarking",
    "223.255.255.254": "just below multicast",
    "2001:4860:4860::8888": "public resolver",
    "2606:4700:4700::1111": "public resolver",
    "2a00:1450:4007:80e::200e": "public web server",
}


@pytest.mark.parametrize("address", FORBIDDEN, ids=[f"{a} {why}" for a, why in FORBIDDEN.items()])
def test_non_public_address_is_forbidden_and_may_not_be_connected(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert (True, False) == (is_forbidden_address(ip), may_connect(ip, ()))


@pytest.mark.parametrize("address", PUBLIC, ids=[f"{a} {why}" for a, why in PUBLIC.items()])
def test_public_address_is_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert (False, True) == (is_forbidden_address(ip), may_connect(ip, ()))


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.216.34", ()),
        ("2001:4860:4860::8888", ()),
        ("::ffff:127.0.0.1", ("127.0.0.1",)),
        ("::7f00:1", ("127.0.0.1",)),
        ("2002:c0a8:101::1", ("192.168.1.1",)),
        ("64:ff9b::a00:1", ("10.0.0.1",)),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", ("65.54.227.120", "192.0.2.45")),
    ],
)
def test_embedded_ipv4_addresses_are_found(address: str, expected: tuple[str, ...]) -> None:
    assert expected == tuple(str(v4) for v4 in embedded_ipv4(ipaddress.ip_address(address)))


def networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        # An allowed network admits the addresses in it, and only those.
        ("127.0.0.1", ("127.0.0.1/32",), True),
        ("127.0.0.2", ("127.0.0.1/32",), False),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("192.168.1.1", ("10.0.0.0/8",), False),
        ("fd00::1", ("fd00::/8",), True),
        ("fe80::1", ("fd00::/8",), False),
        # An IPv4 network does not admit IPv6 addresses, except the IPv4-mapped form of an allowed address.
        ("::1", ("127.0.0.0/8",), False),
        ("::ffff:127.0.0.1", ("127.0.0.0/8",), True),
        ("::ffff:127.0.0.1", ("10.0.0.0/8",), False),
        # The compatible, 6to4, NAT64 and Teredo forms of an allowed address are other destinations.
        ("::7f00:1", ("127.0.0.0/8",), False),
        ("2002:7f00:1::1", ("127.0.0.0/8",), False),
        ("64:ff9b::7f00:1", ("127.0.0.0/8",), False),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", ("127.0.0.0/8",), False),
        # Allowing a translating block admits the public IPv4 hosts behind it, not the private ones.
        ("64:ff9b::808:808", ("64:ff9b::/96",), True),
        ("64:ff9b::a00:1", ("64:ff9b::/96",), False),
        ("64:ff9b::a00:1", ("64:ff9b::/96", "10.0.0.0/8"), True),
        ("2002:808:808::1", ("2002::/16",), True),
        ("2002:7f00:1::1", ("2002::/16",), False),
        ("::ffff:127.0.0.1", ("::ffff:0:0/96",), False),
        # Public addresses need no allowlist, and an allowlist does not take them away.
        ("93.184.216.34", ("10.0.0.0/8",), True),
    ],
)
def test_allowlist_admits_its_own_networks_only(
    address: str, allowed: tuple[str, ...], expected: bool
) -> None:
    assert expected == may_connect(ipaddress.ip_address(address), networks(*allowed))


# --- through name resolution: the guard refuses before any connection ---------------------------------------


def resolver_to(address: str, calls: list[str]) -> Resolver:
    """An injected resolver answering every name with ``address``, recording the names asked."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return [address]

    return resolve


async def fetch_resolving_to(address: str, calls: list[str]) -> str | None:
    """Fetch a public-looking feed URL whose host resolves to ``address``; the error class of the result."""
    policy = FetchPolicy(resolve=resolver_to(address, calls), allow_private=(), deadline=5.0)
    async with make_client(policy) as client:
        result = await fetch_feed(client, PUBLIC_FEED_URL, etag=None, last_modified=None, policy=policy)
    return result.error_class


@pytest.mark.parametrize("address", FORBIDDEN, ids=[f"{a} {why}" for a, why in FORBIDDEN.items()])
async def test_public_host_name_resolving_to_non_public_address_is_blocked(address: str) -> None:
    calls: list[str] = []
    assert "ssrf_blocked" == await fetch_resolving_to(address, calls)
    assert ["feeds.example.test"] == calls


async def test_resolved_address_with_ipv6_zone_is_judged_without_it() -> None:
    calls: list[str] = []
    assert "ssrf_blocked" == await fetch_resolving_to("fe80::1%eth0", calls)
