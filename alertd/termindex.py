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
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import re2

from alertd.normalise import Tokens, fold_keep_case, inflected_forms, leading_elision, tokenise

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


# --- regex terms ----------------------------------------------------------------------------------------

MAX_REPEAT = 1000  # RE2's largest repetition count
_WORD_CLASS = r"\p{L}\p{N}_"  # Python's \w on str: letters, digits (every numeric category) and "_"
_SPACE_CLASS = r"\t\n\x{0b}\f\r\x{1c}-\x{1f}\x{85}\p{Z}"  # Python's \s on str
_LINEAR = "regex terms run on RE2, which guarantees matching in time linear in the text and so cannot"


class RegexError(ValueError):
    """A regex term RE2 cannot run; ``offset`` is the 0-based character position in the pattern."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Regex:
    """A regex term compiled for RE2: ``pattern`` as written, ``program`` the compiled RE2 object."""

    pattern: str
    program: Any = field(repr=False, compare=False)

    def spans(self, text: bytes) -> Iterator[tuple[int, int]]:
        """``[start, end)`` byte offsets of every non-overlapping match in the UTF-8 ``text``."""
        for found in self.program.finditer(text):
            yield found.start(), found.end()

    def matches_empty_text(self) -> bool:
        """Whether the pattern matches the empty string (and so would fire on every item)."""
        return self.program.search(b"") is not None


def compile_regex(pattern: str) -> Regex:
    """Compile a regex term for RE2; raise :class:`RegexError` saying what is not supported, and where."""
    translated = _Translator(pattern).translate()
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern on stderr
    options.never_capture = True  # only the whole match is used: no submatch tracking
    try:
        program = re2.compile(translated.text, options)
    except re2.error as exc:
        raise _engine_error(exc, translated) from None
    return Regex(pattern, program)


class _Translation(NamedTuple):
    """RE2 source and, for each of its characters, the offset in the pattern it was written from."""

    text: str
    origins: tuple[int, ...]

    def origin(self, fragment: str) -> int:
        """Offset in the pattern of the first place ``fragment`` of the RE2 source came from (0 if absent)."""
        found = self.text.find(fragment) if fragment else -1
        return self.origins[found] if found >= 0 else 0


def _engine_error(exc: Exception, translated: _Translation) -> RegexError:
    """RE2's refusal (``kind: fragment``) as a message and an offset in the pattern."""
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    kind, _, fragment = message.partition(": ")
    if kind.startswith("pattern too large"):
        return RegexError(
            "pattern too large: its compiled form exceeds RE2's memory budget (8 MiB); "
            "use smaller repetition counts",
            0,
        )
    if kind == "invalid repetition size":
        return RegexError(
            f"repetition {fragment} is too large: RE2 allows counts up to {MAX_REPEAT}, nested ones included",
            translated.origin(fragment),
        )
    return RegexError(message, translated.origin(fragment))


_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")
_FLAGS = re.compile(r"\(\?([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")
_NAMED_GROUP = re.compile(r"\(\?P?<[^>]*>")
_PYTHON_OCTAL = re.compile(r"\\[0-3][0-7][0-7]")
_HEX = {"x": 2, "u": 4, "U": 8}
_UNSUPPORTED_FLAGS = {
    "x": "verbose mode (?x): write the pattern without spaces or comments",
    "a": "ASCII-only matching (?a): use [a-z0-9_] and friends",
    "L": "locale-dependent matching (?L)",
}
_UNSUPPORTED_GROUPS = (
    ("(?P=", "the named backreference (?P=...)", "refer back to a group"),
    ("(?=", "the lookahead (?=...)", "look ahead"),
    ("(?!", "the negative lookahead (?!...)", "look ahead"),
    ("(?<=", "the lookbehind (?<=...)", "look behind"),
    ("(?<!", "the negative lookbehind (?<!...)", "look behind"),
    (
        "(?>",
        "the atomic group (?>...)",
        "have atomic groups (which only exist to limit backtracking: drop ?>)",
    ),
    ("(?(", "the conditional group (?(...)", "test whether a group matched"),
)


class _Translator:
    r"""Python regex syntax → RE2 syntax, one pass, no recursion.

    RE2 syntax is nearly Python's; what differs is rewritten so that a pattern keeps its Python meaning:
    ``\w``, ``\d``, ``\s`` and their negations are Unicode classes (in RE2 they are ASCII), ``\Z`` is ``\z``,
    ``{,n}`` is ``{0,n}`` (RE2 reads it literally), ``\uXXXX``, ``\UXXXXXXXX`` and ``\N{name}`` become
    ``\x{...}``, ``(?#...)`` comments and the no-op ``(?u)`` are dropped. What RE2 has no linear-time
    algorithm for is refused here, with its offset: backreferences, lookaround, possessive quantifiers,
    atomic and conditional groups. Unbalanced brackets are reported at the bracket, as Python does.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.out: list[str] = []
        self.origins: list[int] = []
        self.open_groups: list[int] = []
        self.class_start = -1  # offset of the "[" of the character class being read, or -1

    def translate(self) -> _Translation:
        pattern = self.pattern
        while self.pos < len(pattern):
            char = pattern[self.pos]
            if char == "\\":
                self._escape()
            elif self.class_start >= 0:
                self._class_member(char)
            elif char == "[":
                self._class_open()
            elif char == "(":
                self._group_open()
            elif char == ")":
                if not self.open_groups:
                    raise RegexError("unbalanced parenthesis", self.pos)
                self.open_groups.pop()
                self._copy(1)
            elif char in "*+?" or (char == "{" and _REPEAT.match(pattern, self.pos)):
                self._quantifier(char)
            else:
                self._copy(1)
        if self.class_start >= 0:
            raise RegexError("unterminated character set", self.class_start)
        if self.open_groups:
            raise RegexError("missing ), unterminated subpattern", self.open_groups[-1])
        return _Translation("".join(self.out), tuple(self.origins))

    def _emit(self, text: str, origin: int) -> None:
        self.out.append(text)
        self.origins.extend([origin] * len(text))

    def _copy(self, length: int) -> None:
        self._emit(self.pattern[self.pos : self.pos + length], self.pos)
        self.pos += length

    def _unsupported(self, what: str, cannot: str, offset: int) -> RegexError:
        return RegexError(f"{what} is not supported: {_LINEAR} {cannot}", offset)

    # --- character classes ---------------------------------------------------------------------------------

    def _class_open(self) -> None:
        self.class_start = self.pos
        pattern = self.pattern
        length = 2 if pattern.startswith("[^", self.pos) else 1
        if pattern.startswith("]", self.pos + length):  # a "]" first in the class is a member
            length += 1
        self._copy(length)

    def _class_member(self, char: str) -> None:
        if char == "]":
            self.class_start = -1
            self._copy(1)
            return
        if self.pattern.startswith("[:", self.pos):
            end = self.pattern.find(":]", self.pos + 2)
            if end >= 0:
                self._copy(end + 2 - self.pos)
                return
        self._copy(1)

    # --- groups and quantifiers ----------------------------------------------------------------------------

    def _group_open(self) -> None:
        pattern, start = self.pattern, self.pos
        if not pattern.startswith("(?", start):
            self.open_groups.append(start)
            self._copy(1)
            return
        for opener, what, cannot in _UNSUPPORTED_GROUPS:
            if pattern.startswith(opener, start):
                raise self._unsupported(what, cannot, start)
        if pattern.startswith("(?#", start):
            end = pattern.find(")", start)
            if end < 0:
                raise RegexError("missing ), unterminated comment", start)
            self.pos = end + 1
            return
        named = _NAMED_GROUP.match(pattern, start)
        if named:
            self.open_groups.append(start)
            self._copy(named.end() - start)
            return
        flags = _FLAGS.match(pattern, start)
        if flags:
            self._flags(flags)
            return
        self.open_groups.append(start)
        self._copy(2)  # RE2 will name what follows "(?" if it is not a group it knows

    def _flags(self, found: re.Match[str]) -> None:
        on, off, end = found.group(1), found.group(2), found.group(3)
        for letter in on + (off or ""):
            if letter in _UNSUPPORTED_FLAGS:
                message = f"the flag {letter} is not supported: RE2 has no {_UNSUPPORTED_FLAGS[letter]}"
                raise RegexError(message, found.start())
        on, off = on.replace("u", ""), (off or "").replace("u", "")  # Unicode is already the default
        if end == ":":
            self.open_groups.append(found.start())
        if on or off or end == ":":
            self._emit(f"(?{on}{'-' + off if off else ''}{end}", found.start())
        self.pos = found.end()

    def _quantifier(self, char: str) -> None:
        start = self.pos
        if char == "{":
            found = _REPEAT.match(self.pattern, start)
            assert found is not None
            low, comma, high = found.groups()
            if not low and not comma:  # "{}" is a literal in Python and in RE2
                self._copy(2)
                return
            if any(count and (len(count) > 4 or int(count) > MAX_REPEAT) for count in (low, high)):
                raise RegexError(
                    f"repetition {found.group()} is too large: RE2 allows counts up to {MAX_REPEAT}", start
                )
            if low and high and int(low) > int(high):
                raise RegexError("min repeat greater than max repeat", start)
            self._emit(f"{{{low or '0'}{comma}{high}}}", start)
            self.pos = found.end()
        else:
            self._copy(1)
        if self.pattern.startswith("+", self.pos):
            quantifier = self.pattern[start : self.pos + 1]
            raise self._unsupported(
                f"the possessive quantifier {quantifier}",
                f"have possessive quantifiers (which only exist to limit backtracking: write {quantifier[:-1]})",
                start,
            )
        if self.pattern.startswith("?", self.pos):  # lazy
            self._copy(1)

    # --- escapes -------------------------------------------------------------------------------------------

    def _escape(self) -> None:
        pattern, start = self.pattern, self.pos
        if start + 1 >= len(pattern):
            raise RegexError("bad escape (end of pattern)", start)
        letter = pattern[start + 1]
        in_class = self.class_start >= 0
        if letter in "123456789" and not in_class and not _PYTHON_OCTAL.match(pattern, start):
            reference = re.match(r"\\\d\d?", pattern[start:])
            assert reference is not None
            raise self._unsupported(f"the backreference {reference.group()}", "refer back to a group", start)
        if letter in "wWdDsS":
            self._emit(_perl_class(letter, in_class, start), start)
            self.pos += 2
        elif letter == "Z":
            self._emit(r"\z", start)
            self.pos += 2
        elif letter in _HEX or letter == "N":
            self._code_point(letter)
        elif letter in "pP" and pattern.startswith("{", start + 2):
            end = pattern.find("}", start)
            self._copy((end if end >= 0 else len(pattern) - 1) + 1 - start)
        elif letter == "Q":  # RE2's literal text, up to \E
            end = pattern.find(r"\E", start + 2)
            self._copy((end + 2 if end >= 0 else len(pattern)) - start)
        else:
            self._copy(2)

    def _code_point(self, letter: str) -> None:
        pattern, start = self.pattern, self.pos
        if letter == "N":
            found = re.match(r"\\N\{([^}]*)\}", pattern[start:])
            try:
                code = ord(unicodedata.lookup(found.group(1))) if found else -1
            except KeyError:
                code = -1
            if found is None or code < 0:
                raise RegexError(r"bad escape \N: expected \N{CHARACTER NAME}", start)
            self._emit(f"\\x{{{code:x}}}", start)
            self.pos += found.end()
            return
        if pattern.startswith("{", start + 2):  # RE2's own \x{...}
            end = pattern.find("}", start)
            self._copy((end if end >= 0 else len(pattern) - 1) + 1 - start)
            return
        digits = pattern[start + 2 : start + 2 + _HEX[letter]]
        if len(digits) != _HEX[letter] or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise RegexError(f"bad escape \\{letter}: expected {_HEX[letter]} hexadecimal digits", start)
        self._emit(f"\\x{{{digits}}}", start)
        self.pos += 2 + len(digits)


def _perl_class(letter: str, in_class: bool, offset: int) -> str:
    """RE2 source for ``\\w``, ``\\d``, ``\\s`` or a negation, with Python's Unicode meaning."""
    if letter == "d":
        return r"\p{Nd}"
    if letter == "D":
        return r"\P{Nd}"
    members = _WORD_CLASS if letter in "wW" else _SPACE_CLASS
    if letter in "ws":
        return members if in_class else f"[{members}]"
    if in_class:
        raise RegexError(
            f"\\{letter} inside [...] is not supported: RE2 cannot subtract a Unicode class there; "
            f"write [^...] listing what to exclude",
            offset,
        )
    return f"[^{members}]"
