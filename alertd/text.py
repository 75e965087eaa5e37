"""Feed summary HTML → clean plain text for matching and for the text part of digests; cutting text to a cap."""

from __future__ import annotations

import re
from html import escape, unescape
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "td",
        "th",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "figure",
        "figcaption",
        "hr",
        "pre",
    }
)
_INVISIBLE = frozenset({"script", "style", "template", "noscript", "head", "title", "iframe", "svg"})
_RAW_TEXT = _INVISIBLE | {"textarea", "xmp", "plaintext", "noembed", "noframes", "math"}
"""Elements whose content an HTML parser may read as raw text (the simple path leaves them to HTMLParser)."""
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_ODD_SPACE = re.compile(r"[\t\r\f\v\u00a0]")
_SPACING_ZWSP = re.compile(r"\A\u200b+|\u200b+\Z|(?<=\s)\u200b+|\u200b+(?=\s)")
"""Zero-width spaces that are whitespace: next to whitespace or at either end (see :func:`_collapse`)."""
_BREAKS = re.compile(r" *\n[ \n]*")
_COLLAPSIBLE = re.compile(r"[\s\u200b]+")
"""What :func:`_collapse` may shrink or strip: every other character of the parts survives into the text."""
_LONG_DECIMAL_REF = re.compile(r"&#([0-9]{8,})")
"""A decimal reference html.unescape would read with ``int()``, which refuses over 4,300 digits."""
ELLIPSIS = "…"
_SIMPLE_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9]*)"
    r"(?:\s+[A-Za-z_][-A-Za-z0-9_:.]*(?:\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s\"'=<>`]+))?)*"
    r"\s*(/?)>"
)


def html_to_text(html: str) -> str:
    """Plain text of ``html``: tags and images dropped, script/style content removed, entities decoded,
    whitespace collapsed, each paragraph or line break kept as one newline.

    Feed summaries are mostly text with a few plain tags: those are split with one regular expression, which
    gives what HTMLParser gives (tests/test_normalise.py checks both on generated HTML) several times faster.
    Anything else — comments, declarations, a stray ``<``, script or other raw-text elements, unusual
    attribute syntax — goes through HTMLParser. It never raises, whatever a feed wrote (see :func:`_short_refs`
    and ``_TextParser.parse_marked_section``): the daemon extracts the text of every new item.
    """
    if not html:
        return ""
    parts = _simple_parts(_short_refs(html))
    return _collapse(parts) if parts is not None else html_to_text_by_parser(html)


def html_to_text_by_parser(html: str) -> str:
    """:func:`html_to_text` through HTMLParser only: its path for anything but plain markup, and the reference
    its simple path is tested against."""
    return _collapse(_parser_parts(_short_refs(html))) if html else ""


def html_text_head(html: str, limit: int, *, chunk: int = 1 << 16) -> str:
    """``html_to_text(html)[:limit]``, reading only as much of ``html`` as that needs.

    A 9 MB summary capped to 64 Ki characters costs its first ~64 KiB, not its whole text. Long HTML is read by
    HTMLParser, ``chunk`` characters at a time, until more than ``limit`` characters that whitespace collapsing
    cannot remove were seen; the text of a prefix of the HTML is a prefix of its text.
    """
    if len(html) <= chunk:
        return html_to_text(html)[:limit]
    html = _short_refs(html)
    parser = _TextParser()
    kept = 0
    for start in range(0, len(html), chunk):
        seen = len(parser.parts)
        parser.feed(html[start : start + chunk])
        kept += sum(len(_COLLAPSIBLE.sub("", part)) for part in parser.parts[seen:])
        if kept > limit:
            break
    else:
        parser.close()
    return _collapse(parser.parts)[:limit]


def cut_text(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its beginning, ended at the last space or line break
    (unless that loses more than half) and marked with an ellipsis: at most ``limit`` characters in all."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    boundary = max(head.rfind(" "), head.rfind("\n"))
    head = head[:boundary] if boundary > limit // 2 else head[: limit - 1]
    return head.rstrip() + ELLIPSIS


def text_to_html(text: str) -> str:
    """HTML whose :func:`html_to_text` is ``text``, itself a text html_to_text gave: escaped, lines joined by
    ``<br>``. Well-formed whatever ``text`` holds: no half tag, no half entity."""
    return "<br>".join(escape(line, quote=False) for line in text.split("\n"))


def _short_refs(html: str) -> str:
    """``html`` with decimal character references of more than 7 digits written short, meaning the same: the
    character, or U+FFFD beyond U+10FFFF (``&#`` and 5,000 digits made html.unescape raise, failing a feed)."""
    if "&#" not in html:
        return html
    return _LONG_DECIMAL_REF.sub(_short_ref, html)


def _short_ref(ref: re.Match[str]) -> str:
    digits = ref.group(1).lstrip("0") or "0"
    return "&#" + (digits if len(digits) <= 7 else "1114112")


def _collapse(parts: list[str]) -> str:
    """The text of ``parts``: spaces collapsed, line breaks kept one at a time, the ends stripped.

    A zero-width space (U+200B) next to whitespace or at either end is whitespace like the rest; one between
    two other characters is kept: it is inside a word (``Ali\\u200bbaba``), which matching reads whole
    (see :mod:`alertd.normalise`) and digests show without it.
    """
    text = "".join(parts)
    if "\u200b" in text:
        text = _SPACING_ZWSP.sub(" ", text)
    # Each substitution only when it would change something: the checks cost a tenth of the regex.
    if "  " in text or _ODD_SPACE.search(text):
        text = _SPACES.sub(" ", text)
    if " \n" in text or "\n " in text or "\n\n" in text:
        text = _BREAKS.sub("\n", text)
    return text.strip()


def _parser_parts(html: str) -> list[str]:
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return parser.parts


def _simple_parts(html: str) -> list[str] | None:
    """The text pieces _TextParser would collect, when ``html`` holds only plain tags; else None."""
    if "<" not in html:
        return [_data(html)]
    parts: list[str] = []
    position = 0
    for tag in _SIMPLE_TAG.finditer(html):
        data = html[position : tag.start()]
        if "<" in data:
            return None
        if data:
            parts.append(_data(data))
        closing, name, self_closing = tag.groups()
        name = name.lower()
        if (closing and self_closing) or name in _RAW_TEXT:
            return None
        if name in _BLOCKS:
            parts.append("\n")
        position = tag.end()
    rest = html[position:]
    if "<" in rest:
        return None
    parts.append(_data(rest))
    return parts


def _data(text: str) -> str:
    return (unescape(text) if "&" in text else text).replace("\n", " ")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(self._hidden - 1, 0)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data.replace("\n", " "))

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        """``<![foo[``, ``<![ x``: a marked section _markupbase does not know is a bogus comment up to the next
        ``>``, as an HTML parser reads it (_markupbase raises AssertionError: one such title failed a whole feed)."""
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            return self.parse_bogus_comment(i, report=False)
