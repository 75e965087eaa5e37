"""Which addresses a feed may reach: the private-address guard (RELIABILITY F5).

A feed at a public host name must never make alertd connect to loopback, a private network, link-local, ULA,
CGNAT, NAT64 or any other non-global address (an SSRF into the server's own network). The host is resolved by
alertd, every address is checked, and :mod:`alertd.fetch` connects only to an address checked for that fetch, so
DNS rebinding between the check and the connect is impossible.

Exceptions, both chosen by the admin: a feed whose configured URL names a literal IP address or ``localhost``
(its redirects may stay on that same host), and the networks of ``ALERTD_ALLOW_PRIVATE`` (comma-separated CIDRs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

from alertd.errors import ConfigError, FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolve ``(host, port)`` to IP address strings; raise ``OSError`` when the name does not resolve."""

ENV_ALLOW_PRIVATE = "ALERTD_ALLOW_PRIVATE"

_FORBIDDEN_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "fc00::/7",
        "fe80::/10",
    )
)


def allow_private_from_env(environ: Mapping[str, str] | None = None) -> tuple[IPNetwork, ...]:
    """The networks listed in ``ALERTD_ALLOW_PRIVATE`` (comma-separated CIDRs); raises ConfigError if invalid."""
    raw = (os.environ if environ is None else environ).get(ENV_ALLOW_PRIVATE, "")
    networks: list[IPNetwork] = []
    for cidr in filter(None, (part.strip() for part in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ConfigError.single(
                Path(f"${ENV_ALLOW_PRIVATE}"), f"not a network: {cidr!r}", key=ENV_ALLOW_PRIVATE
            ) from exc
    return tuple(networks)


def is_forbidden_address(address: IPAddress) -> bool:
    """True for any address a feed at a public hostname must not reach (loopback, private, link-local, ...)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return True
    return (
        any(address in network for network in _FORBIDDEN_NETWORKS)
        or address.is_multicast
        or not address.is_global
    )


def may_connect(address: IPAddress, allow_private: Iterable[IPNetwork]) -> bool:
    """Whether a feed at a public host name may connect to ``address``, given the allowed private networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    allowed = any(address.version == net.version and address in net for net in allow_private)
    return allowed or not is_forbidden_address(address)


def explicitly_configured(host: str) -> bool:
    """A configured host that is a literal IP address or ``localhost``: the admin chose that address."""
    return host == "localhost" or as_ip(host) is not None


def as_ip(text: str) -> IPAddress | None:
    """``text`` as an IP address (an IPv6 zone is ignored), or None for a host name."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


async def resolve_checked(
    host: str,
    port: int,
    *,
    allow_private: Iterable[IPNetwork],
    resolver: Resolver | None,
    trusted_host: str | None,
) -> tuple[str, ...]:
    """Resolve ``host`` and check every address; raise ``FetchError`` (ssrf_blocked) if any is forbidden.

    ``trusted_host`` (the configured host when it is explicitly an address, see :func:`explicitly_configured`)
    is not checked.
    """
    addresses = await _resolve(host, port, resolver)
    if host == trusted_host:
        return addresses
    allowed = tuple(allow_private)
    for text in addresses:
        address = as_ip(text)
        if address is None or not may_connect(address, allowed):
            raise FetchError(host, "ssrf_blocked", f"resolves to non-public address {text}")
    return addresses


async def _resolve(host: str, port: int, resolver: Resolver | None) -> tuple[str, ...]:
    if as_ip(host) is not None:
        return (host,)
    try:
        addresses = tuple(await (resolver or _system_resolve)(host, port))
    except OSError as exc:
        raise FetchError(host, "dns_error", f"cannot resolve: {exc}") from exc
    if not addresses:
        raise FetchError(host, "dns_error", "resolves to no address")
    return addresses


async def _system_resolve(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
