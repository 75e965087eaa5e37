"""Small questions about an HTTP response, answered once at the edge (miniflux's ``response_handler``).

How long it says it stays fresh, when it says to come back, and its body read under a cap on *decoded* bytes:
alertd decompresses gzip / deflate itself with a bounded output size, so a gzip bomb stops at the cap instead
of inflating in memory first (RELIABILITY F2).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import httpx

from alertd.errors import FetchError
from alertd.models import Hint

_ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def last_value(headers: httpx.Headers, name: str) -> str:
    """The last value of a header that may be repeated ("" when absent)."""
    values = headers.get_list(name)
    return values[-1].strip() if values else ""


def freshness(cache_control: Iterable[str], expires: str, date: str) -> Hint | None:
    """How long a response says it stays fresh: ``max-age``, else ``Expires`` − ``Date``.

    ``no-cache`` / ``no-store`` and unreadable values give None (no hint), as does an Expires not after Date.
    Without a Date, the Expires instant itself (the caller's clock measures it).
    """
    directives = [d.strip().lower() for value in cache_control for d in value.split(",")]
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and value.strip().strip('"').isdigit():
            seconds = int(value.strip().strip('"'))
            return timedelta(seconds=seconds) if seconds > 0 else None
    if any(d in ("no-cache", "no-store") for d in directives):
        return None
    until = http_date(expires)
    if until is None:
        return None
    served = http_date(date)
    if served is None:
        return until
    lifetime = until - served
    return lifetime if lifetime > timedelta(0) else None


def retry_after_hint(value: str) -> Hint | None:
    """A ``Retry-After`` value: delta-seconds as a duration, an HTTP-date as an instant; None if unreadable."""
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    return http_date(text)


def http_date(text: str) -> datetime | None:
    """An HTTP-date (RFC 9110: IMF-fixdate, or the obsolete forms) as an aware UTC datetime, else None."""
    if not text.strip():
        return None
    try:
        moment = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Stream the body, decoding it ourselves so the cap applies to decoded bytes as they are produced;
    raise FetchError (too_large) past ``limit``."""
    body = _CappedBody(str(response.request.url), response.headers.get("content-encoding", ""), limit)
    async for chunk in response.aiter_raw():
        body.feed(chunk)
    return body.finish()


class _CappedBody:
    """Accumulate a (possibly gzip / deflate encoded) body; raise too_large as soon as decoded bytes exceed."""

    def __init__(self, url: str, content_encoding: str, limit: int) -> None:
        self._url = url
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _ZLIB_WBITS):
            raise FetchError(url, "protocol_error", f"unsupported Content-Encoding {content_encoding!r}")
        self._wbits = _ZLIB_WBITS[codings[0]] if codings else None
        self._decompressor = zlib.decompressobj(self._wbits) if self._wbits is not None else None
        self._started = False
        self._limit = limit
        self._size = 0
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self._decompressor is None:
            self._append(data)
            return
        while data and not self._decompressor.eof:
            room = self._limit - self._size + 1  # never 0: zlib reads 0 as "unlimited"
            self._append(self._decompress(data, room))
            data = self._decompressor.unconsumed_tail

    def finish(self) -> bytes:
        if self._decompressor is not None:
            self._append(self._decompressor.flush())
        return b"".join(self._parts)

    def _decompress(self, data: bytes, max_length: int) -> bytes:
        assert self._decompressor is not None
        try:
            out = self._decompressor.decompress(data, max_length)
        except zlib.error as exc:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise FetchError(self._url, "protocol_error", f"corrupt compressed body: {exc}") from exc
            # "deflate" is sent both zlib-wrapped (per the RFC) and raw (by many servers).
            self._wbits = -zlib.MAX_WBITS
            self._decompressor = zlib.decompressobj(self._wbits)
            return self._decompress(data, max_length)
        self._started = True
        return out

    def _append(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise FetchError(self._url, "too_large", f"body exceeds {self._limit} decoded bytes")
        self._parts.append(data)
