"""`alertd match --explain`: why each topic matched or not (vetoes, NOTs, all groups, min_score, link, feeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alertd.explain import TopicExplanation, explain_item, format_explanation, topic_parts
from alertd.match import match_item
from alertd.text import html_to_text
from alertd.tomlsource import loads
from alertd.watchlist import Watchlist, compile_watchlist, load_watchlist
from tests.processes import alertd

ROOT = Path(__file__).parents[1]
DEFAULT = load_watchlist(ROOT / "config" / "watchlist.toml")

WATCHLIST = """
[sets]
empty = []

[[topic]]
id = "customs"
name = "Shein et la douane"
any = ["Shein", "Temu"]
all = [["amende", "enquête"], ["douane*", "colis"]]
none = ["bon plan"]

[[topic]]
id = "scored"
name = "Poids"
any = [{ text = "Temu", weight = 1 }, { text = "Shein", weight = 0.5 }, { text = "PDD", weight = 1.5 }]
min_score = 2

[[topic]]
id = "slugs"
name = "Liens"
any = [{ text = "temu", field = "link", form = "exact" }]
feeds = ["tag:chine"]

[[topic]]
id = "deals"
name = "Sans bons plans"
query = 'Temu AND NOT "bon plan"'
exclude_feeds = ["BFM : bons plans"]

[[topic]]
id = "near"
name = "Proches"
query = 'Shein NEAR/2 amende'

[[topic]]
id = "odd-parts"
name = "Parties"
any = ["@empty"]
all = [["Lazada"]]
query = "Tmall"
"""

CONFIG = """
[[feed]]
name = "BFM Tech"
url = "https://example.invalid/tech"
tags = ["chine", "fr"]

[[feed]]
name = "BFM : bons plans"
url = "https://example.invalid/deals"
"""


def compiled(text: str = WATCHLIST) -> Watchlist:
    return compile_watchlist(loads(text, Path("w.toml")), source=text)


W = compiled()


def topic(explanation_topics: tuple[TopicExplanation, ...], topic_id: str) -> TopicExplanation:
    return next(t for t in explanation_topics if t.topic_id == topic_id)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "watchlist.toml").write_text(WATCHLIST, encoding="utf-8")
    path = tmp_path / "alertd.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


# --- the pure explanation ------------------------------------------------------------------------------------


def test_a_none_term_of_the_default_watchlist_vetoes_a_deal_post() -> None:
    title = "Code promo AliExpress : -50 %"
    explanation = explain_item(DEFAULT, title, "")
    found = topic(explanation.topics, "chinese-ecommerce")
    assert ("veto", None) == (found.outcome, found.match)
    assert [("query", True)] == [(p.label, p.holds) for p in found.parts]
    assert [("title", "AliExpress")] == [(f.field, f.text) for f in found.parts[0].fired]
    assert [("code promo", "Code promo")] == [(f.term, f.text) for f in found.vetoes]
    text = format_explanation(explanation)
    assert text.splitlines()[:2] == [
        "matched: no topic",
        "chinese-ecommerce (E-commerce chinois): not matched: vetoed by none: 'code promo'",
    ]
    assert "  title: [Code promo] [AliExpress] : -50 %" in text
    assert text.endswith("no term fired: french-exports")
    assert () == match_item(DEFAULT, title, "")


def test_a_not_in_a_query_that_alone_blocks_a_match_is_named() -> None:
    explanation = explain_item(W, "Bon plan Temu", "")
    deals = topic(explanation.topics, "deals")
    assert "not" == deals.outcome
    [query] = deals.parts
    assert (False, True) == (query.holds, query.vetoed_by_not)
    assert ["Temu"] == [f.text for f in query.fired]  # the negated term is not evidence...
    [reason] = query.reasons
    assert 'NOT "bon plan": vetoed, "bon plan" fired' == reason.text
    assert [("title", 0, 8)] == [(f.field, f.start, f.end) for f in reason.fired]  # ...but it is shown
    text = format_explanation(explanation)
    assert "deals (Sans bons plans): not matched: vetoed by a NOT in query ('bon plan' fired)" in text
    assert "  query: false, only because of a NOT" in text
    # the same NOT on an item that lacks the other terms too is not what stopped it
    alone = topic(explain_item(W, "Un bon plan", "").topics, "deals")
    assert ("condition", False) == (alone.outcome, alone.parts[0].vetoed_by_not)


def test_a_not_of_the_default_watchlist_explained_down_to_the_alternative_it_blocked() -> None:
    text = format_explanation(explain_item(DEFAULT, "Les exportations de données WhatsApp en France", ""))
    assert "french-exports (Exportations françaises): not matched: vetoed by a NOT in query" in text
    assert "the one that would hold without its NOT:" in text
    assert "title 20-27 'données' <- 'données'" in text


def test_a_missing_all_group_and_the_group_that_holds() -> None:
    explanation = explain_item(W, "Shein et Temu: enquête", "")
    customs = topic(explanation.topics, "customs")
    assert "condition" == customs.outcome
    assert [("any", True), ("all[1]", True), ("all[2]", False)] == [(p.label, p.holds) for p in customs.parts]
    assert ["no term of: douane*, colis"] == [r.text for r in customs.parts[2].reasons]
    text = format_explanation(explanation)
    assert "customs (Shein et la douane): not matched: all[2] does not hold" in text
    assert (
        "  all[1]: holds\n    title 15-22 'enquête' <- 'enquête'\n  all[2]: false, no term of: douane*, colis"
        in text
    )
    assert "  title: [Shein] et [Temu]: [enquête]" in text


def test_a_score_short_of_min_score_and_one_that_reaches_it() -> None:
    short = explain_item(W, "Shein et Temu", "")
    scored = topic(short.topics, "scored")
    assert ("min_score", 1.5, None) == (scored.outcome, scored.score, scored.match)
    text = format_explanation(short)
    assert "scored (Poids): not matched: score 1.5 < min_score 2" in text
    assert "  score 1.5 < min_score 2 (Temu 1, Shein 0.5)" in text
    enough = topic(explain_item(W, "Shein et PDD", "").topics, "scored")
    assert ("matched", 2.0) == (enough.outcome, enough.score)
    assert "scored (Poids): matched, score 2 >= min_score 2" in format_explanation(
        explain_item(W, "Shein et PDD", "")
    )


def test_a_link_scoped_term_fires_in_the_link_and_a_feed_tag_admits_the_item() -> None:
    link = "https://www.bfmtv.com/tech/temu-offre_AN-1.html"
    explanation = explain_item(
        W, "Une offre", "", link=link, feed_name="BFM Tech", feed_tags=frozenset({"chine"})
    )
    slugs = topic(explanation.topics, "slugs")
    assert "matched" == slugs.outcome
    assert [("link", "temu")] == [(f.field, f.text) for f in slugs.parts[0].fired]
    assert "feed 'BFM Tech' is in feeds: tag:chine" == slugs.feed_rule
    text = format_explanation(explanation)
    assert "  link: https://www.bfmtv.com/tech/[temu]-offre_AN-1.html" in text
    assert "feed: 'BFM Tech' (tags: chine)" in text
    # the title and summary never fire a link term, and the link is what makes the match
    assert not topic(explain_item(W, "temu", "temu", feed_tags=frozenset({"chine"})).topics, "slugs").fired


@pytest.mark.parametrize(
    ("feed_name", "tags", "rule"),
    [
        ("BFM Économie", frozenset({"fr"}), "feed 'BFM Économie' is not in feeds: tag:chine"),
        ("", frozenset(), "no feed given; the topic only takes feeds: tag:chine"),
    ],
)
def test_a_feed_rule_that_excludes_the_item_is_the_verdict(
    feed_name: str, tags: frozenset[str], rule: str
) -> None:
    explanation = explain_item(W, "", "", link="https://x.fr/temu", feed_name=feed_name, feed_tags=tags)
    slugs = topic(explanation.topics, "slugs")
    assert ("feed", True, rule) == (slugs.outcome, slugs.parts[0].holds, slugs.feed_rule)
    assert f"slugs (Liens): not matched: {rule}" in format_explanation(explanation)


def test_exclude_feeds_is_the_verdict_even_when_everything_else_holds() -> None:
    explanation = explain_item(W, "Temu", "", feed_name="BFM : bons plans")
    deals = topic(explanation.topics, "deals")
    assert ("feed", True) == (deals.outcome, deals.parts[0].holds)
    assert "not matched: feed 'BFM : bons plans' is excluded by exclude_feeds: bfm : bons plans" in (
        format_explanation(explanation)
    )


def test_near_terms_that_fired_too_far_apart() -> None:
    near = topic(explain_item(W, "Shein: la Commission européenne prépare une amende", "").topics, "near")
    assert "condition" == near.outcome
    assert ["Shein", "amende"] == [f.text for f in near.parts[0].fired]
    assert ["Shein NEAR/2 amende: Shein and amende fired, but not within 2 words in one field"] == [
        r.text for r in near.parts[0].reasons
    ]


def test_parts_are_named_as_written_or_numbered_when_a_set_is_empty() -> None:
    assert ["any", "all[1]", "all[2]"] == [label for label, _ in topic_parts(W.topics[0])]
    assert ["query"] == [label for label, _ in topic_parts(W.topics[3])]
    assert ["part 1", "part 2"] == [label for label, _ in topic_parts(W.topics[5])]  # any = ["@empty"]


def test_topics_where_nothing_fired_share_one_line_or_a_count() -> None:
    assert (
        "matched: no topic\nno term fired: customs, scored, slugs, deals, near, odd-parts"
        == format_explanation(explain_item(W, "Le prix de l'essence", ""))
    )
    many = "".join(f"[[topic]]\nid = 't{i}'\nname = 'T'\nany = ['mot{i}']\n" for i in range(9))
    assert format_explanation(explain_item(compiled(many), "rien", "")).endswith("no term fired in 9 topics")


def test_the_verdicts_are_exactly_match_item_s() -> None:
    items = [
        ("Shein et Temu: enquête sur les colis", "", "", ""),
        ("Bon plan Temu", "", "https://x.fr/temu", "BFM Tech"),
        ("Shein, amende", "PDD", "", "BFM : bons plans"),
        ("Tmall et Lazada", "", "", ""),
    ]
    tags = {"BFM Tech": frozenset({"chine"})}
    for title, summary, link, feed in items:
        explanation = explain_item(W, title, summary, link, feed, tags.get(feed, frozenset()))
        matches = match_item(W, title, summary, feed, tags.get(feed, frozenset()), link)
        assert matches == tuple(t.match for t in explanation.topics if t.match is not None)
        assert all(t.matched == (t.outcome == "matched") for t in explanation.topics)


def test_the_verdicts_are_match_item_s_on_the_dev_set(shared_dir: Path) -> None:
    for line in (shared_dir / "data" / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        title, summary = record.get("title") or "", html_to_text(record.get("summary") or "")
        link, feed = record.get("link") or "", record.get("feed") or ""
        explanation = explain_item(DEFAULT, title, summary, link, feed)
        matches = match_item(DEFAULT, title, summary, feed, link=link)
        assert matches == tuple(t.match for t in explanation.topics if t.match is not None), record["id"]


# --- the command ---------------------------------------------------------------------------------------------


def test_match_title_link_and_feed_options_explain_one_item(config: Path) -> None:
    result = alertd(
        "match",
        "-c",
        str(config),
        "--title",
        "Offre",
        "--link",
        "https://x.fr/temu-offre",
        "--feed",
        "BFM Tech",
    )
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert ["matched: slugs", "feed: 'BFM Tech' (tags: chine, fr)"] == lines[:2]  # tags from the config
    assert "  link: https://x.fr/[temu]-offre" in lines
    assert "  feed: feed 'BFM Tech' is in feeds: tag:chine" in lines


def test_match_text_is_title_and_each_field_option_works_alone(config: Path) -> None:
    by_text = alertd("match", "-c", str(config), "--text", "Shein et Temu: enquête")
    by_title = alertd("match", "-c", str(config), "--title", "Shein et Temu: enquête")
    assert (0, 0) == (by_text.returncode, by_title.returncode)
    assert by_text.stdout == by_title.stdout
    assert "customs (Shein et la douane): not matched: all[2] does not hold" in by_text.stdout
    summary = alertd(
        "match", "-c", str(config), "--summary", "<p>Temu visé par une <b>enquête</b> sur les colis</p>"
    )
    assert 0 == summary.returncode
    assert summary.stdout.startswith("matched: customs, deals\n")
    assert "    summary 0-4 'Temu' <- 'Temu'" in summary.stdout
    feed_only = alertd("match", "-c", str(config), "--feed", "BFM : bons plans")
    assert 0 == feed_only.returncode
    assert "feed: 'BFM : bons plans' (no tags)" in feed_only.stdout


def test_a_malformed_line_is_reported_skipped_and_fails_the_run_at_the_end(config: Path) -> None:
    lines = [
        json.dumps({"id": "a", "title": "Temu"}),
        "{not json",
        json.dumps(["an", "array"]),
        "",
        json.dumps({"title": "no id"}),
        json.dumps({"id": "e", "title": "Tmall et Lazada", "link": "https://x.fr/temu", "feed": "BFM Tech"}),
    ]
    result = alertd("match", "-c", str(config), stdin="\n".join(lines) + "\n")
    assert 2 == result.returncode
    output = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("a", ["deals"]), ("e", ["slugs", "odd-parts"])] == [
        (r["id"], [t["id"] for t in r["topics"]]) for r in output
    ]
    assert set(output[0]) == {"id", "topics"}
    assert set(output[0]["topics"][0]) == {"id", "terms", "score", "spans"}
    errors = result.stderr.splitlines()
    assert [e.split(":")[1] for e in errors[:3]] == [" line 2", " line 3", " line 5"]
    assert "not JSON" in errors[0] and "array" in errors[1] and "without an 'id'" in errors[2]
    assert "alertd: 3 malformed input lines skipped" == errors[-1]


def test_a_malformed_line_in_explain_mode_too(config: Path, tmp_path: Path) -> None:
    source = tmp_path / "items.jsonl"
    source.write_text('{"id": 1, "title": "Temu"}\n42\n{"id": 3, "title": "Shein"}\n', encoding="utf-8")
    result = alertd("match", "-c", str(config), "--input", str(source), "--explain")
    assert 2 == result.returncode
    assert ["# 1", "# 3"] == [line for line in result.stdout.splitlines() if line.startswith("# ")]
    assert "alertd: line 2: not a JSON object with an 'id' (a JSON number); line skipped" in result.stderr


def test_good_lines_only_exit_0(config: Path) -> None:
    result = alertd("match", "-c", str(config), stdin='{"id": 1, "title": "Temu"}\n\n')
    assert (0, "") == (result.returncode, result.stderr)
