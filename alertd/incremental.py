"""Parse only the ``<item>``s a feed did not carry at its last parse.

A feed that changed usually changed by an item or two: parsing its fifty or three hundred items again costs far
more than the rest of the poll (bench/README.md). After the fast path (:mod:`alertd.fastparse`) parsed a document
it reports the exact byte range of each ``<item>`` element; alertd remembers, per feed, the document's *layout*:
a digest of what precedes the first item (with the Content-Type and base URL the parser was given), of what
follows the last, and of each item's bytes with the entry they gave.

The next document of that feed is cut at its ``<item>`` / ``</item>`` tags by a byte search. When its head and
tail are those remembered, the items between are separated by whitespace only, and some items' bytes are known,
only a reduced document — the head, the unknown items, the tail — is parsed. The result is used only if the fast
path accepted the reduced document and found exactly the items put in it, each at the byte range where it was
put; otherwise the whole document is parsed as usual. The fast path makes an item's entry depend on its own bytes
and the head only (it refuses ``xml:base``, entities, DOCTYPE, unknown elements...), so an entry taken from
memory is the one a parse of the whole document would give. A document where no item is unknown is not parsed at
all: nothing in it can be new.

Remembered entries are kept slim (:func:`slim`): identity needs the GUID, link and title, not the summary. When
such an entry turns out to be new to the store — the poll that first saw it never committed, or the item was
pruned — the caller must parse the whole document (:attr:`Parse.reused`, :meth:`Layouts.forget`). Layouts live
in memory only: after a restart each feed's first parse is a whole one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alertd.models import Entry, ParsedFeed
from alertd.parse import ParserPool, base_uri

_OPEN = b"<item>"
_CLOSE = b"</item>"
_XML_SPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Layout:
    """What is remembered of a feed's last parsed document."""

    frame: bytes
    """Digest of the parsing context, the head and the tail."""
    entries: Mapping[bytes, Entry]
    """Digest of an item's bytes -> its (slim) entry."""
    title: str | None
    link: str | None
    ttl_minutes: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    """How to parse a document of a feed with a remembered layout."""

    document: bytes
    """Head, the unknown items, tail: what the parser gets."""
    spans: tuple[tuple[int, int], ...]
    """Where each unknown item lies in ``document``."""
    digests: tuple[bytes, ...]
    """Every item of the new document, in order."""
    layout: Layout


@dataclass(frozen=True, slots=True)
class Parse:
    """A parsed document, some of whose entries may come from memory."""

    feed: ParsedFeed
    reused: frozenset[int] = frozenset()
    """Indexes of the entries taken from memory (slim: no summary unless identity needs it)."""


@dataclass
class Layouts:
    """The remembered layout of each feed, by key (the feed's configured URL)."""

    by_feed: dict[str, Layout] = field(default_factory=dict)
    enabled: bool = True
    """False: remember nothing, parse every document whole (to measure the difference: bench/poll.py)."""

    def forget(self, key: str) -> None:
        self.by_feed.pop(key, None)


async def parse(
    pool: ParserPool, layouts: Layouts, key: str, body: bytes, content_type: str | None, base_url: str
) -> Parse:
    """Parse a document of the feed ``key`` in ``pool``, only its unknown items when its layout allows.

    Raises ParseError as :meth:`ParserPool.parse` does (the feed's layout is then forgotten).
    """
    context = parsing_context(content_type, base_uri(base_url))
    layout = layouts.by_feed.get(key)
    steps = plan(layout, context, body) if layout is not None else None
    if steps is not None:
        reduced = await pool.parse_fast(steps.document, content_type, base_url) if steps.spans else None
        result = assemble(steps, reduced)
        if result is not None:
            layouts.by_feed[key] = after(steps, result)
            return result
    layouts.forget(key)
    feed = await pool.parse(body, content_type, base_url)
    remembered = remember(context, body, feed) if layouts.enabled else None
    if remembered is not None:
        layouts.by_feed[key] = remembered
    return Parse(feed)


def incomplete(parse: Parse, new: Sequence[bool]) -> bool:
    """Whether ``parse`` cannot be used as it is: an entry taken from memory (slim, without its summary) turns
    out to be new to the store (``new[i]``: entry ``i`` is unknown), so the whole document must be parsed to
    have all of it (forget the feed's layout first)."""
    return any(is_new and index in parse.reused for index, is_new in enumerate(new))


def split(body: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """(head, items, tail) of a document cut at its ``<item>`` / ``</item>`` tags, or None when the cut is not
    clean: no item, an ``<item`` with attributes or a longer name, nested tags, anything but XML whitespace
    between two items."""
    start = body.find(b"<item")
    if start < 0:
        return None
    head = body[:start]
    items: list[bytes] = []
    position = start
    while start >= 0:
        if body[start : start + len(_OPEN)] != _OPEN:
            return None
        if items and body[position:start].translate(None, _XML_SPACE):
            return None
        end = body.find(_CLOSE, start)
        if end < 0 or body.find(b"<item", start + 1, end) >= 0:
            return None
        position = end + len(_CLOSE)
        items.append(body[start:position])
        start = body.find(b"<item", position)
    return head, items, body[position:]


def remember(context: bytes, body: bytes, feed: ParsedFeed) -> Layout | None:
    """The layout of a document the fast path parsed (None if it did not: feedparser reports no byte ranges)."""
    spans = feed.item_spans
    if not spans or len(spans) != len(feed.entries):
        return None
    head, tail = body[: spans[0][0]], body[spans[-1][1] :]
    entries = {
        _digest(body[start:end]): slim(entry) for (start, end), entry in zip(spans, feed.entries, strict=True)
    }
    return Layout(_frame(context, head, tail), entries, feed.title, feed.link, feed.ttl_minutes)


def plan(layout: Layout, context: bytes, body: bytes) -> Plan | None:
    """How to parse ``body`` knowing ``layout``; None when the whole document must be parsed."""
    cut = split(body)
    if cut is None:
        return None
    head, items, tail = cut
    if _frame(context, head, tail) != layout.frame:
        return None
    digests = tuple(_digest(item) for item in items)
    unknown = [item for item, digest in zip(items, digests, strict=True) if digest not in layout.entries]
    if len(unknown) == len(items):
        return None  # nothing to gain
    spans = []
    position = len(head)
    for item in unknown:
        spans.append((position, position + len(item)))
        position += len(item)
    return Plan(head + b"".join(unknown) + tail, tuple(spans), digests, layout)


def assemble(plan: Plan, parsed: ParsedFeed | None) -> Parse | None:
    """The whole document's parse from the reduced document's (None: nothing was parsed, or the fast path
    refused it); None when the reduced parse does not hold exactly the unknown items where they were put."""
    spans, fresh = (parsed.item_spans, iter(parsed.entries)) if parsed is not None else ((), iter(()))
    if spans != plan.spans:
        return None
    known = plan.layout.entries
    entries: list[Entry] = []
    reused: set[int] = set()
    for index, digest in enumerate(plan.digests):
        remembered = known.get(digest)
        if remembered is not None:
            entries.append(remembered)
            reused.add(index)
        else:
            entries.append(next(fresh))
    layout = plan.layout
    notices = parsed.notices if parsed is not None else ()
    feed = ParsedFeed(layout.title, layout.link, tuple(entries), layout.ttl_minutes, None, None, notices)
    return Parse(feed, frozenset(reused))


def after(plan: Plan, result: Parse) -> Layout:
    """The layout to remember once ``result`` was assembled from ``plan``: the new document's items only."""
    entries = {
        digest: plan.layout.entries.get(digest) or slim(entry)
        for digest, entry in zip(plan.digests, result.feed.entries, strict=True)
    }
    layout = plan.layout
    return Layout(layout.frame, entries, layout.title, layout.link, layout.ttl_minutes)


def slim(entry: Entry) -> Entry:
    """What identity needs of an entry: its summary only when it has neither GUID nor link (content identity)."""
    if entry.guid or entry.link:
        return Entry(entry.guid, entry.link, entry.title, "", entry.published, entry.author)
    return entry


def parsing_context(content_type: str | None, base: str) -> bytes:
    """What the parser reads besides the bytes: the media type and the base URL."""
    return f"{content_type or ''}\n{base}".encode("utf-8", "surrogatepass")


def _frame(context: bytes, head: bytes, tail: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for part in (context, head, tail):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def _digest(item: bytes) -> bytes:
    return hashlib.blake2b(item, digest_size=16).digest()
