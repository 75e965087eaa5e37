"""build_digest: grouping by topic, one story across feeds, ranking, cap and overflow, deterministic ids."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from alertd.digest import build_digest, digest_id_for
from alertd.models import Digest, FeedHealth, Item, Match, MatchedItem, Span

NOW = datetime(2026, 11, 26, 6, 3, tzinfo=timezone.utc)
TOPICS = {"ecom": "E-commerce chinois", "export": "Exportations françaises"}


def matched_item(
    key: str,
    *,
    topic: str = "ecom",
    title: str | None = None,
    feed: str = "Les Échos",
    story: str | None = None,
    score: float = 1.0,
    seen_minutes_ago: int = 0,
    published: datetime | None = None,
    terms: tuple[str, ...] = ("alibaba",),
    spans: tuple[Span, ...] = (),
    summary: str = "",
    link: str | None = None,
    also_in: tuple[str, ...] = (),
) -> MatchedItem:
    """A MatchedItem with sensible defaults; ``story`` defaults to the item key (a story of its own)."""
    item = Item(
        key=key,
        feed_url=f"https://feeds.example.invalid/{feed}",
        feed_name=feed,
        title=title if title is not None else f"Story {key}",
        summary_text=summary,
        summary_html="",
        link=link if link is not None else f"https://news.example.invalid/{key}",
        story_key=story or key,
        published=published,
    )
    return MatchedItem(
        item=item,
        match=Match(topic_id=topic, terms=terms, spans=spans, score=score),
        first_seen=NOW - timedelta(minutes=seen_minutes_ago),
        also_in=also_in,
    )


def digest_of(matched: list[MatchedItem], **kwargs: object) -> Digest:
    arguments: dict[str, object] = {
        "digest_id": "d1",
        "subscriber_email": "marie@example.invalid",
        "subscriber_name": "Marie Dupont",
        "sender": "alertd@example.invalid",
        "matched": matched,
        "topic_names": TOPICS,
        "now": NOW,
        "timezone": "Europe/Paris",
        "config_path": "/etc/alertd/alertd.toml",
        "watchlist_path": "/etc/alertd/watchlist.toml",
        "language": "en",  # the render tests read English; French has its own tests
        "max_items_per_topic": 20,
    }
    arguments.update(kwargs)
    return build_digest(**arguments)  # type: ignore[arg-type]


def test_sections_follow_watchlist_order_not_match_order() -> None:
    digest = digest_of([matched_item("a", topic="export"), matched_item("b", topic="ecom")])

    assert [s.topic_id for s in digest.sections] == ["ecom", "export"]
    assert [s.topic_name for s in digest.sections] == ["E-commerce chinois", "Exportations françaises"]


def test_topic_without_matches_has_no_section() -> None:
    digest = digest_of([matched_item("a", topic="export")])

    assert [s.topic_id for s in digest.sections] == ["export"]


def test_match_for_unknown_topic_is_kept_after_known_topics() -> None:
    digest = digest_of([matched_item("a", topic="gone"), matched_item("b", topic="ecom")])

    assert [(s.topic_id, s.topic_name) for s in digest.sections] == [
        ("ecom", "E-commerce chinois"),
        ("gone", "gone"),
    ]


def test_story_carried_by_several_feeds_is_one_entry_from_the_earliest_seen_feed() -> None:
    digest = digest_of(
        [
            matched_item("lemonde-1", feed="Le Monde", story="s1", seen_minutes_ago=5),
            matched_item("echos-1", feed="Les Échos", story="s1", seen_minutes_ago=30),
            matched_item("figaro-1", feed="Le Figaro", story="s1", seen_minutes_ago=1, also_in=("AFP",)),
        ]
    )

    (story,) = digest.sections[0].stories
    assert story.item_key == "echos-1"
    assert story.feed_name == "Les Échos"
    assert story.also_in == ("Le Monde", "Le Figaro", "AFP")


def test_merged_story_shows_the_best_matching_copy_with_its_own_terms() -> None:
    digest = digest_of(
        [
            matched_item("x1", story="s", score=1.0, terms=("alibaba",), seen_minutes_ago=9),
            matched_item("x2", story="s", score=3.0, terms=("temu", "alibaba"), feed="Le Monde"),
        ]
    )

    (story,) = digest.sections[0].stories
    assert (story.item_key, story.feed_name, story.score) == ("x2", "Le Monde", 3.0)
    assert story.terms == ("temu", "alibaba")  # what the shown copy's spans explain
    assert story.also_in == ("Les Échos",)
    assert story.first_seen == NOW - timedelta(minutes=9)  # the story's, not the shown copy's
    assert story.copies == ("x1", "x2")


def test_same_feed_twice_is_not_listed_in_also_in_but_counted_as_another_version() -> None:
    digest = digest_of([matched_item("a", story="s", seen_minutes_ago=2), matched_item("b", story="s")])

    (story,) = digest.sections[0].stories
    assert story.also_in == ()
    assert story.other_versions == 1


def test_copies_in_the_same_feed_and_in_others_are_told_apart() -> None:
    digest = digest_of(
        [
            matched_item("en", story="s", feed="BFM Économie", seen_minutes_ago=30),
            matched_item("vn", story="s", feed="BFM Économie", seen_minutes_ago=20),
            matched_item("vn2", story="s", feed="BFM Économie", seen_minutes_ago=10),
            matched_item("tribune", story="s", feed="La Tribune", seen_minutes_ago=5),
        ]
    )

    (story,) = digest.sections[0].stories
    assert (story.item_key, story.other_versions, story.also_in) == ("en", 2, ("La Tribune",))


def test_same_story_in_two_topics_appears_in_both() -> None:
    digest = digest_of([matched_item("a", topic="ecom"), matched_item("a", topic="export")])

    assert [len(s.stories) for s in digest.sections] == [1, 1]


def test_ranking_is_score_then_recency_then_title() -> None:
    published = NOW - timedelta(hours=2)
    digest = digest_of(
        [
            matched_item("old", score=2.0, published=published - timedelta(hours=5), title="Zeta"),
            matched_item("low", score=1.0, published=published, title="Alpha"),
            matched_item("new", score=2.0, published=published, title="Beta"),
            matched_item("tie", score=2.0, published=published, title="Alpha"),
        ]
    )

    assert [s.item_key for s in digest.sections[0].stories] == ["tie", "new", "old", "low"]


def test_recency_falls_back_to_first_seen_when_published_is_missing() -> None:
    digest = digest_of(
        [
            matched_item("seen-early", seen_minutes_ago=60),
            matched_item("seen-late", seen_minutes_ago=1),
        ]
    )

    assert [s.item_key for s in digest.sections[0].stories] == ["seen-late", "seen-early"]


def test_naive_and_aware_dates_rank_together() -> None:
    naive = datetime(2026, 11, 26, 5, 0)  # taken as UTC
    digest = digest_of(
        [
            matched_item("naive", published=naive),
            matched_item("aware", published=naive.replace(tzinfo=timezone.utc) + timedelta(minutes=1)),
        ]
    )

    assert [s.item_key for s in digest.sections[0].stories] == ["aware", "naive"]


def test_cap_moves_the_lowest_ranked_stories_to_overflow() -> None:
    items = [matched_item(f"k{i}", score=float(i)) for i in range(5)]

    section = digest_of(items, max_items_per_topic=3).sections[0]

    assert [s.item_key for s in section.stories] == ["k4", "k3", "k2"]
    assert [s.item_key for s in section.overflow] == ["k1", "k0"]
    assert digest_of(items, max_items_per_topic=3).story_count == 5


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_items_per_topic"):
        digest_of([matched_item("a")], max_items_per_topic=0)


def test_digest_carries_subscriber_context_and_feed_health() -> None:
    health = (FeedHealth("Le Monde", "https://feeds.example.invalid/lemonde", "HTTP 500", NOW),)

    digest = digest_of([], feed_health=health)

    assert (NOW, "Europe/Paris", health, ()) == (
        digest.generated_at,
        digest.timezone,
        digest.feed_health,
        digest.sections,
    )


def test_digest_is_the_same_whatever_the_input_order() -> None:
    items = [
        matched_item("a", score=1.0, story="s"),
        matched_item("b", score=2.0, feed="Le Monde", story="s", seen_minutes_ago=3),
        matched_item("c", topic="export"),
        matched_item("d", score=1.0, title="Same"),
        matched_item("e", score=1.0, title="Same"),
    ]

    assert digest_of(items) == digest_of(list(reversed(items)))


def test_digest_id_is_deterministic_and_order_independent() -> None:
    first = digest_id_for("marie@example.invalid", ["m2", "m1", "m3"])

    assert first == digest_id_for("Marie@Example.invalid ", ["m3", "m1", "m2", "m1"])
    assert len(first) == 32


def test_digest_id_differs_by_subscriber_and_by_keys() -> None:
    base = digest_id_for("marie@example.invalid", ["m1", "m2"])

    assert base != digest_id_for("paul@example.invalid", ["m1", "m2"])
    assert base != digest_id_for("marie@example.invalid", ["m1"])
    assert digest_id_for("x@example.invalid", ["ab", "c"]) != digest_id_for("x@example.invalid", ["a", "bc"])


# --- Message-IDs: one per distinct message -------------------------------------------------------------------


def test_an_alert_and_the_digest_that_repeats_its_story_have_different_ids() -> None:
    story = [matched_item("a", story="s", terms=("alibaba",))]

    alert = digest_of(story, digest_id=None, kind="alert")
    digest = digest_of(story, digest_id=None, already_sent=[("a", "ecom")])
    same_marks_digest = digest_of(story, digest_id=None)

    assert len({alert.digest_id, digest.digest_id, same_marks_digest.digest_id}) == 3
    assert digest.sections[0].stories[0].already_sent


def test_the_id_is_drawn_from_the_whole_content_and_is_stable_across_rebuilds() -> None:
    two_copies = [matched_item("a", story="s"), matched_item("b", story="s", seen_minutes_ago=5)]
    base = digest_of(two_copies, digest_id=None)

    assert base.digest_id == digest_of(list(reversed(two_copies)), digest_id=None).digest_id  # a rebuild
    assert base.digest_id != digest_of(two_copies[:1], digest_id=None).digest_id  # one copy fewer
    assert (
        base.digest_id
        != digest_of(two_copies, digest_id=None, subscriber_email="paul@example.invalid").digest_id
    )
    overflowed = digest_of([*two_copies, matched_item("c", score=3.0)], digest_id=None, max_items_per_topic=1)
    listed = digest_of([*two_copies, matched_item("c", score=3.0)], digest_id=None)
    assert overflowed.digest_id != listed.digest_id  # "+1 more" is another message
