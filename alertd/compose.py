"""How a subscriber's mail is made, from matches to an ``EmailMessage``: one way for the flush, ``alertd
preview`` and ``alertd test-email`` alike (pure, but for :func:`preview_message`, which only reads the store).
"""

from __future__ import annotations

import email.policy
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

import jinja2

from alertd import health
from alertd.config import Config, SubscriberConfig
from alertd.digest import digest_for, subscribed_topics
from alertd.models import FeedHealth, MatchedItem, RuleKind, TopicRule
from alertd.records import MessageKind
from alertd.render import render_digest
from alertd.store import Store
from alertd.watchlist import Topic, Watchlist


def build_message(
    config: Config,
    topic_names: Mapping[str, str],
    templates: jinja2.Environment,
    subscriber: SubscriberConfig,
    matched: Sequence[MatchedItem],
    now: datetime,
    *,
    health: Sequence[FeedHealth] = (),
    already_sent: Collection[tuple[str, str]] = (),
    kind: MessageKind = "digest",
    rules: Mapping[str, TopicRule] | None = None,
) -> EmailMessage:
    """``matched`` as the email this subscriber gets: the one way a digest or an alert is made, for the flush,
    ``alertd preview`` and ``alertd test-email`` alike. Pure."""
    digest = digest_for(
        subscriber,
        config,
        topic_names,
        matched,
        now,
        health=health,
        already_sent=already_sent,
        kind=kind,
        rules=rules,
    )
    return render_digest(digest, templates)


def names_of(watchlist: Watchlist) -> dict[str, str]:
    """Topic names by id, in watchlist order (the order of a digest's sections)."""
    return {topic.id: topic.name for topic in watchlist.topics}


def rules_of(watchlist: Watchlist) -> dict[str, TopicRule]:
    """How each topic decides (a query, ``all`` groups, a ``min_score``), by id: what the why lines name."""
    return {topic.id: rule_of(topic) for topic in watchlist.topics}


def rule_of(topic: Topic) -> TopicRule:
    """The rule a topic's matches come from, read from what the topic was compiled from."""
    try:
        raw = json.loads(topic.definition)[0] if topic.definition else {}
    except (ValueError, IndexError, TypeError):
        raw = {}
    kind: RuleKind = "query" if isinstance(raw, dict) and "query" in raw else "terms"
    if isinstance(raw, dict) and raw.get("all"):
        kind = "all"
    return TopicRule(kind, topic.min_score)


def preview_message(
    config: Config,
    watchlist: Watchlist,
    templates: jinja2.Environment,
    store: Store,
    subscriber: SubscriberConfig,
    now: datetime,
    *,
    window: timedelta | None = None,
) -> EmailMessage | None:
    """The digest ``subscriber`` would get now (``alertd preview``), or None if there is nothing to show.

    From the pending matches, or with ``window`` from every match stored in that window, delivered or
    not. Only reads the store: safe on a database opened read-only, beside a running daemon.
    """
    state = store.subscriber_state(subscriber.email)
    topics = subscribed_topics(watchlist, subscriber)
    if window is not None:
        matched = store.matches_since(topics, now - window)
    elif state is not None:
        matched = store.pending_matches(subscriber.email, topics, state.since)
    else:
        matched = []  # a subscriber the daemon has not met yet starts from the next match
    if not matched:
        return None
    last = state.last_digest_at if state is not None else now
    return build_message(
        config,
        names_of(watchlist),
        templates,
        subscriber,
        matched,
        now,
        health=feed_health(config, store, now, events_since=last),
        already_sent=store.alerted(subscriber.email, matched),
        rules=rules_of(watchlist),
    )


def feed_health(
    config: Config, store: Store, now: datetime, *, events_since: datetime | None = None
) -> list[FeedHealth]:
    events = store.feed_events(events_since) if events_since is not None else []
    return health.reader_notices(
        store.feeds(),
        {feed.url for feed in config.feeds},
        events,
        failing_after=config.digest.feed_health_after,
        now=now,
    )


def message_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)
