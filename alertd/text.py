"""Feed summary HTML → clean plain text for matching and for the text part of digests."""

from __future__ import annotations

import re
from html import unescape
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
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")
_ODD_SPACE = re.compile(r"[\t\r\f\v\u00a0\u200b]")
_BREAKS = re.compile(r" *\n[ \n]*")
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
    attribute syntax — goes through HTMLParser.
    """
    if not html:
        return ""
    parts = _simple_parts(html)
    return _collapse(parts if parts is not None else _parser_parts(html))


def html_to_text_by_parser(html: str) -> str:
    """:func:`html_to_text` through HTMLParser only: the reference its simple path is tested against."""
    return _collapse(_parser_parts(html)) if html else ""


def _collapse(parts: list[str]) -> str:
    text = "".join(parts)
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
