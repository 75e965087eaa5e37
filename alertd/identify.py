"""Decide the identity of each parsed entry, canonicalise URLs, and group one story carried by several feeds.

``Item.key`` (RELIABILITY I1) is unique per feed: a hash of the feed URL, then the first of

1. the GUID; when a GUID repeats within one fetch, GUID + link, else GUID + position;
2. the link key: the canonical link without its scheme (see :func:`link_key`);
3. a SHA-256 of the normalised title and summary text.

``Item.story_key`` is the link key when there is a link (else a hash of the normalised title): the same article
in two BFM section feeds gets the same story key, and a GUID that only changed from http to https keeps it
(``Item.link_key``, the secondary identity: I2).
Everything here is pure: ``now`` is passed in.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

from alertd.models import Entry, Item
from alertd.text import html_to_text

FUTURE_TOLERANCE = timedelta(hours=1)
"""Published dates later than ``now`` + this are clamped to it (I6)."""

TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "xtor",
        "xts",
        "ref",
        "ref_src",
        "ref_url",
        "_ga",
        "_gl",
        "cmpid",
        "wt_mc",
        "wt.mc_id",
        "ncid",
        "sr_share",
        "spm",
        "at_medium",
        "at_campaign",
    }
)
TRACKING_PREFIXES = ("utm_", "at_", "pk_", "mtm_", "oly_")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SPACE = re.compile(r"\s+")
_WEB_SCHEME = re.compile(r"https?:", re.IGNORECASE)


def canonical_url(url: str) -> str:
    """The URL in a stable form: scheme and host lower-cased, default port, fragment and tracking dropped,
    remaining query parameters sorted. A URL that cannot be parsed is returned stripped."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    if parts.username is not None:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"
    path = parts.path or ("/" if netloc else "")
    return urlunsplit(SplitResult(scheme, netloc, path, _canonical_query(parts.query), "")).strip()


@functools.lru_cache(maxsize=1 << 16)
def link_key(url: str) -> str:
    """The canonical URL without its scheme, so http and https links to one article are equal.

    Cached: a feed's links come back at every poll that parses it, and canonicalising is the costly part of
    identity (65,536 links, ~15 MB at most).
    """
    canonical = canonical_url(url)
    scheme, separator, rest = canonical.partition("://")
    return rest if separator and scheme in _DEFAULT_PORTS else canonical


def is_tracking_param(name: str) -> bool:
    """True for query parameters that only track the reader (utm_*, fbclid, xtor, ...)."""
    lowered = unquote_plus(name).lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def _canonical_query(query: str) -> str:
    """Drop tracking parameters and sort the rest, keeping each pair's original encoding."""
    pairs = [pair for pair in query.split("&") if pair and not is_tracking_param(pair.split("=", 1)[0])]
    return "&".join(sorted(pairs))


@dataclass(frozen=True, slots=True)
class EntryKey:
    """The identity of one entry, decided without extracting its text: computed for every entry of every
    fetch (most of them already known), while :func:`make_items` runs only for the new ones."""

    key: str
    link: str | None
    story_key: str

    @property
    def link_key(self) -> str | None:
        """The secondary identity (RELIABILITY I2): the link key of a usable link, None without one.

        An entry with a link has that link key as its story key, so nothing is recomputed.
        """
        return self.story_key if self.link else None


def entry_keys(entries: Sequence[Entry], feed_url: str) -> tuple[EntryKey, ...]:
    """The key, web link and story key of each entry of one fetch (see the module docstring)."""
    feed_prefix = _digest(feed_url)[:16]
    links = [_web_link(entry.link) for entry in entries]
    link_keys = [link_key(link) if link is not None else None for link in links]
    identities = _identities(entries, link_keys)
    return tuple(
        EntryKey(
            key=f"{feed_prefix}:{_digest(identity)[:40]}",
            link=link,
            story_key=key_of_link if key_of_link is not None else _title_story_key(entry),
        )
        for entry, identity, link, key_of_link in zip(entries, identities, links, link_keys, strict=True)
    )


def make_items(
    entries: Sequence[Entry],
    keys: Sequence[EntryKey],
    feed_url: str,
    feed_name: str,
    feed_tags: frozenset[str],
    now: datetime,
) -> tuple[Item, ...]:
    """Items of ``entries`` under the ``keys`` :func:`entry_keys` gave them: text extracted, dates clamped."""
    return tuple(
        Item(
            key=key.key,
            feed_url=feed_url,
            feed_name=feed_name,
            title=entry.title,
            summary_text=html_to_text(entry.summary_html),
            summary_html=entry.summary_html,
            link=key.link,
            story_key=key.story_key,
            published=_clamped(entry.published, now),
            feed_tags=feed_tags,
            link_key=key.link_key,
        )
        for entry, key in zip(entries, keys, strict=True)
    )


def _title_story_key(entry: Entry) -> str:
    return "title:" + _digest(_normalised(entry.title))[:40]


def link_candidates(keys: Sequence[EntryKey], known: Collection[str]) -> set[str]:
    """The link keys worth looking up to recognise entries whose key is unknown (their GUID may have changed).

    A link shared by several entries of one fetch (a feed linking every item to its home page) identifies
    nothing and is not used.
    """
    shared = Counter(key.link_key for key in keys if key.link_key is not None)
    return {
        key.link_key
        for key in keys
        if key.key not in known and key.link_key is not None and shared[key.link_key] == 1
    }


def recognised(keys: Sequence[EntryKey], by_key: Collection[str], by_link: Collection[str]) -> set[str]:
    """The keys of the entries already seen: by their key, or by a link key the store knows (I2)."""
    return set(by_key) | {key.key for key in keys if key.link_key is not None and key.link_key in by_link}


FLOOD_NEW_ITEMS = 20
"""More new items than this in one poll of an established feed is a flood (RELIABILITY I4)..."""
FLOOD_MIN_FOR_SHARE = 5
"""...and so is more than half of the feed's items, once at least this many are new (a 3-item feed with 2
new items is just news)."""


def is_flood(new_count: int, total: int) -> bool:
    """Whether one poll of an established feed brought implausibly many new items (see docs/polling.md)."""
    return new_count > FLOOD_NEW_ITEMS or (new_count >= FLOOD_MIN_FOR_SHARE and 2 * new_count > total)


def novel_items(items: Sequence[Item], published_after: datetime) -> list[Item]:
    """Of a flood, the items that still look like news: published after ``published_after``.

    An item without a date cannot prove it is new and is held back with the rest.
    """
    return [item for item in items if item.published is not None and item.published > published_after]


def _identities(entries: Sequence[Entry], link_keys: Sequence[str | None]) -> list[str]:
    """The identity string of each entry, disambiguating GUIDs repeated within this fetch."""
    guid_counts = Counter(entry.guid for entry in entries if entry.guid)
    first_choice = [
        _identity(entry, key_of_link, repeated=guid_counts[entry.guid or ""] > 1)
        for entry, key_of_link in zip(entries, link_keys, strict=True)
    ]
    first_counts = Counter(first_choice)
    return [
        f"{identity}\npos:{position}" if first_counts[identity] > 1 else identity
        for position, identity in enumerate(first_choice)
    ]


def _identity(entry: Entry, key_of_link: str | None, *, repeated: bool) -> str:
    if entry.guid:
        return f"guid:{entry.guid}\nlink:{key_of_link}" if repeated and key_of_link else f"guid:{entry.guid}"
    if key_of_link:
        return f"link:{key_of_link}"
    return f"content:{_normalised(entry.title)}\n{_normalised(html_to_text(entry.summary_html))}"


def _web_link(link: str | None) -> str | None:
    """The link if it is an absolute http(s) URL; anything else (javascript:, relative...) is no link."""
    if not link:
        return None
    stripped = link.strip()
    if _WEB_SCHEME.match(stripped):  # the usual case, without parsing the whole URL
        return stripped
    try:
        scheme = urlsplit(stripped).scheme.lower()
    except ValueError:  # "ftp://[bad": a broken URL is no link, not a failed poll
        return None
    return stripped if scheme in _DEFAULT_PORTS else None


def _clamped(published: datetime | None, now: datetime) -> datetime | None:
    if published is None:
        return None
    return min(published, now + FUTURE_TOLERANCE)


def _normalised(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
