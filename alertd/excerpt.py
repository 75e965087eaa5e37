"""What part of a story's summary a digest shows, and where each term on its "why" line can be seen (pure).

A summary longer than the limit is shown as a search engine shows a result: the window of the text that holds
the most matched spans, cut at word boundaries, with "…" at each cut, no longer than the limit in all. A term
on the why line that cannot be seen highlighted in the title or in that window says where it matched: in the
link, or further in the text.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from alertd.models import Span

__all__ = ["ELLIPSIS", "Excerpt", "TermPlace", "excerpt", "term_places"]

ELLIPSIS = "…"
CONTEXT = 60
"""Characters of text kept before the first span of the chosen window, when there is room (capped at a fifth
of the limit)."""

TermWhere = Literal["shown", "link", "further"]
"""shown: highlighted in the title or the excerpt; link: matched in the link only; further: in the summary, past
what the excerpt shows."""


@dataclass(frozen=True, slots=True)
class Excerpt:
    """The part of a text shown, and the spans that fall inside it, re-based to its start."""

    text: str
    spans: tuple[Span, ...]
    start: int
    """Where ``text`` starts in the whole text: greater than 0 means "…" before it."""
    cut_end: bool
    """True when the whole text goes on after it ("…" after it)."""


@dataclass(frozen=True, slots=True)
class TermPlace:
    """A term of the why line, and where the reader can see it."""

    term: str
    where: TermWhere


def excerpt(text: str, spans: Sequence[Span], limit: int | None, field: str = "summary") -> Excerpt:
    """The window of ``text`` (at most ``limit`` characters, the ellipses included) with the most spans of
    ``field``; the whole text when it fits. Without spans, its beginning."""
    own = sorted(
        (
            Span(s.field, max(s.start, 0), min(s.end, len(text)), s.term)
            for s in spans
            if s.field == field and max(s.start, 0) < min(s.end, len(text))
        ),
        key=_order,
    )
    if limit is None or len(text) <= limit:
        return Excerpt(text, tuple(own), 0, False)
    start, end = _window(text, own, max(limit - 2, 1))
    if start == 0:  # one ellipsis only: the room of the other one is text
        start, end = 0, _word_end(text, 0, min(len(text), limit - 1))
    elif end >= len(text):  # the window reaches the end: one ellipsis only, the room goes before it
        earlier = max(0, len(text) - (limit - 1))
        start, end = _word_start(text, earlier, start - earlier), len(text)
    inside = tuple(
        Span(s.field, s.start - start, s.end - start, s.term)
        for s in own
        if s.start >= start and s.end <= end
    )
    return Excerpt(text[start:end], inside, start, end < len(text))


def term_places(
    terms: Sequence[str], spans: Sequence[Span], summary_text: str, limit: int | None
) -> tuple[TermPlace, ...]:
    """Where each of ``terms`` can be seen: highlighted in the title or the excerpt :func:`excerpt` shows of
    ``summary_text``, else in the link only, else further in the summary than the excerpt shows."""
    shown = excerpt(summary_text, spans, limit)
    visible = {s.term.casefold() for s in spans if s.field == "title"}
    visible |= {s.term.casefold() for s in shown.spans}
    in_link = {s.term.casefold() for s in spans if s.field == "link"}
    places = []
    for term in terms:
        folded = term.casefold()
        if folded in visible or (folded not in in_link and not _in_summary(folded, spans)):
            places.append(TermPlace(term, "shown"))
        elif folded in in_link and not _in_summary(folded, spans):
            places.append(TermPlace(term, "link"))
        else:
            places.append(TermPlace(term, "further"))
    return tuple(places)


def _in_summary(term: str, spans: Sequence[Span]) -> bool:
    return any(s.field == "summary" and s.term.casefold() == term for s in spans)


def _order(span: Span) -> tuple[int, int]:
    return (span.start, span.end)


def _window(text: str, spans: Sequence[Span], room: int) -> tuple[int, int]:
    """Start and end (word boundaries) of a window of at most ``room`` characters holding the most spans.

    ``spans`` are sorted by start. Each candidate window is counted by bisection, so a 64 Ki summary that
    repeats its term thousands of times costs milliseconds, not seconds.
    """
    if not spans:
        return 0, _word_end(text, 0, room)
    context = min(CONTEXT, room // 5)
    starts = [s.start for s in spans]
    best_start, best_count = 0, -1
    # The beginning first: on a tie, the lede (no leading "…") beats a window as good further on.
    for start in (0, *(max(0, anchor.start - context) for anchor in spans)):
        first = bisect.bisect_left(starts, start)
        last = bisect.bisect_right(starts, start + room - 1)
        # Spans that start inside but run past the window's end do not count (at most a few, at its end).
        count = last - first - sum(1 for s in spans[first:last][-8:] if s.end > start + room)
        if count > best_count:
            best_start, best_count = start, count
    first_inside = bisect.bisect_left(starts, best_start)
    first = starts[first_inside] if first_inside < len(starts) else best_start
    start = _word_start(text, best_start, first - best_start)
    end = _word_end(text, start, min(len(text), start + room))
    return start, end


def _word_start(text: str, start: int, max_forward: int) -> int:
    """``start`` moved forward to the beginning of a word, by at most ``max_forward`` characters (the first
    span must stay in); inside a word still if there is no space that near."""
    if start == 0 or text[start - 1].isspace():
        return start
    space = _next_space(text, start, start + max_forward)
    return space + 1 if space >= 0 else start


def _word_end(text: str, start: int, end: int) -> int:
    """``end`` moved back to the end of a word (unless that loses more than half the window)."""
    if end >= len(text) or text[end].isspace():
        return end
    space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
    return space if space > start + (end - start) // 2 else end


def _next_space(text: str, start: int, stop: int) -> int:
    for position in range(start, min(stop, len(text))):
        if text[position].isspace():
            return position
    return -1
