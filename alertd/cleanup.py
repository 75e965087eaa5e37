"""What both parse paths apply to every document, written once: poisoned items cleaned, every field capped.

- :func:`clean_char_refs`, on the bytes before either parser reads them: a character reference XML does not
  allow (``&#xD800;``, ``&#x110000;``, ``&#99999999999;``, ``&#0;``) becomes U+FFFD, outside CDATA and comments;
  feedparser used to raise in ``chr()`` on such a reference and fail the whole feed. The fast path reports item
  spans in the bytes as received (:attr:`CleanDocument.original_offset`).
- :func:`capped`, on the result: every field within its cap (below), one notice per kind of field cut, so that a
  9 MB summary never crosses from the parse worker into the daemon.

A summary over its cap is replaced by its text, cut, as escaped HTML: the text is what both paths agree on, so a
capped summary is the same string on both (docs/polling.md, "Poisoned items").
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, replace

from alertd.models import Entry, ParsedFeed
from alertd.text import cut_text, html_text_head, text_to_html

MAX_TITLE = 1_000
"""Characters of a title, the feed's or an item's (the longest of 16,694 BFM titles: 246)."""
MAX_URL = 2_048
"""Characters of a link or a GUID (the longest BFM link: 306); a longer link is dropped, a longer GUID replaced by
its SHA-256 (a cut URL is a wrong URL; a digest keeps the GUID's identity)."""
MAX_AUTHOR = 256
"""Characters of an author. The fast path refuses longer ones: feedparser's e-mail regex is the ReDoS of
RELIABILITY F11, and such feeds keep going through the worker's time limit."""
MAX_SUMMARY = 65_536
"""Characters of a summary's HTML, and of its text once it is over (the longest real summary HTML in ../shared:
7,304 characters, 3,920 of text; BFM text: 1,351)."""

_CHAR_REF_OR_SECTION = re.compile(
    rb"&#(?:[xX]([0-9A-Fa-f]+)|([0-9]+));|&(?:amp;)?#[0-9]{9,}|<!\[CDATA\[|<!--"
)
"""An XML character reference; an HTML one, decimal and long (escaped, or without ';'); a CDATA section or a
comment beginning."""
_LONG_HTML_REF = re.compile(rb"&#[0-9]{9,}")
_CDATA = b"<![CDATA["
_SECTION_ENDS = {_CDATA: b"]]>", b"<!--": b"-->"}
_REPLACEMENT = b"&#xFFFD;"
_LONGEST_REF_DIGITS = 8
_ITEM_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s/>]")
_WIDE_ENCODINGS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\x00<", "utf-16-be"),
    (b"<\x00", "utf-16-le"),
)
"""How a UTF-16 or UTF-32 document begins (a BOM, else its ``<``), as XML and feedparser detect them."""


@dataclass(frozen=True, slots=True)
class CleanDocument:
    """A document whose character references are all ones XML allows (see :func:`clean_char_refs`)."""

    body: bytes
    notices: tuple[str, ...] = ()
    edit_ends: tuple[int, ...] = ()
    """The offset in ``body`` just past each reference rewritten, in order..."""
    shifts: tuple[int, ...] = ()
    """...and how many bytes shorter ``body`` is there than the document received (negative: longer)."""

    def original_offset(self, offset: int) -> int:
        """Where ``offset`` in ``body`` is in the document received (an item's bounds are never in a reference)."""
        index = bisect.bisect_right(self.edit_ends, offset) - 1
        return offset + self.shifts[index] if index >= 0 else offset


def clean_char_refs(body: bytes) -> CleanDocument:
    """``body`` with each character reference to a character XML does not allow replaced by ``&#xFFFD;``.

    Such a reference (a surrogate, a C0 control but tab and line breaks, U+FFFE/U+FFFF, beyond U+10FFFF,
    ``&#99999999999;``) makes expat refuse the document, and feedparser's fallback parser then raise in ``chr()``:
    one item failed the whole feed. Inside CDATA sections and comments ``&#xD800;`` is literal text and stays.

    A valid reference of more than 8 digits is respelled short, and so is a decimal one wherever it is (in CDATA,
    escaped as ``&amp;#``: HTML in a field), meaning the same: feedparser reads them with ``int()``, which refuses
    over 4,300 digits. UTF-16 and UTF-32 documents are cleaned through UTF-8; in the other encodings feedparser
    reads, ``&#`` and digits are ASCII.
    """
    codec = next((name for prefix, name in _WIDE_ENCODINGS if body.startswith(prefix)), None)
    if codec is None:
        return _clean_refs(body) if b"&#" in body or b"&amp;#" in body else CleanDocument(body)
    try:
        utf8 = body.decode(codec).encode("utf-8")
    except UnicodeError:
        return CleanDocument(body)
    clean = _clean_refs(utf8)
    if clean.body is utf8:
        return CleanDocument(body)
    return CleanDocument(clean.body.decode("utf-8").encode(codec), clean.notices)


class _Edits:
    """Replacements of byte ranges of a document, in order, and where they moved what follows them."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pieces: list[bytes] = []
        self.copied = self.shift = 0
        self.ends: list[int] = []
        self.shifts: list[int] = []

    def replace(self, start: int, end: int, replacement: bytes) -> None:
        self.pieces += [self.body[self.copied : start], replacement]
        self.copied = end
        self.shift += end - start - len(replacement)
        self.ends.append(end - self.shift)
        self.shifts.append(self.shift)

    def document(self, notices: tuple[str, ...]) -> CleanDocument:
        if not self.pieces:
            return CleanDocument(self.body)
        body = b"".join([*self.pieces, self.body[self.copied :]])
        return CleanDocument(body, notices, tuple(self.ends), tuple(self.shifts))


def _clean_refs(body: bytes) -> CleanDocument:
    edits = _Edits(body)
    invalid: list[int] = []
    unclosed: set[bytes] = set()
    position = 0
    while (match := _CHAR_REF_OR_SECTION.search(body, position)) is not None:
        position = match.end()
        token = match.group()
        if token in _SECTION_ENDS:
            end = -1 if token in unclosed else body.find(_SECTION_ENDS[token], position)
            if end < 0:
                unclosed.add(token)  # not a section: the document is broken, and no later one closes either
                continue
            if token == _CDATA:
                for ref in _LONG_HTML_REF.finditer(body, position, end):
                    edits.replace(ref.start(), ref.end(), b"&#" + _short_decimal(ref.group()[2:]))
            position = end + len(_SECTION_ENDS[token])
        elif match.lastindex is None:  # a long decimal reference in HTML
            number = token.index(b"#") + 1
            edits.replace(match.start(), match.end(), token[:number] + _short_decimal(token[number:]))
        elif (replacement := _safe_ref(match)) is not None:
            if replacement == _REPLACEMENT:
                invalid.append(match.start())
            edits.replace(match.start(), match.end(), replacement)
    return edits.document(_refs_notices(body, invalid))


def _short_decimal(digits: bytes) -> bytes:
    """The digits of a decimal reference, meaning the same to HTML in at most 7 (beyond U+10FFFF: U+FFFD)."""
    significant = digits.lstrip(b"0") or b"0"
    return significant if len(significant) <= 7 else b"1114112"


def _safe_ref(ref: re.Match[bytes]) -> bytes | None:
    """What to write instead of the reference ``ref``: ``&#xFFFD;``, a shorter spelling, or None to keep it."""
    hex_digits, decimal = ref.groups()
    digits = (hex_digits or decimal).lstrip(b"0") or b"0"
    code = int(digits, 16 if hex_digits else 10) if len(digits) <= 7 else -1
    if not (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    ):
        return _REPLACEMENT
    return b"&#x%X;" % code if len(hex_digits or decimal) > _LONGEST_REF_DIGITS else None


def _refs_notices(body: bytes, invalid: list[int]) -> tuple[str, ...]:
    """The notices for references replaced at ``invalid``, told apart by the item start tag preceding each."""
    if not invalid:
        return ()
    starts = [tag.start() for tag in _ITEM_TAG.finditer(body)]
    where = {bisect.bisect_right(starts, offset) for offset in invalid}
    notices = []
    if where - {0}:
        notices.append(
            f"{_count(len(where - {0}), 'item')} with invalid character references cleaned (replaced by U+FFFD)"
        )
    if 0 in where:
        notices.append("the feed's own fields had invalid character references, cleaned (replaced by U+FFFD)")
    return tuple(notices)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


_CUT_NOTICES = {
    "feed title": ("the feed's title", "", f"cut to {MAX_TITLE:,} characters"),
    "feed link": ("the feed's link", "", f"dropped (longer than {MAX_URL:,} characters)"),
    "title": ("1 item's title", "items' titles", f"cut to {MAX_TITLE:,} characters"),
    "summary": ("1 item's summary", "items' summaries", f"cut to {MAX_SUMMARY:,} characters of text"),
    "link": ("1 item's link", "items' links", f"dropped (longer than {MAX_URL:,} characters)"),
    "guid": (
        "1 item's GUID",
        "items' GUIDs",
        f"replaced by its SHA-256 (longer than {MAX_URL:,} characters)",
    ),
    "author": ("1 item's author", "items' authors", f"cut to {MAX_AUTHOR:,} characters"),
}
"""Kind of cut -> (what was cut, once; what was cut, n times; what was done), in the order notices are given."""


def _cut_notice(kind: str, count: int) -> str:
    one, many, done = _CUT_NOTICES[kind]
    return f"{one} {done}" if count == 1 else f"{count} {many} {done}"


def _in_field_order(cut: tuple[str, int]) -> int:
    return list(_CUT_NOTICES).index(cut[0])


def capped(feed: ParsedFeed) -> ParsedFeed:
    """``feed`` with every field within its cap (``MAX_*``), and one notice per kind of field that was cut.

    A summary over :data:`MAX_SUMMARY` becomes its text, cut to that many characters, as escaped HTML; when its
    text was not over, nothing anything reads changed and there is no notice (so it is the same on both paths:
    the raw HTML the fast path keeps is longer or shorter than feedparser's sanitised HTML, their text is equal).
    """
    cuts: Counter[str] = Counter()
    entries = tuple(_capped_entry(entry, cuts) for entry in feed.entries)
    title, link = feed.title, feed.link
    if title is not None and len(title) > MAX_TITLE:
        title = cut_text(title, MAX_TITLE)
        cuts["feed title"] += 1
    if link is not None and len(link) > MAX_URL:
        link = None
        cuts["feed link"] += 1
    if not cuts and all(new is old for new, old in zip(entries, feed.entries, strict=True)):
        return feed
    notices = tuple(_cut_notice(kind, count) for kind, count in sorted(cuts.items(), key=_in_field_order))
    return replace(feed, title=title, link=link, entries=entries, notices=feed.notices + notices)


def _capped_entry(entry: Entry, cuts: Counter[str]) -> Entry:
    """``entry`` with its fields within their caps, counting in ``cuts`` each field that was cut."""
    over = {
        "title": len(entry.title) > MAX_TITLE,
        "summary": len(entry.summary_html) > MAX_SUMMARY,
        "link": len(entry.link or "") > MAX_URL,
        "guid": len(entry.guid or "") > MAX_URL,
        "author": len(entry.author or "") > MAX_AUTHOR,
    }
    if not any(over.values()):
        return entry
    summary = entry.summary_html
    if over["summary"]:
        text = html_text_head(summary, MAX_SUMMARY + 1)
        over["summary"] = (
            len(text) > MAX_SUMMARY
        )  # else only markup went: nothing that reads it sees a change
        summary = text_to_html(cut_text(text, MAX_SUMMARY))
    cuts.update(kind for kind, is_over in over.items() if is_over)
    guid = entry.guid
    if guid is not None and over["guid"]:
        guid = "sha256:" + hashlib.sha256(guid.encode("utf-8", "surrogatepass")).hexdigest()
    return Entry(
        guid=guid,
        link=None if over["link"] else entry.link,
        title=cut_text(entry.title, MAX_TITLE),
        summary_html=summary,
        published=entry.published,
        author=None if entry.author is None else cut_text(entry.author, MAX_AUTHOR),
    )
