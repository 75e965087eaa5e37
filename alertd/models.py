"""Immutable records passed between pipeline stages.

Named by what they carry; each stage takes some of these in and gives others out:

    fetch  -> FetchResult
    parse  -> ParsedFeed (of Entry)
    identify -> Item
    match  -> Match (with Span explanations)
    digest -> Digest (of TopicSection of Story)
    render -> email.message.EmailMessage
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

ErrorClass = Literal[
    "timeout",
    "connect_error",
    "dns_error",
    "tls_error",
    "http_4xx",
    "http_5xx",
    "rate_limited",
    "too_large",
    "too_many_redirects",
    "redirect_downgrade",
    "ssrf_blocked",
    "invalid_url",
    "protocol_error",
    "parse_error",
    "gone",
]
"""Why a poll failed, as a short stable name (logs, metrics labels, ``alertd feeds``, digests translate it):
the fetch's classes, ``parse_error`` (the bytes are not a feed) and ``gone`` (410)."""

FeedHealthKind = Literal["failing", "gone", "moved", "flood"]
MessageLanguage = Literal["fr", "en"]


class FetchStatus(enum.Enum):
    """What a fetch amounted to, before anything parses it."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    GONE = "gone"
    ERROR = "error"


Hint = timedelta | datetime
"""A server's hint about time: a duration (``max-age=3600``, ``Retry-After: 120``), or the instant it runs to
(an HTTP-date), which only the caller's ``now`` turns into a duration."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one conditional GET of a feed, with the response translated into fields at the edge:
    nothing downstream reads HTTP headers."""

    url: str
    """The URL that was fetched (the feed's, or where it moved)."""
    status: FetchStatus
    http_status: int | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    """The response headers as received, for diagnostics only: the fields below are what the stages read."""
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    permanent_redirect: str | None = None
    error_class: ErrorClass | None = None
    error: str | None = None
    elapsed: float = 0.0
    content_type: str | None = None
    """The Content-Type sent (the parser reads the media type and charset from it)."""
    base_url: str = ""
    """Where the document's relative links resolve: its Content-Location made absolute against ``url``."""
    fresh_for: Hint | None = None
    """How long the response says it stays fresh: ``Cache-Control: max-age``, else ``Expires`` − ``Date``
    (the ``Expires`` instant itself when no ``Date`` came); None without a usable hint, or with no-cache."""
    retry_after: Hint | None = None
    """``Retry-After`` (delta-seconds or an HTTP-date), unclamped; None if absent or unreadable."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One feed entry as parsed, before identity is decided. ``summary_html`` is unsanitised feed HTML."""

    guid: str | None
    link: str | None
    title: str
    summary_html: str
    published: datetime | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed document."""

    title: str | None
    link: str | None
    entries: tuple[Entry, ...]
    ttl_minutes: int | None = None
    warning: str | None = None
    item_spans: tuple[tuple[int, int], ...] | None = None
    """Byte range of each entry's ``<item>`` element in the document, when the fast path parsed it (see
    :mod:`alertd.incremental`); None from feedparser."""
    notices: tuple[str, ...] = ()
    """Items the parser had to clean or drop to keep the rest of the feed (one line each, for the feed's
    notice): a character reference outside Unicode, a field over its cap, an entry that failed to convert."""


@dataclass(frozen=True, slots=True)
class Item:
    """An entry with its identity decided and its text extracted: what the store keeps, the matcher reads.

    ``summary_html`` is the feed's HTML, unsanitised (see :class:`Entry`); digests show ``summary_text``.
    """

    key: str
    feed_url: str
    feed_name: str
    title: str
    summary_text: str
    summary_html: str
    link: str | None
    story_key: str
    published: datetime | None = None
    feed_tags: frozenset[str] = frozenset()
    link_key: str | None = None
    """The secondary identity (RELIABILITY I2): the link key of a usable link, None without one. A feed that
    changes an item's GUID but not its link alerts nothing again."""
    shape: int | None = None
    """The SimHash of its title and lede (:func:`alertd.stories.shape_of`), once the story was decided."""
    marks: tuple[str, ...] = ()
    """What the store indexes it by so that later copies of its story find it (:func:`alertd.stories.marks`)."""


@dataclass(frozen=True, slots=True)
class Span:
    """Where a term fired: the field and the character range in the original (un-normalised) text."""

    field: str  # "title" | "summary"
    start: int
    end: int
    term: str


@dataclass(frozen=True, slots=True)
class Match:
    """One topic matched one item, with the evidence that explains it."""

    topic_id: str
    terms: tuple[str, ...]
    spans: tuple[Span, ...] = ()
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Story:
    """One story in a digest: possibly carried by several feeds."""

    item_key: str
    title: str
    link: str | None
    feed_name: str
    summary_text: str
    published: datetime | None
    first_seen: datetime
    terms: tuple[str, ...]
    spans: tuple[Span, ...] = ()
    score: float = 1.0
    also_in: tuple[str, ...] = ()
    already_sent: bool = False
    """The story already went out to this reader in an alert (a priority topic); the digest says so."""
    story_key: str = ""
    """The story's key (see :mod:`alertd.stories`); empty in hand-made stories."""
    copies: tuple[str, ...] = ()
    """The keys of every item merged into this entry, the one shown included."""
    other_versions: int = 0
    """Copies of the story in the shown copy's own feed besides it ("2 autres versions")."""


RuleKind = Literal["terms", "query", "all"]
"""How a topic fires: any of its terms; a boolean query; one term of each of its ``all`` groups."""


@dataclass(frozen=True, slots=True)
class TopicRule:
    """How a topic decides, for the why line of its stories: a rule, not just a term, made them match."""

    kind: RuleKind = "terms"
    min_score: float | None = None
    """The topic's ``min_score``: its stories' why line shows their score against it."""


@dataclass(frozen=True, slots=True)
class TopicSection:
    """The stories of one topic in a digest, ranked."""

    topic_id: str
    topic_name: str
    stories: tuple[Story, ...]
    overflow: tuple[Story, ...] = ()
    rule: TopicRule = TopicRule()


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """A feed worth warning the reader about in a digest.

    ``problem`` says it in English (logs, tests); digests say it in the reader's language from ``kind`` and the
    fields that go with it (``alertd.render.health_text``).
    """

    name: str
    url: str
    problem: str
    since: datetime | None = None
    kind: FeedHealthKind = "failing"
    error_class: ErrorClass | None = None
    """failing: the class of the last error (timeout, http_5xx, dns_error...)."""
    attempts: int = 0
    """failing: consecutive failed polls."""
    target: str | None = None
    """moved: the address alertd now fetches."""


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything one email to one subscriber says, decided; rendering only formats it."""

    digest_id: str
    subscriber_email: str
    subscriber_name: str
    sender: str
    sections: tuple[TopicSection, ...]
    generated_at: datetime
    timezone: str
    config_path: str
    watchlist_path: str
    language: MessageLanguage
    """Language of the fixed strings and date formats: "fr" or "en"."""
    feed_health: tuple[FeedHealth, ...] = field(default=())
    kind: Literal["digest", "alert"] = "digest"
    """"digest" (scheduled) or "alert" (a short message for a priority topic, sent right away)."""
    contact: str | None = None
    """Who the reader writes to to change or stop these emails (``[digest] admin_contact``); None: the sender."""

    @property
    def story_count(self) -> int:
        return sum(len(s.stories) + len(s.overflow) for s in self.sections)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What a successful delivery amounted to.

    ``refused`` lists recipients the SMTP server refused while accepting others: ``{address: (code,
    message)}``. ``location`` is the file written (Maildir, mbox); ``smtp_reply`` the server's final reply.
    """

    method: str
    message_id: str
    accepted: tuple[str, ...]
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    location: Path | None = None
    smtp_reply: str | None = None


@dataclass(frozen=True, slots=True)
class MatchedItem:
    """A stored match for a digest: the item, why it matched, and when we first saw it."""

    item: Item
    match: Match
    first_seen: datetime
    also_in: tuple[str, ...] = ()
