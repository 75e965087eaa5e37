"""Match one item against a compiled watchlist, with the evidence of each match (:mod:`alertd.explain` says
why each topic did or did not match, for people).

One pass per field finds every term of every topic (see :mod:`alertd.termindex`); only the topics that own a
term that fired (plus the rare topic that can match without any) are then evaluated. Pure: no I/O, no clock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

from alertd.conditions import (
    evidence,
)
from alertd.models import Item, Match, Span
from alertd.normalise import normalise
from alertd.termindex import Hit
from alertd.text import html_to_text
from alertd.watchlist import Topic, Watchlist

__all__ = ["find_hits", "html_to_text", "match_item", "match_items", "match_topic", "normalise"]

log = logging.getLogger("alertd.match")


def match_item(
    watchlist: Watchlist,
    title: str,
    summary: str,
    feed_name: str = "",
    feed_tags: frozenset[str] = frozenset(),
    link: str = "",
) -> tuple[Match, ...]:
    """Every topic of ``watchlist`` that the item matches, in watchlist order, with its evidence.

    ``summary`` is plain text. Span offsets index the ``title`` and ``summary`` strings given here.
    """
    hits = find_hits(watchlist, title, summary, link)
    candidates = {p for term_id in hits for p in watchlist.topics_by_term.get(term_id, ())}
    candidates.update(watchlist.always_evaluated)
    matches = []
    for position in sorted(candidates):
        topic = watchlist.topics[position]
        found = match_topic(watchlist, topic, hits, feed_name, feed_tags)
        if found is not None:
            matches.append(found)
    return tuple(matches)


def find_hits(watchlist: Watchlist, title: str, summary: str, link: str = "") -> dict[int, list[Hit]]:
    """Hits of every watchlist term in the item's fields, keyed by term id."""
    hits: dict[int, list[Hit]] = defaultdict(list)
    index = watchlist.index
    index.find("title", title, hits)
    index.find("summary", summary, hits)
    index.find("link", link, hits)
    return hits


def match_topic(
    watchlist: Watchlist,
    topic: Topic,
    hits: dict[int, list[Hit]],
    feed_name: str,
    feed_tags: frozenset[str],
) -> Match | None:
    if not topic.accepts_feed(feed_name, feed_tags):
        return None
    if not topic.matches(hits) or topic.vetoed(hits):
        return None
    fired = evidence(topic.condition, hits) or []
    fired = list(dict.fromkeys(fired))
    terms = [watchlist.index.terms[term_id] for term_id in fired]
    score = sum(term.weight for term in terms)
    if topic.min_score is not None and score < topic.min_score:
        return None
    spans = _spans((term.text, hits[term.id]) for term in terms)
    shown = tuple(dict.fromkeys(span.term for span in spans))
    return Match(topic.id, shown, spans, score)


def _spans(found_terms: Iterable[tuple[str, Sequence[Hit]]]) -> tuple[Span, ...]:
    """One span per place: when several terms fired on the same words, the first one names it."""
    seen: dict[tuple[str, int, int], Span] = {}
    for text, found in found_terms:
        for hit in found:
            seen.setdefault((hit.field, hit.start, hit.end), Span(hit.field, hit.start, hit.end, text))
    order = {"title": 0, "summary": 1, "link": 2}
    return tuple(sorted(seen.values(), key=lambda s: (order.get(s.field, 3), s.start, s.end)))


def match_items(watchlist: Watchlist, items: Sequence[Item]) -> list[tuple[str, Match]]:
    """Run the watchlist over new items; a poison item is logged and skipped, never fatal to the poll."""
    matches: list[tuple[str, Match]] = []
    for item in items:
        try:
            found = match_item(
                watchlist,
                item.title,
                item.summary_text,
                feed_name=item.feed_name,
                feed_tags=item.feed_tags,
                link=item.link or "",
            )
        except Exception:  # a bug on one odd item must not lose the rest of the poll
            log.exception("matching item %s (%s) failed; item skipped", item.key, item.link)
            continue
        matches.extend((item.key, match) for match in found)
    return matches
