"""The watchlist language: compilation, and a lint that names every problem at PATH:LINE:COL."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.errors import ConfigError
from alertd.tomlsource import loads
from alertd.watchlist import Watchlist, compile_watchlist, load_watchlist

DATA = Path(__file__).parent / "data"
DEFAULT_WATCHLIST = Path(__file__).parents[1] / "config" / "watchlist.toml"


def compile_text(text: str, name: str = "w.toml") -> Watchlist:
    return compile_watchlist(loads(text, Path(name)), source=text)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        compile_text(text)
    return [str(p) for p in caught.value.problems]


def warnings_of(text: str) -> list[str]:
    return [str(p) for p in compile_text(text).warnings]


def test_every_error_of_a_file_is_reported_at_once_with_its_position() -> None:
    path = DATA / "watchlist_errors.toml"
    with pytest.raises(ConfigError) as caught:
        load_watchlist(path)
    assert [
        f"{path}:2:1: unknown_top: unknown key 'unknown_top' (expected [[topic]] tables and [sets])",
        f"{path}:10:22: topic[0].any[0].regex: invalid regex 'ali(baba': missing ), unterminated subpattern",
        f"{path}:15:28: topic[1].query: invalid query: query ends where a word was expected",
        f"{path}:20:8: topic[2].any[0]: unknown set @nosuchset (known: @brands)",
        f"{path}:21:1: topic[2].colour: unknown topic key 'colour'",
        f"{path}:23:3: topic[3]: topic is missing 'id'",
        f"{path}:25:1: topic[3].any: any must be an array of terms",
        f"{path}:28:1: topic[4].id: duplicate topic id 'bad-regex' (first at 8:1)",
        f"{path}:30:8: topic[4].any[0]: empty term: it can never match",
        f"{path}:31:1: topic[4].priority: priority must be one of normal, immediate",
    ] == [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("query", "col", "message"),
    [
        ("Temu AND", 18, "query ends where a word was expected"),
        ("(Temu OR Shein", 10, "unclosed parenthesis"),
        ("Temu )", 15, "unexpected ')'"),
        ('"bon plan', 10, "unterminated quoted phrase"),
        ("Temu NEAR/ Shein", 15, "NEAR needs a distance, as in NEAR/5"),
        ("@nope OR Temu", 10, "unknown set @nope (known: none defined)"),
        ("(Temu AND Shein) NEAR/3 Alibaba", 27, "NEAR joins words, phrases, @sets or (a OR b)"),
    ],
)
def test_query_errors_point_inside_the_query_string(query: str, col: int, message: str) -> None:
    text = f'[[topic]]\nid = "t"\nname = "T"\nquery = \'{query}\'\n'
    [problem] = problems_of(text)
    assert problem.startswith(f"w.toml:4:{col}: topic[0].query: ")
    assert message in problem


def test_query_errors_in_multiline_strings_point_at_their_line() -> None:
    text = "[[topic]]\nid = 't'\nname = 'T'\nquery = '''\nTemu\n  OR (Shein\n'''\n"
    [problem] = problems_of(text)
    assert problem == "w.toml:6:6: topic[0].query: invalid query: unclosed parenthesis"


@pytest.mark.parametrize(
    ("topic_lines", "expected"),
    [
        ('any = ["Temu", 3]', "w.toml:4:16: topic[0].any[1]: a term must be a string"),
        ('any = [{ text = "x", case = "upper" }]', "w.toml:4:22: topic[0].any[0].case: case must be"),
        ('any = [{ text = "x", weight = 0 }]', "w.toml:4:22: topic[0].any[0].weight: weight must be"),
        ('any = [{ text = "x", colour = 1 }]', "w.toml:4:22: topic[0].any[0].colour: unknown term key"),
        ('any = [{ text = "x", regex = "y" }]', "w.toml:4:8: topic[0].any[0]: a term table needs"),
        ('any = ["-- !"]', "w.toml:4:8: topic[0].any[0]: term '-- !' has no letters or digits"),
        ('all = ["Temu"]', "w.toml:4:1: topic[0].all: all must be an array of arrays"),
        ('any = ["x"]\nmin_score = "high"', "w.toml:5:1: topic[0].min_score: min_score must be"),
        ('any = ["x"]\nfeeds = "bfm"', "w.toml:5:1: topic[0].feeds: feeds must be an array"),
        ('any = [{ regex = "a|" }]', "w.toml:4:10: topic[0].any[0].regex: regex 'a|' matches the empty"),
        ("", "w.toml:1:3: topic[0]: topic has nothing to match"),
    ],
)
def test_wrong_types_and_values_are_errors(topic_lines: str, expected: str) -> None:
    text = f'[[topic]]\nid = "t"\nname = "T"\n{topic_lines}\n'
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_missing_name_is_an_error_at_the_topic_table() -> None:
    assert problems_of('[[topic]]\nid = "t"\nany = ["Temu"]\n') == [
        "w.toml:1:3: topic[0]: topic is missing 'name'"
    ]


@pytest.mark.parametrize(
    ("topic_lines", "expected"),
    [
        ('any = ["JD"]', "w.toml:4:8: topic[0].any[0]: warning: short term 'JD' matches any case"),
        (
            'any = ["Temu", "TEMU"]',
            "w.toml:4:16: topic[0].any[1]: warning: duplicate term 'TEMU' (already at 4:8)",
        ),
        (
            'any = ["l\'export"]',
            'w.toml:4:8: topic[0].any[0]: warning: French elision "l\'" is ignored: '
            "\"l'export\" matches 'export' with or without it",
        ),
        (
            'any = ["Temu"]\nnone = ["temu"]',
            "w.toml:4:8: topic[0].any[0]: warning: 'Temu' is also in none: it can only veto",
        ),
        ('query = "NOT Temu"', "w.toml:1:3: topic[0]: warning: this topic matches items that contain"),
        (
            'any = ["porc", "porcs"]',
            "w.toml:4:16: topic[0].any[1]: warning: 'porcs' is already matched as a form of 'porc' (4:8)",
        ),
        (
            'any = [{ regex = "Alibaba" }]',
            "w.toml:4:10: topic[0].any[0].regex: warning: regex runs on normalised text",
        ),
    ],
)
def test_suspicious_terms_are_warnings(topic_lines: str, expected: str) -> None:
    text = f'[[topic]]\nid = "t"\nname = "T"\n{topic_lines}\n'
    warnings = warnings_of(text)
    assert any(w.startswith(expected) for w in warnings), warnings


def test_exact_case_silences_the_short_term_warning() -> None:
    text = '[[topic]]\nid = "t"\nname = "T"\nany = [{ text = "JD", case = "exact" }]\n'
    assert warnings_of(text) == []


def test_unused_set_is_a_warning() -> None:
    text = '[sets]\nspare = ["xyz1"]\n[[topic]]\nid = "t"\nname = "T"\nany = ["Temu"]\n'
    assert warnings_of(text) == ["w.toml:2:1: sets.spare: warning: set @spare is never used"]


def test_sets_cannot_nest() -> None:
    text = '[sets]\na = ["xyz1"]\nb = ["@a"]\n[[topic]]\nid = "t"\nname = "T"\nany = ["@b"]\n'
    assert problems_of(text) == ["w.toml:3:6: sets.b[0]: a set cannot refer to another set"]


def test_priority_defaults_to_normal_and_keeps_immediate() -> None:
    text = (
        '[[topic]]\nid = "a"\nname = "A"\nany = ["Temu"]\n'
        '[[topic]]\nid = "b"\nname = "B"\nany = ["Shein"]\npriority = "immediate"\n'
    )
    watchlist = compile_text(text)
    assert [t.priority for t in watchlist.topics] == ["normal", "immediate"]


def test_an_unchanged_topic_compares_equal_across_edits_of_other_topics() -> None:
    sets = '[sets]\nbrands = ["Alibaba"]\n'
    before = compile_text(sets + '[[topic]]\nid = "a"\nname = "A"\nany = ["Temu"]\n' + TOPIC_B)
    after = compile_text(sets + '[[topic]]\nid = "a"\nname = "A"\nany = ["Shein", "Temu"]\n' + TOPIC_B)
    assert before.topic("a") != after.topic("a")
    assert before.topic("b") == after.topic("b")


def test_editing_a_set_changes_the_topics_that_use_it() -> None:
    before = compile_text('[sets]\nbrands = ["Temu"]\n' + TOPIC_B)
    after = compile_text('[sets]\nbrands = ["Temu", "Shein"]\n' + TOPIC_B)
    assert before.topic("b") != after.topic("b")


TOPIC_B = '[[topic]]\nid = "b"\nname = "B"\nany = ["@brands", "amende"]\n'


def test_topic_lookup_by_id() -> None:
    watchlist = compile_text('[[topic]]\nid = "a"\nname = "Alpha"\nany = ["Temu"]\n')
    found = watchlist.topic("a")
    assert found is not None
    assert found.name == "Alpha"
    assert watchlist.topic("missing") is None


def test_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_watchlist(DATA / "no-such-file.toml")


def test_default_watchlist_compiles_without_warnings() -> None:
    watchlist = load_watchlist(DEFAULT_WATCHLIST)
    assert [t.id for t in watchlist.topics] == ["chinese-ecommerce", "french-exports"]
    assert [t.name for t in watchlist.topics] == ["E-commerce chinois", "Exportations françaises"]
    assert watchlist.warnings == ()
