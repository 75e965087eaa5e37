"""Fetch one feed over HTTP and translate every outcome into a :class:`~alertd.models.FetchResult`.

This module does I/O and never parses. :func:`fetch_feed` never raises for a network or HTTP problem: each
outcome becomes a ``FetchResult`` whose ``status`` is OK, NOT_MODIFIED, GONE or ERROR, and whose ``error_class``
is one of the stable names of :data:`alertd.models.ErrorClass`.

What one fetch enforces (RELIABILITY F2-F7):

- an overall deadline around the whole fetch, body streaming included, on top of the connect / read timeouts;
- a cap on the *decoded* body, counted while streaming: alertd decompresses gzip / deflate itself with a bounded
  output size, so a gzip bomb stops at the cap instead of inflating in memory first;
- redirects followed by hand, at most ``max_redirects``; every hop is re-validated, https -> http is refused;
- no connection to a non-public address (:mod:`alertd.netguard` judges them): every hop's host is resolved and
  checked before the request, and the connection is made to a checked address only;
- TLS verification always on;
- conditional GET with If-None-Match / If-Modified-Since.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx

from alertd.config import DEFAULT_USER_AGENT
from alertd.errors import FetchError
from alertd.models import ErrorClass, FetchResult, FetchStatus
from alertd.netguard import (
    IPNetwork,
    Resolver,
    allow_private_from_env,
    explicitly_configured,
    resolve_checked,
)
from alertd.responses import freshness, last_value, read_capped, retry_after_hint

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECT_STATUSES = frozenset({301, 308})
_RATE_LIMIT_STATUSES = frozenset({429, 503})
_DRAIN_LIMIT = 64 * 1024
"""Largest non-feed body read to keep its connection alive (see :func:`_drain`)."""
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"

# Addresses checked for this fetch, by (host, port); the connection is made to one of them and nothing else.
_checked_addresses: contextvars.ContextVar[dict[tuple[str, int], tuple[str, ...]]] = contextvars.ContextVar(
    "alertd_checked_addresses"
)


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Limits and rules applied to every fetch; built once from the config."""

    user_agent: str = DEFAULT_USER_AGENT
    deadline: float = 30.0
    """Overall seconds for one fetch, redirects and body streaming included."""
    connect_timeout: float = 10.0
    read_timeout: float = 15.0
    max_body_bytes: int = 10 * 1024 * 1024
    """Cap on the decoded body."""
    max_redirects: int = 5
    allow_private: tuple[IPNetwork, ...] = field(default_factory=allow_private_from_env)
    """Non-public networks feeds may connect to anyway; defaults to ``ALERTD_ALLOW_PRIVATE``."""
    resolve: Resolver | None = None
    """Name resolution hook (tests); ``None`` uses the system resolver through ``loop.getaddrinfo``."""


def make_client(policy: FetchPolicy, *, ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncClient:
    """An httpx client for :func:`fetch_feed`: timeouts, headers, no automatic redirects, the address guard.

    ``ssl_context`` replaces the trust store (tests use a private CA); it must verify certificates and
    host names, there is no way to turn verification off.
    """
    context = ssl_context or httpx.create_ssl_context()
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise ValueError("TLS certificate and host name verification cannot be disabled")
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy, context),
        timeout=httpx.Timeout(
            connect=policy.connect_timeout,
            read=policy.read_timeout,
            write=policy.read_timeout,
            pool=policy.connect_timeout,
        ),
        headers={"User-Agent": policy.user_agent, "Accept": _ACCEPT, "Accept-Encoding": "gzip, deflate"},
        follow_redirects=False,
        trust_env=False,  # an environment proxy would bypass the address guard
    )


async def fetch_feed(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    policy: FetchPolicy,
) -> FetchResult:
    """Conditionally GET ``url`` under ``policy``; every outcome, failures included, is a FetchResult."""
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(
            _fetch(client, url, etag=etag, last_modified=last_modified, policy=policy),
            timeout=policy.deadline,
        )
    except (FetchError, httpx.HTTPError, httpx.InvalidURL, OSError, asyncio.TimeoutError) as exc:
        error_class, message = _classify(exc, policy)
        result = FetchResult(url=url, status=FetchStatus.ERROR, error_class=error_class, error=message)
    return dataclasses.replace(result, elapsed=time.monotonic() - started)


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    policy: FetchPolicy,
) -> FetchResult:
    """Follow redirects hop by hop, checking each, and turn the final response into a result."""
    current = _checked_url(url)
    trusted_host = _host_of(current) if explicitly_configured(_host_of(current)) else None
    checked: dict[tuple[str, int], tuple[str, ...]] = {}
    token = _checked_addresses.set(checked)
    try:
        redirect_statuses: list[int] = []
        for _ in range(policy.max_redirects + 1):
            host, port = _host_of(current), _port_of(current)
            checked[(host, port)] = await resolve_checked(
                host,
                port,
                allow_private=policy.allow_private,
                resolver=policy.resolve,
                trusted_host=trusted_host,
            )
            request = client.build_request("GET", current, headers=_conditional(etag, last_modified))
            response = await client.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code not in _REDIRECT_STATUSES or not location:
                    return await _result_of(response, url, redirect_statuses, etag, last_modified, policy)
                await _drain(response)
            finally:
                await response.aclose()
            redirect_statuses.append(response.status_code)
            current = _next_hop(current, location)
        raise FetchError(url, "too_many_redirects", f"more than {policy.max_redirects} redirects")
    finally:
        _checked_addresses.reset(token)


def _conditional(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _checked_url(url: str) -> httpx.URL:
    """Parse a feed or redirect URL; only absolute http(s) URLs with a host are fetched."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchError(url, "invalid_url", f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(url, "invalid_url", "not an absolute http(s) URL")
    return parsed.copy_with(fragment=None)


def _next_hop(current: httpx.URL, location: str) -> httpx.URL:
    try:
        target = _checked_url(str(current.join(location)))
    except httpx.InvalidURL as exc:
        raise FetchError(str(current), "invalid_url", f"invalid redirect target {location!r}") from exc
    if current.scheme == "https" and target.scheme == "http":
        raise FetchError(str(current), "redirect_downgrade", f"refused redirect to {target}")
    return target


def _host_of(url: httpx.URL) -> str:
    """The host as the connection pool sees it: IDNA-encoded, IPv6 without brackets."""
    return url.raw_host.decode("ascii").lower()


def _port_of(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def _result_of(
    response: httpx.Response,
    url: str,
    redirect_statuses: Sequence[int],
    etag: str | None,
    last_modified: str | None,
    policy: FetchPolicy,
) -> FetchResult:
    """Name the outcome of the final response; read the body only for a 2xx."""
    status = response.status_code
    headers = response.headers
    common: dict[str, Any] = {
        "url": url,
        "http_status": status,
        "headers": tuple(headers.multi_items()),
        "etag": headers.get("etag") or etag,
        "last_modified": headers.get("last-modified") or last_modified,
        "final_url": str(response.request.url),
        "permanent_redirect": _permanent_target(response, redirect_statuses),
        "content_type": headers.get("content-type"),
        "base_url": urljoin(url, last_value(headers, "content-location")),
        "fresh_for": freshness(
            headers.get_list("cache-control"), last_value(headers, "expires"), last_value(headers, "date")
        ),
        "retry_after": retry_after_hint(last_value(headers, "retry-after")),
    }
    if 200 <= status < 300:
        body = await read_capped(response, policy.max_body_bytes)
        return FetchResult(status=FetchStatus.OK, body=body, **common)
    await _drain(response)
    if status == 304:
        return FetchResult(status=FetchStatus.NOT_MODIFIED, **common)
    if status == 410:
        return FetchResult(status=FetchStatus.GONE, error=f"HTTP {status}", **common)
    error_class = _error_class_of_status(status)
    return FetchResult(status=FetchStatus.ERROR, error_class=error_class, error=f"HTTP {status}", **common)


def _permanent_target(response: httpx.Response, redirect_statuses: Sequence[int]) -> str | None:
    """The final URL when every redirect on the way was permanent (301 / 308), else None."""
    if redirect_statuses and all(s in _PERMANENT_REDIRECT_STATUSES for s in redirect_statuses):
        return str(response.request.url)
    return None


def _error_class_of_status(status: int) -> ErrorClass:
    if status in _RATE_LIMIT_STATUSES:
        return "rate_limited"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "protocol_error"


async def _drain(response: httpx.Response) -> None:
    """Read a small body that is not a feed (304, redirect, error page) to its end.

    httpcore returns a connection to the pool only when the response was read to its end: closing a 304
    unread would cost a new TCP (and TLS) connection on the feed's next poll. A body larger than
    ``_DRAIN_LIMIT`` is not worth reading; the connection is then closed.
    """
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _DRAIN_LIMIT:
        return
    read = 0
    with contextlib.suppress(httpx.HTTPError):
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > _DRAIN_LIMIT:
                return


def _classify(exc: BaseException, policy: FetchPolicy) -> tuple[ErrorClass, str]:
    """A stable error class and a message for an exception raised while fetching."""
    if isinstance(exc, FetchError):
        return exc.error_class, f"{exc.url}: {exc.detail}"  # the class travels separately
    if isinstance(exc, asyncio.TimeoutError | httpx.TimeoutException):
        return "timeout", f"no complete response within the deadline ({policy.deadline} s): {exc!r}"
    if _caused_by(exc, ssl.SSLError | ssl.CertificateError):
        return "tls_error", str(exc) or repr(exc)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid_url", str(exc)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError | httpx.DecodingError):
        return "protocol_error", str(exc)
    if isinstance(exc, httpx.TransportError | OSError):
        return "connect_error", str(exc) or repr(exc)
    return "protocol_error", str(exc) or repr(exc)


def _caused_by(exc: BaseException, kind: type[BaseException] | Any) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses checked for the current fetch; resolves and checks itself otherwise."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = _checked_addresses.get({}).get((host, port))
        if addresses is None:
            policy = self._policy
            addresses = await resolve_checked(
                host, port, allow_private=policy.allow_private, resolver=policy.resolve, trusted_host=None
            )
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("feeds are never fetched over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ShardedPool:
    """Several small httpcore pools; each URL always goes to the same one.

    httpcore 1.0's pool re-scans all its connections (and, for each idle one, all of them again) every time a
    request starts or ends: with 64 polls in flight over ~100 kept-alive connections that is most of the CPU
    of a poll (encode/httpcore#1035, open). Small shards keep each scan short while a feed still finds its own
    kept-alive connection on its next poll (same URL, same shard). Two feeds of one host share a connection only
    when they fall in the same shard; they seldom could anyway (a connection is kept 30 s, a feed is polled
    every 15 minutes or more). The number of polls in flight is bounded by ``[poll] concurrency``, not here.
    """

    def __init__(self, shards: int, make: Callable[[], httpcore.AsyncConnectionPool]) -> None:
        self._shards = tuple(make() for _ in range(shards))

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        url = request.url
        shard = zlib.crc32(url.host + url.target) % len(self._shards)
        return await self._shards[shard].handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()

    async def __aenter__(self) -> _ShardedPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pools built on :class:`_GuardedBackend`."""

    SHARDS = 64
    KEEPALIVE_PER_SHARD = 4
    """Idle connections kept per shard (256 in all): a [poll] concurrency of 64 puts ~1 poll in each shard."""

    def __init__(self, policy: FetchPolicy, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        backend = _GuardedBackend(policy)

        def make() -> httpcore.AsyncConnectionPool:
            return httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=None,  # [poll] concurrency bounds the requests in flight
                max_keepalive_connections=self.KEEPALIVE_PER_SHARD,
                keepalive_expiry=30.0,
                network_backend=backend,
            )

        self._pool = _ShardedPool(self.SHARDS, make)  # type: ignore[assignment]
