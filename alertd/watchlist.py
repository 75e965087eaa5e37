"""Watchlist TOML → compiled topics, with a lint that reports every problem as ``PATH:LINE:COL``.

The language is documented in ``docs/watchlist.md``. In short::

    [sets]
    alibaba = ["Alibaba", "AliExpress", "Taobao"]

    [[topic]]
    id = "chinese-ecommerce"
    name = "E-commerce chinois"
    priority = "normal"                      # or "immediate"
    any = ["@alibaba", "Temu", { text = "JD", case = "exact" }]
    all = [["Shein", "Temu"], ["douane*", "colis"]]   # each group must match
    none = ["bon plan"]                      # vetoes
    query = 'title:(@alibaba OR Temu) AND NOT "bon plan"'
    feeds = ["tag:chine"]                    # feed names or tags; exclude_feeds likewise
    min_score = 1                            # sum of the weights of the terms that fired

Errors raise :class:`ConfigError` carrying all of them; warnings are kept on :attr:`Watchlist.warnings`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alertd.conditions import (
    Leaf,
    Near,
    Node,
    Not,
    Predicate,
    all_of,
    all_terms,
    any_of,
    compile_predicate,
    evaluate,
)
from alertd.errors import ConfigError, Problem, did_you_mean
from alertd.normalise import term_words
from alertd.query import (
    QAnd,
    QNear,
    QNode,
    QNot,
    QOr,
    QSet,
    QTerm,
    QuerySyntaxError,
    parse_query,
)
from alertd.regex import compile_regex
from alertd.termindex import (
    TEXT_FIELDS,
    Inflection,
    Term,
    TermIndex,
    build_index,
)
from alertd.terms import TermReader, TermSpec, with_scope
from alertd.tomlsource import KeyPath, TomlDocument, load

PRIORITIES = ("normal", "immediate")
_TOP_KEYS = frozenset({"topic", "sets"})
_TOPIC_KEYS = frozenset(
    {
        "id",
        "name",
        "description",
        "priority",
        "any",
        "all",
        "none",
        "query",
        "feeds",
        "exclude_feeds",
        "min_score",
    }
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SET_REFERENCE = re.compile(r"@([A-Za-z0-9][A-Za-z0-9_.-]*)")


@dataclass(frozen=True)
class Topic:
    """One compiled topic: its identity and when it fires (``matches``, ``vetoed``: compiled predicates of
    ``condition`` and ``veto`` over an item's term hits)."""

    id: str
    name: str
    priority: str = "normal"
    condition: Node = field(default_factory=lambda: all_of([]), repr=False, compare=False)
    veto: Node | None = field(default=None, repr=False, compare=False)
    feeds: frozenset[str] = frozenset()
    exclude_feeds: frozenset[str] = frozenset()
    min_score: float | None = None
    matches: Predicate = field(default=lambda hits: False, repr=False, compare=False)
    vetoed: Predicate = field(default=lambda hits: False, repr=False, compare=False)
    # What the topic was compiled from (its table and the sets it uses), so that two compilations of an
    # unchanged topic compare equal even when other topics' edits renumbered the terms.
    definition: str = field(default="", repr=False)

    def accepts_feed(self, feed_name: str, feed_tags: frozenset[str]) -> bool:
        """Whether an item from this feed (name or any tag) is in this topic's feed scope."""
        included, excluded = self.feed_scope(feed_name, feed_tags)
        return not excluded and (not self.feeds or bool(included))

    def feed_scope(self, feed_name: str, feed_tags: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        """The entries of ``feeds`` and of ``exclude_feeds`` that this feed answers to, by name or tag: what
        :meth:`accepts_feed` decided on (read-only, for explanations)."""
        names = {feed_name.casefold()} | {f"tag:{tag.casefold()}" for tag in feed_tags}
        names |= {tag.casefold() for tag in feed_tags}
        return self.feeds & names, self.exclude_feeds & names


@dataclass(frozen=True)
class Watchlist:
    """A compiled watchlist: topics in file order, the shared term index, and the lint warnings."""

    path: Path
    topics: tuple[Topic, ...]
    warnings: tuple[Problem, ...] = ()
    index: TermIndex = field(default_factory=lambda: build_index(()), repr=False)
    topics_by_term: Mapping[int, tuple[int, ...]] = field(default_factory=dict, repr=False)
    always_evaluated: tuple[int, ...] = field(default=(), repr=False)

    def topic(self, topic_id: str) -> Topic | None:
        """The topic with this id, or None."""
        return next((t for t in self.topics if t.id == topic_id), None)


def load_watchlist(path: Path, inflection: Inflection | None = None) -> Watchlist:
    """Read, compile and lint the watchlist at ``path``; raise ConfigError with every error found."""
    document = load(path)
    return compile_watchlist(document, source=document.text, inflection=inflection)


def compile_watchlist(
    doc: TomlDocument, *, source: str | None = None, inflection: Inflection | None = None
) -> Watchlist:
    """Compile a parsed watchlist. ``source`` (the file text) lets query errors point inside the query."""
    compiler = _Compiler(doc, source)
    topics = compiler.compile()
    problems = sorted(compiler.problems, key=lambda p: (p.line, p.col))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError(errors)
    index = build_index(compiler.terms, inflection)
    by_term: dict[int, list[int]] = defaultdict(list)
    always: list[int] = []
    for position, topic in enumerate(topics):
        ids = set(all_terms(topic.condition))
        for term_id in sorted(ids):
            by_term[term_id].append(position)
        if evaluate(topic.condition, {}):
            always.append(position)
    warnings = tuple(p for p in problems if p.severity != "error")
    return Watchlist(
        doc.path,
        tuple(topics),
        warnings,
        index,
        {k: tuple(v) for k, v in by_term.items()},
        tuple(always),
    )


class _Compiler(TermReader):
    """Walks the TOML data once, collecting problems, terms and topics."""

    def __init__(self, doc: TomlDocument, source: str | None) -> None:
        self.doc = doc
        self.source = source
        self.problems: list[Problem] = []
        self.terms: list[Term] = []
        self._term_ids: dict[tuple[Any, ...], int] = {}
        self.sets: dict[str, list[TermSpec]] = {}
        self.raw_sets: dict[str, Any] = {}
        self._used_sets: set[str] = set()

    # --- reporting ---------------------------------------------------------------------------------

    def report(self, where: KeyPath, message: str, severity: str = "error") -> None:
        line, col = self.doc.locate(where)
        self.problems.append(Problem(self.doc.path, line, col, _key_name(where), message, severity))

    def report_at(self, where: KeyPath, line: int, col: int, message: str) -> None:
        self.problems.append(Problem(self.doc.path, line, col, _key_name(where), message))

    # --- document ----------------------------------------------------------------------------------

    def compile(self) -> list[Topic]:
        data = self.doc.data
        for key in sorted(set(data) - _TOP_KEYS):
            self.report(
                (key,),
                f"unknown key {key!r}{did_you_mean(key, _TOP_KEYS)} (expected [[topic]] tables and [sets])",
            )
        self._compile_sets(data.get("sets", {}))
        raw_topics = data.get("topic", [])
        if not isinstance(raw_topics, list) or not all(isinstance(t, dict) for t in raw_topics):
            self.report(("topic",), "topic must be an array of tables: write [[topic]]")
            return []
        if not raw_topics:
            self.report(("topic",), "the watchlist has no [[topic]]", "warning")
        topics = [self._topic(i, raw) for i, raw in enumerate(raw_topics)]
        self._check_duplicate_ids(raw_topics)
        for name in sorted(set(self.sets) - self._used_sets):
            self.report(("sets", name), f"set @{name} is never used", "warning")
        return [t for t in topics if t is not None]

    def _compile_sets(self, raw: object) -> None:
        if not isinstance(raw, dict):
            self.report(("sets",), "sets must be a table: write [sets]")
            return
        self.raw_sets = dict(raw)
        for name, members in raw.items():
            where: KeyPath = ("sets", name)
            if not _ID.fullmatch(name):
                self.report(where, f"set name {name!r} must be letters, digits, '-', '_' or '.'")
            if not isinstance(members, list):
                self.report(where, "a set must be an array of terms")
                continue
            specs = [self._term_spec((*where, j), m) for j, m in enumerate(members)]
            found = [s for s in specs if s is not None]
            for spec in found:
                if spec.set_name is not None:
                    self.report(spec.where, "a set cannot refer to another set")
            self.sets[name] = [s for s in found if s.set_name is None]
            self._check_duplicates(self.sets[name])

    def _check_duplicate_ids(self, raw_topics: list[dict[str, Any]]) -> None:
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_topics):
            topic_id = raw.get("id")
            if not isinstance(topic_id, str):
                continue
            if topic_id in seen:
                line, col = self.doc.locate(("topic", seen[topic_id], "id"))
                self.report(("topic", i, "id"), f"duplicate topic id {topic_id!r} (first at {line}:{col})")
            else:
                seen[topic_id] = i

    # --- topics ------------------------------------------------------------------------------------

    def _topic(self, index: int, raw: dict[str, Any]) -> Topic | None:
        where: KeyPath = ("topic", index)
        for key in sorted(set(raw) - _TOPIC_KEYS):
            self.report((*where, key), f"unknown topic key {key!r}{did_you_mean(key, _TOPIC_KEYS)}")
        topic_id = self._required_string(where, raw, "id")
        name = self._required_string(where, raw, "name")
        if topic_id and not _ID.fullmatch(topic_id):
            self.report((*where, "id"), "id must be letters, digits, '-', '_' or '.'")
        priority = raw.get("priority", "normal")
        if priority not in PRIORITIES:
            self.report((*where, "priority"), f"priority must be one of {', '.join(PRIORITIES)}")
        parts = self._topic_parts(where, raw)
        if parts is None or topic_id is None or name is None:
            return None
        condition, veto = parts
        if evaluate(condition, {}):
            self.report(where, "this topic matches items that contain none of its terms", "warning")
        return Topic(
            id=topic_id,
            definition=self._definition(raw),
            name=name,
            priority=priority if priority in PRIORITIES else "normal",
            condition=condition,
            veto=veto,
            feeds=self._feed_list(where, raw, "feeds"),
            exclude_feeds=self._feed_list(where, raw, "exclude_feeds"),
            min_score=self._min_score(where, raw),
            matches=compile_predicate(condition),
            vetoed=compile_predicate(veto) if veto is not None else compile_predicate(any_of([])),
        )

    def _definition(self, raw: dict[str, Any]) -> str:
        text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
        used = sorted(set(_SET_REFERENCE.findall(text)) & set(self.raw_sets))
        return json.dumps([raw, {n: self.raw_sets[n] for n in used}], sort_keys=True, default=str)

    def _topic_parts(self, where: KeyPath, raw: dict[str, Any]) -> tuple[Node, Node | None] | None:
        positive: list[Node] = []
        specs: list[TermSpec] = []
        any_specs = self._term_list(where, raw, "any")
        specs += any_specs
        if any_specs:
            positive.append(any_of(self._leaves(any_specs)))
        for group in self._groups(where, raw):
            specs += group
            positive.append(any_of(self._leaves(group)))
        if "query" in raw:
            query_node = self._query(where, raw["query"])
            if query_node is not None:
                positive.append(query_node)
        none_specs = self._term_list(where, raw, "none")
        self._check_duplicates(specs)
        self._check_vetoed(specs, none_specs)
        if not positive:
            if not {"any", "all", "query"} & set(raw):
                self.report(where, "topic has nothing to match: give it any, all or query")
            return None
        veto = any_of(self._leaves(none_specs)) if none_specs else None
        condition = all_of(positive)
        return condition, veto

    def _required_string(self, where: KeyPath, raw: dict[str, Any], key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            self.report(where, f"topic is missing {key!r}")
            return None
        if not isinstance(value, str) or not value.strip():
            self.report((*where, key), f"{key} must be a non-empty string")
            return None
        return value

    def _feed_list(self, where: KeyPath, raw: dict[str, Any], key: str) -> frozenset[str]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.report((*where, key), f"{key} must be an array of feed names or tags")
            return frozenset()
        return frozenset(v.casefold() for v in value)

    def _min_score(self, where: KeyPath, raw: dict[str, Any]) -> float | None:
        value = raw.get("min_score")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self.report((*where, "min_score"), "min_score must be a number >= 0")
            return None
        return float(value)

    # --- term lists --------------------------------------------------------------------------------

    def _term_list(self, where: KeyPath, raw: dict[str, Any], key: str) -> list[TermSpec]:
        if key not in raw:
            return []
        value = raw[key]
        if not isinstance(value, list):
            self.report((*where, key), f"{key} must be an array of terms")
            return []
        specs = [self._term_spec((*where, key, j), item) for j, item in enumerate(value)]
        return self._expand_sets([s for s in specs if s is not None])

    def _groups(self, where: KeyPath, raw: dict[str, Any]) -> list[list[TermSpec]]:
        if "all" not in raw:
            return []
        value = raw["all"]
        if not isinstance(value, list) or not all(isinstance(g, list) for g in value):
            self.report((*where, "all"), "all must be an array of arrays: all = [[a, b], [c]]")
            return []
        groups = []
        for g, group in enumerate(value):
            specs = [self._term_spec((*where, "all", g, j), t) for j, t in enumerate(group)]
            expanded = self._expand_sets([s for s in specs if s is not None])
            if not group:
                self.report((*where, "all", g), "empty group: it can never match")
            groups.append(expanded)
        return [g for g in groups if g]

    def _expand_sets(self, specs: Iterable[TermSpec]) -> list[TermSpec]:
        out: list[TermSpec] = []
        for spec in specs:
            if spec.set_name is None:
                out.append(spec)
                continue
            members = self._set_members(spec.where, spec.set_name)
            out += [with_scope(m, spec.scope, spec.where) for m in members]
        return out

    def _known_sets(self, name: str) -> str:
        """What to say after an unknown set's name: the closest set, then those defined."""
        known = ", ".join(f"@{n}" for n in sorted(self.sets)) or "none defined"
        return f"{did_you_mean(name, self.sets, show=lambda close: '@' + close)} (known: {known})"

    def _set_members(self, where: KeyPath, name: str) -> list[TermSpec]:
        if name not in self.sets:
            self.report(where, f"unknown set @{name}{self._known_sets(name)}")
            return []
        self._used_sets.add(name)
        return self.sets[name]

    def _leaves(self, specs: Iterable[TermSpec]) -> list[Node]:
        return [Leaf(self._term_id(spec)) for spec in specs]

    def _term_id(self, spec: TermSpec) -> int:
        words = term_words(spec.text) if spec.regex is None else ()
        key = (
            words,
            spec.regex,
            spec.case_exact,
            spec.form_exact,
            spec.weight,
            spec.fields,
            spec.prefix,
            spec.text if spec.case_exact else "",
        )
        found = self._term_ids.get(key)
        if found is None:
            found = len(self.terms)
            self._term_ids[key] = found
            regex = compile_regex(spec.regex) if spec.regex is not None else None
            display = spec.text + ("*" if spec.prefix else "") if spec.regex is None else spec.regex
            self.terms.append(
                Term(
                    id=found,
                    text=display,
                    words=words,
                    fields=spec.fields,
                    case_exact=spec.case_exact,
                    form_exact=spec.form_exact,
                    prefix=spec.prefix,
                    regex=regex,
                    weight=spec.weight,
                )
            )
        return found

    # --- queries -----------------------------------------------------------------------------------

    def _query(self, where: KeyPath, query: object) -> Node | None:
        key: KeyPath = (*where, "query")
        if not isinstance(query, str):
            self.report(key, "query must be a string")
            return None
        try:
            tree = parse_query(query)
        except QuerySyntaxError as exc:
            line, col = self._position_in_value(key, exc.offset)
            self.report_at(key, line, col, f"invalid query: {exc.message}")
            return None
        return self._query_node(key, query, tree)

    def _query_node(self, key: KeyPath, query: str, node: QNode) -> Node | None:
        if isinstance(node, QTerm | QSet):
            leaves = self._query_leaves(key, query, node)
            return any_of(list(leaves)) if leaves else None
        if isinstance(node, QAnd | QOr):
            children = [self._query_node(key, query, c) for c in node.children]
            if any(c is None for c in children):
                return None
            kept = tuple(c for c in children if c is not None)
            return all_of(list(kept)) if isinstance(node, QAnd) else any_of(list(kept))
        if isinstance(node, QNot):
            child = self._query_node(key, query, node.child)
            return None if child is None else Not(child)
        return self._near_node(key, query, node)

    def _near_node(self, key: KeyPath, query: str, node: QNear) -> Node | None:
        sides = [self._near_side(key, query, side) for side in (node.left, node.right)]
        if not sides[0] or not sides[1]:
            return None
        return Near(frozenset(sides[0]), frozenset(sides[1]), node.distance)

    def _near_side(self, key: KeyPath, query: str, node: QNode) -> list[int]:
        atoms = node.children if isinstance(node, QOr) else (node,)
        ids: list[int] = []
        for atom in atoms:
            assert isinstance(atom, QTerm | QSet)
            ids += [leaf.term_id for leaf in self._query_leaves(key, query, atom)]
        return ids

    def _query_leaves(self, key: KeyPath, query: str, atom: QTerm | QSet) -> list[Leaf]:
        scope = frozenset((atom.field,)) if atom.field else None
        if isinstance(atom, QSet):
            if atom.name not in self.sets:
                line, col = self._position_in_value(key, atom.offset)
                self.report_at(key, line, col, f"unknown set @{atom.name}{self._known_sets(atom.name)}")
                return []
            members = self._set_members(key, atom.name)
            return [Leaf(self._term_id(with_scope(m, scope, key))) for m in members]
        if not term_words(atom.text):
            line, col = self._position_in_value(key, atom.offset)
            self.report_at(key, line, col, f"term {atom.text!r} has no letters or digits")
            return []
        spec = TermSpec(atom.text, key, fields=scope or TEXT_FIELDS, prefix=atom.prefix)
        return [Leaf(self._term_id(spec))]


def _key_name(where: KeyPath) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
