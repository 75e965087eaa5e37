"""Regex terms on RE2 (google-re2): matching time linear in the text, whatever the pattern.

A term such as ``(\\w+\\s?)+pdd``, which backtracks for hours in Python's ``re`` on a long summary, costs
microseconds. :func:`compile_regex` accepts RE2 syntax with Python's meaning of ``\\w``, ``\\d`` and ``\\s``
(Unicode), and refuses, with the reason and the offset, what RE2 cannot run in linear time (backreferences,
lookaround, possessive quantifiers...). See docs/watchlist.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import re2

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
