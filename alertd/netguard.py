"""Which addresses a feed may reach: the private-address guard (RELIABILITY F5).

A feed at a public host name must never make alertd connect to a non-public address (an SSRF into the
server's own network). The host is resolved by alertd, every address is checked, and :mod:`alertd.fetch`
connects only to an address checked for that fetch, so DNS rebinding between the check and the connect is
impossible.

The rule (:func:`is_forbidden_address`): an address is forbidden when it is non-public, or when it carries an
IPv4 address (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, NAT64 ``64:ff9b::/96``, 6to4
``2002::/16``, Teredo server and client in ``2001::/32``) and that IPv4 address is non-public. Non-public
means any of ``ipaddress``'s verdicts: not ``is_global``, ``is_private``, ``is_reserved``, ``is_loopback``,
``is_link_local``, ``is_multicast``, ``is_unspecified``, ``is_site_local``; or a block in
``_NON_PUBLIC_ON_EVERY_PYTHON``, which pins the blocks whose verdict differs between Python versions (CGNAT,
192.0.0.0/24, documentation 3fff::/20) or that reach a host only through a translator, tunnel or relay
alertd cannot see past (mapped, compatible, NAT64, 6to4, Teredo). So every address-embedding form is itself
forbidden, and the embedded IPv4 address still decides when the admin allows the outer block (below).

Exceptions, both chosen by the admin (:func:`may_connect`):

- a feed whose configured URL names a literal IP address or ``localhost`` (its redirects may stay on that
  same host);
- the networks of ``[poll] allow_private`` in the config, and of ``ALERTD_ALLOW_PRIVATE`` (comma-separated
  CIDRs, added to the config's: an override for one run). An address in an allowed network is
  allowed, provided any IPv4 address it carries is public or allowed too: allowing ``64:ff9b::/96`` (NAT64 on
  an IPv6-only host) reaches public IPv4 hosts, not ``64:ff9b::10.0.0.1``. The IPv4-mapped form of an allowed
  IPv4 address is allowed (the kernel connects to that IPv4 address itself); its compatible, NAT64, 6to4 and
  Teredo forms are not (other destinations, reached through a gateway or a tunnel). The local-use NAT64
  prefix ``64:ff9b:1::/48`` puts its IPv4 address where the operator chooses, so alertd cannot read it:
  allowing that prefix allows all of it.
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

# Blocks judged here rather than by ipaddress alone: its tables changed between Python versions, and a
# translated or tunnelled address leads somewhere alertd cannot judge.
_NON_PUBLIC_ON_EVERY_PYTHON: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "100.64.0.0/10",  # CGNAT: is_global and is_private are both False
        "192.0.0.0/24",  # IETF protocol assignments: older Pythons call .8 to .169 global, newer .9 and .10
        "192.88.99.0/24",  # deprecated 6to4 relay anycast (RFC 7526): called global
        "::/96",  # IPv4-compatible (deprecated): non-public only as part of reserved ::/8
        "::ffff:0:0/96",  # IPv4-mapped: newer Pythons give it the embedded IPv4's verdict
        "64:ff9b::/96",  # NAT64 well-known prefix: called global, reserved only as part of ::/8
        "64:ff9b:1::/48",  # NAT64 local use
        "2001::/32",  # Teredo
        "2002::/16",  # 6to4: global for older Pythons; relays reach 6to4 sites, this host's own too
        "3fff::/20",  # documentation (RFC 9637): global for older Pythons
    )
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


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
    """True for an address a feed at a public host name must not reach (rule: the module docstring)."""
    return _is_non_public(address) or any(_is_non_public(v4) for v4 in embedded_ipv4(address))


def may_connect(address: IPAddress, allow_private: Iterable[IPNetwork]) -> bool:
    """Whether a feed at a public host name may connect to ``address``, given the allowed private networks."""
    allowed = tuple(allow_private)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if mapped is not None and _in_any(mapped, allowed):
        return True
    return _permitted(address, allowed) and all(_permitted(v4, allowed) for v4 in embedded_ipv4(address))


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries: mapped, compatible, NAT64, 6to4, Teredo."""
    if isinstance(address, ipaddress.IPv4Address):
        return ()
    if address.ipv4_mapped is not None:
        return (address.ipv4_mapped,)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    if address in _IPV4_COMPATIBLE or address in _NAT64_WELL_KNOWN:
        return (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    return ()


def _permitted(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> bool:
    return _in_any(address, allowed) or not _is_non_public(address)


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def _is_non_public(address: IPAddress) -> bool:
    """The address itself (not the IPv4 address it may carry) by every verdict: no single one is enough."""
    return (
        not address.is_global
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or _in_any(address, _NON_PUBLIC_ON_EVERY_PYTHON)
    )


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
