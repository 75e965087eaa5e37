"""Why each topic of a watchlist did or did not match one item: what ``alertd match --explain`` prints.

Every topic is evaluated against the item: its verdict is :func:`alertd.match.match_item`'s own (the same
``match_topic``); the rest walks the topic's condition tree with the read-only helpers of
:mod:`alertd.conditions` to say which terms fired in which field, which veto (a ``none`` term, a NOT in a query)
suppressed a match, which ``all`` group was missing, the score against ``min_score``, the feed rule. Slower than
``match_item`` and meant for people, not for the daemon. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alertd.conditions import (
    AllOf,
    AnyTerm,
    Hits,
    Leaf,
    Near,
    Node,
    Not,
    all_terms,
    evaluate,
    evidence,
    holds_without_not,
    positive_terms,
    touched,
)
from alertd.match import find_hits, match_topic
from alertd.models import Match
from alertd.termindex import TEXT_FIELDS, Hit, Term
from alertd.watchlist import Topic, Watchlist

__all__ = [
    "Fired",
    "ItemExplanation",
    "PartExplanation",
    "Reason",
    "TopicExplanation",
    "explain_item",
    "format_explanation",
    "topic_parts",
]

Outcome = Literal["matched", "feed", "condition", "not", "veto", "min_score"]
"""Why a topic did (not) match, in match order: ``feed`` rule, ``condition`` false, false only because of a
``not`` in a query, ``veto`` by a ``none`` term, score below ``min_score``."""

_FIELD_ORDER = {"title": 0, "summary": 1, "link": 2}
_LISTED_TERMS = 8  # "no term of: a, b, ... and 12 more"
_LISTED_TOPICS = 8  # "no term fired: t1, t2", beyond that "no term fired in 40 topics"
_DESCRIBED = 64  # characters of a rendered sub-condition


@dataclass(frozen=True, slots=True)
class Fired:
    """One place a term fired: field, character range in the item's text, that text, the term as written."""

    field: str
    start: int
    end: int
    text: str
    term: str


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a sub-condition is false: a sentence, the hits of the negated terms that made it false (for a NOT),
    and the reasons of its own sub-conditions."""

    text: str
    fired: tuple[Fired, ...] = ()
    because: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class PartExplanation:
    """One part of a topic as written: ``any``, an ``all`` group (``all[2]``) or the ``query``."""

    label: str
    holds: bool
    fired: tuple[Fired, ...]  # holds: the evidence; false: every term of the part that fired (not negated)
    reasons: tuple[Reason, ...] = ()  # false: why
    vetoed_by_not: bool = False  # false only because a NOT's terms fired: without its NOTs it would hold


@dataclass(frozen=True, slots=True)
class TopicExplanation:
    """One topic against one item: the verdict (``match`` is what :func:`match_item` returns) and its grounds."""

    topic_id: str
    name: str
    outcome: Outcome
    match: Match | None
    parts: tuple[PartExplanation, ...]
    vetoes: tuple[Fired, ...]  # the ``none`` terms that fired
    scored: tuple[tuple[str, float], ...]  # the terms that make the condition true and their weights
    score: float | None  # their sum, None when the condition is false
    min_score: float | None
    feed_rule: str  # what ``feeds``/``exclude_feeds`` decided; "" when the topic has neither
    fired: bool  # whether any term of the topic (vetoes included) fired

    @property
    def matched(self) -> bool:
        return self.match is not None


@dataclass(frozen=True, slots=True)
class ItemExplanation:
    """Every topic of the watchlist, in watchlist order, against one item."""

    title: str
    summary: str
    link: str
    feed_name: str
    feed_tags: frozenset[str]
    topics: tuple[TopicExplanation, ...]


def explain_item(
    watchlist: Watchlist,
    title: str,
    summary: str,
    link: str = "",
    feed_name: str = "",
    feed_tags: frozenset[str] = frozenset(),
) -> ItemExplanation:
    """Why each topic of ``watchlist`` does or does not match the item; the topics that match are exactly those
    of :func:`match_item` with the same arguments. Pure, like it."""
    hits = dict(find_hits(watchlist, title, summary, link))
    texts = {"title": title, "summary": summary, "link": link}
    topics = tuple(
        _explain_topic(watchlist, topic, hits, texts, feed_name, feed_tags) for topic in watchlist.topics
    )
    return ItemExplanation(title, summary, link, feed_name, feed_tags, topics)


def _explain_topic(
    watchlist: Watchlist,
    topic: Topic,
    hits: dict[int, list[Hit]],
    texts: Mapping[str, str],
    feed_name: str,
    feed_tags: frozenset[str],
) -> TopicExplanation:
    terms = watchlist.index.terms
    found = match_topic(watchlist, topic, hits, feed_name, feed_tags)
    parts = tuple(_explain_part(label, node, hits, terms, texts) for label, node in topic_parts(topic))
    veto_ids = sorted(t for t in dict.fromkeys(all_terms(topic.veto)) if t in hits) if topic.veto else []
    holds = topic.matches(hits)
    scored: tuple[tuple[str, float], ...] = ()
    score = None
    if holds:
        ids = dict.fromkeys(evidence(topic.condition, hits) or [])
        scored = tuple((terms[t].text, terms[t].weight) for t in ids)
        score = sum(weight for _, weight in scored)
    accepted = topic.accepts_feed(feed_name, feed_tags)
    outcome: Outcome
    if found is not None:
        outcome = "matched"
    elif not accepted:
        outcome = "feed"
    elif not holds:
        blocked = all(p.holds or p.vetoed_by_not for p in parts)
        outcome = "not" if blocked else "condition"
    elif topic.vetoed(hits):
        outcome = "veto"
    else:
        outcome = "min_score"
    return TopicExplanation(
        topic_id=topic.id,
        name=topic.name,
        outcome=outcome,
        match=found,
        parts=parts,
        vetoes=_fired(veto_ids, hits, terms, texts),
        scored=scored,
        score=score,
        min_score=topic.min_score,
        feed_rule=_feed_rule(topic, feed_name, feed_tags),
        fired=touched(topic.condition, hits) or bool(veto_ids),
    )


def _feed_rule(topic: Topic, feed_name: str, feed_tags: frozenset[str]) -> str:
    if not topic.feeds and not topic.exclude_feeds:
        return ""
    included, excluded = topic.feed_scope(feed_name, feed_tags)
    feed = f"feed {feed_name!r}" if feed_name else "no feed given"
    if excluded:
        return f"{feed} is excluded by exclude_feeds: {', '.join(sorted(excluded))}"
    if included:
        return f"{feed} is in feeds: {', '.join(sorted(included))}"
    if topic.feeds:
        where = f"{feed} is not in" if feed_name else f"{feed}; the topic only takes"
        return f"{where} feeds: {', '.join(sorted(topic.feeds))}"
    return f"{feed}, not in exclude_feeds: {', '.join(sorted(topic.exclude_feeds))}"


def _explain_part(
    label: str, node: Node, hits: Hits, terms: Sequence[Term], texts: Mapping[str, str]
) -> PartExplanation:
    if evaluate(node, hits):
        ids = list(dict.fromkeys(evidence(node, hits) or []))
        return PartExplanation(label, True, _fired(ids, hits, terms, texts))
    ids = [t for t in dict.fromkeys(positive_terms(node)) if t in hits]
    return PartExplanation(
        label,
        False,
        _fired(ids, hits, terms, texts),
        _why_false(node, hits, terms, texts),
        holds_without_not(node, hits),
    )


def _fired(
    term_ids: Iterable[int], hits: Hits, terms: Sequence[Term], texts: Mapping[str, str]
) -> tuple[Fired, ...]:
    found = dict.fromkeys(  # a term can find the same words twice (as a phrase and as its joined word)
        Fired(hit.field, hit.start, hit.end, texts[hit.field][hit.start : hit.end], terms[term_id].text)
        for term_id in term_ids
        for hit in hits[term_id]
    )
    return tuple(sorted(found, key=lambda f: (_FIELD_ORDER.get(f.field, 3), f.start, f.end)))


def _why_false(node: Node, hits: Hits, terms: Sequence[Term], texts: Mapping[str, str]) -> tuple[Reason, ...]:
    """The reasons a false ``node`` is false; an OR is followed into its alternatives that have a term that
    fired (the others just lacked all their terms)."""
    if isinstance(node, Leaf | AnyTerm):
        return (Reason(f"no term of: {_term_list(all_terms(node), terms)}"),)
    if isinstance(node, Near):
        left = [t for t in sorted(node.left) if t in hits]
        right = [t for t in sorted(node.right) if t in hits]
        near = _describe(node, terms)
        if left and right:
            both = f"{_term_list(left, terms)} and {_term_list(right, terms)}"
            return (Reason(f"{near}: {both} fired, but not within {node.distance} words in one field"),)
        if not left and not right:
            return (Reason(f"{near}: no term of: {_term_list(sorted(node.left | node.right), terms)}"),)
        present, missing = (left, node.right) if left else (right, node.left)
        return (
            Reason(
                f"{near}: {_term_list(present, terms)} fired, but no term of: "
                f"{_term_list(sorted(missing), terms)}"
            ),
        )
    if isinstance(node, Not):
        ids = list(dict.fromkeys(evidence(node.child, hits) or []))
        names = ", ".join(dict.fromkeys(_term_name(terms[t]) for t in ids))
        return (Reason(f"{_describe(node, terms)}: vetoed, {names} fired", _fired(ids, hits, terms, texts)),)
    if isinstance(node, AllOf):
        return tuple(
            reason
            for child in node.children
            if not evaluate(child, hits)
            for reason in _why_false(child, hits, terms, texts)
        )
    tried = [child for child in node.children if touched(child, hits)]
    if not tried:
        return (Reason(f"no term of: {_term_list(positive_terms(node), terms)}"),)
    blocked = [child for child in tried if holds_without_not(child, hits)]
    which = "that would hold without its NOT" if blocked else "with a term that fired"
    tried = blocked or tried
    alternatives = tuple(_alternative(child, hits, terms, texts) for child in tried)
    count = f"the one {which}" if len(tried) == 1 else f"the {len(tried)} {which}"
    return (Reason(f"none of {len(node.children)} alternatives holds; {count}:", because=alternatives),)


def _alternative(node: Node, hits: Hits, terms: Sequence[Term], texts: Mapping[str, str]) -> Reason:
    reasons = _why_false(node, hits, terms, texts)
    if isinstance(node, Near | Not) and len(reasons) == 1:
        return reasons[0]  # already says what it is about
    return Reason(_describe(node, terms), because=reasons)


def _term_name(term: Term) -> str:
    name = f'"{term.text}"' if " " in term.text else term.text
    if term.regex is not None:
        name = f"/{term.text}/"
    if term.fields != TEXT_FIELDS:
        name = f"{'+'.join(sorted(term.fields, key=lambda f: _FIELD_ORDER.get(f, 3)))}:{name}"
    return name


def _term_list(term_ids: Iterable[int], terms: Sequence[Term]) -> str:
    names = list(dict.fromkeys(_term_name(terms[t]) for t in term_ids))
    shown = ", ".join(names[:_LISTED_TERMS])
    more = len(names) - _LISTED_TERMS
    return f"{shown} and {more} more" if more > 0 else shown


def _describe(node: Node, terms: Sequence[Term]) -> str:
    """``node`` written back as a query, term sets cut to their first terms and the whole to one line."""
    text = _render(node, terms, top=True)
    return text if len(text) <= _DESCRIBED else text[: _DESCRIBED - 1] + "…"


def _render(node: Node, terms: Sequence[Term], top: bool = False) -> str:
    if isinstance(node, Leaf):
        return _term_name(terms[node.term_id])
    if isinstance(node, AnyTerm):
        return _render_terms(node.term_ids, terms, top)
    if isinstance(node, Near):
        left, right = _render_terms(node.left, terms), _render_terms(node.right, terms)
        text = f"{left} NEAR/{node.distance} {right}"
        return text if top else f"({text})"
    if isinstance(node, Not):
        return f"NOT {_render(node.child, terms)}"
    joiner = " AND " if isinstance(node, AllOf) else " OR "
    text = joiner.join(_render(child, terms) for child in node.children)
    return text if top else f"({text})"


def _render_terms(term_ids: frozenset[int], terms: Sequence[Term], top: bool = False) -> str:
    names = list(dict.fromkeys(_term_name(terms[t]) for t in sorted(term_ids)))
    if len(names) == 1:
        return names[0]
    text = " OR ".join(names[:3]) + (f" OR …+{len(names) - 3}" if len(names) > 3 else "")
    return text if top else f"({text})"


def format_explanation(explanation: ItemExplanation) -> str:
    """``explanation`` for people: a verdict line per topic, then its parts, each with the terms that fired in
    which field (``title 0-4 'Temu' <- 'Temu'``) and why it is false, the vetoes, the score, and the fields
    with the words that fired in [brackets]. Topics where no term fired share one line at the end."""
    texts = {"title": explanation.title, "summary": explanation.summary, "link": explanation.link}
    matched = [t.topic_id for t in explanation.topics if t.matched]
    lines = [f"matched: {', '.join(matched) if matched else 'no topic'}"]
    if explanation.feed_name or explanation.feed_tags:
        tags = ", ".join(sorted(explanation.feed_tags))
        lines.append(f"feed: {explanation.feed_name!r}" + (f" (tags: {tags})" if tags else " (no tags)"))
    quiet: list[str] = []
    for topic in explanation.topics:
        if not topic.fired and topic.score is None:  # nothing fired and the condition is false
            quiet.append(topic.topic_id)
        else:
            lines += _topic_lines(topic, texts)
    if quiet:
        listed = len(quiet) <= _LISTED_TOPICS
        lines.append(
            f"no term fired: {', '.join(quiet)}" if listed else f"no term fired in {len(quiet)} topics"
        )
    return "\n".join(lines)


def _topic_lines(topic: TopicExplanation, texts: Mapping[str, str]) -> list[str]:
    lines = [f"{topic.topic_id} ({topic.name}): {_verdict(topic)}"]
    if topic.match is not None:
        lines.append(f"  terms: {', '.join(topic.match.terms)}")
    if topic.feed_rule and topic.outcome != "feed":
        lines.append(f"  feed: {topic.feed_rule}")
    shown: list[Fired] = []
    for part in topic.parts:
        only_not = ", only because of a NOT" if part.vetoed_by_not else ""
        head = f"  {part.label}: {'holds' if part.holds else 'false' + only_not}"
        reasons = part.reasons
        if not part.fired and len(reasons) == 1 and not reasons[0].because and not reasons[0].fired:
            head, reasons = f"{head}, {reasons[0].text}", ()
        lines.append(head)
        lines += [f"    {_hit_line(f)}" for f in part.fired]
        for reason in reasons:
            lines += _reason_lines(reason, 2, shown)
        shown += part.fired
    if topic.vetoes:
        names = ", ".join(dict.fromkeys(repr(f.term) for f in topic.vetoes))
        lines.append(f"  none (veto): {names} fired")
        lines += [f"    {_hit_line(f)}" for f in topic.vetoes]
        shown += topic.vetoes
    if topic.score is not None and (topic.min_score is not None or topic.outcome == "min_score"):
        weights = ", ".join(f"{term} {weight:g}" for term, weight in topic.scored)
        lines.append(f"  {_score(topic)} ({weights})")
    for field_name, text in texts.items():
        ranges = [(f.start, f.end) for f in shown if f.field == field_name]
        if ranges:
            lines.append(f"  {field_name}: {_highlight(text, ranges)}")
    return lines


def _verdict(topic: TopicExplanation) -> str:
    if topic.outcome == "matched":
        return f"matched, {_score(topic)}"
    if topic.outcome == "feed":
        return f"not matched: {topic.feed_rule}"
    if topic.outcome == "veto":
        names = ", ".join(dict.fromkeys(repr(f.term) for f in topic.vetoes))
        return f"not matched: vetoed by none: {names}"
    if topic.outcome == "min_score":
        return f"not matched: {_score(topic)}"
    false = [p.label for p in topic.parts if not p.holds]
    if topic.outcome == "not":
        names = ", ".join(dict.fromkeys(repr(f.term) for p in topic.parts for f in _not_fired(p.reasons)))
        return f"not matched: vetoed by a NOT in {', '.join(false)} ({names} fired)"
    return f"not matched: {', '.join(false)} {'does' if len(false) == 1 else 'do'} not hold"


def _not_fired(reasons: Iterable[Reason]) -> Iterator[Fired]:
    for reason in reasons:
        yield from reason.fired
        yield from _not_fired(reason.because)


def _score(topic: TopicExplanation) -> str:
    score = topic.score or 0.0
    if topic.min_score is None:
        return f"score {score:g}"
    return f"score {score:g} {'>=' if score >= topic.min_score else '<'} min_score {topic.min_score:g}"


def _hit_line(fired: Fired) -> str:
    return f"{fired.field} {fired.start}-{fired.end} {fired.text!r} <- {fired.term!r}"


def _reason_lines(reason: Reason, depth: int, shown: list[Fired]) -> list[str]:
    indent = "  " * depth
    lines = [f"{indent}- {reason.text}"]
    lines += [f"{indent}    {_hit_line(f)}" for f in reason.fired]
    shown += reason.fired
    for sub in reason.because:
        lines += _reason_lines(sub, depth + 1, shown)
    return lines


def _highlight(text: str, ranges: Sequence[tuple[int, int]]) -> str:
    out: list[str] = []
    position = 0
    for start, end in sorted(set(ranges), key=lambda r: (r[0], -r[1])):
        if start < position:
            continue
        out.append(text[position:start])
        out.append(f"[{text[start:end]}]")
        position = end
    out.append(text[position:])
    return "".join(out)


def topic_parts(topic: Topic) -> tuple[tuple[str, Node], ...]:
    """The parts of ``topic.condition`` named as the file wrote them: ``any``, ``all[1]``, ``all[2]``...,
    ``query`` (read-only, for explanations).

    :meth:`_Compiler._topic_parts` ANDs them in that order, and :func:`all_of`'s stable sort by cost keeps it:
    ``any`` and each group compile to one plain term check (cost 0), the query is one node that sorts last
    either way. When the names cannot be paired with the children (a part whose sets are all empty compiles
    to nothing), the parts are called ``part 1``, ``part 2``...
    """
    condition = topic.condition
    raw: dict[str, Any] = {}
    if topic.definition:
        loaded = json.loads(topic.definition)
        if isinstance(loaded, list) and loaded and isinstance(loaded[0], dict):
            raw = loaded[0]
    labels = ["any"] if raw.get("any") else []
    groups = raw.get("all")
    if isinstance(groups, list):
        labels += [f"all[{i}]" for i, group in enumerate(groups, start=1) if group]
    if "query" in raw:
        labels.append("query")
    if len(labels) == 1:
        return ((labels[0], condition),)
    children = condition.children if isinstance(condition, AllOf) else (condition,)
    if len(labels) != len(children):
        labels = [f"part {i}" for i in range(1, len(children) + 1)]
    return tuple(zip(labels, children, strict=True))
