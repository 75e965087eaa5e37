"""Hostile config and watchlist files: every one is refused with a positioned message and exit 78, never a
traceback, and no regex term can stall the matcher (RE2, linear time).

Each case reproduces a failure found by attacking the daemon from outside: TOML nested 600 deep (RecursionError in
tomllib), 200 nested parentheses in a query (RecursionError in the parser), a watchlist that is not UTF-8, a
backreference, and ``(\\w+\\s?)+pdd``, which backtracked for seconds per item in Python's ``re``.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd import tomlsource
from alertd.errors import ConfigError
from alertd.match import match_item
from alertd.normalise import tokenise
from alertd.query import MAX_DEPTH, QNot, QTerm, QuerySyntaxError, parse_query
from alertd.regex import RegexError, compile_regex
from alertd.tomldepth import MAX_NESTING, measure_nesting
from alertd.tomlsource import loads
from alertd.watchlist import Watchlist, compile_watchlist
from tests.processes import alertd

CONFIG = """\
[[feed]]
url = "http://127.0.0.1:8000/feed.xml"

[[subscriber]]
email = "me@example.org"
schedule = "daily 07:00"
"""
TOPIC = '[[topic]]\nid = "t"\nname = "T"\n'
PATHOLOGICAL = r"(\w+\s?)+pdd"


def write_config(tmp_path: Path, watchlist: str | bytes, config: str = CONFIG) -> Path:
    """An alertd.toml with the watchlist next to it (its default place); returns the config's path."""
    path = tmp_path / "alertd.toml"
    path.write_text(config, encoding="utf-8")
    target = tmp_path / "watchlist.toml"
    if isinstance(watchlist, bytes):
        target.write_bytes(watchlist)
    else:
        target.write_text(watchlist, encoding="utf-8")
    return path


def compile_text(text: str) -> Watchlist:
    return compile_watchlist(loads(text, Path("w.toml")), source=text)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        compile_text(text)
    return [str(p) for p in caught.value.problems]


def regex_topic(pattern: str) -> str:
    """A topic with one regex term, the pattern in a TOML literal string (no escapes to think about)."""
    return TOPIC + f"any = [{{ regex = '{pattern}' }}]\n"


# --- through the real command: exit 78, the positioned message, no traceback --------------------------------

TOO_DEEP = "nested 600 deep; at most 32 levels of tables and arrays are allowed"


@pytest.mark.parametrize(
    ("watchlist", "config", "expected"),
    [
        pytest.param(
            "x = " + "[" * 600 + "]" * 600 + "\n" + TOPIC + 'any = ["Temu"]\n',
            CONFIG,
            f"watchlist.toml:1:37: {TOO_DEEP}",  # the 33rd bracket
            id="arrays-600-deep-in-the-watchlist",
        ),
        pytest.param(
            "x = " + "{ a = " * 600 + "1" + " }" * 600 + "\n" + TOPIC + 'any = ["Temu"]\n',
            CONFIG,
            f"watchlist.toml:1:197: {TOO_DEEP}",  # the 33rd brace: 4 + 32 * 6 + 1
            id="inline-tables-600-deep-in-the-watchlist",
        ),
        pytest.param(
            TOPIC + 'any = ["Temu"]\n',
            "x = " + "[" * 600 + "]" * 600 + "\n" + CONFIG,
            f"alertd.toml:1:37: {TOO_DEEP}",
            id="arrays-600-deep-in-the-config",
        ),
        pytest.param(
            TOPIC + 'query = "' + "(" * 200 + "Temu" + ")" * 200 + '"\n',
            CONFIG,
            "watchlist.toml:4:42: topic[0].query: invalid query: parentheses nested 200 deep; "
            "at most 32 levels are allowed",  # the 33rd parenthesis: the string starts at column 10
            id="200-nested-parentheses-in-a-query",
        ),
        pytest.param(
            b'[[topic]]\nid = "t"\nname = "Exportations fran\xe7aises"\nany = ["cognac"]\n',
            CONFIG,
            "watchlist.toml:3:26: not UTF-8: byte 0xe7 at byte offset 44 cannot be decoded "
            "(invalid continuation byte); save the file as UTF-8",
            id="latin-1-watchlist",
        ),
        pytest.param(
            regex_topic(r"(pdd) \1"),
            CONFIG,
            r"watchlist.toml:4:25: topic[0].any[0].regex: invalid regex '(pdd) \\1': the backreference \1 is "
            "not supported: regex terms run on RE2, which guarantees matching in time linear in the text "
            "and so cannot refer back to a group",
            id="regex-backreference",
        ),
    ],
)
def test_check_config_refuses_hostile_files_with_exit_78_and_a_position(
    tmp_path: Path, watchlist: str | bytes, config: str, expected: str
) -> None:
    result = alertd("check-config", "-c", str(write_config(tmp_path, watchlist, config)))
    assert (78, [f"{tmp_path}/{expected}"]) == (result.returncode, result.stderr.splitlines())
    assert "Traceback" not in result.stderr


def test_pathological_regex_is_accepted_and_matches_promptly(tmp_path: Path) -> None:
    config = write_config(tmp_path, regex_topic(PATHOLOGICAL))
    assert 0 == alertd("check-config", "-c", str(config)).returncode
    words = " ".join(["exportations"] * 500)  # 6,499 characters of one run of words: hours for Python's re
    items = tmp_path / "items.jsonl"
    records = [
        {"id": "letters", "title": "a" * 40, "summary": words},
        {"id": "hit", "title": "Résultats de PDD Holdings", "summary": words},
    ]
    items.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = alertd("match", "-c", str(config), "--input", str(items), timeout=20)
    assert 0 == result.returncode, result.stderr
    topics = {
        line["id"]: [t["id"] for t in line["topics"]]
        for line in map(json.loads, result.stdout.split("\n")[:-1])
    }
    assert {"letters": [], "hit": ["t"]} == topics


# --- TOML nesting, measured before tomllib ----------------------------------------------------------------


def data_depth(value: Any) -> int:
    """Levels of tables and arrays below the top-level table, walked without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack += [(child, level + 1) for child in children if isinstance(child, dict | list)]
    return deepest


@pytest.mark.parametrize(
    "text",
    [
        'x = 1\ny = "a"',
        "x = [[1, 2], [3, [4]]]",
        "x = []\ny = {}",
        "x = { a = { b = [] } }",
        "a.b.c = 1",
        '"a.b".c = 1',
        "x = { a.b.c = [[]] }",
        "[a.b.c]\nd = 1",
        "[[a]]\n[[a]]\n[a.b]\nc.d = [1]",
        "[[a]]\n[[a.b]]\n[[a.b.c]]\nx = 1",
        "[a]\n[[a.b]]\n[[a.b]]\nc = { d = [1] }",
        "x = \"[[[[\" # [[[[\ny = '{{{{'",
        'x = """\n[[[[\\""" ]]] """\ny = [1]',
        "x = '''\n[[[[ ''' \ny = [ # [[[\n 1, [2],\n]",
        "d = 1979-05-27 07:32:00\nx = [1979-05-27T07:32:00Z, [1]]",
        "x = [ { a = 1 }, { b = [ { c = 2 } ] } ]",
        'x = [ "]", "\\"[" , [ "[" ] ]',
    ],
)
def test_nesting_scan_agrees_with_the_parsed_data(text: str) -> None:
    assert data_depth(loads(text, Path("w.toml")).data) == measure_nesting(text).deepest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x." * 40 + "y = 1", "w.toml:1:65: nested 40 deep"),  # the 33rd table of the dotted key
        ("[" + "a." * 40 + "b]", "w.toml:1:66: nested 41 deep"),
        ("\n".join("[[" + ".".join("a" * k) + "]]" for k in range(1, 18)), "w.toml:17:35: nested 34 deep"),
        ("x = [" + "{ a = [" * 20 + "]}" * 20 + "]", "w.toml:1:117: nested 41 deep"),
    ],
)
def test_deep_tables_keys_and_arrays_are_refused_at_the_first_level_too_deep(
    text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        loads(text, Path("w.toml"))
    assert [f"{expected}; at most 32 levels of tables and arrays are allowed"] == [
        str(p) for p in caught.value.problems
    ]


def test_nesting_at_the_limit_loads() -> None:
    text = "x = " + "[" * MAX_NESTING + "]" * MAX_NESTING
    assert MAX_NESTING == data_depth(loads(text, Path("w.toml")).data)


def test_tomllib_recursion_is_a_config_error_even_if_the_scan_missed_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tomlsource, "_refuse_deep_nesting", lambda text, path: None)
    with pytest.raises(ConfigError) as caught:
        loads("x = " + "[" * 5000 + "]" * 5000, Path("w.toml"))
    assert ["w.toml:1:1: invalid TOML: nested too deep to parse; at most 32 levels are allowed"] == [
        str(p) for p in caught.value.problems
    ]


def test_an_integer_too_long_for_python_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        loads("a = 1\nx = 1" + "0" * 5000, Path("w.toml"))
    assert [
        f"w.toml:2:5: invalid TOML: integer too long (Python converts at most {sys.get_int_max_str_digits()} digits)"
    ] == [str(p) for p in caught.value.problems]


TOML_PIECES = st.sampled_from(
    [
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        ".",
        ",",
        "\n",
        " ",
        "#",
        '"',
        "'",
        '"""',
        "'''",
        "\\",
        "a",
        "1",
        "x = ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TOML_PIECES, max_size=60).map("".join))
def test_any_text_loads_or_raises_config_error(text: str) -> None:
    try:
        document = loads(text, Path("w.toml"))
    except ConfigError as exc:
        assert exc.problems
    else:
        assert data_depth(document.data) == measure_nesting(text).deepest


@pytest.mark.parametrize(
    ("sets", "body", "expected"),
    [
        (
            's = ["x", ["y"]]',
            'any = ["@s"]',
            "w.toml:2:11: sets.s[1]: a term must be a string or an inline table",
        ),
        (
            "",
            'all = [[["Temu"]]]',
            "w.toml:6:9: topic[0].all[0][0]: a term must be a string or an inline table",
        ),
        ("", 'any = [[["Temu"]]]', "w.toml:6:8: topic[0].any[0]: a term must be a string or an inline table"),
    ],
)
def test_term_lists_do_not_nest(sets: str, body: str, expected: str) -> None:
    text = f"[sets]\n{sets}\n" + TOPIC + body + "\n"
    assert [expected] == [p.split(" {")[0] for p in problems_of(text)]


# --- query nesting ----------------------------------------------------------------------------------------


def nested_query(depth: int) -> str:
    """``depth`` nested groups, each as deep a tree as the grammar allows: OR > AND > NOT > NOT > group."""
    query = "x OR title:c NEAR/2 d"
    for level in range(depth):
        query = f"title:(a{level} OR b{level} NOT NOT {query})"
    return query


def test_parentheses_at_the_limit_parse_and_one_more_is_refused_at_that_parenthesis() -> None:
    assert QTerm("Temu", MAX_DEPTH) == parse_query("(" * MAX_DEPTH + "Temu" + ")" * MAX_DEPTH)
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query("Temu OR " + "(" * 33 + "Shein" + ")" * 33)
    assert ("parentheses nested 33 deep; at most 32 levels are allowed", 8 + 32) == (
        caught.value.message,
        caught.value.offset,
    )


def test_a_query_at_the_depth_limit_compiles_and_matches_in_a_few_hundred_frames() -> None:
    text = TOPIC + f'query = "{nested_query(MAX_DEPTH)}"\n'
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 400)  # the default limit is 1000: leave the callers 600
    try:
        watchlist = compile_text(text)
        found = match_item(watchlist, " ".join(f"b{level}" for level in range(MAX_DEPTH)) + " x", "")
    finally:
        sys.setrecursionlimit(limit)
    assert [("t", ("b31",))] == [(m.topic_id, m.terms) for m in found]


@pytest.mark.parametrize(
    ("negations", "expected"), [(1, 1), (2, 2), (3, 1), (4, 2), (10_001, 1), (10_000, 2)]
)
def test_runs_of_not_keep_their_meaning_without_deep_trees(negations: int, expected: int) -> None:
    node = parse_query("NOT " * negations + "Temu")
    depth = 0
    while isinstance(node, QNot):
        node, depth = node.child, depth + 1
    assert (expected, QTerm("Temu", 4 * negations)) == (depth, node)


def test_long_field_prefix_chains_parse_and_the_innermost_field_wins() -> None:
    assert QTerm("Temu", 70_005, field="link") == parse_query("title:summary:" * 5_000 + "link:Temu")


# --- regex terms on RE2 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "col", "message"),
    [
        (r"(a)\1", 22, r"the backreference \1 is not supported"),
        ("(?P<x>a)(?P=x)", 27, "the named backreference (?P=...) is not supported"),
        ("temu(?=land)", 23, "the lookahead (?=...) is not supported"),
        ("temu(?!land)", 23, "the negative lookahead (?!...) is not supported"),
        ("(?<=pdd )holdings", 19, "the lookbehind (?<=...) is not supported"),
        ("(?<!pdd )holdings", 19, "the negative lookbehind (?<!...) is not supported"),
        ("pd++", 21, "the possessive quantifier ++ is not supported"),
        ("pd{2}+", 21, "the possessive quantifier {2}+ is not supported"),
        ("(?>pdd)", 19, "the atomic group (?>...) is not supported"),
        ("(a)?(?(1)b|c)", 23, "the conditional group (?(...) is not supported"),
    ],
)
def test_constructs_without_a_linear_time_algorithm_are_errors_inside_the_string(
    pattern: str, col: int, message: str
) -> None:
    [problem] = problems_of(regex_topic(pattern))
    assert problem.startswith(
        f"w.toml:4:{col}: topic[0].any[0].regex: invalid regex {pattern!r}: {message}: "
    )
    assert "regex terms run on RE2, which guarantees matching in time linear in the text" in problem


@pytest.mark.parametrize(
    ("pattern", "col", "message"),
    [
        ("(?x)p d d", 19, "the flag x is not supported: RE2 has no verbose mode"),
        ("pd{1001}", 21, "repetition {1001} is too large: RE2 allows counts up to 1000"),
        (r"[\W]", 20, r"\W inside [...] is not supported"),
        (r"pdd\k<x>", 22, r"invalid escape sequence: \k"),
        ("[z-a]", 20, "invalid character class range: z-a"),
        ("ali(baba", 22, "missing ), unterminated subpattern"),
        ("pdd)", 22, "unbalanced parenthesis"),
    ],
)
def test_other_regex_errors_are_positioned_too(pattern: str, col: int, message: str) -> None:
    [problem] = problems_of(regex_topic(pattern))
    assert problem.startswith(f"w.toml:4:{col}: topic[0].any[0].regex: invalid regex {pattern!r}: {message}")


def test_regex_error_columns_count_escapes_in_basic_strings_as_one_character() -> None:
    text = TOPIC + 'any = [{ regex = "\\\\d+ \\u00e9(a)\\\\1" }]\n'  # the value is \d+ é(a)\1
    [problem] = problems_of(text)
    assert problem.startswith("w.toml:4:33: topic[0].any[0].regex: invalid regex")  # at \\1, not at 4:27


def normalised(text: str) -> str:
    """What a regex term runs on: the folded words of ``text`` joined by single spaces."""
    return " ".join(tokenise(text).words)


def re2_matches(pattern: str, text: str) -> list[str]:
    encoded = normalised(text).encode()
    return [encoded[start:end].decode() for start, end in compile_regex(pattern).spans(encoded)]


def python_matches(pattern: str, text: str) -> list[str]:
    """What regex terms matched before RE2."""
    return [found.group() for found in re.finditer(pattern, normalised(text))]


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"temu\w*", "Temuland ouvre à Temuco"),
        (r"\w+ holdings", "PDD Holdings et Ёлка Holdings"),  # \w keeps Python's Unicode meaning
        (r"\d+ points", "Hausse de 12 points, puis de ٣٤ points"),  # so does \d (Arabic-Indic digits)
        (r"\S+ \s*cognac", "Экспорт: коньяк cognac"),
        (r"[^\d\s]+s\b", "2024 exportations françaises"),
        (r"(?i)PDD", "pdd"),
        (r"pdd\Z", "Temu et PDD"),
        (r"x{,2}y", "xxxy xy y"),  # RE2 reads {,n} literally; Python means {0,n}
        (r"\u00e9|\N{LATIN SMALL LETTER E}t", "été"),
        (r"(?u)(?#a comment)export", "Exportations"),
    ],
)
def test_regex_terms_match_what_python_re_matched(pattern: str, text: str) -> None:
    expected = python_matches(pattern, text)
    assert expected, "a case that matches nothing proves nothing"
    assert expected == re2_matches(pattern, text)


@pytest.mark.parametrize(
    ("title", "pattern", "expected"),
    [
        ("Exportations françaises : cognac", "aises", "françaises"),
        ("Exportations françaises : cognac", "cognac", "cognac"),
        ("Экспорт во Францию: коньяк и cognac", "cognac", "cognac"),  # RE2 offsets are bytes here
        ("Экспорт во Францию: коньяк и cognac", "коньяк", "коньяк"),
        ("Ελληνικές εξαγωγές: ούζο et pdd holdings", r"pdd\s\w+", "pdd holdings"),
    ],
)
def test_regex_spans_point_at_the_original_text_beyond_ascii(title: str, pattern: str, expected: str) -> None:
    [found] = match_item(compile_text(regex_topic(pattern)), title, "")
    [span] = found.spans
    assert (title.index(expected), title.index(expected) + len(expected)) == (span.start, span.end)


def test_regex_matching_the_empty_string_is_still_refused() -> None:
    assert ["w.toml:4:10: topic[0].any[0].regex: regex 'x*' matches the empty string"] == problems_of(
        regex_topic("x*")
    )


REGEX_PIECES = st.sampled_from(
    [*"ab()[]{}*+?|^$.-:=!<>#\\dwsWSZbuUxNPpQE019,", "(?", "(?P<", "{2}", "{,3}", "[^", "(?i)", "é", "ж"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(REGEX_PIECES, max_size=12).map("".join))
def test_any_pattern_compiles_or_raises_regex_error_with_an_offset_inside_it(pattern: str) -> None:
    try:
        compile_regex(pattern)
    except RegexError as exc:
        assert 0 <= exc.offset <= len(pattern)


@pytest.mark.parametrize(
    ("pattern", "warned"),
    [
        ("коньяк|ουζο", False),
        ("Éclair", True),
        ("éclair", True),
        ("eclair", False),
        (r"\p{Lu}|(?P<Name>x)", False),
    ],
)
def test_only_letters_that_normalisation_changes_are_reported_as_unmatchable(
    pattern: str, warned: bool
) -> None:
    warnings = [str(w) for w in compile_text(regex_topic(pattern)).warnings]
    expected = (
        ["w.toml:4:10: topic[0].any[0].regex: warning: regex runs on normalised text"] if warned else []
    )
    assert expected == [w.split(" (")[0] for w in warnings]


def test_regex_errors_carry_the_offset_in_the_pattern() -> None:
    with pytest.raises(RegexError) as caught:
        compile_regex("export(?=ations)")
    assert 6 == caught.value.offset
