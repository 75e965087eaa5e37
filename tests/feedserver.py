"""A real HTTP feed server on 127.0.0.1 with scripted misbehaviours, and helpers to write feeds.

Use it as a pytest plugin (``pytest_plugins = ["tests.feedserver"]``) for the ``feed_server`` fixture::

    def test_poll(feed_server):
        feed_server.route("/bfm.xml", body=make_rss([{"title": "Cognac", "link": "https://x.test/1"}]))
        url = feed_server.url("/bfm.xml")
        ...
        assert 1 == feed_server.hits("/bfm.xml")

Routes can be replaced at any time (the next request sees the new content). Behaviours: static bytes with any
status and headers, ETag / Last-Modified conditional 304, redirects and redirect chains, trickle (one byte per
interval), an endless body, a gzip bomb, a lying Content-Length. Every request is counted and its headers kept.
Pass ``ssl_context`` (e.g. from trustme) for an https server.
"""

from __future__ import annotations

import functools
import gzip
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ssl import SSLContext
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import httpx
import pytest

RSS_CONTENT_TYPE = "application/rss+xml; charset=utf-8"


@dataclass
class Route:
    """What the server does for one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    behaviour: str = "static"  # static | trickle | endless | lying_length
    interval: float = 0.05
    declared_length: int | None = None
    gate: threading.Event | None = None
    """When set, requests wait for this event (or the server's stop) before they are answered."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    path: str
    headers: httpx.Headers
    """Case-insensitive."""


class FeedServer:
    """A threaded HTTP(S) server on 127.0.0.1:<free port> serving scripted routes."""

    def __init__(self, *, ssl_context: SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self._routes: dict[str, Route] = {}
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server((host, 0), _Handler)
        self._httpd.feed_server = self
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if ssl_context is not None else "http"
        self.host, self.port = str(self._httpd.server_address[0]), int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="feedserver", daemon=True
        )

    # lifecycle
    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # addresses and observations
    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str, *, host: str | None = None) -> str:
        """The absolute URL of ``path``; ``host`` replaces 127.0.0.1 (e.g. a name an injected resolver knows)."""
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def hits(self, path: str) -> int:
        """How many requests reached ``path`` (query string ignored)."""
        return len(self.requests(path))

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Requests received, for ``path`` only if given."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    # scripting
    def route(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        content_type: str | None = RSS_CONTENT_TYPE,
    ) -> str:
        """Serve ``body`` at ``path``; with ``etag`` / ``last_modified`` a matching conditional GET gets 304."""
        all_headers = {"Content-Type": content_type} if content_type else {}
        all_headers.update(headers or {})
        return self._set(path, Route(status, body, all_headers, etag=etag, last_modified=last_modified))

    def redirect(self, path: str, to: str, *, status: int = 302) -> str:
        """Redirect ``path`` to ``to`` (a path on this server or an absolute URL)."""
        location = to if "://" in to else self.url(to)
        return self._set(path, Route(status, b"", {"Location": location}))

    def redirect_chain(self, prefix: str, hops: int, final: str, *, status: int = 302) -> str:
        """``hops`` redirects ``prefix/0 -> prefix/1 -> ... -> final``; returns the first path."""
        paths = [f"{prefix}/{i}" for i in range(hops)]
        for path, target in zip(paths, [*paths[1:], final], strict=True):
            self.redirect(path, target, status=status)
        return paths[0] if paths else final

    def trickle(self, path: str, *, interval: float = 0.05) -> str:
        """Send headers, then one byte every ``interval`` seconds until the client goes away."""
        return self._set(
            path, Route(headers={"Content-Type": RSS_CONTENT_TYPE}, behaviour="trickle", interval=interval)
        )

    def endless(self, path: str) -> str:
        """Send 64 KiB chunks forever, without Content-Length."""
        return self._set(path, Route(headers={"Content-Type": RSS_CONTENT_TYPE}, behaviour="endless"))

    def gzip_bomb(self, path: str, *, decoded_mib: int = 64) -> str:
        """Serve ``decoded_mib`` MiB of zeros gzip-compressed (about 1000:1) with Content-Encoding: gzip."""
        headers = {"Content-Type": RSS_CONTENT_TYPE, "Content-Encoding": "gzip"}
        return self._set(path, Route(body=gzip_bomb_bytes(decoded_mib), headers=headers))

    def lying_length(self, path: str, *, declared: int, actual: int) -> str:
        """Announce ``Content-Length: declared`` and write ``actual`` bytes, then close."""
        route = Route(body=b"x" * actual, headers={"Content-Type": RSS_CONTENT_TYPE})
        route.behaviour, route.declared_length = "lying_length", declared
        return self._set(path, route)

    def hold(self, path: str) -> threading.Event:
        """Make requests to ``path`` wait until the returned event is set (the route itself is unchanged)."""
        gate = threading.Event()
        with self._lock:
            self._routes[path].gate = gate
        return gate

    def _set(self, path: str, route: Route) -> str:
        with self._lock:
            self._routes[path] = route
        return path

    def _lookup(self, path: str, headers: Mapping[str, str]) -> Route | None:
        with self._lock:
            self._requests.append(RecordedRequest(path, httpx.Headers(dict(headers))))
            return self._routes.get(path)


@functools.cache
def gzip_bomb_bytes(decoded_mib: int = 64) -> bytes:
    """``decoded_mib`` MiB of zeros, gzip-compressed without ever holding them uncompressed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(decoded_mib)]
    return b"".join([*parts, compressor.flush()])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    feed_server: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up or fail the TLS handshake are part of the tests, not errors."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        route = self.server.feed_server._lookup(path, dict(self.headers.items()))
        if route is not None and route.gate is not None:
            stopping = self.server.feed_server.stopping
            while not (route.gate.is_set() or stopping.wait(0.02)):
                pass
        if route is None:
            self._send_static(Route(status=404, body=b"not found"))
        elif self._not_modified(route):
            self._send_static(Route(status=304, headers=self._validators(route)))
        elif route.behaviour == "trickle":
            self._send_forever(route, lambda: b"<", route.interval)
        elif route.behaviour == "endless":
            self._send_forever(route, lambda: b"<" * 65536, 0.0)
        elif route.behaviour == "lying_length":
            self._send_head(route, {"Content-Length": str(route.declared_length)})
            self.wfile.write(route.body)
            self.close_connection = True
        else:
            self._send_static(route)

    def _not_modified(self, route: Route) -> bool:
        etag_hit = route.etag is not None and route.etag in self.headers.get("If-None-Match", "")
        date_hit = route.last_modified is not None and route.last_modified == self.headers.get(
            "If-Modified-Since"
        )
        return etag_hit or date_hit

    @staticmethod
    def _validators(route: Route) -> dict[str, str]:
        validators = {"ETag": route.etag or "", "Last-Modified": route.last_modified or ""}
        return {k: v for k, v in validators.items() if v}

    def _send_head(self, route: Route, extra: Mapping[str, str]) -> None:
        self.send_response(route.status)
        for name, value in {**route.headers, **self._validators(route), **extra}.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_static(self, route: Route) -> None:
        has_body = route.status >= 200 and route.status not in (204, 304)
        length = {"Content-Length": str(len(route.body))} if has_body else {}
        self._send_head(
            route, {**length, **{k: v for k, v in route.headers.items() if k.lower() == "content-length"}}
        )
        if has_body:
            self.wfile.write(route.body)

    def _send_forever(self, route: Route, chunk: Any, interval: float) -> None:
        self._send_head(route, {})
        stopping = self.server.feed_server.stopping
        while not stopping.is_set():
            self.wfile.write(chunk())
            self.wfile.flush()
            if interval:
                stopping.wait(interval)
        self.close_connection = True


def make_rss(
    items: Sequence[Mapping[str, Any]],
    *,
    title: str = "BFM Business - Économie",
    link: str = "https://www.bfmtv.com/economie/",
    ttl: int | None = None,
) -> bytes:
    """A BFM-like RSS 2.0 document (UTF-8 bytes).

    Each item may give ``title``, ``link``, ``guid`` (omitted when absent or None), ``lede`` and ``image``
    (combined BFM-style into the description as ``lede<br /><br /><img src=...>``) or a raw ``description``,
    ``pub_date`` (a datetime, naive means UTC, or a preformatted string) and ``author``.
    """
    channel = [
        f"<title>{escape(title)}</title>",
        f"<link>{escape(link)}</link>",
        "<description>Toute l'actualité économique</description>",
        "<language>fr</language>",
    ]
    if ttl is not None:
        channel.append(f"<ttl>{ttl}</ttl>")
    channel.extend(_rss_item(item) for item in items)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>\n'
        + "\n".join(channel)
        + "\n</channel></rss>\n"
    ).encode()


def _rss_item(item: Mapping[str, Any]) -> str:
    parts = []
    for name in ("title", "link"):
        if item.get(name) is not None:
            parts.append(f"<{name}>{escape(str(item[name]))}</{name}>")
    if item.get("guid") is not None:
        permalink = "true" if item["guid"] == item.get("link") else "false"
        parts.append(f"<guid isPermaLink={quoteattr(permalink)}>{escape(str(item['guid']))}</guid>")
    description = item.get("description")
    if description is None and (item.get("lede") is not None or item.get("image") is not None):
        image = f'<br /><br /><img src="{item["image"]}" />' if item.get("image") else ""
        description = f"{item.get('lede', '')}{image}"
    if description is not None:
        parts.append(f"<description>{escape(str(description))}</description>")
    if item.get("pub_date") is not None:
        parts.append(f"<pubDate>{escape(_rfc822(item['pub_date']))}</pubDate>")
    if item.get("author") is not None:
        parts.append(f"<author>{escape(str(item['author']))}</author>")
    return "<item>" + "".join(parts) + "</item>"


def _rfc822(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return format_datetime(aware)


def gzip_body(body: bytes) -> bytes:
    """``body`` gzip-compressed, for routes served with Content-Encoding: gzip."""
    return gzip.compress(body)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started :class:`FeedServer` on 127.0.0.1, stopped after the test."""
    with FeedServer() as server:
        yield server
