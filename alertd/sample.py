"""A sample mail, in each language: what ``check-config`` renders to prove the templates, and what
``alertd test-email`` sends. Built from sample matches by the same code as every real digest.

Every template feature appears: a story carried by two feeds ("also in"), a story already sent in an alert, a
story past the per-topic cap ("+1 more"), a failing feed, highlighted terms in titles and summaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from alertd.digest import build_digest
from alertd.models import Digest, FeedHealth, Item, Match, MatchedItem, MessageLanguage, Span
from alertd.records import MessageKind

SAMPLE_TIME = datetime(2026, 11, 26, 6, 3, tzinfo=timezone.utc)
SAMPLE_CAP = 2
"""Stories shown in full per topic in the sample: the third is listed by title."""

_TOPICS: Mapping[MessageLanguage, Mapping[str, str]] = {
    "fr": {"chinese-ecommerce": "E-commerce chinois"},
    "en": {"chinese-ecommerce": "Chinese e-commerce"},
}
# (key, feed, title, summary, term): each story its own title, summary and link.
_STORIES: Mapping[MessageLanguage, tuple[tuple[str, str, str, str, str], ...]] = {
    "fr": (
        (
            "alibaba-paris",
            "Les Échos",
            "Alibaba ouvre un bureau en France pour les marques qui exportent",
            "Le groupe Alibaba installe une équipe à Paris pour aider les marques françaises à vendre en Chine.",
            "alibaba",
        ),
        (
            "temu-europe",
            "BFM Business",
            "Temu accélère en Europe malgré les contrôles",
            "La plateforme Temu ouvre deux entrepôts en Pologne et promet des livraisons en cinq jours.",
            "temu",
        ),
        (
            "shein-colis",
            "La Tribune",
            "Shein : la taxe sur les petits colis se précise",
            "Bruxelles veut taxer les petits colis venus de Chine ; Shein dit s’y préparer.",
            "shein",
        ),
    ),
    "en": (
        (
            "alibaba-paris",
            "Nikkei Asia",
            "Alibaba opens a French office for brands that export",
            "Alibaba is setting up a team in Paris to help French brands sell in China.",
            "alibaba",
        ),
        (
            "temu-europe",
            "CNBC",
            "Temu speeds up in Europe despite new checks",
            "Temu opens two warehouses in Poland and promises five-day delivery.",
            "temu",
        ),
        (
            "shein-colis",
            "South China Morning Post",
            "Shein prepares for an EU levy on small parcels",
            "Brussels wants to tax small parcels from China; Shein says it is getting ready.",
            "shein",
        ),
    ),
}
_ALSO_IN = {"fr": "Le Monde", "en": "Financial Times"}


@dataclass(frozen=True, slots=True)
class SampleMail:
    """What a sample digest is built from."""

    topic_names: Mapping[str, str]
    matched: tuple[MatchedItem, ...]
    already_sent: frozenset[tuple[str, str]]
    health: tuple[FeedHealth, ...]


def sample_mail(language: MessageLanguage, *, key_prefix: str = "sample") -> SampleMail:
    """Sample matches in ``language``; ``key_prefix`` starts every item key (a fresh Message-ID per test mail:
    servers may drop a message whose Message-ID they have seen)."""
    matched: list[MatchedItem] = []
    for age, (key, feed, title, summary, term) in enumerate(_STORIES[language]):
        first_seen = SAMPLE_TIME - timedelta(minutes=10 * age)
        item = _item(f"{key_prefix}-{key}", feed, title, summary, first_seen)
        matched.append(MatchedItem(item, _match(item, term), first_seen))
        if age == 0:  # the same story from another feed: one entry, "also in"
            copy = _item(
                f"{key_prefix}-{key}-copy",
                _ALSO_IN[language],
                title,
                summary,
                first_seen,
                story=item.story_key,
            )
            matched.append(MatchedItem(copy, _match(copy, term), first_seen + timedelta(minutes=1)))
    alerted = matched[2]
    health = FeedHealth(
        "Flux exemple" if language == "fr" else "Sample feed",
        "https://example.invalid/rss",
        "failing: http_5xx (3 attempts)",
        SAMPLE_TIME - timedelta(hours=7),
        error_class="http_5xx",
        attempts=3,
    )
    return SampleMail(
        _TOPICS[language],
        tuple(matched),
        frozenset({(alerted.item.key, alerted.match.topic_id)}),
        (health,),
    )


def sample_digest(language: MessageLanguage, kind: MessageKind = "digest") -> Digest:
    """The sample as a digest (or an alert) to a sample reader (``check_templates``, tests)."""
    sample = sample_mail(language)
    return build_digest(
        digest_id="0" * 32,
        subscriber_email="reader@example.invalid",
        subscriber_name="Sample Reader",
        sender="alertd@example.invalid",
        matched=sample.matched,
        topic_names=sample.topic_names,
        now=SAMPLE_TIME,
        timezone="Europe/Paris",
        config_path="/etc/alertd/alertd.toml",
        watchlist_path="/etc/alertd/watchlist.toml",
        max_items_per_topic=SAMPLE_CAP,
        language=language,
        feed_health=sample.health,
        already_sent=sample.already_sent,
        kind=kind,
    )


def _item(
    key: str, feed: str, title: str, summary: str, first_seen: datetime, story: str | None = None
) -> Item:
    link = f"https://example.invalid/{key.rsplit('-copy', 1)[0]}"
    return Item(
        key=key,
        feed_url=f"https://example.invalid/{feed.lower().replace(' ', '-')}/rss",
        feed_name=feed,
        title=title,
        summary_text=summary,
        summary_html=f"<p>{summary}</p>",
        link=link,
        story_key=story or link.split("://", 1)[1],
        published=first_seen - timedelta(minutes=30),
    )


def _match(item: Item, term: str) -> Match:
    spans = tuple(
        Span(field, start, start + len(term), term)
        for field, text in (("title", item.title), ("summary", item.summary_text))
        if (start := text.casefold().find(term)) >= 0
    )
    return Match("chinese-ecommerce", (term,), spans, 2.0)
