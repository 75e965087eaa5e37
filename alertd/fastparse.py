"""A fast path for plain, well-formed RSS 2.0: expat instead of feedparser, or None to fall back to feedparser.

feedparser costs ~20 ms per 50-item document; this path ~1-2 ms. It accepts only documents for which it
reproduces what :func:`alertd.parse.parse_feed` gets from feedparser, and refuses (returns None) on anything else:

- the bytes: any ``<!`` other than CDATA or a comment (DOCTYPE, ENTITY: billion laughs and XXE never reach
  expat), any processing instruction but the XML declaration, ``xml:base``, a BOM, an encoding other than UTF-8
  (declared in the document or the Content-Type), bytes that are not UTF-8, a media type other than
  ``application/{rss,atom,}+xml`` / ``application/xml`` (``text/xml`` only with ``charset=utf-8``);
- the structure: a root other than ``<rss version="2.0">`` with one ``<channel>`` (RDF, RSS 0.9x, Atom ... go
  to feedparser), an element not in the allow-lists below, a child element inside a text field, a repeated
  field in an item (a repeated identical ``pubDate`` excepted), an item with both ``description`` and
  ``content:encoded``, a ``guid`` or ``link`` that is not an absolute http(s) URL;
- the text: a title with markup or an entity-like ``&`` (feedparser would sanitise it as HTML), a summary with
  an entity reference feedparser's sanitiser rewrites to mean something else (see :func:`_entities_kept`), a
  date that is not strict RFC 822 with GMT/UT/Z or a numeric offset (see :func:`_rfc822_utc` for the years), an
  author longer than 256 characters (feedparser's e-mail regex is the ReDoS of RELIABILITY F11: such feeds keep
  going through the worker's time limit).

Equivalence (tests/test_fastparse.py): every field equals feedparser's, except ``summary_html``: feedparser
sanitises HTML with its own sanitiser, this path keeps the feed's HTML as it is (``Entry.summary_html`` is
unsanitised by contract: nothing renders it; digests show the text extracted from it).
Downstream, ``summary_html`` is only ever read through :func:`alertd.text.html_to_text` (identify:
``summary_text`` and the content-hash identity; the store keeps it), so the two are equal when ``html_to_text``
of both is equal — which is what the tests check on every accepted document.

Both paths also apply what :mod:`alertd.cleanup` holds: invalid character references cleaned before parsing,
every field capped after.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from html.entities import html5, name2codepoint
from typing import Any, NoReturn
from xml.parsers import expat

from feedparser.html import _cp1252
from feedparser.urls import make_safe_absolute_uri

from alertd.cleanup import MAX_AUTHOR, capped, clean_char_refs
from alertd.models import Entry, ParsedFeed
from alertd.text import html_to_text

_SPACE = re.compile(r"\s+")
_C1_CONTROLS = re.compile("[\x80-\x9f]")
"""The characters feedparser maps through its cp1252 table (translating every text is most of a parse)."""
_MAX_TTL_MINUTES = 7 * 24 * 60

_CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
_ATOM_NS = "http://www.w3.org/2005/Atom"
_SEP = "\x1f"

_XML_DECL = re.compile(
    rb"<\?xml\s+version\s*=\s*[\"']1\.0[\"'](\s+encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"'])?"
    rb"(\s+standalone\s*=\s*[\"'](yes|no)[\"'])?\s*\?>"
)
_BANG = re.compile(rb"<!(?!\[CDATA\[|--)")
_TITLE_REFUSED = re.compile(r"[<>]|&[#\w]")
_SUMMARY_REFUSED = re.compile(r"<(?![A-Za-z/])|</(?![A-Za-z])")
_TAG = re.compile(r"</?([A-Za-z][^\s/>]*)")
_SUMMARY_TAGS = frozenset(
    {
        "p",
        "br",
        "div",
        "span",
        "a",
        "b",
        "i",
        "em",
        "strong",
        "u",
        "s",
        "ul",
        "ol",
        "li",
        "img",
        "h1",
        "h2",
        "h3",
    }
    | {
        "h4",
        "h5",
        "h6",
        "blockquote",
        "figure",
        "figcaption",
        "table",
        "thead",
        "tbody",
        "tr",
        "td",
        "th",
        "hr",
    }
    | {"pre", "code", "small", "sup", "sub"}
)
_MONTHS = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6}
_MONTHS.update({"Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12})
_RFC822 = re.compile(
    rf"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{{1,2}}) ({'|'.join(_MONTHS)}) "
    r"(\d{1,4}) (\d{2}):(\d{2}):(\d{2}) (?:GMT|UT|UTC|Z|([+-])(\d{2})(\d{2}))"
)
_ENTITY_REF = re.compile(r"&([A-Za-z][-.A-Za-z0-9]*)(?=([^A-Za-z0-9]))")
"""An entity reference as feedparser's HTML processor reads it (sgmllib's ``entityref``): a name, then any
character but a letter or a digit, its terminator (a ``;`` is consumed, any other is not); a name running to
the end of the text is not a reference. The look-ahead keeps a ``&`` that ends one name for the next match."""
_HTML4_NAMES = frozenset(name2codepoint) | {"apos"}
"""The names feedparser keeps as ``&name;``; any other becomes ``&amp;name``."""
_LEGACY_NAMES = frozenset(name for name in html5 if not name.endswith(";"))
"""The 106 names html.unescape (so :func:`~alertd.text.html_to_text`) also decodes without ``;``."""
_LEGACY_HTML4 = _LEGACY_NAMES & _HTML4_NAMES
_LEGACY_PREFIX = re.compile("|".join(sorted(_LEGACY_NAMES, key=len, reverse=True)))
_XML_MEDIA = frozenset({"application/rss+xml", "application/atom+xml", "application/xml"})

_CHANNEL_FIELDS = frozenset({"title", "link", "ttl"})
_CHANNEL_IGNORED = frozenset(
    {"description", "language", "pubDate", "lastBuildDate", "generator", "copyright", "category", "docs"}
)
_ITEM_FIELDS = frozenset(
    {"title", "link", "guid", "description", "pubDate", "author", _CONTENT_NS + _SEP + "encoded"}
)
_ITEM_IGNORED = frozenset({"category", "comments", "enclosure"})


class _Refused(Exception):
    """The document is outside what the fast path reproduces exactly."""


def text_or_none(value: object) -> str | None:
    """A stripped non-empty string, else None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def plain_text(value: object) -> str:
    """A title as plain text, on one line: tags stripped, entities decoded (feedparser already decoded one
    level, so double-escaped titles come out right)."""
    if not isinstance(value, str):
        return ""
    return _SPACE.sub(" ", html_to_text(value)).strip()


def ttl_minutes(value: object) -> int | None:
    text = text_or_none(value)
    if text is None or not text.isdigit():
        return None
    minutes = int(text)
    return minutes if 0 < minutes <= _MAX_TTL_MINUTES else None


def acceptable_content_type(content_type: str | None) -> bool:
    """Whether feedparser would read the body as UTF-8 XML without an encoding or content-type warning."""
    if content_type is None:
        return False
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower()
        elif name.strip():
            return False
    if charset not in (None, "utf-8"):
        return False
    return media in _XML_MEDIA or (media == "text/xml" and charset == "utf-8")


def parse_fast(body: bytes, content_type: str | None, base: str) -> ParsedFeed | None:
    """The feed, as feedparser's path would give it, or None when this path cannot vouch for that.

    ``content_type`` is the response's Content-Type; ``base`` is the URL relative links resolve against (the
    absolute Content-Location, as feedparser is given it). Item spans are offsets in ``body`` as given.
    """
    if not acceptable_content_type(content_type) or not _acceptable_bytes(body):
        return None
    clean = clean_char_refs(body)
    try:
        feed = _Builder(base).run(clean.body)
    except MemoryError:
        raise
    except Exception:  # _Refused, expat's errors, or a failure of its own: nothing it cannot vouch for
        return None
    spans = tuple(
        (clean.original_offset(start), clean.original_offset(end)) for start, end in feed.item_spans or ()
    )
    return capped(replace(feed, item_spans=spans, notices=clean.notices))


def _acceptable_bytes(body: bytes) -> bool:
    if not body.startswith(b"<"):
        return False  # a BOM, leading whitespace, or not XML
    if body.startswith(b"<?"):
        declaration = _XML_DECL.match(body)
        if declaration is None:
            return False
        encoding = declaration.group(2)
        if encoding is not None and encoding.lower() != b"utf-8":
            return False
        rest = body[declaration.end() :]
    else:
        rest = body
    if b"<?" in rest or _BANG.search(body) or b"xml:base" in body:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _pop_text(value: str) -> str:
    """What feedparser's ``pop`` does to a text field of a UTF-8 document after stripping it."""
    output = value.strip()
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    return output.translate(_cp1252) if _C1_CONTROLS.search(output) else output


def _resolve(base: str, value: str) -> str:
    """An absolute http(s) link exactly as feedparser resolves it; refuse anything else."""
    if not value.startswith(("http://", "https://")):
        raise _Refused("relative or non-web link")
    return str(make_safe_absolute_uri(base, value))


class _Builder:
    def __init__(self, base: str) -> None:
        self.base = base
        self.stack: list[str] = []
        self.text: list[str] = []
        self.attrs: dict[str, str] = {}
        self.channel: dict[str, str] = {}
        self.item: dict[str, tuple[str, dict[str, str]]] | None = None
        self.items: list[dict[str, tuple[str, dict[str, str]]]] = []
        self.spans: list[tuple[int, int]] = []
        self.channels = 0
        self.body = b""
        self.parser: Any = None

    def run(self, body: bytes) -> ParsedFeed:
        parser = expat.ParserCreate("utf-8", namespace_separator=_SEP)
        self.body, self.parser = body, parser
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._refuse
        parser.EntityDeclHandler = self._refuse
        parser.ProcessingInstructionHandler = self._refuse
        parser.ExternalEntityRefHandler = self._refuse
        parser.SkippedEntityHandler = self._refuse
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        parser.buffer_text = True
        parser.Parse(body, True)
        if self.channels != 1:
            raise _Refused("not exactly one channel")
        return ParsedFeed(
            title=self._channel_title(),
            link=self._channel_link(),
            entries=tuple(self._entry(item) for item in self.items),
            ttl_minutes=ttl_minutes(_pop_text(self.channel["ttl"])) if "ttl" in self.channel else None,
            warning=None,
            item_spans=tuple(self.spans),
        )

    def _refuse(self, *args: Any) -> NoReturn:
        raise _Refused("declaration, entity or processing instruction")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = len(self.stack)
        if depth == 0:
            if name != "rss" or attrs.get("version") != "2.0" or set(attrs) != {"version"}:
                raise _Refused("not RSS 2.0")
        elif depth == 1:
            if name != "channel" or attrs:
                raise _Refused("unexpected element under rss")
            self.channels += 1
        elif depth == 2:
            if name == "item":
                if attrs:
                    raise _Refused("item attributes")
                self.item = {}
                self.spans.append((self.parser.CurrentByteIndex, -1))
            elif name == _ATOM_NS + _SEP + "link":
                if attrs.get("rel") != "self":
                    raise _Refused("atom:link other than rel=self")
            elif name in _CHANNEL_FIELDS:
                if attrs or name in self.channel:
                    raise _Refused("channel field with attributes or repeated")
            elif name not in _CHANNEL_IGNORED:
                raise _Refused(f"channel element {name!r}")
        elif depth == 3 and self.stack[2] == "item":
            if name in _ITEM_FIELDS:
                if name == "guid":
                    if set(attrs) - {"isPermaLink"}:
                        raise _Refused("guid attributes")
                elif attrs:
                    raise _Refused("field attributes")
            elif name not in _ITEM_IGNORED:
                raise _Refused(f"item element {name!r}")
        else:
            raise _Refused("nested element")
        self.stack.append(name)
        self.text = []
        self.attrs = attrs

    def _data(self, data: str) -> None:
        self.text.append(data)

    def _end(self, name: str) -> None:
        self.stack.pop()
        depth = len(self.stack)
        text = "".join(self.text)
        self.text = []
        if depth == 2 and name == "item":
            assert self.item is not None
            self.items.append(self.item)
            self.item = None
            start, _ = self.spans[-1]
            self.spans[-1] = (start, self.body.index(b">", self.parser.CurrentByteIndex) + 1)
        elif depth == 2 and name in _CHANNEL_FIELDS:
            self.channel[name] = text
        elif depth == 3 and self.item is not None and name in _ITEM_FIELDS:
            previous = self.item.get(name)
            if previous is not None and not (name == "pubDate" and previous[0] == text):
                raise _Refused(f"repeated {name}")
            self.item[name] = (text, self.attrs)

    def _channel_title(self) -> str | None:
        if "title" not in self.channel:
            return None
        title = _pop_text(self.channel["title"])
        if _TITLE_REFUSED.search(title):
            raise _Refused("title with markup or entities")
        return plain_text(title) or None

    def _channel_link(self) -> str | None:
        if "link" not in self.channel:
            return None
        link = _resolve(self.base, _pop_text(self.channel["link"]))
        return text_or_none(re.sub("&([A-Za-z0-9_]+);", r"&\g<1>", link))

    def _entry(self, item: dict[str, tuple[str, dict[str, str]]]) -> Entry:
        link: str | None = None
        guid: str | None = None
        if "guid" in item:
            raw, attrs = item["guid"]
            permalink = attrs.get("isPermaLink", "true") == "true"
            guid = _pop_text(raw)
            if permalink and guid:
                guid = _resolve(self.base, guid)
                link = guid
        if "link" in item:
            link = _pop_text(item["link"][0])
            link = _resolve(self.base, link) if link else link
            link = link.replace("&amp;", "&")
            link = re.sub("&([A-Za-z0-9_]+);", r"&\g<1>", link)
        title = _pop_text(item["title"][0]) if "title" in item else None
        if title is not None and _TITLE_REFUSED.search(title):
            raise _Refused("title with markup or entities")
        author = _pop_text(item["author"][0]) if "author" in item else None
        if author is not None and len(author) > MAX_AUTHOR:
            raise _Refused("long author")
        return Entry(
            guid=text_or_none(guid),
            link=text_or_none(link),
            title=plain_text(title),
            summary_html=self._summary(item),
            published=self._published(item),
            author=text_or_none(author),
        )

    def _summary(self, item: dict[str, tuple[str, dict[str, str]]]) -> str:
        content_key = _CONTENT_NS + _SEP + "encoded"
        if "description" in item and content_key in item:
            raise _Refused("both description and content")
        raw = item.get("description") or item.get(content_key)
        if raw is None:
            return ""
        text = _pop_text(raw[0])
        if _SUMMARY_REFUSED.search(text) or any(
            tag.lower() not in _SUMMARY_TAGS for tag in _TAG.findall(text)
        ):
            raise _Refused("summary with comments, declarations or stray '<'")
        if "&" in text and not _entities_kept(text):
            raise _Refused("summary with an entity reference feedparser rewrites")
        return text

    def _published(self, item: dict[str, tuple[str, dict[str, str]]]) -> datetime | None:
        if "pubDate" not in item:
            return None
        return _rfc822_utc(_pop_text(item["pubDate"][0]))


def _rfc822_utc(value: str) -> datetime:
    """The UTC time of a strict RFC 822 date, read as feedparser's ``_parse_date_rfc822`` reads it; raise on
    anything else (a date outside ``_RFC822``, year 0, a day or time out of range, a time before year 1 in UTC:
    feedparser's other date readers may still make something of those, so they are left to it).

    Years are feedparser's, not email.utils': a year of one or two digits is 20xx below 90 and 19xx from 90
    ("1" is 2001, "89" 2089, "99" 1999); three or four digits are the year as written ("0001" is year 1, "0050"
    year 50). email.utils read every year below 100 as two digits, so "0050" became 2050: an item dated in the
    year 50 looked brand new. The offset is subtracted as feedparser does, whatever its size.
    """
    match = _RFC822.fullmatch(value)
    if match is None:
        raise _Refused("unusual date")
    day, month, year, hour, minute, second, sign, offset_hours, offset_minutes = match.groups()
    number = int(year)
    if len(year) <= 2:
        number += 2000 if number < 90 else 1900
    moment = datetime(
        number, _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc
    )
    if sign is None:
        return moment
    offset = timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
    return moment - offset if sign == "+" else moment + offset


def _entities_kept(html: str) -> bool:
    """Whether every entity reference in ``html`` means to html_to_text what it means after feedparser's sanitiser.

    feedparser's HTML processor (run twice: relative URIs, then sanitising) rewrites each reference
    ``&name`` + terminator as ``&name;`` when ``name`` is an HTML 4 name (or apos), else as ``&amp;name``, the
    ``;`` after an unknown name lost (``&param=2`` becomes ``&amp;param=2``, ``&foo;`` ``&amp;foo``, ``&para=2``
    ``&para;=2``). Character references keep their meaning, and a name at the very end is left as written.
    html.unescape, in html_to_text, decodes HTML 5 names with ``;`` and, without, the longest legacy name the
    text starts with (``&param`` is ``¶m``). Both read the same when:

    - the terminator is ``;``: ``name`` is an HTML 4 name (decoded both ways);
    - another terminator: ``name`` is an HTML 4 legacy name (decoded both ways), or neither an HTML 4 name nor
      started by a legacy name (``&foo=1``, ``R&D``: literal both ways).

    Anything else (``&param=2``, ``&hellip x``, ``&notin x``, ``&AMP x``, ``&foo;``, ``&check;``) is refused:
    feedparser's reading is reproducible, but such documents are rare and refusing needs no second copy of its
    rewriting rules. Attributes are scanned as well: they never reach html_to_text, so this only costs the odd
    refusal of a harmless document, never a misreading.
    """
    for name, terminator in _ENTITY_REF.findall(html):
        if terminator == ";":
            if name not in _HTML4_NAMES:
                return False
        elif name not in _LEGACY_HTML4 and (name in _HTML4_NAMES or _LEGACY_PREFIX.match(name)):
            return False
    return True
