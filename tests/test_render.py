"""render: the digest email's parts, headers, escaping, templates and the poison-story guard."""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import html as html_module
import os
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.models import Digest, FeedHealth, Span, TopicRule
from alertd.render import (
    check_templates,
    highlight_segments,
    http_link,
    load_templates,
    local_time,
    packaged_templates_dir,
    render_digest,
    safe_header,
)
from tests.test_digest import NOW, digest_of, matched_item

GOLDEN = Path(__file__).parent / "data" / "golden"
TEMPLATES = Path(__file__).parent.parent / "templates"
EXPECTED_HEADERS = sorted(
    {
        "subject",
        "from",
        "to",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "auto-submitted",
        "x-auto-response-suppress",
        "mime-version",
        "content-type",
    }
)
ALIBABA_SUMMARY = (
    "Le groupe Alibaba ouvre à Paris un bureau chargé d’accompagner les marchands français qui veulent "
    "vendre en Chine, au moment où Temu et Shein accélèrent en Europe."
)


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return load_templates(None)


def fixture_digest() -> Digest:
    """A fixed digest: two topics, a story in three feeds, overflow, a long summary and a sick feed."""
    long_summary = " ".join(["Les exportations de vins et spiritueux progressent encore."] * 12)
    long_summary += " Le cognac, lui, recule à Shanghai."
    cognac = long_summary.index("cognac")
    matched = [
        matched_item(
            "echos-1",
            title="Alibaba ouvre un bureau en France",
            feed="Les Échos",
            story="alibaba-paris",
            seen_minutes_ago=50,
            published=NOW - timedelta(hours=1, minutes=10),
            terms=("alibaba", "temu"),
            spans=(
                Span("title", 0, 7, "alibaba"),
                Span("summary", 10, 17, "alibaba"),
                Span("summary", ALIBABA_SUMMARY.index("Temu"), ALIBABA_SUMMARY.index("Temu") + 4, "temu"),
            ),
            summary=ALIBABA_SUMMARY,
            link="https://www.lesechos.example/alibaba-paris",
        ),
        matched_item("monde-1", feed="Le Monde", story="alibaba-paris", seen_minutes_ago=20),
        matched_item("echos-2", feed="Les Échos", story="alibaba-paris", seen_minutes_ago=45),
        matched_item("figaro-1", feed="Le Figaro", story="alibaba-paris", seen_minutes_ago=5),
        matched_item(
            "usine-1",
            title="Temu visé par une enquête de la DGCCRF",
            feed="L’Usine nouvelle",
            seen_minutes_ago=200,
            score=0.5,
            terms=("temu", "dgccrf"),
            spans=(Span("title", 0, 4, "temu"), Span("link", 30, 36, "dgccrf")),
            summary="",
            link="javascript:alert(1)",
        ),
        matched_item(
            "export-1",
            topic="export",
            title="Les exportations de cognac rebondissent",
            feed="La Tribune",
            terms=("cognac", "exportations"),
            spans=(
                Span("title", 4, 16, "exportations"),
                Span("title", 20, 26, "cognac"),
                Span("summary", 4, 16, "exportations"),
                Span("summary", cognac, cognac + 6, "cognac"),
            ),
            summary=long_summary,
            published=NOW - timedelta(days=1),
        ),
        *[
            matched_item(
                f"extra-{i}",
                topic="export",
                title=f"Brève export n°{i}",
                feed="AFP",
                score=0.1,
                terms=("export",),
            )
            for i in range(3)
        ],
    ]
    return digest_of(
        matched,
        digest_id="4f1c2b9a0d3e4f5a6b7c8d9e0f1a2b3c",
        max_items_per_topic=2,
        rules={"export": TopicRule("terms", 0.1)},
        feed_health=(
            FeedHealth(
                "Le Parisien Éco",
                "https://feeds.example.invalid/parisien",
                "HTTP 503",
                NOW - timedelta(hours=6),
            ),
        ),
    )


def header_names(message: email.message.Message) -> list[str]:
    """Top-level header names, lower-cased and sorted: a duplicated (injected) header shows up twice."""
    return sorted(name.lower() for name in message)


def parsed(message: EmailMessage) -> EmailMessage:
    """The message as a receiving client sees it: serialised with CRLF and parsed back."""
    result = email.message_from_bytes(bytes(message), policy=email.policy.default)
    assert isinstance(result, EmailMessage)
    return result


def text_part(message: EmailMessage) -> str:
    body = parsed(message).get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    body = parsed(message).get_body(("html",))
    assert body is not None
    return str(body.get_content())


# --- the text part -----------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "name"), [("en", "digest.txt"), ("fr", "digest.fr.txt")])
def test_text_part_matches_golden_file(env: jinja2.Environment, language: str, name: str) -> None:
    text = text_part(render_digest(dataclasses.replace(fixture_digest(), language=language), env))
    golden = GOLDEN / name
    if os.environ.get("ALERTD_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")

    assert golden.read_text(encoding="utf-8") == text


def test_text_part_lines_fit_78_columns(env: jinja2.Environment) -> None:
    lines = text_part(render_digest(fixture_digest(), env)).splitlines()

    assert [line for line in lines if len(line) > 78 and "://" not in line] == []


# --- headers ---------------------------------------------------------------------------------


def test_headers_are_set_exactly(env: jinja2.Environment) -> None:
    message = parsed(render_digest(fixture_digest(), env, list_id_domain="news.example.invalid"))

    assert header_names(message) == EXPECTED_HEADERS
    assert message["Subject"] == (
        "[alertd] 6 stories — E-commerce chinois (2), Exportations françaises (4): "
        "Alibaba ouvre un bureau en France"
    )
    assert message["From"] == "alertd@example.invalid"
    assert message["To"] == "Marie Dupont <marie@example.invalid>"
    assert message["Date"] == "Thu, 26 Nov 2026 06:03:00 +0000"
    assert message["Message-ID"] == "<4f1c2b9a0d3e4f5a6b7c8d9e0f1a2b3c@alertd>"
    assert re.fullmatch(r"alertd digest <[0-9a-f]{16}\.news\.example\.invalid>", message["List-Id"])
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"


def test_parts_are_text_then_html_utf8_without_disposition(env: jinja2.Environment) -> None:
    message = parsed(render_digest(fixture_digest(), env))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    assert [p["Content-Disposition"] for p in parts] == [None, None]


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "[alertd] 0 stories"),
        (2, "[alertd] 2 stories — E-commerce chinois (2): Story k0"),
    ],
)
def test_subject_counts_stories(env: jinja2.Environment, count: int, expected: str) -> None:
    digest = digest_of([matched_item(f"k{i}") for i in range(count)])

    assert render_digest(digest, env)["Subject"] == expected


@pytest.mark.parametrize(
    ("kind", "language", "expected"),
    [
        ("digest", "fr", "Temu recule en Europe [alertd · E-commerce chinois]"),
        ("alert", "fr", "Temu recule en Europe [Alerte alertd · E-commerce chinois]"),
        ("alert", "en", "Temu recule en Europe [alertd alert · E-commerce chinois]"),
    ],
)
def test_a_one_story_subject_starts_with_its_headline(
    env: jinja2.Environment, kind: str, language: str, expected: str
) -> None:
    digest = digest_of([matched_item("k", title="Temu recule en Europe")], kind=kind, language=language)

    assert render_digest(digest, env)["Subject"] == expected


def test_list_unsubscribe_mails_the_contact_naming_the_subscriber_and_the_topics(
    env: jinja2.Environment,
) -> None:
    stories = [matched_item("a"), matched_item("b", topic="export")]
    to_sender = parsed(render_digest(digest_of(stories, sender="Veille <alertd@example.invalid>"), env))
    to_admin = parsed(render_digest(digest_of(stories, contact="Alice <alice@example.invalid>"), env))

    assert to_sender["List-Unsubscribe"] == (
        "<mailto:alertd@example.invalid?subject=unsubscribe%20marie%40example.invalid%20ecom%2Cexport>"
    )
    assert to_admin["List-Unsubscribe"].startswith(
        "<mailto:alice@example.invalid?subject=unsubscribe%20marie"
    )
    footer = " ".join(
        text_part(render_digest(digest_of(stories, contact="Alice <alice@example.invalid>"), env)).split()
    )
    assert "write to Alice <alice@example.invalid>" in footer


def test_the_footer_names_no_server_path(env: jinja2.Environment) -> None:
    message = render_digest(fixture_digest(), env)

    for part in (text_part(message), html_part(message)):
        assert "/etc/alertd" not in part and "[[subscriber]]" not in part
        assert "alertd@example.invalid" in part


def test_subject_is_capped_at_200_characters(env: jinja2.Environment) -> None:
    digest = digest_of([matched_item("k", title="Très long titre " * 40)])

    subject = parsed(render_digest(digest, env))["Subject"]

    assert len(subject) == 200
    assert subject.endswith("…")


def test_message_id_and_list_id_are_stable_across_renders(env: jinja2.Environment) -> None:
    first = render_digest(fixture_digest(), env)
    second = render_digest(fixture_digest(), env)

    assert (first["Message-ID"], first["List-Id"]) == (second["Message-ID"], second["List-Id"])


def test_subscriber_name_with_specials_is_encoded_not_injected(env: jinja2.Environment) -> None:
    digest = digest_of([], subscriber_name='Dupont, "Marie"\r\nBcc: x@evil.invalid')

    message = parsed(render_digest(digest, env))

    assert message["To"].addresses[0].addr_spec == "marie@example.invalid"
    assert None is message["Bcc"]
    assert header_names(message) == EXPECTED_HEADERS


HOSTILE_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "Titre\r\nReply-To: x@evil.invalid",
            "=?UTF-8?Q?=0A?=Reply-To: x@evil.invalid",
            "a\u2028b\u2029c\x85d\x00e\x1b[31m",
            "x" * 5000,
            "\ud800 lone surrogate",
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=HOSTILE_TEXT, summary=HOSTILE_TEXT, topic=HOSTILE_TEXT, feed=HOSTILE_TEXT)
def test_feed_text_never_changes_the_header_set(
    env: jinja2.Environment, title: str, summary: str, topic: str, feed: str
) -> None:
    digest = digest_of(
        [
            matched_item(
                "k", title=title, summary=summary, feed=feed or "f", spans=(Span("title", 0, 3, "x"),)
            )
        ],
        topic_names={"ecom": topic},
    )

    message = email.message_from_bytes(bytes(render_digest(digest, env)), policy=email.policy.default)

    assert header_names(message) == EXPECTED_HEADERS
    subject = str(message["Subject"])
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", subject)
    assert len(subject) <= 200
    assert message.get_body(("plain",)) is not None


# --- safe_header, highlighting, links, times ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain title", "plain title"),
        ("a\r\nb", "a b"),
        ("a\u2028b\u2029c", "a b c"),
        ("a\x00\x07\x1b\x7f\x85\x9fb", "a b"),
        ("  many   spaces\t\there  ", "many spaces here"),
        ("=?UTF-8?Q?=0A?=Reply-To:", "=\u200b?UTF-8?Q?=0A?=Reply-To:"),
        ("\ud800x", "x"),
    ],
)
def test_safe_header_cleans(raw: str, expected: str) -> None:
    assert expected == safe_header(raw)


def test_safe_header_caps_length_with_ellipsis() -> None:
    result = safe_header("word " * 100, limit=20)

    assert len(result) <= 20
    assert result.endswith("…")


def test_highlight_segments_marks_spans_of_the_field_only() -> None:
    spans = (Span("title", 0, 7, "alibaba"), Span("summary", 0, 2, "le"))

    assert highlight_segments("Alibaba ouvre", spans, "title") == [("Alibaba", True), (" ouvre", False)]


def test_highlight_segments_merges_overlaps_and_clips_out_of_range() -> None:
    spans = (Span("t", 2, 5, "a"), Span("t", 4, 8, "b"), Span("t", 9, 99, "c"), Span("t", -3, 1, "d"))

    assert highlight_segments("abcdefghij", spans, "t") == [
        ("a", True),
        ("b", False),
        ("cdefgh", True),
        ("i", False),
        ("j", True),
    ]


def test_highlight_segments_ignores_empty_and_inverted_spans() -> None:
    spans = (Span("t", 3, 3, "a"), Span("t", 5, 2, "b"), Span("t", 50, 60, "c"))

    assert highlight_segments("abcdef", spans, "t") == [("abcdef", False)]


def test_highlight_segments_truncates_at_a_word_and_drops_spans_past_the_cut() -> None:
    text = "alpha beta gamma delta"
    spans = (Span("s", 6, 10, "beta"), Span("s", 17, 22, "delta"))

    assert highlight_segments(text, spans, "s", limit=15) == [("alpha ", False), ("beta", True), ("…", False)]


def test_highlight_segments_cleans_controls_and_whitespace() -> None:
    assert highlight_segments("  a\r\n\tb\x00c  ", (), "s") == [("a b c", False)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.invalid/a?b=1", "https://example.invalid/a?b=1"),
        ("HTTP://example.invalid/", "HTTP://example.invalid/"),
        ("javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("mailto:a@example.invalid", None),
        ("//example.invalid/x", None),
        ("https://exa mple.invalid/", None),
        (None, None),
    ],
)
def test_http_link_allows_only_absolute_http_urls(url: str | None, expected: str | None) -> None:
    assert expected == http_link(url)


def test_local_time_converts_to_the_subscriber_zone() -> None:
    moment = datetime(2026, 11, 26, 6, 3, tzinfo=timezone.utc)

    assert local_time(moment, "Europe/Paris") == "26/11/2026 07:03"
    assert local_time(moment.replace(tzinfo=None), "UTC") == "26/11/2026 06:03"


# --- HTML part ---------------------------------------------------------------------------------


class TagCollector(HTMLParser):
    """Every start tag and its attributes, as a browser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = TagCollector()
    collector.feed(html)
    collector.close()
    return collector.tags


HOSTILE_SUMMARY = (
    '<script>alert(1)</script><img src="https://t.example/1x1.gif" onerror="alert(2)">'
    '<a href="javascript:alert(3)">x</a><b>bold</b> "quotes" & <iframe src=x>'
)


def test_html_part_escapes_feed_text_and_keeps_links_safe(env: jinja2.Environment) -> None:
    digest = digest_of(
        [
            matched_item("h1", title=HOSTILE_SUMMARY, summary=HOSTILE_SUMMARY, link="javascript:alert(4)"),
            matched_item("h2", title="<b>ok</b>", summary=HOSTILE_SUMMARY, link="https://ok.example/a"),
        ],
        topic_names={"ecom": "<script>topic</script>"},
        subscriber_name="<img src=x onerror=alert(5)>",
    )

    tags = tags_of(html_part(render_digest(digest, env)))

    names = {tag for tag, _ in tags}
    assert set() == names & {"script", "img", "iframe", "form", "style", "object", "embed", "link"}
    assert [(tag, a) for tag, attrs in tags for a in attrs if a.startswith("on")] == []
    hrefs = [attrs["href"] or "" for tag, attrs in tags if "href" in attrs]
    assert hrefs == ["https://ok.example/a"]


def test_html_part_has_lang_color_scheme_and_no_remote_resources(env: jinja2.Environment) -> None:
    tags = tags_of(html_part(render_digest(fixture_digest(), env)))

    html_attrs = next(attrs for tag, attrs in tags if tag == "html")
    assert html_attrs.get("lang") == "en"
    assert {"content": "light dark", "name": "color-scheme"}.items() <= next(
        attrs for tag, attrs in tags if tag == "meta" and attrs.get("name") == "color-scheme"
    ).items()
    assert [attrs for _, attrs in tags if "src" in attrs] == []
    assert all(
        (attrs["href"] or "").startswith(("http://", "https://", "mailto:"))
        for _, attrs in tags
        if "href" in attrs
    )


def test_html_part_shows_highlights_also_in_why_overflow_and_feed_health(env: jinja2.Environment) -> None:
    html = html_part(render_digest(fixture_digest(), env))

    assert re.search(r"<mark[^>]*>Alibaba</mark> ouvre un bureau en France</a>", html)
    assert "also in: Le Monde, Le Figaro" in html
    assert "Why: <code" in html
    assert "+2 more" in html
    assert "Le Parisien Éco" in html
    assert "/etc/alertd/alertd.toml" not in html and "Unsubscribe" in html


def test_non_http_link_is_rendered_as_plain_text(env: jinja2.Environment) -> None:
    html = html_part(render_digest(fixture_digest(), env))

    assert "javascript:" not in html
    assert "DGCCRF" in html


# --- templates ---------------------------------------------------------------------------------


def test_no_template_uses_safe_filter() -> None:
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(TEMPLATES.glob("*.j2"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\|\s*safe\b|\bmarkup\(|autoescape\s+false", line, re.IGNORECASE)
    ]

    assert offenders == []


def test_packaged_templates_are_found_and_check_clean(env: jinja2.Environment) -> None:
    assert (packaged_templates_dir() / "digest.html.j2").is_file()
    assert check_templates(env) == []


def test_installed_wheel_layout_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import alertd

    package = tmp_path / "site-packages" / "alertd"
    (package / "templates").mkdir(parents=True)
    (package / "templates" / "digest.html.j2").write_text("wheel", encoding="utf-8")
    monkeypatch.setattr(alertd, "__file__", str(package / "__init__.py"))

    assert packaged_templates_dir() == package / "templates"


def test_autoescape_is_on_for_html_and_off_for_text(env: jinja2.Environment) -> None:
    assert env.autoescape("digest.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("digest.txt.j2") is False  # type: ignore[operator]
    assert env.autoescape("subject.txt.j2") is False  # type: ignore[operator]


def test_text_part_is_not_html_escaped(env: jinja2.Environment) -> None:
    digest = digest_of([matched_item("a", title='AT&T <rachète> "Time"')])

    assert 'AT&T <rachète> "Time"' in text_part(render_digest(digest, env))


def test_user_templates_dir_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text("Veille: {{ digest.story_count }} articles", encoding="utf-8")

    message = render_digest(fixture_digest(), load_templates(tmp_path))

    assert message["Subject"] == "Veille: 6 articles"
    assert "Alibaba" in text_part(message)  # the other templates still come from the package


def test_broken_user_template_is_reported_by_check_templates(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text("<p>{% for x in %}</p>", encoding="utf-8")
    (tmp_path / "digest.txt.j2").write_text("{{ digest.no_such_field }}", encoding="utf-8")

    problems = check_templates(load_templates(tmp_path))

    assert len(problems) == 2
    assert any("digest.html.j2" in p for p in problems)
    assert any("digest.txt.j2" in p and "no_such_field" in p for p in problems)


def test_missing_templates_dir_is_a_config_error(tmp_path: Path) -> None:
    from alertd.errors import ConfigError

    with pytest.raises(ConfigError, match="templates_dir"):
        load_templates(tmp_path / "nope")


# --- poison stories ----------------------------------------------------------------------------


def test_poison_story_is_skipped_and_the_digest_still_goes(
    env: jinja2.Environment, caplog: pytest.LogCaptureFixture
) -> None:
    digest = digest_of(
        [
            matched_item("good", title="Bonne nouvelle", score=2.0),
            matched_item("poison", title="Mauvaise", feed="bad \ud800 feed name", score=1.0),
        ]
    )

    message = render_digest(digest, env)

    text = text_part(message)
    assert "Bonne nouvelle" in text
    assert "Mauvaise" not in text
    assert any("poison" in r.getMessage() for r in caplog.records)


def test_poison_story_in_overflow_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        "{% for s in digest.sections %}{% for o in s.overflow %}{{ 1 // (o.title != 'boom') }}"
        "{{ o.title }}{% endfor %}{% endfor %}",
        encoding="utf-8",
    )
    digest = digest_of(
        [matched_item("a", score=3.0), matched_item("b", title="boom"), matched_item("c", title="fine")],
        max_items_per_topic=1,
    )

    text = text_part(render_digest(digest, load_templates(tmp_path)))

    assert text.strip() == "1fine"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "fr",
            [
                "en échec : erreur du serveur (HTTP 5xx) (4 tentatives)",
                "n’existe plus (HTTP 410) : alertd a cessé de l’interroger",
                "a déménagé définitivement : alertd lit désormais https://new.example.invalid/rss",
                "a publié trop d’articles d’un coup",
                "Flux inconnu : odd problem",
            ],
        ),
        (
            "en",
            [
                "failing: server error (HTTP 5xx) (4 attempts)",
                "gone (HTTP 410): alertd stopped polling it",
                "moved permanently: alertd now fetches https://new.example.invalid/rss",
                "published too many items at once",
                "Flux inconnu: odd problem",
            ],
        ),
    ],
)
def test_feed_health_speaks_the_readers_language(
    env: jinja2.Environment, language: str, expected: list[str]
) -> None:
    url = "https://feeds.example.invalid/"
    health = (
        FeedHealth("A", url + "a", "failing: http_5xx (4 attempts)", NOW, error_class="http_5xx", attempts=4),
        FeedHealth("B", url + "b", "gone (HTTP 410): polling stopped", NOW, kind="gone"),
        FeedHealth("C", url + "c", "moved ...", NOW, kind="moved", target="https://new.example.invalid/rss"),
        FeedHealth("D", url + "d", "12 new items in one poll ...", NOW, kind="flood"),
        FeedHealth("Flux inconnu", url + "e", "odd problem", NOW, kind="other"),
    )
    digest = dataclasses.replace(fixture_digest(), language=language, feed_health=health)
    message = render_digest(digest, env)
    text = " ".join(text_part(message).split())
    shown = " ".join(html_module.unescape(re.sub(r"<[^>]+>", "", html_part(message))).split())
    for line in expected:
        assert line in text
        assert line in shown


# --- invisible characters (issue #12, item 5) ----------------------------------------------------------


def test_highlight_segments_drop_invisible_characters_and_keep_the_highlight_on_its_letters() -> None:
    title = "\u200eLe géant Ali\u00adbaba\u200b recule\ufeff"
    start = title.index("Ali")
    spans = (Span("title", start, start + len("Ali\u00adbaba"), "alibaba"),)

    assert highlight_segments(title, spans, "title") == [
        ("Le géant ", False),
        ("Alibaba", True),
        (" recule", False),
    ]


@pytest.mark.parametrize(
    "invisible", ["\u00ad", "\u200b", "\u200d", "\u2060", "\ufeff", "\u200f", "\u202e", "\u2067"]
)
def test_highlight_segments_drop_every_kind_of_invisible_character(invisible: str) -> None:
    text = f"Vu{invisible} : Te{invisible}mu{invisible} et Shein"
    spans = (Span("summary", text.index("Te"), text.index("Te") + 5, "temu"),)

    assert highlight_segments(text, spans, "summary") == [
        ("Vu : ", False),
        ("Temu", True),
        (" et Shein", False),
    ]


def test_digest_parts_show_matched_words_without_invisible_characters(env: jinja2.Environment) -> None:
    title = "Le géant Ali\u00adbaba recule"
    summary = "Face à Te\u200dmu et \u200eShein, Ali\u200bbaba se replie."
    spans = (
        Span("title", 9, 17, "alibaba"),
        Span("summary", summary.index("Te"), summary.index("Te") + 5, "temu"),
        Span("summary", summary.index("Ali"), summary.index("Ali") + 8, "alibaba"),
    )
    item = matched_item("inv-1", title=title, summary=summary, spans=spans, terms=("alibaba", "temu"))
    message = render_digest(digest_of([item]), env)
    text, html = text_part(message), html_part(message)

    assert re.search(r"<mark[^>]*>Alibaba</mark> recule", html)
    assert re.search(r"Face à <mark[^>]*>Temu</mark> et Shein, <mark[^>]*>Alibaba</mark> se replie\.", html)
    assert "Le géant Alibaba recule" in text
    assert "Face à *Temu* et Shein, *Alibaba* se replie." in " ".join(text.split())
    invisible = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")
    assert not invisible.search(text)
    assert not invisible.search(html)


def test_every_fixed_string_and_error_class_exists_in_both_languages() -> None:
    from alertd.strings import ERROR_CLASSES, STRINGS

    assert set(STRINGS["fr"]) == set(STRINGS["en"])
    assert set(ERROR_CLASSES["fr"]) == set(ERROR_CLASSES["en"])


def test_a_subject_never_carries_invisible_characters() -> None:
    assert safe_header("Ali\u00adbaba re\u200bcule \u200eà Paris") == "Alibaba recule à Paris"


@pytest.mark.parametrize(("language", "more"), [("fr", "+1 autre :"), ("en", "+1 more:")])
def test_one_story_past_the_cap_is_counted_in_the_singular(
    env: jinja2.Environment, language: str, more: str
) -> None:
    digest = digest_of([matched_item("a"), matched_item("b")], max_items_per_topic=1, language=language)

    message = render_digest(digest, env)

    assert more in text_part(message)
    assert more.rstrip(": ") in html_part(message)
