"""Normalisation, tokenisation, inflection and HTML-to-text: the ground every match stands on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.normalise import (
    _tokenise_word_by_word,
    inflected_forms,
    leading_elision,
    normalise,
    term_words,
    tokenise,
)
from alertd.text import _simple_parts, html_to_text, html_to_text_by_parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alibaba", "alibaba"),
        ("ALIBABA", "alibaba"),
        ("d'Alibaba", "alibaba"),
        ("d’Alibaba", "alibaba"),  # typographic apostrophe
        ("L’Exportation", "exportation"),
        ("l'export", "export"),
        ("qu'il", "il"),
        ("jusqu'à", "a"),
        ("lorsqu’elle", "elle"),
        ("puisqu'on", "on"),
        ("Éxportés", "exportes"),
        ("œuvre ŒUVRE", "oeuvre oeuvre"),
        ("Straße", "strasse"),
        ("ﬁnance", "finance"),  # ligature
        ("ＡＢＣ", "abc"),  # full-width letters (NFKC)
        ("e\u0301te\u0301", "ete"),  # decomposed accents
        ("e-commerce", "e commerce"),
        ("e‑commerce", "e commerce"),  # non-breaking hyphen
        ("JD.com", "jd com"),
        ("Singles' Day", "singles day"),
        ("  spaced\tout\n", "spaced out"),
        ("foo_bar", "foo bar"),
        ("Temu🔥", "temu"),
        ("aujourd'hui", "aujourd hui"),
    ],
)
def test_normalise_folds_case_accents_elision_and_punctuation(text: str, expected: str) -> None:
    assert expected == normalise(text)


def test_tokens_keep_offsets_into_the_original_text() -> None:
    text = "Les exportations d’Alibaba"
    tokens = tokenise(text)
    assert list(tokens.words) == ["les", "exportations", "d", "alibaba"]
    assert [text[s:e] for s, e in zip(tokens.starts, tokens.ends, strict=True)] == [
        "Les",
        "exportations",
        "d",
        "Alibaba",
    ]


def test_term_words_drop_a_leading_elided_article_only() -> None:
    assert term_words("l'export") == ("export",)
    assert term_words("chiffre d'affaires") == ("chiffre", "d", "affaires")
    assert leading_elision("L’export") == "L’"
    assert leading_elision("export") is None


@given(st.text(alphabet="abcéÉœŒﬁ'’- .,_xyzÀ\u0301JD🔥", max_size=40))
def test_fast_and_general_tokenisers_agree(text: str) -> None:
    fast, general = tokenise(text), _tokenise_word_by_word(text)
    assert list(general.words) == list(fast.words)
    assert general.starts == fast.starts
    assert general.ends == fast.ends


@pytest.mark.parametrize(
    ("term", "form"),
    [
        ("export", "exportations"),
        ("export", "exportation"),
        ("export", "exportateur"),
        ("export", "exportateurs"),
        ("export", "exportatrice"),
        ("export", "exporte"),
        ("export", "exportent"),
        ("export", "exporter"),
        ("export", "exportees"),
        ("exportation", "exports"),
        ("exportation", "exportateurs"),
        ("chinois", "chinoises"),
        ("commercial", "commerciaux"),
        ("commerciale", "commerciales"),
        ("europeen", "europeenne"),
        ("tarif", "tarifs"),
    ],
)
def test_inflected_forms_cover_french_and_english_inflection(term: str, form: str) -> None:
    assert form in inflected_forms(term)


@pytest.mark.parametrize(
    ("term", "not_a_form"),
    [("vente", "vent"), ("temu", "temuco"), ("jd", "jds"), ("porte", "port")],
)
def test_inflected_forms_do_not_reach_other_words(term: str, not_a_form: str) -> None:
    assert not_a_form not in inflected_forms(term)


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("Caf&eacute; &amp; th&#233;", "Café & thé"),
        ("<script>alert(1)</script>visible<style>p{}</style>", "visible"),
        ('<img src="x.png" alt="pic">text', "text"),
        ("  lots   of \n\n spaces  ", "lots of spaces"),
        ("", ""),
        ("<div><ul><li>a</li><li>b</li></ul></div>", "a\nb"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert expected == html_to_text(html)


_HTML_PIECES = [
    "<p>",
    "</p>",
    "<P CLASS='lead'>",
    "<br>",
    "<br/>",
    "<br />",
    "</br>",
    "<div\n>",
    "<b>",
    "</B>",
    "<span>",
    '<a href="https://example.com/?a=1&amp;b=2">',
    "</a>",
    '<a href="x>y">',
    "<img src=x alt=pic/>",
    "<li>",
    "</li>",
    "<h2>",
    "<hr/>",
    "<script>",
    "</script>",
    "<style>p{}</style>",
    "<textarea>",
    "<title>",
    "<!-- note -->",
    "<!DOCTYPE html>",
    "<?pi?>",
    "<![CDATA[x]]>",
    "</p/>",
    "< p>",
    "<p/ >",
    "<",
    ">",
    "=",
    "&amp;",
    "&eacute;",
    "&#233;",
    "&#x41;",
    "&#10;",
    "&nbsp;",
    "&",
    "&am",
    "&amp",
    "&#",
    "&unknown;",
    "\n",
    " ",
    "\t",
    "\u00a0",
    "\u200b",
    "Temu",
    "é",
    "l'export",
    '"',
    "'",
    "/",
]


@given(st.lists(st.sampled_from(_HTML_PIECES), max_size=25))
@settings(max_examples=3000, deadline=None)
def test_html_to_text_simple_path_equals_htmlparser(pieces: list[str]) -> None:
    html = "".join(pieces)
    assert html_to_text_by_parser(html) == html_to_text(html)


@pytest.mark.parametrize(
    "html",
    ["<p>a</p>", "plain &amp; text\n", "<a href='x'>l</a><br/>", "x <b class=c>y</b>"],
)
def test_html_to_text_takes_the_simple_path_for_plain_tags(html: str) -> None:
    assert _simple_parts(html) is not None


@pytest.mark.parametrize("html", ["a < b", "<!-- c -->x", "<script>x</script>", "<p/ >", '<a href="x>y">'])
def test_html_to_text_leaves_the_rest_to_htmlparser(html: str) -> None:
    assert _simple_parts(html) is None


# --- invisible characters (issue #12, item 5) ---------------------------------------------------------

# One of each class: soft hyphen, zero-width space, non-joiner, joiner, word joiner, BOM, bidi marks, bidi
# embeddings and overrides, bidi isolates, Mongolian vowel separator, Arabic letter mark.
INVISIBLES = [
    "\u00ad",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u200e",
    "\u200f",
    *"\u202a\u202b\u202c\u202d\u202e",
    *"\u2066\u2067\u2068\u2069",
    "\u180e",
    "\u061c",
]


@pytest.mark.parametrize("invisible", INVISIBLES)
def test_an_invisible_character_inside_a_word_joins_it_and_offsets_keep_it(invisible: str) -> None:
    text = f"Le géant Ali{invisible}baba recule, {invisible}Te{invisible}mu{invisible} aussi"
    tokens = tokenise(text)
    assert list(tokens.words) == ["le", "geant", "alibaba", "recule", "temu", "aussi"]
    assert [text[s:e] for s, e in zip(tokens.starts, tokens.ends, strict=True)] == [
        "Le",
        "géant",
        f"Ali{invisible}baba",
        "recule",
        f"Te{invisible}mu",  # a word's range never starts or ends on an invisible character
        "aussi",
    ]
    assert normalise(text) == "le geant alibaba recule temu aussi"
    assert term_words(f"l'Ali{invisible}baba") == ("alibaba",)


def test_invisible_characters_do_not_count_between_words() -> None:
    tokens = tokenise("Jack\u200b Ma, e\u00ad-commerce")
    assert list(tokens.words) == ["jack", "ma", "e", "commerce"]
    assert tokens.joined(0)  # "\u200b " is a space between two words of a phrase
    assert not tokens.joined(1)  # ", " still ends one
    assert tokens.joined(2)
    assert tokens.short_hyphen_pairs({"ecommerce"}) == [(2, "ecommerce")]
    assert tokens.cased(0) == "Jack"
    assert tokenise("J\u200bD").cased(0) == "JD"


def test_drop_invisible_removes_only_invisible_characters() -> None:
    from alertd.normalise import INVISIBLE, drop_invisible  # imported here: the other tests run without them

    assert sorted(INVISIBLE) == sorted(INVISIBLES)
    assert drop_invisible("".join(INVISIBLES)) == ""
    assert drop_invisible("Ali\u00adbaba \u200eShein\u00a0é") == "Alibaba Shein\u00a0é"
    plain = "no invisible character here"
    assert drop_invisible(plain) is plain


@given(
    st.lists(st.sampled_from(["", "", *INVISIBLES]), min_size=8, max_size=8),
    st.sampled_from(["", "Le ", "d’", "(", "🔥 "]),
    st.sampled_from(["", " recule", "-t-il", "."]),
)
def test_invisible_characters_anywhere_in_a_word_leave_it_whole(
    inserted: list[str], before: str, after: str
) -> None:
    word = "".join(c + i for c, i in zip("Alibaba", inserted, strict=False)) + inserted[7]
    text = inserted[0] + before + word + after
    shown = word.strip("".join(INVISIBLES))  # what the word's range covers: first letter to last letter
    tokens = tokenise(text)
    assert "alibaba" in tokens.words
    index = list(tokens.words).index("alibaba")
    assert text[tokens.starts[index] : tokens.ends[index]] == shown
    general = _tokenise_word_by_word(text)
    assert (list(general.words), general.starts, general.ends) == (
        list(tokens.words),
        tokens.starts,
        tokens.ends,
    )


def test_html_to_text_keeps_a_zero_width_space_only_inside_a_word() -> None:
    cases = {
        "Ali\u200bbaba": "Ali\u200bbaba",  # inside a word: kept, for matching to ignore and digests to drop
        "Ali&shy;baba &#8203;Temu": "Ali\u00adbaba Temu",
        # next to whitespace or at either end: whitespace, as before
        "<p>\u200b\u200bLe prix \u200b\u200bsur\u200b</p>\u200b<p>x</p>": "Le prix sur\nx",
        "a\u200b\nb\u200b \u00a0c\u200b\u3000d": "a b c \u3000d",
    }
    for html, expected in cases.items():
        assert (html_to_text(html), html_to_text_by_parser(html)) == (expected, expected), html
