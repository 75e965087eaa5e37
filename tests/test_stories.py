"""Stories, not links: which items are one story (a table of the decider's rules), the store's side of it, and
the daemon end to end — one digest entry for a story carried five times, never delivered again as new."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import textwrap
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertd import stories
from alertd.identify import entry_keys, make_items
from alertd.models import Entry, Item
from alertd.records import PollWrite, StoryCandidate
from alertd.store import Store
from tests.feedserver import FeedServer, make_rss
from tests.processes import alertd
from tests.storage import add_feed

T0 = datetime(2026, 8, 14, 6, 0, tzinfo=UTC)
WINDOW = timedelta(hours=48)
SHOW = "Benaouda Abdeddaïm : Protectionnisme européen vu du Paraguay - 14/08"
SHOW_LEDE = (
    "Ce mercredi 14 août, dans sa chronique, Benaouda Abdeddaïm s'est penché sur le protectionnisme européen "
    "vu depuis le Paraguay, où l'accord avec le Mercosur reste en suspens."
)
BOILERPLATE = (
    "Du lundi au vendredi entre 12h et 13h, nos experts répondent à toutes vos questions sur l'emploi, le "
    "travail, les droits des salariés et la vie au bureau, en direct et en podcast."
)


def item(
    key: str,
    title: str,
    *,
    summary: str = "",
    link: str | None = None,
    feed: str = "BFM Économie",
) -> Item:
    entry = Entry(
        guid=key, link=link or f"https://www.bfmtv.com/economie/{key}.html", title=title, summary_html=summary
    )
    (made,) = make_items(
        [entry],
        entry_keys([entry], f"https://feeds.test/{feed}"),
        f"https://feeds.test/{feed}",
        feed,
        frozenset(),
        T0,
    )
    return made


def candidate(it: Item, first_seen: datetime) -> StoryCandidate:
    (signed,) = stories.sign([it])
    return StoryCandidate(
        signed.key, signed.story_key, signed.title, first_seen, signed.link_key, signed.shape
    )


# --- the decider: one row per rule and per guard -------------------------------------------------------------

ROWS = [
    pytest.param(
        item("a", SHOW, summary=SHOW_LEDE, link="https://x.test/show_EN-1.html"),
        item("b", SHOW.replace(" - ", " – "), summary=SHOW_LEDE, link="https://x.test/show_VN-1.html"),
        timedelta(hours=1),
        "title",
        id="same title words, another dash, another URL: one story",
    ),
    pytest.param(
        item("a", "Alibaba ouvre un bureau à Paris", link="https://a.test/1"),
        item("b", "Tout autre chose ce matin", link="https://a.test/1?utm_source=rss", feed="La Tribune"),
        timedelta(days=80),
        "link",
        id="same canonical link in another feed, however long ago",
    ),
    pytest.param(
        item("a", SHOW, summary=SHOW_LEDE),
        item("b", SHOW, summary=SHOW_LEDE),
        timedelta(hours=49),
        None,
        id="same title outside the window: not one story",
    ),
    pytest.param(
        item("a", "Bourse du jour"),
        item("b", "Bourse du jour"),
        timedelta(hours=2),
        None,
        id="a three-word title names a column, not a story",
    ),
    pytest.param(
        item("a", "MrBeast critiqué après avoir construit 100 maisons pour des familles", summary=SHOW_LEDE),
        item(
            "b",
            '"Il monétise ce contenu": MrBeast critiqué après avoir construit 100 maisons pour des familles',
            summary=SHOW_LEDE,
        ),
        timedelta(hours=3),
        "near",
        id="near-identical title and the same lede",
    ),
    pytest.param(
        item("a", "Vos questions, nos réponses - 04/06", summary=BOILERPLATE),
        item("b", "Vos questions, nos réponses - 05/06", summary=BOILERPLATE),
        timedelta(hours=24),
        None,
        id="same boilerplate lede, another day's episode (other numbers): two stories",
    ),
    pytest.param(
        item("a", "La semaine de quatre jours, une bonne idée pour les PME ?", summary=BOILERPLATE),
        item(
            "b", "Peut-on refuser une mutation à l'étranger proposée par son employeur ?", summary=BOILERPLATE
        ),
        timedelta(hours=1),
        None,
        id="same boilerplate lede, different questions (titles share little): two stories",
    ),
    pytest.param(
        item(
            "a", "Les exportations de cognac reculent de 20 % en un an", summary="Les chiffres des douanes."
        ),
        item("b", "Les exportations de vin progressent de 20 % en un an", summary="Autre chose entièrement."),
        timedelta(hours=1),
        None,
        id="similar titles with different ledes: two stories",
    ),
]


@pytest.mark.parametrize(("first", "later", "after", "rule"), ROWS)
def test_same_story(first: Item, later: Item, after: timedelta, rule: str | None) -> None:
    (signed,) = stories.sign([later])

    assert stories.same_story(signed, candidate(first, T0), WINDOW, T0 + after) == rule
    (placed,) = stories.assign_stories([signed], [candidate(first, T0)], WINDOW, T0 + after)
    assert (placed.story_key == first.story_key) == (rule is not None)


def test_items_of_one_fetch_join_each_other_and_the_earliest_story_wins() -> None:
    old = candidate(item("old", SHOW, summary=SHOW_LEDE, link="https://x.test/old"), T0 - timedelta(hours=3))
    newer = candidate(
        item("newer", SHOW, summary=SHOW_LEDE, link="https://x.test/newer"), T0 - timedelta(hours=1)
    )
    batch = stories.sign(
        [
            item("en", "Une tout autre histoire de cognac à Shanghai", link="https://x.test/en"),
            item("vn", "Une tout autre histoire de cognac à Shanghai", link="https://x.test/vn"),
            item("copy", SHOW, summary=SHOW_LEDE, link="https://x.test/copy"),
        ]
    )

    en, vn, copy = stories.assign_stories(batch, [newer, old], WINDOW, T0)

    assert vn.story_key == en.story_key != copy.story_key
    assert copy.story_key == old.story_key


def test_marks_name_the_link_the_title_and_four_bands() -> None:
    (signed,) = stories.sign([item("a", SHOW, summary=SHOW_LEDE, link="https://x.test/a?utm_medium=rss")])

    kinds = [mark.split(":", 1)[0] for mark in signed.marks]
    assert kinds == ["link", "title", "band0", "band1", "band2", "band3"]
    assert signed.marks[0] == "link:x.test/a"
    assert signed.shape is not None


def test_a_short_item_has_no_shape_and_no_title_mark() -> None:
    (signed,) = stories.sign([item("a", "Brève", link=None)])

    assert signed.shape is None
    assert [m.split(":", 1)[0] for m in signed.marks] == ["link"]


def _reference_simhash(words: list[str]) -> int:
    votes = [0] * 64
    for word in words:
        hashed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        for bit in range(64):
            votes[bit] += 1 if hashed >> bit & 1 else -1
    return sum(1 << bit for bit in range(64) if votes[bit] > 0)


@given(
    st.lists(
        st.sampled_from(["alibaba", "temu", "cognac", "export", "paris", "x", "yy", "2024"]), max_size=300
    )
)
def test_simhash_lanes_give_charikars_simhash(words: list[str]) -> None:
    assert stories._simhash(words) == _reference_simhash(words)


def test_title_words_ignore_case_accents_and_punctuation() -> None:
    assert stories.title_words("L'Éco du monde : « Choose France » – 13/05") == stories.title_words(
        "l'eco du monde: Choose France - 13/05"
    )


PRICES = (
    "Chaque mois, retrouvez les prix au mètre carré des appartements et des maisons dans les grandes villes de "
    "France, quartier par quartier, avec les chiffres des notaires et des agences immobilières partenaires du site."
)


def test_one_template_filled_in_for_two_cities_is_two_stories() -> None:
    nice, toulon = stories.sign(
        [
            item("nice", "Découvrez les prix de l’immobilier à Nice au 1er mai 2024", summary=PRICES),
            item("toulon", "Découvrez les prix de l’immobilier à Toulon au 1er mai 2024", summary=PRICES),
        ]
    )
    assert nice.shape is not None and toulon.shape is not None
    assert (nice.shape ^ toulon.shape).bit_count() <= stories.MAX_DISTANCE  # only the names tell them apart

    assert stories.same_story(toulon, candidate(nice, T0), WINDOW, T0 + timedelta(minutes=5)) is None
    (nice_again,) = stories.sign([item("nice-vn", nice.title, summary=PRICES)])
    assert stories.same_story(nice_again, candidate(nice, T0), WINDOW, T0 + timedelta(minutes=5)) == "title"


# --- the store: marks written with the poll, candidates found by them ----------------------------------------


def test_the_store_finds_candidates_by_mark_within_the_window_and_by_link_at_any_age(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.sqlite3")
    add_feed(store, "https://feeds.test/BFM Économie", "BFM Économie")
    old, recent = stories.sign(
        [
            item("old", SHOW, summary=SHOW_LEDE, link="https://x.test/old"),
            item("recent", "Alibaba à Paris ce matin", link="https://x.test/recent"),
        ]
    )
    feed_state = store.feed_state("https://feeds.test/BFM Économie", "BFM Économie")
    store.record_poll(PollWrite(feed=feed_state, new_items=[old]), T0 - timedelta(days=5))
    store.record_poll(PollWrite(feed=feed_state, new_items=[recent]), T0)
    (probe,) = stories.sign([item("probe", SHOW, summary=SHOW_LEDE, link="https://x.test/recent")])

    found = store.story_candidates(probe.marks, T0 - WINDOW)

    assert [c.item_key for c in found] == [
        recent.key
    ]  # by link; the old one's title mark is out of the window
    by_title = store.story_candidates(probe.marks, T0 - timedelta(days=6))
    assert {c.item_key for c in by_title} == {recent.key, old.key}
    assert next(c for c in by_title if c.item_key == old.key).shape == old.shape  # 64 bits survive SQLite


def test_marks_go_with_their_item_when_it_is_pruned(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.sqlite3")
    add_feed(store, "https://feeds.test/BFM Économie", "BFM Économie")
    (old,) = stories.sign([item("old", SHOW, summary=SHOW_LEDE)])
    feed_state = store.feed_state("https://feeds.test/BFM Économie", "BFM Économie")
    store.record_poll(PollWrite(feed=feed_state, new_items=[old]), T0 - timedelta(days=200))
    success = dataclasses.replace(feed_state, last_success_at=T0, first_success_at=T0 - timedelta(days=200))
    store.record_poll(PollWrite(feed=success), T0)

    assert store.prune(T0) == 1
    assert store._db.execute("SELECT COUNT(*) FROM story_marks").fetchone()[0] == 0


# --- the daemon: one entry per story, never delivered again as new -------------------------------------------

WATCHLIST = """
[[topic]]
id = "chinese-ecommerce"
name = "E-commerce chinois"
any = ["Alibaba", "Temu", "Shein"]
"""
NOW = datetime.now(UTC)
STORY = "Alibaba ouvre un bureau en France pour aider les marques à exporter"
LEDE = (
    "Le géant chinois de l'e-commerce veut aider les enseignes françaises à vendre en Chine, dès cet automne."
)


def copy_of(suffix: str, minutes_ago: int, *, lede: str = LEDE) -> dict[str, object]:
    return {
        "title": STORY,
        "link": f"https://www.bfmtv.com/economie/replay-emissions/alibaba-bureau-france_{suffix}.html",
        "lede": lede,
        "pub_date": NOW - timedelta(minutes=minutes_ago),
    }


def write_config(tmp_path: Path, economie: str, tribune: str, language: str) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    config = tmp_path / "alertd.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [poll]
            first_poll = "alert"
            timeout = "10s"

            [[feed]]
            name = "BFM Économie"
            url = "{economie}"

            [[feed]]
            name = "La Tribune"
            url = "{tribune}"

            [delivery]
            method = "maildir"

            [[subscriber]]
            email = "reader@example.org"
            name = "Reader"
            schedule = "immediate"
            timezone = "Europe/Paris"
            language = "{language}"
            """
        ),
        encoding="utf-8",
    )
    return config


def messages(maildir: Path) -> list[EmailMessage]:
    found = []
    for path in sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.mark.parametrize(
    ("language", "versions", "also"),
    [
        ("fr", "2 autres versions", "aussi dans : La Tribune"),
        ("en", "2 other versions", "also in: La Tribune"),
    ],
)
def test_a_story_carried_four_times_is_one_entry_and_a_later_copy_is_not_sent_again(
    tmp_path: Path, feed_server: FeedServer, language: str, versions: str, also: str
) -> None:
    feed_server.route(
        "/economie.xml",
        make_rss([copy_of("EN-2024081401", 30), copy_of("VN-2024081401", 28), copy_of("VN-2024081402", 25)]),
    )
    feed_server.route(
        "/tribune.xml", make_rss([{**copy_of("x", 20), "link": "https://www.latribune.test/alibaba-paris"}])
    )
    config = write_config(
        tmp_path, feed_server.url("/economie.xml"), feed_server.url("/tribune.xml"), language
    )

    first = alertd("run", "--once", "-c", str(config))

    assert first.returncode == 0, first.stdout + first.stderr
    (message,) = messages(tmp_path / "var/mail")
    text = text_of(message)
    assert text.count(STORY[:40]) == 1, text
    flat = " ".join(text.split())
    assert versions in flat and also in flat, text

    # The story comes back under a fifth URL, in a feed that had it: never delivered again as new.
    feed_server.route(
        "/economie.xml",
        make_rss([copy_of("AN-2024081409", 2), copy_of("EN-2024081401", 30), copy_of("VN-2024081401", 28)]),
    )
    second = alertd("run", "--once", "-c", str(config))

    assert second.returncode == 0, second.stdout + second.stderr
    assert len(messages(tmp_path / "var/mail")) == 1
    assert "feed BFM Économie: 1 new item, 1 match" in second.stdout  # matched, and not sent again
