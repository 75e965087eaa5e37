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
from dataclasses import dataclass

ELISIONS = ("l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu")
APOSTROPHES = "'’ʼ‘`´′"
HYPHENS = "-‐‑‒–"

_WORD = r"[^\W_](?:[^\W_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff])*"
_ELISION = r"(?:\b(?:" + "|".join(sorted(ELISIONS, key=len, reverse=True)) + r")[" + APOSTROPHES + r"])"
_TOKEN = re.compile(f"{_ELISION}?({_WORD})", re.IGNORECASE)
_PLAIN_WORD = re.compile(_WORD)

# Letters that NFKD does not decompose but a reader treats as two letters or an accented letter.
_SPELLED_OUT = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ł": "l"})

_fold_cache: dict[str, str] = {}
_cased_cache: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class Tokens:
    """The words of one text: folded forms and their ``[start, end)`` ranges in the original text."""

    text: str
    words: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.words)

    def cased(self, index: int) -> str:
        """The word at ``index`` with accents folded but its case kept, for exact-case terms."""
        return fold_keep_case(self.text[self.starts[index] : self.ends[index]])

    def hyphenated(self, index: int) -> bool:
        """True when word ``index`` and the next one are joined by a single hyphen (``e-commerce``)."""
        gap = self.text[self.ends[index] : self.starts[index + 1]]
        return len(gap) == 1 and gap in HYPHENS


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
    words: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    cache = _fold_cache
    for found in _TOKEN.finditer(text):
        word = found.group(1)
        folded = cache.get(word)
        words.append(folded if folded is not None else fold(word))
        starts.append(found.start(1))
        ends.append(found.end(1))
    return Tokens(text, tuple(words), tuple(starts), tuple(ends))


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
