"""Pending matches -> one ``Digest`` per subscriber (pure).

    matched items --group by topic (watchlist order)--> --one Story per story_key--> --rank--> --cap--> Digest

One story (``Item.story_key``: the same link, or a copy under another URL, see :mod:`alertd.stories`) carried
by several items becomes one entry: the best-matching copy is shown, the other feeds are listed in ``also_in``,
the other copies in the shown copy's feed are counted in ``other_versions``. Ranking puts stories the reader has not seen yet first (a story already sent in a
priority alert comes after them, marked ``already_sent``), then score, then recency, then title, so the same
input always gives the same digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from datetime import timezone as dt_timezone

from alertd.config import Config, SubscriberConfig
from alertd.models import Digest, FeedHealth, MatchedItem, MessageLanguage, Story, TopicRule, TopicSection
from alertd.records import MessageKind
from alertd.watchlist import Watchlist

__all__ = ["alert_topics", "build_digest", "content_id", "digest_for", "digest_id_for", "subscribed_topics"]


def subscribed_topics(watchlist: Watchlist, subscriber: SubscriberConfig) -> list[str]:
    """The topic ids a subscriber follows that the watchlist defines, in watchlist order for all topics."""
    defined = [topic.id for topic in watchlist.topics]
    if subscriber.topics is None:
        return defined
    return [topic for topic in subscriber.topics if topic in defined]


def alert_topics(watchlist: Watchlist, subscriber: SubscriberConfig) -> list[str]:
    """The subscriber's topics with ``priority = "immediate"``: their matches go out as alerts right away
    (to subscribers on any schedule but ``immediate``, whose digests already do)."""
    if subscriber.schedule.is_immediate:
        return []
    priority = {topic.id for topic in watchlist.topics if topic.priority == "immediate"}
    return [topic for topic in subscribed_topics(watchlist, subscriber) if topic in priority]


def digest_for(
    subscriber: SubscriberConfig,
    config: Config,
    topic_names: Mapping[str, str],
    matched: Sequence[MatchedItem],
    now: datetime,
    *,
    health: Sequence[FeedHealth] = (),
    already_sent: Collection[tuple[str, str]] = (),
    kind: MessageKind = "digest",
    rules: Mapping[str, TopicRule] | None = None,
) -> Digest:
    """The digest (or ``kind="alert"``) ``subscriber`` gets for ``matched``: their schedule's time zone,
    language and cap, the config's sender, and an id (the Message-ID) drawn from its content (see
    :func:`content_id`)."""
    return build_digest(
        digest_id=None,
        subscriber_email=subscriber.email,
        subscriber_name=subscriber.name,
        sender=config.delivery.sender,
        matched=matched,
        topic_names=topic_names,
        now=now,
        timezone=subscriber.timezone,
        config_path=str(config.path),
        watchlist_path=str(config.watchlist),
        max_items_per_topic=subscriber.max_items_per_topic,
        feed_health=health,
        already_sent=already_sent,
        language=subscriber.language,
        kind=kind,
        rules=rules,
        contact=config.digest.admin_contact,
    )


def content_id(subscriber_email: str, kind: MessageKind, sections: Sequence[TopicSection]) -> str:
    """The id of a message from what it says: the subscriber, its kind, and every story it carries with its
    marks (topic, story key, the items shown and merged into it, whether it is marked already sent, whether it
    is listed in full or under "+N more").

    Distinct messages get distinct ids (an alert and the digest that repeats its story marked "already sent"
    differ twice over: Gmail drops a message whose Message-ID it has seen); the same pending matches built
    again after a crash give the same id, which the outbox refuses to queue twice.
    """
    parts = [f"kind:{kind}"]
    for section in sections:
        for place, stories in (("full", section.stories), ("more", section.overflow)):
            for story in stories:
                sent = "sent" if story.already_sent else "new"
                copies = ",".join(sorted(story.copies))
                parts.append(
                    f"{section.topic_id}\n{story.story_key}\n{story.item_key}\n{copies}\n{sent}\n{place}"
                )
    return digest_id_for(subscriber_email, parts)


def digest_id_for(subscriber_email: str, parts: Iterable[str]) -> str:
    """A deterministic id of the subscriber and a set of parts (order and repeats aside)."""
    hasher = hashlib.sha256()
    for part in (subscriber_email.strip().casefold(), *sorted(set(parts))):
        encoded = part.encode("utf-8", "surrogatepass")
        # Length-prefixed so that no two different key lists hash the same bytes.
        hasher.update(len(encoded).to_bytes(8, "big"))
        hasher.update(encoded)
    return hasher.hexdigest()[:32]


def build_digest(
    *,
    digest_id: str | None,
    subscriber_email: str,
    subscriber_name: str,
    sender: str,
    matched: Sequence[MatchedItem],
    topic_names: Mapping[str, str],
    now: datetime,
    timezone: str,
    config_path: str,
    watchlist_path: str,
    max_items_per_topic: int,
    language: MessageLanguage,
    feed_health: Sequence[FeedHealth] = (),
    already_sent: Collection[tuple[str, str]] = (),
    kind: MessageKind = "digest",
    rules: Mapping[str, TopicRule] | None = None,
    contact: str | None = None,
) -> Digest:
    """Group ``matched`` by topic (in ``topic_names`` order), one ranked Story per story, capped per topic.

    Matches for a topic missing from ``topic_names`` are kept (never silently lost) in sections after the
    known topics, named by their id. Topics without matches get no section. ``already_sent`` holds the
    (item key, topic id) pairs that already reached the reader in an alert; ``rules`` how each topic decides
    (for the why lines). ``digest_id`` None: drawn from the content (:func:`content_id`).
    """
    if max_items_per_topic < 1:
        raise ValueError(f"max_items_per_topic must be >= 1, not {max_items_per_topic}")
    by_topic = _group_by_topic(matched)
    order = [t for t in topic_names if t in by_topic] + [t for t in by_topic if t not in topic_names]
    sent = frozenset(already_sent)
    rules = rules or {}
    sections = tuple(
        _section(topic_id, topic_names.get(topic_id, topic_id), by_topic[topic_id], max_items_per_topic, sent)
        for topic_id in order
    )
    sections = tuple(replace(s, rule=rules.get(s.topic_id, s.rule)) for s in sections)
    return Digest(
        digest_id=digest_id if digest_id is not None else content_id(subscriber_email, kind, sections),
        subscriber_email=subscriber_email,
        subscriber_name=subscriber_name,
        sender=sender,
        sections=sections,
        generated_at=now,
        timezone=timezone,
        config_path=config_path,
        watchlist_path=watchlist_path,
        feed_health=tuple(feed_health),
        language=language,
        kind=kind,
        contact=contact,
    )


def _group_by_topic(matched: Iterable[MatchedItem]) -> dict[str, list[MatchedItem]]:
    groups: dict[str, list[MatchedItem]] = {}
    for mi in matched:
        groups.setdefault(mi.match.topic_id, []).append(mi)
    return groups


def _section(
    topic_id: str, topic_name: str, items: Sequence[MatchedItem], cap: int, sent: frozenset[tuple[str, str]]
) -> TopicSection:
    stories = sorted(_stories(items, sent), key=_rank_key)
    return TopicSection(
        topic_id=topic_id,
        topic_name=topic_name,
        stories=tuple(stories[:cap]),
        overflow=tuple(stories[cap:]),
    )


def _stories(items: Iterable[MatchedItem], sent: frozenset[tuple[str, str]]) -> list[Story]:
    by_story: dict[str, list[MatchedItem]] = {}
    for mi in items:
        by_story.setdefault(mi.item.story_key, []).append(mi)
    return [_merge(copies, sent) for copies in by_story.values()]


def _merge(copies: Sequence[MatchedItem], sent: frozenset[tuple[str, str]] = frozenset()) -> Story:
    """One Story from every copy of a story: the best-matching copy (see :func:`_best_copy`) is the entry shown; the other feeds that carry it are "also in", the other copies in its own feed are
    "other versions"."""
    ordered = sorted(copies, key=_best_copy)
    main = ordered[0]
    also_in = _unique(
        name for mi in ordered for name in (mi.item.feed_name, *mi.also_in) if name != main.item.feed_name
    )
    return Story(
        item_key=main.item.key,
        title=main.item.title,
        link=main.item.link,
        feed_name=main.item.feed_name,
        summary_text=main.item.summary_text,
        published=main.item.published,
        first_seen=min(_utc(mi.first_seen) for mi in ordered),
        terms=_unique_casefold(main.match.terms),  # the terms the shown copy's spans explain
        spans=main.match.spans,  # offsets into the shown copy's text
        score=main.match.score,
        also_in=also_in,
        already_sent=any((mi.item.key, mi.match.topic_id) in sent for mi in ordered),
        story_key=main.item.story_key,
        copies=tuple(sorted(mi.item.key for mi in ordered)),
        other_versions=sum(1 for mi in ordered[1:] if mi.item.feed_name == main.item.feed_name),
    )


def _best_copy(mi: MatchedItem) -> tuple[float, datetime, bool, datetime, str]:
    """Highest score first; then the earliest seen, the earliest published (the original, not its replay)."""
    published = _utc(mi.item.published) if mi.item.published is not None else _utc(mi.first_seen)
    return (-mi.match.score, _utc(mi.first_seen), mi.item.published is None, published, mi.item.key)


def _rank_key(story: Story) -> tuple[bool, float, float, str, str]:
    """Unseen first, then score desc, then recency desc, then title and key so ties are stable."""
    when = _utc(story.published or story.first_seen).timestamp()
    return (story.already_sent, -story.score, -when, story.title.casefold(), story.item_key)


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so mixed inputs still compare."""
    return moment.replace(tzinfo=dt_timezone.utc) if moment.tzinfo is None else moment


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _unique_casefold(values: Iterable[str]) -> tuple[str, ...]:
    """Unique ignoring case ("Shein" from a title, "shein" from a summary), first spelling kept."""
    seen: dict[str, str] = {}
    for value in values:
        if value:
            seen.setdefault(value.casefold(), value)
    return tuple(seen.values())
