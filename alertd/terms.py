"""One term of the watchlist as written: a string, an inline table, a regex; read, checked and linted.

:class:`TermReader` is the part of the watchlist compiler (:mod:`alertd.watchlist`) that reads terms. It reports
each problem at the term's ``PATH:LINE:COL`` (a regex or query error at its column inside the string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from alertd.normalise import fold, inflected_forms, leading_elision, term_words
from alertd.query import FIELDS
from alertd.regex import RegexError, compile_regex
from alertd.termindex import TEXT_FIELDS
from alertd.tomlsource import KeyPath, TomlDocument, string_offset

TERM_KEYS = frozenset({"text", "regex", "case", "form", "weight", "field"})
_STRING_OPENING = re.compile(r"\s*(\"\"\"|'''|\"|')(\r?\n)?")
# What in a regex is syntax rather than text to match: escapes (\p{Lu} whole), classes, group names, flags.
_REGEX_SYNTAX = re.compile(r"\\[pPxN]\{[^}]*\}|\\.|\[[^\]]*\]|\(\?P?<[^>]*>|\(\?[A-Za-z-]+[:)]")


@dataclass(frozen=True)
class TermSpec:
    """A term as written, before compilation, with where it was written."""

    text: str
    where: KeyPath
    regex: str | None = None
    case_exact: bool = False
    form_exact: bool = False
    weight: float = 1.0
    fields: frozenset[str] = TEXT_FIELDS
    prefix: bool = False
    set_name: str | None = None
    scope: frozenset[str] | None = None  # the field a set reference was narrowed to, if any


class TermReader:
    """Reads terms for the watchlist compiler; the compiler provides the document and the reporting."""

    doc: TomlDocument
    source: str | None

    def report(self, where: KeyPath, message: str, severity: str = "error") -> None:
        raise NotImplementedError

    def report_at(self, where: KeyPath, line: int, col: int, message: str) -> None:
        raise NotImplementedError

    def _term_spec(self, where: KeyPath, value: object) -> TermSpec | None:
        if isinstance(value, str):
            return self._string_term(where, value)
        if isinstance(value, dict):
            return self._table_term(where, value)
        self.report(where, "a term must be a string or an inline table { text = ... }")
        return None

    def _string_term(self, where: KeyPath, text: str, **options: Any) -> TermSpec | None:
        if text.startswith("@"):
            scope = options.get("fields") if options.get("fields", TEXT_FIELDS) != TEXT_FIELDS else None
            return TermSpec(text, where, set_name=text[1:], scope=scope)
        prefix = text.endswith("*")
        spec = TermSpec(text.rstrip("*"), where, prefix=prefix, **options)
        return spec if self._lint_text(spec, text) else None

    def _table_term(self, where: KeyPath, table: dict[str, Any]) -> TermSpec | None:
        for key in sorted(set(table) - TERM_KEYS):
            self.report((*where, key), f"unknown term key {key!r} (expected {', '.join(sorted(TERM_KEYS))})")
        options = self._term_options(where, table)
        if options is None:
            return None
        has_text, has_regex = "text" in table, "regex" in table
        if has_text == has_regex:
            self.report(where, "a term table needs exactly one of text or regex")
            return None
        if has_regex:
            return self._regex_term(where, table["regex"], options)
        if not isinstance(table["text"], str):
            self.report((*where, "text"), "text must be a string")
            return None
        return self._string_term(where, table["text"], **options)

    def _term_options(self, where: KeyPath, table: dict[str, Any]) -> dict[str, Any] | None:
        ok = True
        case, form = table.get("case", "fold"), table.get("form", "inflect")
        if case not in ("fold", "exact"):
            self.report((*where, "case"), 'case must be "exact" or "fold"')
            ok = False
        if form not in ("inflect", "exact"):
            self.report((*where, "form"), 'form must be "exact" or "inflect"')
            ok = False
        weight = table.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            self.report((*where, "weight"), "weight must be a number > 0")
            ok = False
        scope = table.get("field")
        if scope is not None and scope not in FIELDS:
            self.report((*where, "field"), f"field must be one of {', '.join(FIELDS)}")
            ok = False
        if not ok:
            return None
        fields = frozenset((scope,)) if scope else TEXT_FIELDS
        return {
            "case_exact": case == "exact",
            "form_exact": form == "exact",
            "weight": float(weight),
            "fields": fields,
        }

    def _regex_term(self, where: KeyPath, pattern: object, options: dict[str, Any]) -> TermSpec | None:
        if not isinstance(pattern, str):
            self.report((*where, "regex"), "regex must be a string")
            return None
        try:
            compiled = compile_regex(pattern)
        except RegexError as exc:
            key: KeyPath = (*where, "regex")
            line, col = self._position_in_value(key, exc.offset)
            self.report_at(key, line, col, f"invalid regex {pattern!r}: {exc.message}")
            return None
        if compiled.matches_empty_text():
            self.report((*where, "regex"), f"regex {pattern!r} matches the empty string")
            return None
        if options["case_exact"]:
            self.report((*where, "case"), 'regex terms run on normalised text: case = "exact" cannot apply')
            return None
        literal = _REGEX_SYNTAX.sub("", pattern)
        if any(ch.isalpha() and fold(ch) != ch for ch in literal):  # Cyrillic and Greek letters can match
            self.report(
                (*where, "regex"),
                "regex runs on normalised text (lower case, no accents): upper-case or accented "
                "letters in it can never match",
                "warning",
            )
        return TermSpec(pattern, where, regex=pattern, **options)

    def _lint_text(self, spec: TermSpec, written: str) -> bool:
        words = term_words(spec.text)
        if not written.strip() or not words:
            what = "empty term" if not written.strip() else f"term {written!r} has no letters or digits"
            self.report(spec.where, f"{what}: it can never match")
            return False
        elided = leading_elision(spec.text)
        if elided:
            self.report(
                spec.where,
                f"French elision {elided!r} is ignored: {written!r} matches "
                f"{' '.join(words)!r} with or without it",
                "warning",
            )
        if len("".join(words)) <= 2 and not spec.case_exact:
            self.report(
                spec.where,
                f'short term {written!r} matches any case; add case = "exact" for an acronym',
                "warning",
            )
        return True

    def _check_duplicates(self, specs: list[TermSpec]) -> None:
        seen: dict[tuple[Any, ...], TermSpec] = {}
        for spec in specs:
            key = spec_key(spec)
            if key in seen and spec.where != seen[key].where:
                line, col = self.doc.locate(seen[key].where)
                self.report(spec.where, f"duplicate term {spec.text!r} (already at {line}:{col})", "warning")
            seen.setdefault(key, spec)
        self._check_covered_by_inflection(specs)

    def _check_covered_by_inflection(self, specs: list[TermSpec]) -> None:
        """Warn about a word that an earlier word's inflected forms already match (``porcs`` after ``porc``)."""
        forms: dict[str, TermSpec] = {}
        for spec in specs:
            words = term_words(spec.text) if spec.regex is None else ()
            if len(words) != 1 or spec.form_exact or spec.prefix or spec.case_exact:
                continue
            earlier = forms.get(words[0])
            if earlier is not None and term_words(earlier.text) != words and spec.where != earlier.where:
                line, col = self.doc.locate(earlier.where)
                self.report(
                    spec.where,
                    f"{spec.text!r} is already matched as a form of {earlier.text!r} ({line}:{col})",
                    "warning",
                )
            for form in inflected_forms(words[0]):
                forms.setdefault(form, spec)

    def _check_vetoed(self, positive: list[TermSpec], vetoes: list[TermSpec]) -> None:
        vetoed = {spec_key(v) for v in vetoes}
        for spec in positive:
            if spec_key(spec) in vetoed:
                self.report(spec.where, f"{spec.text!r} is also in none: it can only veto", "warning")

    def _position_in_value(self, key: KeyPath, offset: int) -> tuple[int, int]:
        """Line and column of character ``offset`` inside the string value of ``key`` (escapes such as
        ``\\\\`` in a basic string count as the one character they stand for)."""
        line, col = self.doc.locate(key)
        if self.source is None:
            return line, col
        found = value_start(self.source, line, col)
        if found is None:
            return line, col
        start, quote = found
        absolute = string_offset(self.source, start, quote, offset)
        before = self.source[:absolute]
        return before.count("\n") + 1, absolute - (before.rfind("\n") + 1) + 1


def value_start(source: str, line: int, col: int) -> tuple[int, str] | None:
    """Offset of the first character of the string value whose key is at ``line:col``, and its quote."""
    line_start = 0
    for _ in range(line - 1):
        line_start = source.index("\n", line_start) + 1
    equals = source.find("=", line_start + col - 1)
    if equals < 0:
        return None
    found = _STRING_OPENING.match(source, equals + 1)
    return (found.end(), found.group(1)) if found else None


def with_scope(spec: TermSpec, scope: frozenset[str] | None, where: KeyPath) -> TermSpec:
    """A set member used from ``where``; a scoped reference (``title:@set``) sets the member's fields."""
    narrowed = spec.fields if scope is None else scope
    return TermSpec(
        spec.text, where, spec.regex, spec.case_exact, spec.form_exact, spec.weight, narrowed, spec.prefix
    )


def spec_key(spec: TermSpec) -> tuple[Any, ...]:
    words = term_words(spec.text)
    return (words, spec.regex, spec.case_exact, spec.form_exact, spec.fields, spec.prefix)
