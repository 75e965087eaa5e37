"""Which items carry the same story: one digest entry per story, even when five feeds carry it (or one feed, four
times: BFM publishes a programme's video and audio replays under different URLs).

An item joins the earliest earlier story it shares any of these with (pure: ``now`` and the candidates passed in):

1. **the same canonical link** (its link key), however long ago;
2. **the same title words** within the window (48 h by default, ``[digest] story_window``): the title's words,
   case, accents and punctuation aside ("Top 3 des gérants – 03/05" and "Top 3 des gérants - 03/05"), for
   titles of at least :data:`MIN_TITLE_WORDS` words (a two-word title such as "Bourse du jour" names a column,
   not a story);
3. **a near-identical title and lede** within the window: the SimHash of the title and the first
   :data:`LEDE_WORDS` words of the summary differ in at most :data:`MAX_DISTANCE` of 64 bits, *and* the two
   titles share 60 % of their words, carry the same numbers and the same names (words written with a capital
   but the first). The guards keep apart what a boilerplate summary makes look alike: the episodes of a show
   ("Vos questions, nos réponses - 04/06" and "- 05/06"), two shows of one day ("La semaine de l'économie" and
   "La semaine de votre argent"), one template filled in for two cities ("les prix de l'immobilier à Nice" and
   "à Toulon").

The store keeps each item's story key (the relation) and the marks it can be found by (:func:`marks`): its link
key, its title words and the four 16-bit bands of its SimHash (two SimHashes within 3 bits share a band).
Measured on 16,694 BFM items: ``python bench/stories.py`` (bench/README.md).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from alertd.models import Item
from alertd.normalise import tokenise
from alertd.records import StoryCandidate

__all__ = [
    "LEDE_WORDS",
    "MAX_DISTANCE",
    "MIN_TITLE_WORDS",
    "StoryCandidate",
    "StoryRule",
    "assign_stories",
    "marks",
    "replaced",
    "same_story",
    "shape_of",
    "sign",
    "title_words",
]

MIN_TITLE_WORDS = 4
"""Titles shorter than this (in words) never join a story by their title alone."""
LEDE_WORDS = 40
"""How many words of the summary the near-duplicate signature reads after the title."""
MIN_SHAPE_WORDS = 8
"""Fewer words than this (title and lede together) make no near-duplicate signature: too few to compare."""
MAX_DISTANCE = 3
"""Two signatures at most this many bits apart (of 64) are near-identical; four 16-bit bands find every such
pair (pigeonhole: three differing bits leave at least one band equal)."""
MIN_TITLE_OVERLAP = 0.6
"""Near-identical signatures also need titles sharing at least this share of their words (Jaccard)."""

StoryRule = Literal["link", "title", "near"]
"""Why an item joined a story: same link, same title words, near-identical title and lede."""

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+")
_BAND_BITS = 16
_BANDS = 64 // _BAND_BITS


@functools.lru_cache(maxsize=1 << 14)
def title_words(title: str) -> tuple[str, ...]:
    """The words of a title, lower-cased, accents and punctuation dropped: what rule 2 compares."""
    return tuple(_words(title))


def shape_of(title: str, summary_text: str) -> int | None:
    """The 64-bit SimHash of the title's words and the summary's first words; None when they are too few."""
    words = _words(title)
    words.extend(_words(summary_text[: LEDE_WORDS * 12])[:LEDE_WORDS])
    if len(words) < MIN_SHAPE_WORDS:
        return None
    return _simhash(words)


def marks(item: Item) -> tuple[str, ...]:
    """What the store indexes ``item`` by, so that a later copy finds it: link key, title words, SimHash bands."""
    found: list[str] = []
    if item.link_key is not None:
        found.append("link:" + item.link_key)
    words = title_words(item.title)
    if len(words) >= MIN_TITLE_WORDS:
        found.append("title:" + _digest(" ".join(words)))
    if item.shape is not None:
        found.extend(
            f"band{band}:{(item.shape >> (band * _BAND_BITS)) & 0xFFFF:04x}" for band in range(_BANDS)
        )
    return tuple(found)


def sign(items: Iterable[Item]) -> tuple[Item, ...]:
    """``items`` with their shape and marks computed: what the store is searched by, then stores."""
    out = []
    for item in items:
        shaped = replace(item, shape=shape_of(item.title, item.summary_text))
        out.append(replace(shaped, marks=marks(shaped)))
    return tuple(out)


def assign_stories(
    items: Sequence[Item], candidates: Iterable[StoryCandidate], window: timedelta, now: datetime
) -> tuple[Item, ...]:
    """``items`` (new, signed by :func:`sign`, in feed order) each with the story key of the story it joins:
    the earliest matching candidate's, or an earlier item's of this same batch; an item that joins nothing
    keeps its own (its link key, else a hash of its title)."""
    known = sorted(candidates, key=lambda c: (c.first_seen, c.item_key))
    out: list[Item] = []
    for item in items:
        joined = _earliest_match(item, known, window, now)
        placed = item if joined is None else replace(item, story_key=joined.story_key)
        out.append(placed)
        known.append(
            StoryCandidate(placed.key, placed.story_key, placed.title, now, placed.link_key, placed.shape)
        )
    return tuple(out)


def replaced(items: Sequence[Item], placed: Iterable[Item]) -> tuple[Item, ...]:
    """``items`` with those of ``placed`` (same keys) in their place, in the same order."""
    by_key = {item.key: item for item in placed}
    return tuple(by_key.get(item.key, item) for item in items)


def _earliest_match(
    item: Item, known: Sequence[StoryCandidate], window: timedelta, now: datetime
) -> StoryCandidate | None:
    for candidate in known:
        if same_story(item, candidate, window, now) is not None:
            return candidate
    return None


def same_story(item: Item, candidate: StoryCandidate, window: timedelta, now: datetime) -> StoryRule | None:
    """Which rule (see the module docstring) makes ``item`` a copy of ``candidate``'s story; None if none does.

    ``item`` carries its shape (see :func:`assign_stories`).
    """
    if item.link_key is not None and candidate.link_key == item.link_key:
        return "link"
    if now - candidate.first_seen > window:
        return None
    words = title_words(item.title)
    other = title_words(candidate.title)
    if len(words) >= MIN_TITLE_WORDS and other == words:
        return "title"
    if _near(item, words, candidate, other):
        return "near"
    return None


def _near(item: Item, words: tuple[str, ...], candidate: StoryCandidate, other: tuple[str, ...]) -> bool:
    if item.shape is None or candidate.shape is None:
        return False
    if (item.shape ^ candidate.shape).bit_count() > MAX_DISTANCE:
        return False
    if sorted(_NUMBER.findall(" ".join(words))) != sorted(_NUMBER.findall(" ".join(other))):
        return False
    mine, theirs = set(words), set(other)
    if not (_names(item.title) <= theirs and _names(candidate.title) <= mine):
        return False
    union = mine | theirs
    return bool(union) and len(mine & theirs) >= MIN_TITLE_OVERLAP * len(union)


@functools.lru_cache(maxsize=1 << 14)
def _names(title: str) -> frozenset[str]:
    """The words a title writes with a capital, but its first: names ("Nice", "Toulon", "Fnac"), folded."""
    written = _WORD.findall(title)
    return frozenset(folded for word in written[1:] if word[:1].isupper() for folded in _words(word))


def _words(text: str) -> list[str]:
    """The folded words of ``text``, as the matcher reads them (:func:`alertd.normalise.tokenise`: case,
    accents, ligatures and invisible characters aside)."""
    return list(tokenise(text).words)


_LANES = sum(1 << (lane * 16) for lane in range(64))
"""One in each of 64 16-bit lanes: the SimHash counts every bit position in one big integer."""
_BITS_AS_DIGITS = bytes.maketrans(b"\x00\x01", b"01")


@functools.lru_cache(maxsize=1 << 16)
def _spread(word: str) -> int:
    """The word's 64-bit hash with each bit moved into its own 16-bit lane (cached: words recur)."""
    hashed = int.from_bytes(
        hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )
    spread = 0
    for bit in range(64):
        if hashed >> bit & 1:
            spread |= 1 << (bit * 16)
    return spread


def _simhash(words: Sequence[str]) -> int:
    """Bit b is set when more than half of the words' hashes have bit b set (Charikar's SimHash, unweighted)."""
    counts = sum(map(_spread, words))
    # Lane b holds count_b (< 2**15). Adding 2**15 - (n//2 + 1) to every lane sets its top bit exactly when
    # count_b > n/2; the top bits are then read out as 64 bytes and turned into an integer in C.
    biased = counts + (0x8000 - (len(words) // 2 + 1)) * _LANES
    tops = ((biased >> 15) & _LANES).to_bytes(128, "little")[::2]
    return int(tops[::-1].translate(_BITS_AS_DIGITS), 2)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
