"""A topic's compiled boolean structure, evaluated against the term hits of one item."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from alertd.termindex import Hit

Hits = Mapping[int, Sequence[Hit]]


@dataclass(frozen=True, slots=True)
class Leaf:
    """True when the term fired."""

    term_id: int


@dataclass(frozen=True, slots=True)
class AnyTerm:
    """True when any of these terms fired (a whole term set checked in one set operation)."""

    term_ids: frozenset[int]


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

    left: frozenset[int]
    right: frozenset[int]
    distance: int


Node = Leaf | AnyTerm | AllOf | AnyOf | Not | Near


def all_of(children: list[Node]) -> Node:
    """An AND node whose cheap children (plain term checks) run first, so most items fail fast."""
    ordered = sorted(children, key=_cost)
    return ordered[0] if len(ordered) == 1 else AllOf(tuple(ordered))


def _cost(node: Node) -> int:
    if isinstance(node, Leaf | AnyTerm):
        return 0
    if isinstance(node, Near):
        return 2
    if isinstance(node, Not):
        return 3
    return 1


def any_of(children: list[Node]) -> Node:
    """An OR node; plain terms are merged into one :class:`AnyTerm`."""
    leaves = frozenset(c.term_id for c in children if isinstance(c, Leaf))
    others = [c for c in children if not isinstance(c, Leaf)]
    for child in others[:]:
        if isinstance(child, AnyTerm):
            leaves |= child.term_ids
            others.remove(child)
    merged: list[Node] = [AnyTerm(leaves)] if leaves else []
    merged += others
    return merged[0] if len(merged) == 1 else AnyOf(tuple(merged))


def evaluate(node: Node, hits: Hits) -> bool:
    """Whether ``node`` holds for an item whose terms fired as in ``hits``."""
    if isinstance(node, AnyTerm):
        return not node.term_ids.isdisjoint(hits)
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
    return bool(_near_pairs(node, hits, first_only=True))


def _near_pairs(node: Near, hits: Hits, first_only: bool = False) -> list[tuple[int, int]]:
    """(left term, right term) pairs whose hits are close enough; iterates the item's few hits."""
    lefts = [(t, h) for t in node.left.intersection(hits) for h in hits[t]]
    if not lefts:
        return []
    rights = [(t, h) for t in node.right.intersection(hits) for h in hits[t]]
    pairs = []
    for left, a in lefts:
        for right, b in rights:
            if a.field == b.field and _words_between(a, b) <= node.distance:
                pairs.append((left, right))
                if first_only:
                    return pairs
    return pairs


def _words_between(a: Hit, b: Hit) -> int:
    return max(b.first - a.last, a.first - b.last, 0)


def evidence(node: Node, hits: Hits) -> list[int] | None:
    """The terms that make ``node`` true for these hits (None when it is false).

    Only the branches that hold contribute: in ``a OR (b AND c)`` with ``a`` and ``b`` present, the evidence
    is ``a``. Negated terms never count as evidence.
    """
    if isinstance(node, Leaf):
        return [node.term_id] if node.term_id in hits else None
    if isinstance(node, AnyTerm):
        fired = sorted(node.term_ids.intersection(hits))
        return fired or None
    if isinstance(node, AllOf):
        found: list[int] = []
        for child in node.children:
            part = evidence(child, hits)
            if part is None:
                return None
            found += part
        return found
    if isinstance(node, AnyOf):
        parts = [p for p in (evidence(child, hits) for child in node.children) if p is not None]
        return [t for p in parts for t in p] if parts else None
    if isinstance(node, Not):
        return [] if not evaluate(node.child, hits) else None
    return _near_evidence(node, hits)


def _near_evidence(node: Near, hits: Hits) -> list[int] | None:
    found = [term for pair in _near_pairs(node, hits) for term in pair]
    return list(dict.fromkeys(found)) or None


def positive_terms(node: Node) -> Iterator[int]:
    """Term ids that count as evidence for a match: every term not under a NOT."""
    if isinstance(node, Leaf):
        yield node.term_id
    elif isinstance(node, AnyTerm):
        yield from sorted(node.term_ids)
    elif isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from positive_terms(child)
    elif isinstance(node, Near):
        yield from sorted(node.left | node.right)


def all_terms(node: Node) -> Iterator[int]:
    """Every term id in ``node``, negated or not."""
    if isinstance(node, Not):
        yield from all_terms(node.child)
    elif isinstance(node, AllOf | AnyOf):
        for child in node.children:
            yield from all_terms(child)
    else:
        yield from positive_terms(node)


Predicate = Callable[[Hits], bool]


def compile_predicate(node: Node) -> Predicate:
    """``node`` as one Python function of the hits, equivalent to :func:`evaluate` but without a tree walk.

    The generated source only holds operators, integers and references to constants kept in a list, never
    text from the watchlist.
    """
    constants: list[object] = []
    source = f"lambda h: {_expression(node, constants)}"
    namespace: dict[str, object] = {"c": constants, "near": _near}
    function: Predicate = eval(source, namespace)  # noqa: S307 - built from our own node types only
    return function


def _expression(node: Node, constants: list[object]) -> str:
    if isinstance(node, Leaf):
        return f"({int(node.term_id)} in h)"
    if isinstance(node, AnyTerm | Near):
        constants.append(node.term_ids if isinstance(node, AnyTerm) else node)
        index = len(constants) - 1
        return f"(not c[{index}].isdisjoint(h))" if isinstance(node, AnyTerm) else f"near(c[{index}], h)"
    if isinstance(node, Not):
        return f"(not {_expression(node.child, constants)})"
    parts = [_expression(child, constants) for child in node.children]
    if isinstance(node, AllOf):
        return "(" + " and ".join(parts) + ")" if parts else "True"
    return "(" + " or ".join(parts) + ")" if parts else "False"
