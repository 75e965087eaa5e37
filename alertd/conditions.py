"""A topic's compiled boolean structure, evaluated against the term hits of one item."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from alertd.termindex import Hit

Hits = Mapping[int, Sequence[Hit]]


@dataclass(frozen=True, slots=True)
class Leaf:
    """True when the term fired."""

    term_id: int


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Near:
    """A hit of a left term and a hit of a right term in the same field, at most ``distance`` words apart."""

    left: tuple[int, ...]
    right: tuple[int, ...]
    distance: int


Node = Leaf | AllOf | AnyOf | Not | Near


def evaluate(node: Node, hits: Hits) -> bool:
    """Whether ``node`` holds for an item whose terms fired as in ``hits``."""
    if isinstance(node, Leaf):
        return node.term_id in hits
    if isinstance(node, AllOf):
        return all(evaluate(child, hits) for child in node.children)
    if isinstance(node, AnyOf):
        return any(evaluate(child, hits) for child in node.children)
    if isinstance(node, Not):
        return not evaluate(node.child, hits)
    return _near(node, hits)


def _near(node: Near, hits: Hits) -> bool:
    lefts = [h for t in node.left for h in hits.get(t, ())]
    rights = [h for t in node.right for h in hits.get(t, ())]
    for a in lefts:
        for b in rights:
            if a.field == b.field and _words_between(a, b) <= node.distance:
                return True
    return False


def _words_between(a: Hit, b: Hit) -> int:
    return max(b.first - a.last, a.first - b.last, 0)


def positive_terms(node: Node) -> Iterator[int]:
    """Term ids that count as evidence for a match: every term not under a NOT."""
    if isinstance(node, Leaf):
        yield node.term_id
    elif isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from positive_terms(child)
    elif isinstance(node, Near):
        yield from node.left
        yield from node.right


def all_terms(node: Node) -> Iterator[int]:
    """Every term id in ``node``, negated or not."""
    if isinstance(node, Leaf):
        yield node.term_id
    elif isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from all_terms(child)
    elif isinstance(node, Not):
        yield from all_terms(node.child)
    else:
        yield from node.left
        yield from node.right
