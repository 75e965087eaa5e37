"""Matching: each operator, the French cases, the false friends, explanations, reload, dev-set quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from alertd.conditions import AllOf, AnyOf, AnyTerm, Hits, Leaf, Near, Node, Not, compile_predicate, evaluate
from alertd.explain import explain_item, format_explanation
from alertd.match import match_item
from alertd.normalise import Tokens, normalise
from alertd.termindex import Hit
from alertd.tomlsource import loads
from alertd.watchlist import Watchlist, compile_watchlist, load_watchlist

ROOT = Path(__file__).parents[1]
SHARED = Path(__file__).parents[2] / "shared"
DEV = SHARED / "data" / "eval" / "dev.jsonl"
DEFAULT = load_watchlist(ROOT / "config" / "watchlist.toml")


def watchlist(body: str, sets: str = "") -> Watchlist:
    text = f"[sets]\n{sets}\n[[topic]]\nid = 't'\nname = 'T'\n{body}\n"
    return compile_watchlist(loads(text, Path("w.toml")), source=text)


def fires(w: Watchlist, title: str, summary: str = "", **context: object) -> bool:
    return bool(match_item(w, title, summary, **context))  # type: ignore[arg-type]


# --- the default watchlist on the stories the brief names -------------------------------------------------


@pytest.mark.parametrize(
    ("title", "summary"),
    [
        ("Les ventes d'Alibaba progressent", "Le géant chinois publie ses résultats."),
        ("L’UE ouvre une enquête sur Temu", ""),
        ("Shein dépasse H&M en France", ""),
        ("JD.com Announces Third Quarter Results", ""),
        ("L'e‑commerce chinois à l'assaut de l'Europe", ""),
        ("Les petits colis venus de Chine taxés", ""),
        ("", "PDD Holdings, the parent of Temu, posted revenue growth."),
    ],
)
def test_default_watchlist_finds_chinese_ecommerce(title: str, summary: str) -> None:
    assert [m.topic_id for m in match_item(DEFAULT, title, summary)] == ["chinese-ecommerce"]


@pytest.mark.parametrize(
    ("title", "summary", "link"),
    [
        ("A modern retelling of Ali Baba & the 40 Thieves", "Ali-Baba is back on screen.", ""),
        ("Ali Baba et les 40 voleurs au théâtre", "", ""),
        ("Amazon rainforest: deforestation hits record", "The Amazon lost more trees.", ""),
        ("Yo-Yo Ma en concert à Paris", "Le violoncelliste joue Bach.", ""),
        ("Temuco: un séisme frappe le Chili", "", ""),
        ("Bon plan AliExpress : les écouteurs Lenovo à prix dément", "", ""),
        ("Chez AliExpress, ce drone est à -50 %", "", "https://x.fr/tech/drone_AB-202410.html"),
        ("Jack Ma's drawings amuse the internet", "Alibaba founder Jack Ma shows his art.", ""),
        ("TikTok banni en Nouvelle-Calédonie", "Le réseau social chinois est bloqué.", ""),
    ],
)
def test_default_watchlist_ignores_chinese_ecommerce_false_friends(
    title: str, summary: str, link: str
) -> None:
    found = match_item(DEFAULT, title, summary, link=link)
    assert "chinese-ecommerce" not in [m.topic_id for m in found]


@pytest.mark.parametrize(
    ("title", "summary"),
    [
        ("Les exportations françaises de vin reculent", ""),
        ("Le déficit commercial de la France se creuse", "Selon les Douanes, il atteint 7 milliards."),
        ("Cognac: Pékin ouvre une enquête antidumping", "Les producteurs français inquiets."),
        ("Airbus: 63 livraisons en mars", ""),
        ("Franck Riester, ministre délégué chargé du Commerce extérieur", ""),
        ("Mercosur: les agriculteurs français mobilisés", ""),
        ("", "France's trade deficit narrowed in April as exports rose."),
    ],
)
def test_default_watchlist_finds_french_exports(title: str, summary: str) -> None:
    assert "french-exports" in [m.topic_id for m in match_item(DEFAULT, title, summary)]


@pytest.mark.parametrize(
    ("title", "summary"),
    [
        ("Comment exporter ses contacts Outlook", "Exportez vos données en CSV depuis la France."),
        ("WhatsApp: how to export your chats", "Export your account data in a few steps."),
        ("La Russie interdit les exportations d'essence", ""),
        ("États-Unis: le déficit commercial au plus haut", "Il atteint 78,8 milliards de dollars."),
        ("Un Airbus A320 contraint de faire demi-tour", "Problème technique sur un vol Paris-Nice."),
        ("La surtaxe sur les hauts revenus", "Le gouvernement veut taxer les Français aisés."),
    ],
)
def test_default_watchlist_ignores_french_exports_false_friends(title: str, summary: str) -> None:
    assert "french-exports" not in [m.topic_id for m in match_item(DEFAULT, title, summary)]


# --- normalisation as seen through matching ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "text", "expected"),
    [
        ("exportation", "Les exportations reculent", True),
        ("exportation", "Un exportateur de vin", True),
        ("exportation", "Une grande exportatrice", True),
        ("exportation", "Ils exportent plus", True),
        ("export", "l'export repart", True),
        ("Alibaba", "Les comptes d’Alibaba", True),
        ("Alibaba", "ALIBABA GROUP", True),
        ("Temu", "Temuco", False),
        ("Temu", "Temu's app", True),
        ("e-commerce", "le ecommerce", True),
        ("e-commerce", "le e commerce", True),
        ("e-commerce", "le e‑commerce", True),
        ("ecommerce", "le e-commerce", True),
        ("Alibaba", "Ali Baba et les voleurs", False),
        ("Alibaba", "Ali-Baba et les voleurs", False),
        ("réglementation", "reglementation", True),
        ("balance commerciale", "la balance, commerciale", False),
        ("balance commerciale", "les balances commerciales", True),
    ],
)
def test_terms_match_across_spelling_variants(term: str, text: str, expected: bool) -> None:
    assert expected == fires(watchlist(f"any = [{json.dumps(term)}]"), text)


def test_exact_case_term_ignores_other_cases() -> None:
    w = watchlist('any = [{ text = "JD", case = "exact" }]')
    assert fires(w, "JD.com results")
    assert not fires(w, "jd sports")


def test_exact_form_term_is_not_inflected() -> None:
    w = watchlist('any = [{ text = "export", form = "exact" }]')
    assert fires(w, "l'export repart")
    assert not fires(w, "les exportations")


# --- operators ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "title", "expected"),
    [
        ('any = ["Temu", "Shein"]', "Shein lève des fonds", True),
        ('any = ["Temu", "Shein"]', "Zara lève des fonds", False),
        ('all = [["Temu", "Shein"], ["amende"]]', "Shein reçoit une amende", True),
        ('all = [["Temu", "Shein"], ["amende"]]', "Shein lève des fonds", False),
        ('any = ["Temu"]\nnone = ["bon plan"]', "Bon plan Temu", False),
        ('query = "Temu AND amende"', "Temu: amende record", True),
        ('query = "Temu AND amende"', "Temu grandit", False),
        ('query = "Temu amende"', "amende pour Temu", True),  # adjacency is AND
        ('query = "Temu OR Shein"', "Shein grandit", True),
        ('query = "Temu AND NOT promo"', "Temu promo", False),
        ('query = "(Temu OR Shein) AND (amende OR enquête)"', "Enquête sur Shein", True),
        ('query = "(Temu OR Shein) AND (amende OR enquête)"', "Shein grandit", False),
        ("query = '\"bon plan\"'", "un bon plan", True),
        ("query = '\"bon plan\"'", "un plan bon", False),
        ('query = "Temu NEAR/2 amende"', "Temu reçoit une amende", True),
        ('query = "Temu NEAR/2 amende"', "Temu reçoit aujourd'hui une lourde amende", False),
        ('query = "amende NEAR/2 Temu"', "Temu reçoit une amende", True),  # either order
        ('query = "export*"', "Les exportateurs", True),
        ('query = "export*"', "Un expert", False),
        ('query = "title:Temu"', "Temu grandit", True),
        ('query = "summary:Temu"', "Temu grandit", False),
        ('query = "title:(Temu OR Shein)"', "Shein grandit", True),
        ('query = "@chinese"', "Shein grandit", True),
        ('query = "Temu OR or"', "or donc", True),  # lower-case or is a word
        ('any = ["@chinese"]', "Temu grandit", True),
        ('all = [["@chinese"], ["amende"]]', "Amende pour Temu", True),
        ('any = [{ regex = "temu\\\\w*" }]', "Temuland ouvre", True),
    ],
)
def test_operators(body: str, title: str, expected: bool) -> None:
    w = watchlist(body, sets='chinese = ["Temu", "Shein"]')
    assert expected == fires(w, title)


def test_field_scoped_set_reference() -> None:
    w = watchlist('query = "title:@chinese"', sets='chinese = ["Temu", "Shein"]')
    assert fires(w, "Shein grandit", "rien")
    assert not fires(w, "Rien", "Shein grandit")


def test_link_scope_matches_url_words() -> None:
    w = watchlist('any = ["Temu"]\nnone = [{ text = "AB", case = "exact", field = "link" }]')
    assert fires(w, "Temu", link="https://x.fr/temu_AN-2024.html")
    assert not fires(w, "Temu", link="https://x.fr/temu_AB-2024.html")


def test_feed_scoping_by_name_or_tag() -> None:
    w = watchlist('any = ["Temu"]\nfeeds = ["BFM Tech", "tag:china"]\nexclude_feeds = ["Spam"]')
    assert fires(w, "Temu", feed_name="bfm tech")
    assert fires(w, "Temu", feed_name="Other", feed_tags=frozenset({"china"}))
    assert not fires(w, "Temu", feed_name="Other")
    assert not fires(w, "Temu", feed_name="Spam", feed_tags=frozenset({"china"}))


def test_weights_and_min_score() -> None:
    w = watchlist('any = [{ text = "Temu", weight = 2 }, "amende", "Shein"]\nmin_score = 3')
    [found] = match_item(w, "Temu reçoit une amende", "")
    assert found.score == 3.0
    assert not fires(w, "Temu grandit")
    assert not fires(w, "Shein reçoit une amende")


def test_matches_follow_watchlist_order() -> None:
    text = (
        '[[topic]]\nid = "b"\nname = "B"\nany = ["Shein"]\n[[topic]]\nid = "a"\nname = "A"\nany = ["Temu"]\n'
    )
    w = compile_watchlist(loads(text, Path("w.toml")), source=text)
    assert [m.topic_id for m in match_item(w, "Temu et Shein", "")] == ["b", "a"]


# --- explanations -----------------------------------------------------------------------------------------


def test_spans_point_into_the_original_text() -> None:
    w = watchlist('any = ["Alibaba", "e-commerce"]')
    title, summary = "L’e‑commerce d’Alibaba", "ALIBABA grandit"
    [found] = match_item(w, title, summary)
    assert found.terms == ("e-commerce", "Alibaba")
    assert [(title if s.field == "title" else summary)[s.start : s.end] for s in found.spans] == [
        "e‑commerce",
        "Alibaba",
        "ALIBABA",
    ]


def test_only_terms_of_branches_that_hold_are_evidence() -> None:
    w = watchlist('query = "Temu OR (Shein AND amende)"')
    [found] = match_item(w, "Temu et Shein", "")
    assert found.terms == ("Temu",)


def test_explanation_brackets_the_matched_words() -> None:
    w = watchlist('any = ["Temu"]')
    explanation = format_explanation(explain_item(w, "Enquête sur Temu", ""))
    assert "t (T): matched, score 1" in explanation
    assert "title: Enquête sur [Temu]" in explanation
    assert format_explanation(explain_item(w, "x", "y")) == "matched: no topic\nno term fired: t"


_WORD = st.text(alphabet="aeiouéèàçlmnrstxzABCÉ", min_size=1, max_size=8)
_SEPARATOR = st.sampled_from([" ", "  ", ", ", " l'", " d’", "-", "\n", " (", ") "])


@given(words=st.lists(_WORD, min_size=1, max_size=12), term_words=st.lists(_WORD, min_size=1, max_size=2))
def test_every_span_normalises_like_its_literal_term(words: list[str], term_words: list[str]) -> None:
    term = " ".join(term_words)
    assume(len(normalise(term).replace(" ", "")) > 2)
    text = ""
    for i, word in enumerate([*words[:3], term, *words[3:]]):
        text += (" " if i else "") + word
    w = watchlist(f"any = [{{ text = {json.dumps(term)}, form = 'exact' }}]")
    found = match_item(w, text, "")
    assert found, "the term was inserted, it must be found"
    for span in found[0].spans:
        assert normalise(term).replace(" ", "") == normalise(text[span.start : span.end]).replace(" ", "")


# --- reload -----------------------------------------------------------------------------------------------


def test_reloading_a_changed_watchlist_changes_results(tmp_path: Path) -> None:
    path = tmp_path / "watchlist.toml"
    path.write_text('[[topic]]\nid = "t"\nname = "T"\nany = ["Temu"]\n', encoding="utf-8")
    assert fires(load_watchlist(path), "Shein grandit") is False
    path.write_text('[[topic]]\nid = "t"\nname = "T"\nany = ["Shein"]\n', encoding="utf-8")
    assert fires(load_watchlist(path), "Shein grandit") is True


# --- compiled predicates: closures equivalent to the tree they come from --------------------------------

_TERM_IDS = st.integers(min_value=0, max_value=5)
_TERM_SETS = st.frozensets(_TERM_IDS, max_size=3)


def _node_trees() -> st.SearchStrategy[Node]:
    leaves: st.SearchStrategy[Node] = st.one_of(
        st.builds(Leaf, _TERM_IDS),
        st.builds(AnyTerm, _TERM_SETS),
        st.builds(Near, _TERM_SETS, _TERM_SETS, st.integers(min_value=0, max_value=3)),
    )

    def branches(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        groups = st.lists(children, max_size=4).map(tuple)
        return st.one_of(st.builds(AllOf, groups), st.builds(AnyOf, groups), st.builds(Not, children))

    return st.recursive(leaves, branches, max_leaves=12)


_TOKENS = Tokens("", ())
_HITS = st.dictionaries(
    _TERM_IDS,
    st.lists(
        st.builds(
            lambda field, first, length: Hit(field, first, first + length, _TOKENS),
            st.sampled_from(["title", "summary"]),
            st.integers(min_value=0, max_value=8),
            st.integers(min_value=1, max_value=2),
        ),
        min_size=1,
        max_size=3,
    ),
)


@given(_node_trees(), _HITS)
def test_compiled_predicate_agrees_with_the_tree(node: Node, hits: Hits) -> None:
    assert compile_predicate(node)(hits) is evaluate(node, hits)


def test_compiled_predicates_use_no_generated_source() -> None:
    source = (ROOT / "alertd" / "conditions.py").read_text(encoding="utf-8")
    assert "eval(" not in source.replace("evaluate(", "")
    assert "exec(" not in source


# --- quality on the labelled dev set (needs ../shared) ---------------------------------------------------


@pytest.mark.skipif(not DEV.exists(), reason="../shared/data/eval/dev.jsonl not present")
def test_default_watchlist_quality_on_the_dev_set() -> None:
    counts = {t.id: [0, 0, 0] for t in DEFAULT.topics}  # tp, fp, fn
    with DEV.open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            found = {
                m.topic_id
                for m in match_item(
                    DEFAULT,
                    item.get("title") or "",
                    item.get("summary") or "",
                    item.get("feed") or "",
                    link=item.get("link") or "",
                )
            }
            for topic, (truth, guess) in ((t, (bool(item["labels"][t]), t in found)) for t in counts):
                if truth or guess:
                    counts[topic][0 if truth and guess else 1 if guess else 2] += 1
    for topic, (tp, fp, fn) in counts.items():
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        # The figures of docs/watchlist.md (887 items: chinese-ecommerce P 0.979 R 0.979, french-exports
        # P 0.947 R 0.922) rounded down: one more miss or false alarm on either topic fails.
        floors = {"chinese-ecommerce": (0.97, 0.97), "french-exports": (0.94, 0.92)}
        assert precision >= floors[topic][0], (topic, precision)
        assert recall >= floors[topic][1], (topic, recall)


# --- invisible characters (issue #12, item 5) ---------------------------------------------------------

_INVISIBLES = [
    "\u00ad",  # soft hyphen
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # BOM
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    "\u202a",  # left-to-right embedding
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u180e",  # Mongolian vowel separator
]


def _field_text(title: str, summary: str, link: str, span_field: str) -> str:
    return {"title": title, "summary": summary, "link": link}[span_field]


@pytest.mark.parametrize("invisible", _INVISIBLES)
@pytest.mark.parametrize("field_name", ["title", "summary"])
def test_invisible_characters_inside_words_never_hide_them(invisible: str, field_name: str) -> None:
    w = watchlist('any = ["alibaba", "temu", "shein"]')
    text = f"Ali{invisible}baba, Te{invisible}mu et {invisible}Shein{invisible} recrutent"
    title, summary = (text, "rien") if field_name == "title" else ("rien", text)
    [found] = match_item(w, title, summary)
    assert found.terms == ("alibaba", "temu", "shein")
    assert [(s.field, text[s.start : s.end]) for s in found.spans] == [
        (field_name, f"Ali{invisible}baba"),
        (field_name, f"Te{invisible}mu"),
        (field_name, "Shein"),
    ]


def test_a_span_across_a_soft_hyphen_indexes_the_original_title() -> None:
    w = watchlist('any = ["alibaba"]')
    title = "Le géant Ali\u00adbaba recule"
    [found] = match_item(w, title, "")
    [span] = found.spans
    assert title[span.start : span.end] == "Ali\u00adbaba"
    assert (span.start, span.end) == (9, 17)


def test_invisible_characters_in_the_link_field() -> None:
    w = watchlist('any = [{ text = "temu", field = "link" }]')
    link = "https://news.example/te\u200dmu-recrute"
    [found] = match_item(w, "rien", "", link=link)
    assert [link[s.start : s.end] for s in found.spans] == ["te\u200dmu"]


def test_phrase_terms_across_invisible_characters() -> None:
    w = watchlist('any = ["balance commerciale", "Jack Ma", "e-commerce"]')
    title = "La balance com\u00admer\u00adciale, Jack\u200b \u200eMa et l’e\u200b-commerce"
    [found] = match_item(w, title, "")
    assert [title[s.start : s.end] for s in found.spans] == [
        "balance com\u00admer\u00adciale",
        "Jack\u200b \u200eMa",
        "e\u200b-commerce",
    ]
    assert not fires(w, "Jack\u200b, Ma")  # punctuation still ends a phrase


def test_joined_and_exact_case_terms_across_invisible_characters() -> None:
    w = watchlist('any = ["ecommerce", { text = "JD", case = "exact" }]')
    title = "L’e\u00ad-commerce selon J\u200bD.com"
    [found] = match_item(w, title, "")
    assert [title[s.start : s.end] for s in found.spans] == ["e\u00ad-commerce", "J\u200bD"]
    assert not fires(w, "selon j\u200bd.com")


def test_regex_terms_ignore_invisible_characters() -> None:
    w = watchlist('any = [{ regex = "alibaba\\\\b" }, { regex = "pdd holdings" }]')
    title = "Ali\u00adbaba et P\u200bDD\u200e Hol\u2060dings"
    [found] = match_item(w, title, "")
    assert [title[s.start : s.end] for s in found.spans] == [
        "Ali\u00adbaba",
        "P\u200bDD\u200e Hol\u2060dings",
    ]


@given(
    inserted=st.lists(st.sampled_from(["", "", "", *_INVISIBLES]), min_size=8, max_size=8),
    before=_WORD,
    after=_WORD,
)
def test_random_invisible_characters_never_hide_a_word(inserted: list[str], before: str, after: str) -> None:
    assume("alibaba" not in normalise(f"{before} {after}"))
    w = watchlist('any = ["Alibaba"]')
    word = "".join(c + i for c, i in zip("Alibaba", inserted, strict=False)) + inserted[7]
    title = f"{before} {inserted[0]}{word} {after}"
    [found] = match_item(w, title, "")
    [span] = found.spans
    assert title[span.start : span.end] == word.strip("".join(_INVISIBLES))
