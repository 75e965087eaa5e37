"""Text normalisation shared by watchlist terms and item text.

Both sides go through the same steps, so a term matches whatever spelling normalises like it:

* words are runs of letters and digits (underscores and punctuation separate words; combining accents stay
  with their letter), so a term never matches inside another word (``Temu`` never fires on ``Temuco``);
* French elision is dropped at the start of a word (``l'``, ``d'``, ``qu'``, ``jusqu'``, ``lorsqu'``...,
  with straight or typographic apostrophes), so ``d'Alibaba`` is the word ``alibaba``;
* each word is folded: Unicode compatibility decomposition (NFKD: ligatures, full-width letters), accents
  dropped, case folded, ``œ``/``æ`` spelled out;
* inflection (``exportation`` → ``exportations``, ``exportateur``, ``exporter``...) is expanded on the term
  side by :func:`inflected_forms`, so item words are only folded, never stemmed.

Every :class:`Token` keeps its character range in the original text, which is how a match points back at the
exact words the reader sees.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container

ELISIONS = ("l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu")
APOSTROPHES = "'’ʼ‘`´′"
HYPHENS = "-‐‑"

_WORD = r"[^\W_](?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff])*"
_ELISION = r"(?:\b(?:" + "|".join(sorted(ELISIONS, key=len, reverse=True)) + r")[" + APOSTROPHES + r"])"
_TOKEN = re.compile(f"{_ELISION}?({_WORD})", re.IGNORECASE)
_PLAIN_WORD = re.compile(_WORD)
# What separates two words of one phrase: spaces, hyphens, apostrophes or one joining mark (JD.com, R&D);
# anything else (a comma, a colon, a full stop and a space, a spaced dash) ends the phrase.
_PHRASE_GAP = re.compile(
    r"\s*" + _ELISION + r"?|\s*&\s*|[" + re.escape(HYPHENS + APOSTROPHES + ".&/+") + "]",
    re.IGNORECASE,
)

# Letters that NFKD does not decompose but a reader treats as two letters or an accented letter.
_SPELLED_OUT = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ł": "l"})

_fold_cache: dict[str, str] = {}
_cased_cache: dict[str, str] = {}


class Tokens:
    """The words of one text: folded forms, and their ``[start, end)`` ranges in the original text.

    Ranges are found lazily: most texts share no word with the watchlist and never need them.
    """

    __slots__ = ("_ends", "_spaced", "_starts", "text", "words")

    def __init__(
        self,
        text: str,
        words: tuple[str, ...],
        spaced: str | None = None,
        starts: tuple[int, ...] = (),
        ends: tuple[int, ...] = (),
    ) -> None:
        self.text = text
        self.words = words
        self._spaced = spaced  # the fast path's same-length folded copy of text (see tokenise)
        self._starts = starts
        self._ends = ends

    def __len__(self) -> int:
        return len(self.words)

    @property
    def starts(self) -> tuple[int, ...]:
        """Start offset of each word in the original text."""
        if self._spaced is not None and len(self._starts) != len(self.words):
            self._find_positions(self._spaced)
        return self._starts

    @property
    def ends(self) -> tuple[int, ...]:
        """End offset (exclusive) of each word in the original text."""
        if self._spaced is not None and len(self._ends) != len(self.words):
            self._find_positions(self._spaced)
        return self._ends

    def _find_positions(self, spaced: str) -> None:
        found = list(_RUN.finditer(spaced))
        self._starts = tuple(m.start() for m in found)
        self._ends = tuple(m.end() for m in found)

    def cased(self, index: int) -> str:
        """The word at ``index`` with accents folded but its case kept, for exact-case terms."""
        return fold_keep_case(self.text[self.starts[index] : self.ends[index]])

    def short_hyphen_pairs(self, wanted: Container[str]) -> list[tuple[int, str]]:
        """``(i, joined)`` for words ``i`` and ``i + 1`` joined by one hyphen, where one side has at most
        two letters (``e-commerce`` gives ``ecommerce``) and ``joined`` is in ``wanted``."""
        if self._spaced is not None and not self._may_join(wanted):
            return []
        words, starts, ends, text = self.words, self.starts, self.ends, self.text
        return [
            (i, words[i] + words[i + 1])
            for i in range(len(words) - 1)
            if starts[i + 1] - ends[i] == 1
            and text[ends[i]] in HYPHENS
            and min(len(words[i]), len(words[i + 1])) <= 2
            and words[i] + words[i + 1] in wanted
        ]

    def _may_join(self, wanted: Container[str]) -> bool:
        """Cheap test on the fast path's spaced text: does any hyphenated pair join into a wanted word?"""
        assert self._spaced is not None
        for chunk in [c for c in self._spaced.split() if "-" in c]:
            for piece in chunk.split("'"):
                parts = piece.split("-")
                for a, b in zip(parts, parts[1:]):
                    if a and b and min(len(a), len(b)) <= 2 and a + b in wanted:
                        return True
        return False

    def joined(self, index: int) -> bool:
        """True when word ``index`` and the next one can belong to one phrase (no punctuation between)."""
        return _PHRASE_GAP.fullmatch(self.text, self.ends[index], self.starts[index + 1]) is not None


def fold_keep_case(word: str) -> str:
    """Fold compatibility forms and accents of one word, keeping its case."""
    found = _cased_cache.get(word)
    if found is None:
        decomposed = unicodedata.normalize("NFKD", word.translate(_SPELLED_OUT))
        found = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        if len(_cased_cache) < 200_000:
            _cased_cache[word] = found
    return found


def fold(word: str) -> str:
    """Fold one word: compatibility forms, accents and case (``Éxportés`` → ``exportes``)."""
    found = _fold_cache.get(word)
    if found is None:
        found = fold_keep_case(word).casefold()
        if len(_fold_cache) < 200_000:
            _fold_cache[word] = found
    return found


def tokenise(text: str) -> Tokens:
    """Split ``text`` into folded words, dropping French elisions, keeping original offsets."""
    if _NEEDS_WORD_FOLDING.search(text) is None:
        # Fast path, all in C: one translate folds letters and turns punctuation into spaces, then
        # elisions are blanked out; every offset stays that of the original text.
        spaced = text.translate(_SPACED_FOLD)
        if "'" in spaced:
            spaced = _FAST_ELISION.sub(_blank, spaced)
            words = spaced.replace("'", " ").replace("-", " ").split()
        else:
            words = spaced.replace("-", " ").split()
        return Tokens(text, tuple(words), spaced)
    return _tokenise_word_by_word(text)


def _blank(found: re.Match[str]) -> str:
    return " " * (found.end() - found.start())


def _tokenise_word_by_word(text: str) -> Tokens:
    """The general path, for texts with characters whose folded form is not one character (œ, ﬁ, é)."""
    words: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for found in _TOKEN.finditer(text):
        words.append(fold(found.group(1)))
        starts.append(found.start(1))
        ends.append(found.end(1))
    return Tokens(text, tuple(words), None, tuple(starts), tuple(ends))


def _spaced_fold_table() -> tuple[list[str], re.Pattern[str]]:
    """A translate table that folds each letter or digit to one character and turns the rest into spaces
    (apostrophes into ``'``), and a pattern for the texts it cannot handle: characters outside its range,
    combining marks, letters whose folded form is not one character (œ, ß, ﬁ).

    The table is a list indexed by code point: ``str.translate`` looks a list up about 3x faster than a dict.
    """
    table = [chr(code) for code in range(0x10000)]
    unsupported: list[str] = []
    covered = ((0x00, 0x3040), (0xFB00, 0xFB50), (0xFF00, 0xFFF0))
    for code in (c for low, high in covered for c in range(low, high)):
        char = chr(code)
        if char in APOSTROPHES:
            table[code] = "'"
        elif char in HYPHENS:
            table[code] = "-"
        elif unicodedata.combining(char):
            unsupported.append(char)
        elif not char.isalnum():
            table[code] = " "
        else:
            decomposed = unicodedata.normalize("NFKD", char.translate(_SPELLED_OUT))
            folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
            if len(folded) != 1 or not folded.isalnum():
                unsupported.append(char)
            elif folded != char:
                table[code] = folded
    outside = "".join(f"\\u{low:04x}-\\u{high - 1:04x}" for low, high in covered)
    pattern = "[" + re.escape("".join(unsupported)) + "]|[^" + outside + "]"
    return table, re.compile(pattern)


_SPACED_FOLD, _NEEDS_WORD_FOLDING = _spaced_fold_table()
_ELISION_SET = frozenset(ELISIONS)
_RUN = re.compile(r"[^\s'-]+")
_FAST_ELISION = re.compile(
    r"(?<![^\s'-])(?:" + "|".join(sorted(ELISIONS, key=len, reverse=True)) + r")'(?=[^\s'-])"
)

def normalise(text: str) -> str:
    """The normalised form of ``text``: folded words without elisions, separated by single spaces."""
    return " ".join(tokenise(text).words)


def elided_prefixes(text: str) -> list[str]:
    """The elisions (``l'``, ``qu'``...) that normalisation drops from ``text``, as written."""
    return [found.group(0)[: found.start(1) - found.start(0)] for found in _TOKEN.finditer(text)
            if found.start(1) > found.start(0)]


# --- inflection -----------------------------------------------------------------------------------------

# Derivational endings stripped to find a root shared by a family of words (export-ation, export-ateur...).
_DERIVATIONS = (
    "atrices", "atrice", "ateurs", "ateur", "ations", "ation", "ements", "ement",
    "ers", "er", "ings", "ing", "ees", "ee", "ed",
)  # fmt: skip
# What a root takes: nouns, agents, verb forms in French and English.
_FAMILY = (
    "", "s", "e", "es", "er", "ers", "ent", "ee", "ees", "ez", "ed", "ing", "ings",
    "ation", "ations", "ateur", "ateurs", "atrice", "atrices",
)  # fmt: skip
_MIN_ROOT = 4


def inflected_forms(word: str) -> frozenset[str]:
    """Every spelling a folded word is taken to stand for: plural, feminine and common derived forms.

    ``export`` and ``exportation`` both give ``export(s)``, ``exporte(nt|r|rs)``, ``exportation(s)``,
    ``exportateur(s)``, ``exportatrice(s)``... A word ending in an inflection vowel (``vente``) only gets its
    plural, so ``vente`` never reaches ``vent``. Words under three letters or with digits stay as they are.
    """
    if len(word) < 3 or not word.isalpha():
        return frozenset((word,))
    forms = {word, word + "s"}
    forms |= _adjective_forms(word)
    root = _root(word)
    if root is not None:
        forms |= {root + ending for ending in _FAMILY}
    return frozenset(forms)


def _root(word: str) -> str | None:
    for ending in _DERIVATIONS:
        if word.endswith(ending) and len(word) - len(ending) >= _MIN_ROOT:
            return word[: -len(ending)]
    if len(word) >= _MIN_ROOT and word[-1] not in "aeiouysx":
        return word
    return None


def _adjective_forms(word: str) -> set[str]:
    """French gender and number: commercial/commerciaux/commerciale(s), chinois/chinoise(s), européen(ne)."""
    forms: set[str] = set()
    if word.endswith("al"):
        forms |= {word[:-2] + "aux", word + "e", word + "es"}
    elif word.endswith("aux"):
        forms |= {word[:-3] + "al", word[:-3] + "ale", word[:-3] + "ales"}
    elif word.endswith("eau"):
        forms.add(word + "x")
    elif word.endswith(("s", "x")):
        forms |= {word + "e", word + "es"}
        if word.endswith("eux"):
            forms |= {word[:-1] + "se", word[:-1] + "ses"}
    elif word.endswith("en") or word.endswith("on"):
        forms |= {word + "ne", word + "nes", word + "s"}
    elif word.endswith("if"):
        forms |= {word[:-1] + "ve", word[:-1] + "ves"}
    elif not word.endswith("e"):
        forms |= {word + "e", word + "es"}
    return forms


def plain_words(text: str) -> list[str]:
    """Words of ``text`` without dropping elisions (to tell the user what elision removed)."""
    return _PLAIN_WORD.findall(text)
