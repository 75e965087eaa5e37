"""Text normalisation shared by watchlist terms and item text.

Both sides go through the same steps, so a term matches whatever spelling normalises like it:

* words are runs of letters and digits; punctuation, apostrophes, hyphens and underscores separate words
  (combining accents stay with their letter), so a term never matches inside another word (``Temu`` never
  fires on ``Temuco``);
* each word is folded: Unicode compatibility decomposition (NFKD: ligatures, full-width letters), accents
  dropped, case folded, ``œ``/``æ`` spelled out;
* invisible format characters (:data:`INVISIBLE`: soft hyphen, zero-width space and joiners, word joiner,
  BOM, bidi marks, embeddings, overrides and isolates) are not there for matching: inside a word they join it
  (``Ali\\u00adbaba`` is the word ``alibaba``), between words they count for nothing (``Jack\\u200b Ma`` is the
  phrase ``jack ma``), and a word's range never starts or ends on one. They stay in the original text, so
  offsets still index it (a span of ``Ali\\u00adbaba`` covers all 8 characters); digests leave them out
  (:func:`drop_invisible`, used by :func:`alertd.render.highlight_segments`);
* French elision: an apostrophe separates words, so ``d'Alibaba`` contains the word ``alibaba``; a term that
  starts with an elided article (``l'export``) drops it (:func:`term_words`), and :func:`normalise` drops
  every elided article (``l'``, ``d'``, ``qu'``, ``jusqu'``, ``lorsqu'``..., straight or typographic);
* inflection (``exportation`` → ``exportations``, ``exportateur``, ``exporter``...) is expanded on the term
  side by :func:`inflected_forms`, so item words are only folded, never stemmed.

:class:`Tokens` keeps each word's character range in the original text, which is how a match points back at
the exact words the reader sees. The common case runs in C: one ``str.translate`` that keeps every offset,
then ``str.split``; offsets are only computed for texts where some term fired. Texts holding an invisible
character (or a character that folds to several) take the general path, so the common case pays nothing for
them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Sequence
from itertools import pairwise

ELISIONS = ("l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu")
APOSTROPHES = "'’ʼ‘`´′"
HYPHENS = "-‐‑"
INVISIBLE = (
    "\u00ad"  # soft hyphen (&shy;)
    "\u061c"  # Arabic letter mark
    "\u180e"  # Mongolian vowel separator
    "\u200b\u200c\u200d"  # zero-width space, non-joiner, joiner
    "\u200e\u200f"  # left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # bidi embeddings and overrides
    "\u2060"  # word joiner
    "\u2066\u2067\u2068\u2069"  # bidi isolates
    "\ufeff"  # BOM, zero-width no-break space
)
"""Format characters that show nothing: matching ignores them and digests drop them (see the module doc)."""

# A word: letters, digits and combining marks, with invisible characters inside (never at either end).
_WORD = re.compile(
    r"[^\W_](?:[" + INVISIBLE + r"]*(?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff]))*"
)
_HAS_INVISIBLE = re.compile("[" + INVISIBLE + "]")
_DROP_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE))
_ELIDED = re.compile(
    r"\b(?:" + "|".join(sorted(ELISIONS, key=len, reverse=True)) + r")[" + APOSTROPHES + r"](?=\w)",
    re.IGNORECASE,
)
# What separates two words of one phrase: spaces, or one hyphen, apostrophe or joining mark (JD.com, R&D);
# anything else (a comma, a colon, a full stop and a space, a spaced dash) ends the phrase.
_PHRASE_GAP = re.compile(r"\s+|\s*&\s*|[" + re.escape(HYPHENS + APOSTROPHES + ".&/+") + "]")
_RUN = re.compile(r"[^\s-]+")
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")
_UNSUPPORTED = "\x00"

# Letters that NFKD does not decompose but a reader treats as two letters or an accented letter; invisible
# characters, which folding deletes.
_SPELLED_OUT = str.maketrans(
    {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ł": "l"} | dict.fromkeys(INVISIBLE)
)

_fold_cache: dict[str, str] = {}
_cased_cache: dict[str, str] = {}


class Tokens:
    """The folded words of one text and, on demand, their ``[start, end)`` ranges in the original text."""

    __slots__ = ("_ends", "_spaced", "_starts", "text", "words")

    def __init__(
        self,
        text: str,
        words: Sequence[str],
        spaced: str | None = None,
        starts: tuple[int, ...] = (),
        ends: tuple[int, ...] = (),
    ) -> None:
        self.text = text
        self.words = words
        self._spaced = spaced  # the fast path's same-length folded copy of text, until offsets are found
        self._starts = starts
        self._ends = ends

    def __len__(self) -> int:
        return len(self.words)

    @property
    def starts(self) -> tuple[int, ...]:
        """Start offset of each word in the original text."""
        if self._spaced is not None:
            self._find_offsets(self._spaced)
        return self._starts

    @property
    def ends(self) -> tuple[int, ...]:
        """End offset (exclusive) of each word in the original text."""
        if self._spaced is not None:
            self._find_offsets(self._spaced)
        return self._ends

    def _find_offsets(self, spaced: str) -> None:
        found = list(_RUN.finditer(spaced))
        self._starts = tuple(m.start() for m in found)
        self._ends = tuple(m.end() for m in found)
        self._spaced = None

    def cased(self, index: int) -> str:
        """The word at ``index`` with accents folded but its case kept, for exact-case terms."""
        return fold_keep_case(self.text[self.starts[index] : self.ends[index]])

    def joined(self, index: int) -> bool:
        """True when word ``index`` and the next one can belong to one phrase (no punctuation between;
        invisible characters count for nothing)."""
        start, end = self.ends[index], self.starts[index + 1]
        if _PHRASE_GAP.fullmatch(self.text, start, end) is not None:
            return True
        gap = self.text[start:end]
        visible = drop_invisible(gap)
        return visible is not gap and _PHRASE_GAP.fullmatch(visible) is not None

    def _one_hyphen(self, index: int) -> bool:
        """Whether word ``index`` and the next one are separated by one hyphen (invisible characters aside)."""
        start, end = self.ends[index], self.starts[index + 1]
        gap = self.text[start] if end - start == 1 else drop_invisible(self.text[start:end])
        return len(gap) == 1 and gap in HYPHENS

    def short_hyphen_pairs(self, wanted: Container[str]) -> list[tuple[int, str]]:
        """``(i, joined)`` for words ``i`` and ``i + 1`` joined by one hyphen, where one side has at most
        two letters (``e-commerce`` gives ``ecommerce``) and ``joined`` is in ``wanted``."""
        if not self._may_join(wanted):
            return []
        words = self.words
        return [
            (i, words[i] + words[i + 1])
            for i in range(len(words) - 1)
            if min(len(words[i]), len(words[i + 1])) <= 2
            and words[i] + words[i + 1] in wanted
            and self._one_hyphen(i)
        ]

    def _may_join(self, wanted: Container[str]) -> bool:
        """A cheap first look on the folded text: can some hyphenated pair form a wanted word?"""
        if self._spaced is None:
            return True
        for chunk in [c for c in self._spaced.split() if "-" in c]:
            parts = chunk.split("-")
            for a, b in pairwise(parts):
                if a and b and min(len(a), len(b)) <= 2 and a + b in wanted:
                    return True
        return False


def drop_invisible(text: str) -> str:
    """``text`` without its :data:`INVISIBLE` characters (``Ali\\u00adbaba`` → ``Alibaba``); ``text`` itself,
    at the cost of one C-level search, when it holds none."""
    return text.translate(_DROP_INVISIBLE) if _HAS_INVISIBLE.search(text) else text


def fold_keep_case(word: str) -> str:
    """Fold compatibility forms and accents of one word, keeping its case; invisible characters are dropped."""
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
    """Split ``text`` into folded words, keeping their offsets in ``text``."""
    spaced = text.translate(_SPACED_FOLD)
    # Folded text is mostly ASCII, and then holds no character beyond the table (isascii() is O(1)).
    if _UNSUPPORTED in spaced or (not spaced.isascii() and _NON_BMP.search(text) is not None):
        return _tokenise_word_by_word(text)
    words = spaced.replace("-", " ").split() if "-" in spaced else spaced.split()
    return Tokens(text, words, spaced)


def _tokenise_word_by_word(text: str) -> Tokens:
    """The general path, for texts with characters whose folded form is not one character (œ, ﬁ, combining
    accents) and texts with invisible characters: a word's range may hold some, folding drops them."""
    found = list(_WORD.finditer(text))
    words = tuple(fold(m.group()) for m in found)
    return Tokens(text, words, None, tuple(m.start() for m in found), tuple(m.end() for m in found))


def _spaced_fold_table() -> list[str]:
    """The fast path's ``str.translate`` table, indexed by code point (a list is looked up ~3x faster than
    a dict): each letter or digit folds to one character, hyphens become ``-``, anything else that is not a
    word character becomes a space, and characters the fast path cannot fold (combining marks, letters
    folding to several characters such as œ, ß, ﬁ, invisible characters that a word may hold) become
    ``\\x00``, which sends the text to the general path."""
    table = []
    for code in range(0x10000):
        char = chr(code)
        if char in HYPHENS:
            table.append("-")
        elif unicodedata.combining(char) or char == _UNSUPPORTED or char in INVISIBLE:
            table.append(_UNSUPPORTED)
        elif not char.isalnum():
            table.append(" ")
        else:
            folded = fold(char)
            table.append(folded if len(folded) == 1 and folded.isalnum() else _UNSUPPORTED)
    return table


_SPACED_FOLD = _spaced_fold_table()
_fold_cache.clear()
_cased_cache.clear()


def term_words(text: str) -> tuple[str, ...]:
    """The words of a watchlist term: like :func:`tokenise`, less a leading elided article (``l'export``)."""
    return tuple(tokenise(_ELIDED.sub("", text, count=1) if _ELIDED.match(text.lstrip()) else text).words)


def normalise(text: str) -> str:
    """The normalised form of ``text``: folded words, elided articles dropped, separated by single spaces."""
    return " ".join(tokenise(_ELIDED.sub(" ", text)).words)


def leading_elision(text: str) -> str | None:
    """The elided article a term starts with (``l'`` in ``l'export``), as written, or None."""
    found = _ELIDED.match(text.lstrip())
    return found.group() if found else None


# --- inflection -----------------------------------------------------------------------------------------

# Derivational endings stripped to find a root shared by a family of words (export-ation, export-ateur...).
_DERIVATIONS = (
    "atrices",
    "atrice",
    "ateurs",
    "ateur",
    "ations",
    "ation",
    "ements",
    "ement",
    "ers",
    "er",
    "ings",
    "ing",
    "ees",
    "ee",
    "ed",
)
# What a root takes: nouns, agents, verb forms in French and English.
_FAMILY = (
    "",
    "s",
    "e",
    "es",
    "er",
    "ers",
    "ent",
    "ee",
    "ees",
    "ez",
    "ed",
    "ing",
    "ings",
    "ation",
    "ations",
    "ateur",
    "ateurs",
    "atrice",
    "atrices",
)
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
