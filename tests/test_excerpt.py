"""Excerpts that show the why: the window of a summary with the most matched spans, and where each term of the
why line can be seen."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alertd.excerpt import excerpt, term_places
from alertd.models import Span, Story, TopicRule
from alertd.render import SUMMARY_LIMIT, highlight_segments, rule_note, why_terms
from tests.test_digest import NOW

FILLER = "Le commerce mondial ralentit encore cette année selon les économistes. " * 12
MERCOSUR_AT_THE_END = FILLER + "À Asunción, l'accord avec le Mercosur reste pourtant en suspens."


def span_of(text: str, word: str, term: str | None = None, field: str = "summary") -> Span:
    start = text.index(word)
    return Span(field, start, start + len(word), term or word.casefold())


def shown_text(segments: list[tuple[str, bool]]) -> str:
    return "".join(segment for segment, _ in segments)


def test_a_term_at_the_end_of_a_long_summary_is_in_the_excerpt() -> None:
    spans = (span_of(MERCOSUR_AT_THE_END, "Mercosur"),)

    segments = highlight_segments(MERCOSUR_AT_THE_END, spans, "summary", limit=SUMMARY_LIMIT)

    assert ("Mercosur", True) in segments
    assert segments[0] == ("…", False) and segments[-1][0].endswith("en suspens.")
    assert len(shown_text(segments)) <= SUMMARY_LIMIT


def test_the_window_with_most_terms_wins_over_the_lede() -> None:
    text = "Alibaba " + FILLER + "Temu et Shein accélèrent, Temu surtout. " + FILLER
    spans = (
        span_of(text, "Alibaba"),
        span_of(text, "Temu et", "temu"),
        span_of(text, "Shein"),
        Span("summary", text.index("Temu surtout"), text.index("Temu surtout") + 4, "temu"),
    )
    spans = (spans[0], Span("summary", spans[1].start, spans[1].start + 4, "temu"), spans[2], spans[3])

    segments = highlight_segments(text, spans, "summary", limit=SUMMARY_LIMIT)

    assert [s for s, hit in segments if hit] == ["Temu", "Shein", "Temu"]
    assert segments[0] == ("…", False) and segments[-1] == ("…", False)
    assert len(shown_text(segments)) <= SUMMARY_LIMIT


def test_cuts_fall_between_words() -> None:
    spans = (span_of(MERCOSUR_AT_THE_END, "Mercosur"),)
    shown = excerpt(MERCOSUR_AT_THE_END, spans, 120)

    assert MERCOSUR_AT_THE_END[shown.start - 1] == " "  # the excerpt starts a word
    assert shown.text.split()[0] in MERCOSUR_AT_THE_END.split()
    assert shown.text[shown.spans[0].start : shown.spans[0].end] == "Mercosur"


def test_without_spans_the_excerpt_is_the_beginning() -> None:
    shown = excerpt(FILLER, (), 100)

    assert shown.start == 0 and shown.cut_end
    assert FILLER.startswith(shown.text) and len(shown.text) <= 99


def test_a_text_that_fits_is_shown_whole() -> None:
    shown = excerpt("Temu recule.", (Span("summary", 0, 4, "temu"),), 400)

    assert (shown.text, shown.start, shown.cut_end, len(shown.spans)) == ("Temu recule.", 0, False, 1)


@given(
    words=st.lists(
        st.sampled_from(["alibaba", "commerce", "ralentit", "à", "l'accord", "Mercosur", "—"]),
        min_size=1,
        max_size=400,
    ),
    limit=st.integers(min_value=20, max_value=500),
)
def test_an_excerpt_never_exceeds_the_limit_and_its_spans_point_at_their_words(
    words: list[str], limit: int
) -> None:
    text = " ".join(words)
    spans = []
    position = 0
    for word in words:
        if word in ("alibaba", "Mercosur"):
            spans.append(Span("summary", position, position + len(word), word.casefold()))
        position += len(word) + 1

    segments = highlight_segments(text, spans, "summary", limit=limit)
    shown = excerpt(text, spans, limit)

    assert len(shown_text(segments)) <= max(limit, len(text) if len(text) <= limit else limit)
    for span in shown.spans:
        assert shown.text[span.start : span.end].casefold() == span.term


def story(summary: str, terms: tuple[str, ...], spans: tuple[Span, ...], score: float = 1.0) -> Story:
    return Story(
        item_key="k",
        title="Alibaba à Paris",
        link="https://x.test/alibaba",
        feed_name="BFM",
        summary_text=summary,
        published=None,
        first_seen=NOW,
        terms=terms,
        spans=spans,
        score=score,
    )


@pytest.mark.parametrize(
    ("language", "link_note", "further_note"),
    [("fr", "dans le lien", "plus loin dans le texte"), ("en", "in the link", "further in the text")],
)
def test_the_why_line_says_where_a_term_it_cannot_show_matched(
    language: str, link_note: str, further_note: str
) -> None:
    text = "Alibaba " + FILLER + " Temu aussi."
    spans = (  # one window cannot hold both: the lede (with alibaba) wins the tie
        Span("summary", 0, 7, "alibaba"),
        span_of(text, "Temu", "temu"),
        Span("link", 8, 15, "bfmtv"),
    )
    seen = story(text, ("alibaba", "temu", "bfmtv"), spans)

    assert why_terms(seen, language, 120) == [("alibaba", ""), ("temu", further_note), ("bfmtv", link_note)]
    assert why_terms(seen, language, None) == [("alibaba", ""), ("temu", ""), ("bfmtv", link_note)]


def test_term_places_of_a_term_matched_in_title_and_link_is_shown() -> None:
    spans = (Span("title", 0, 7, "alibaba"), Span("link", 10, 17, "alibaba"))

    assert [p.where for p in term_places(("alibaba",), spans, "", 400)] == ["shown"]


@pytest.mark.parametrize(
    ("rule", "score", "fr", "en"),
    [
        (TopicRule(), 1.0, "", ""),
        (TopicRule("query"), 1.0, "requête du sujet", "the topic's query"),
        (TopicRule("all"), 2.0, "un terme par groupe requis", "a term per required group"),
        (TopicRule("terms", 2.0), 2.5, "score 2.5 (seuil 2)", "score 2.5 (threshold 2)"),
        (
            TopicRule("query", 1.5),
            3.0,
            "requête du sujet, score 3 (seuil 1.5)",
            "the topic's query, score 3 (threshold 1.5)",
        ),
    ],
)
def test_the_why_line_names_the_rule_that_made_the_match(
    rule: TopicRule, score: float, fr: str, en: str
) -> None:
    seen = story("", ("alibaba",), (), score)

    assert (rule_note(seen, rule, "fr"), rule_note(seen, rule, "en")) == (fr, en)
