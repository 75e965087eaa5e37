"""Compiled watchlist terms and the index that finds all of them in one pass over a text.

Every term becomes one or more word patterns (a phrase ``e-commerce`` is the two words ``e commerce`` and also
the joined word ``ecommerce``). Patterns are indexed by the spelling of their first word, so scanning a text is
one dictionary look-up per word (plus one per distinct ``prefix*`` length and per hyphenated pair), whatever the
number of terms. Only ``regex`` terms cost a pass each, which is why they must be asked for explicitly.

Regex terms run on RE2 (google-re2), whose matching time is linear in the length of the text whatever the
pattern: a term such as ``(\\w+\\s?)+pdd``, which backtracks for hours in Python's ``re`` on a long summary, costs
microseconds. :func:`compile_regex` accepts RE2 syntax with Python's meaning of ``\\w``, ``\\d`` and ``\\s``
(Unicode), and refuses, with the reason and the offset, what RE2 cannot run in linear time (backreferences,
lookaround, possessive quantifiers...).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from alertd.normalise import Tokens, fold_keep_case, inflected_forms, leading_elision, tokenise
from alertd.regex import Regex

TEXT_FIELDS = frozenset({"title", "summary"})


@dataclass(frozen=True, slots=True)
class Term:
    """One compiled term: what the user wrote and how it matches."""

    id: int
    text: str
    words: tuple[str, ...]
    fields: frozenset[str] = TEXT_FIELDS
    case_exact: bool = False
    form_exact: bool = False
    prefix: bool = False
    regex: Regex | None = None
    weight: float = 1.0


class Hit(NamedTuple):
    """One place a term fired: the field and the word range ``[first, last)`` of its text.

    A named tuple rather than a frozen dataclass: items create many of these and tuples are built faster.
    """

    field: str
    first: int
    last: int
    tokens: Tokens

    @property
    def start(self) -> int:
        """Character offset of the hit in the original text."""
        return self.tokens.starts[self.first]

    @property
    def end(self) -> int:
        """Character offset just past the hit in the original text."""
        return self.tokens.ends[self.last - 1]


@dataclass(frozen=True, slots=True)
class Slot:
    """What one word of a pattern accepts."""

    spellings: frozenset[str] = frozenset()
    prefix: str = ""
    cased: str = ""
    by_key: bool = False  # compare the text word's key (its stem) rather than its spelling


@dataclass(frozen=True, slots=True)
class Pattern:
    """A term as a sequence of word slots; ``found_by_key`` when finding the first word proves the match."""

    term_id: int
    slots: tuple[Slot, ...]
    fields: frozenset[str] = TEXT_FIELDS
    found_by_key: bool = False
    anchor: int = 0  # the slot the index files the pattern under


Inflect = Callable[[str], frozenset[str]]


@dataclass(frozen=True)
class Inflection:
    """How terms reach other forms of their words.

    ``forms`` (the default) expands each term word into its spellings with :func:`inflected_forms` and
    compares text words as they are. ``key`` (e.g. a stemmer) maps both sides to a key instead.
    """

    forms: Inflect = inflected_forms
    key: Callable[[str], str] | None = None


@dataclass(frozen=True)
class TermIndex:
    """All terms of a watchlist, indexed for a single pass over each field of an item."""

    terms: tuple[Term, ...]
    by_word: dict[str, tuple[Pattern, ...]]
    by_key: dict[str, tuple[Pattern, ...]]
    by_prefix: dict[str, tuple[Pattern, ...]]
    prefix_lengths: tuple[int, ...]
    regexes: tuple[Term, ...]
    fields: frozenset[str]
    key: Callable[[str], str] | None = field(default=None, repr=False)

    def find(
        self, field_name: str, text: str, hits: dict[int, list[Hit]] | None = None
    ) -> dict[int, list[Hit]]:
        """Every hit of every term scoped to ``field_name`` in ``text``, keyed by term id (added to
        ``hits`` when given, so the fields of one item share one dictionary)."""
        found: dict[int, list[Hit]] = defaultdict(list) if hits is None else hits
        if not text or field_name not in self.fields:
            return found
        tokens = tokenise(text)
        self._scan_words(field_name, tokens, found)
        if self.regexes:
            self._scan_regexes(field_name, tokens, found)
        return found

    def _scan_words(self, field_name: str, tokens: Tokens, hits: dict[int, list[Hit]]) -> None:
        words = tokens.words
        self._scan_keys(self.by_word, words, field_name, tokens, hits)
        if self.by_key and self.key is not None:
            self._scan_keys(self.by_key, [self.key(w) for w in words], field_name, tokens, hits)
        for length in self.prefix_lengths:
            self._scan_keys(self.by_prefix, [w[:length] for w in words], field_name, tokens, hits)
        if field_name != "link":  # URL slugs hyphenate every word: no joins there
            text = tokens.text
            if "-" in text or "‐" in text or "‑" in text:
                self._scan_hyphenated(field_name, tokens, hits)

    def _scan_keys(
        self,
        index: dict[str, tuple[Pattern, ...]],
        keys: Sequence[str],
        field_name: str,
        tokens: Tokens,
        hits: dict[int, list[Hit]],
    ) -> None:
        # The set intersection runs in C; Python only visits the words that start some pattern.
        for key in index.keys() & set(keys):
            patterns = index[key]
            i = -1
            for _ in range(keys.count(key)):
                i = keys.index(key, i + 1)
                self._try(patterns, field_name, tokens, i, hits)

    def _scan_hyphenated(self, field_name: str, tokens: Tokens, hits: dict[int, list[Hit]]) -> None:
        """``e-commerce`` in the text also reads as the one word ``ecommerce``.

        Only when one side is a one- or two-letter prefix (e-, t-, k-): ``Ali-Baba`` is not ``Alibaba``.
        """
        for i, joined in tokens.short_hyphen_pairs(self.by_word):
            for pattern in self.by_word.get(joined, ()):
                term = self.terms[pattern.term_id]
                if len(pattern.slots) == 1 and field_name in term.fields and not term.case_exact:
                    hits[term.id].append(Hit(field_name, i, i + 2, tokens))

    def _try(
        self,
        patterns: tuple[Pattern, ...],
        field_name: str,
        tokens: Tokens,
        first: int,
        hits: dict[int, list[Hit]],
    ) -> None:
        """Check the patterns filed under word ``first`` (their anchor slot)."""
        for pattern in patterns:
            if field_name not in pattern.fields:
                continue
            start = first - pattern.anchor
            last = start + len(pattern.slots)
            if pattern.found_by_key or (
                start >= 0 and last <= len(tokens) and self._matches(pattern, tokens, start)
            ):
                hits[pattern.term_id].append(Hit(field_name, start, last, tokens))

    def _matches(self, pattern: Pattern, tokens: Tokens, first: int) -> bool:
        """Whether the pattern's words are at ``first`` and form one phrase there."""
        # Words first: checking what separates them needs offsets, which cost more.
        slots = pattern.slots
        return all(self._accepts(slot, tokens, first + k) for k, slot in enumerate(slots)) and all(
            tokens.joined(first + k) for k in range(len(slots) - 1)
        )

    def _accepts(self, slot: Slot, tokens: Tokens, index: int) -> bool:
        word = tokens.words[index]
        if slot.prefix:
            accepted = word.startswith(slot.prefix)
        elif slot.by_key and self.key is not None:
            accepted = self.key(word) in slot.spellings
        else:
            accepted = word in slot.spellings
        return accepted and (not slot.cased or tokens.cased(index) == slot.cased)

    def _scan_regexes(self, field_name: str, tokens: Tokens, hits: dict[int, list[Hit]]) -> None:
        """Regex terms run over the normalised text (folded words joined by single spaces), given to RE2 as
        UTF-8: match offsets are bytes, and so are the word starts they are looked up in."""
        words = tokens.words
        text = " ".join(words)
        normalised = text.encode()
        starts = _byte_starts(words, ascii_only=text.isascii())
        for term in self.regexes:
            if field_name not in term.fields or term.regex is None:
                continue
            for start, end in term.regex.spans(normalised):
                if end == start:
                    continue
                first = max(bisect.bisect_right(starts, start) - 1, 0)
                last = max(bisect.bisect_left(starts, end), first + 1)
                hits[term.id].append(Hit(field_name, first, last, tokens))


def _byte_starts(words: Sequence[str], ascii_only: bool) -> list[int]:
    """Offset of each word in the UTF-8 encoding of ``" ".join(words)``."""
    starts: list[int] = []
    position = 0
    for word in words:
        starts.append(position)
        position += (len(word) if ascii_only else len(word.encode())) + 1
    return starts


def build_index(terms: Iterable[Term], inflection: Inflection | None = None) -> TermIndex:
    """Index ``terms`` (whose ids are their positions) for scanning."""
    inflection = inflection or Inflection()
    all_terms = tuple(terms)
    by_word: dict[str, list[Pattern]] = defaultdict(list)
    by_key: dict[str, list[Pattern]] = defaultdict(list)
    by_prefix: dict[str, list[Pattern]] = defaultdict(list)
    for term in all_terms:
        if term.regex is not None or not term.words:
            continue
        for pattern in _patterns(term, inflection):
            first = pattern.slots[pattern.anchor]
            if first.prefix:
                by_prefix[first.prefix].append(pattern)
            elif first.by_key:
                for key in first.spellings:
                    by_key[key].append(pattern)
            else:
                for spelling in first.spellings:
                    by_word[spelling].append(pattern)
    return TermIndex(
        terms=all_terms,
        by_word={k: tuple(v) for k, v in by_word.items()},
        by_key={k: tuple(v) for k, v in by_key.items()},
        by_prefix={k: tuple(v) for k, v in by_prefix.items()},
        prefix_lengths=tuple(sorted({len(p) for p in by_prefix})),
        regexes=tuple(t for t in all_terms if t.regex is not None),
        fields=frozenset(f for t in all_terms for f in t.fields),
        key=inflection.key,
    )


def _patterns(term: Term, inflection: Inflection) -> list[Pattern]:
    cased = [fold_keep_case(w) for w in _cased_words(term)] if term.case_exact else []
    slots = []
    for k, word in enumerate(term.words):
        is_prefix = term.prefix and k == len(term.words) - 1
        slots.append(_slot(word, cased[k] if cased else "", is_prefix, term.form_exact, inflection))
    patterns = [_pattern(term, slots)]
    if len(term.words) > 1 and not term.case_exact:
        joined = "".join(term.words)
        patterns.append(_pattern(term, [_slot(joined, "", term.prefix, term.form_exact, inflection)]))
    return patterns


def _pattern(term: Term, slots: list[Slot]) -> Pattern:
    """A single plain slot is proved by the index look-up itself (its keys are exactly its spellings).

    A phrase is indexed by its least common-looking word (the longest), so ``de minimis`` is looked at when
    ``minimis`` occurs, not at every ``de``.
    """
    plain = len(slots) == 1 and not slots[0].cased and not slots[0].prefix
    anchor = max(range(len(slots)), key=lambda k: _anchor_rank(slots[k], k))
    return Pattern(term.id, tuple(slots), term.fields, found_by_key=plain, anchor=anchor)


def _anchor_rank(slot: Slot, position: int) -> tuple[bool, bool, int, int]:
    """Prefer exact slots, then words outside the most common news words, then longer words."""
    shortest = len(slot.prefix) if slot.prefix else min((len(s) for s in slot.spellings), default=0)
    common = bool(slot.spellings & _COMMON_WORDS)
    return (not slot.prefix, not common, shortest, -position)


# Words so frequent in business news that a phrase should not be looked at each time one occurs.
_COMMON_WORDS = frozenset(
    {
        "a",
        "au",
        "aux",
        "de",
        "des",
        "du",
        "en",
        "et",
        "la",
        "le",
        "les",
        "l",
        "d",
        "un",
        "une",
        "sur",
        "pour",
        "par",
        "dans",
        "avec",
        "plus",
        "the",
        "of",
        "and",
        "in",
        "to",
        "on",
        "for",
        "with",
        "by",
        "at",
        "from",
        "france",
        "francais",
        "francaise",
        "paris",
        "business",
        "prix",
        "euros",
        "president",
        "marche",
        "marches",
        "groupe",
        "entreprise",
        "entreprises",
        "plan",
        "ministre",
        "europe",
        "bourse",
    }
)


def _slot(word: str, cased: str, prefix: bool, form_exact: bool, inflection: Inflection) -> Slot:
    if prefix:
        return Slot(prefix=word, cased=cased)
    if form_exact:
        return Slot(frozenset((word,)), cased=cased)
    if inflection.key is not None:
        return Slot(frozenset((inflection.key(word),)), cased=cased, by_key=True)
    return Slot(inflection.forms(word), cased=cased)


def _cased_words(term: Term) -> list[str]:
    """The term's words as written (case kept), without a leading elided article."""
    text = term.text.lstrip()
    elided = leading_elision(text)
    tokens = tokenise(text[len(elided) :] if elided else text)
    return [tokens.text[s:e] for s, e in zip(tokens.starts, tokens.ends, strict=True)]
