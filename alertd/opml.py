"""OPML in and out: read feed lists exported by other readers, write alertd's feeds as OPML, and keep the
tool-managed feeds file (``feeds_file`` in the config) that ``alertd feeds import`` appends to.

Real-world OPML is often not well-formed XML (a raw ``&`` in a title or a URL is common), so reading is
tolerant, in three steps: the document as is; then with every bare ``&`` escaped; then, if XML still fails, a
scan of the ``<outline ...>`` tags alone. No step ever fetches anything: a DOCTYPE with entity declarations is
refused outright (no entity expansion, no external reference), and the XML parser is given a string.

Folders (outlines without ``xmlUrl`` that contain others) and the ``category`` attribute become tags.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from alertd.config import FeedConfig

_BARE_AMPERSAND = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);)")
# Quoted attribute values may hold a raw ">" (HTML in a description): they are skipped whole.
_OUTLINE_TAG = re.compile(
    r"""<outline\b((?:[^>"']|"[^"]*"|'[^']*')*?)\s*(/?)>|</outline\s*>""", re.IGNORECASE | re.DOTALL
)
_ATTRIBUTE = re.compile(r"""([A-Za-z_:][-A-Za-z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.DOTALL)
_HTTP_URL = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)
_OPML_TAG = re.compile(r"<opml\b", re.IGNORECASE)


class OpmlError(ValueError):
    """The document is not OPML we can read (or is refused)."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One feed outline: its URL, a name, and the folders / categories it was filed under."""

    url: str
    name: str
    tags: tuple[str, ...] = ()


def read_opml(data: bytes | str) -> list[OpmlFeed]:
    """The feeds of an OPML document, in document order; tolerant of bare ``&`` and broken XML."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.lstrip("\ufeff")
    if re.search(r"<!ENTITY", text, re.IGNORECASE):
        raise OpmlError("OPML with entity declarations is refused (no entity is ever expanded)")
    for candidate in (text, _BARE_AMPERSAND.sub("&amp;", text)):
        try:
            root = ET.fromstring(_without_declaration(candidate))  # noqa: S314 - no DTD, no entities (above)
        except ET.ParseError:
            continue
        if not isinstance(root.tag, str) or root.tag.rsplit("}", 1)[-1].lower() != "opml":
            raise OpmlError(f"not an OPML document: its root element is <{root.tag}>{_hint(root.tag)}")
        return list(_feeds_of_tree(root))
    if not _OPML_TAG.search(text):
        raise OpmlError("not an OPML document: no <opml> element (and not well-formed XML)")
    return list(_feeds_by_scanning(text))


def _hint(tag: object) -> str:
    """For a feed given where a feed list was expected: how to add it instead."""
    name = str(tag).rsplit("}", 1)[-1].lower()
    if name in ("rss", "feed", "rdf"):
        return " — a feed itself, not a list of feeds: add it as a [[feed]] with its URL"
    return ""


def _without_declaration(text: str) -> str:
    """ElementTree refuses a str that declares an encoding; the text is already decoded."""
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)


def _feeds_of_tree(root: ET.Element) -> Iterator[OpmlFeed]:
    body = root.find("body")
    outlines = body if body is not None else root

    def walk(element: ET.Element, folders: tuple[str, ...]) -> Iterator[OpmlFeed]:
        for outline in element:
            if not isinstance(outline.tag, str) or outline.tag.lower() != "outline":
                continue
            attributes = {k.lower(): v for k, v in outline.attrib.items()}
            feed = _feed_of(attributes, folders)
            if feed is not None:
                yield feed
            folder = (attributes.get("text") or attributes.get("title") or "").strip()
            yield from walk(outline, (*folders, folder) if folder and feed is None else folders)

    yield from walk(outlines, ())


def _feeds_by_scanning(text: str) -> Iterator[OpmlFeed]:
    """Last resort for broken XML: read the outline tags alone, tracking folder nesting."""
    folders: list[str | None] = []
    for found in _OUTLINE_TAG.finditer(text):
        if found.group(0).startswith("</"):
            if folders:
                folders.pop()
            continue
        attributes = {
            name.lower(): html.unescape(double if double is not None else single)
            for name, double, single in _ATTRIBUTE.findall(found.group(1))
        }
        current = tuple(f for f in folders if f)
        feed = _feed_of(attributes, current)
        if feed is not None:
            yield feed
        if not found.group(2):  # an opening tag: its children follow
            folder = (attributes.get("text") or attributes.get("title") or "").strip()
            folders.append(folder if feed is None and folder else None)


def _feed_of(attributes: dict[str, str], folders: tuple[str, ...]) -> OpmlFeed | None:
    url = (attributes.get("xmlurl") or "").strip()
    if not url:
        return None
    name = (attributes.get("title") or attributes.get("text") or "").strip() or url
    categories = [c.strip().strip("/") for c in attributes.get("category", "").split(",")]
    tags = _unique(t for t in (*folders, *(c for c in categories if c)) if t)
    return OpmlFeed(url=url, name=_one_line(name), tags=tags)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_one_line(v) for v in values))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def is_feed_url(url: str) -> bool:
    """Only absolute http(s) URLs become feeds (the config refuses anything else)."""
    return bool(_HTTP_URL.match(url)) and not any(c.isspace() for c in url)


# --- writing ------------------------------------------------------------------------------------------------


def write_opml(feeds: Sequence[FeedConfig], title: str = "alertd feeds") -> str:
    """An OPML 2.0 document of ``feeds``; tags go to the ``category`` attribute (read back as tags)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for feed in feeds:
        attributes = {"type": "rss", "text": feed.name, "title": feed.name, "xmlUrl": feed.url}
        if feed.tags:
            attributes["category"] = ",".join(feed.tags)
        ET.SubElement(body, "outline", attributes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


FEEDS_FILE_HEADER = """\
# Feeds managed by `alertd feeds import` and `alertd feeds add / remove / pause / resume` (you may edit or
# delete entries too). Read as part of the config named by its `feeds_file` option; each [[feed]] takes the
# same keys as there: url (required), name, interval, tags, paused.
"""


def toml_feed(feed: OpmlFeed) -> str:
    """One ``[[feed]]`` table in TOML."""
    lines = ["[[feed]]", f"name = {_toml_string(feed.name)}", f"url = {_toml_string(feed.url)}"]
    if feed.tags:
        lines.append(f"tags = [{', '.join(_toml_string(t) for t in feed.tags)}]")
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also wants DEL escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def replace_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
