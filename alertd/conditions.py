"""A topic's compiled boolean structure, evaluated against the term hits of one item."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

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


def holds_without_not(node: Node, hits: Hits) -> bool:
    """Whether ``node`` would hold if each of its NOTs held: a false condition that passes this was vetoed by
    a NOT (read-only, for explanations; matching uses :func:`compile_predicate`)."""
    if isinstance(node, Not):
        return True
    if isinstance(node, AllOf):
        return all(holds_without_not(child, hits) for child in node.children)
    if isinstance(node, AnyOf):
        return any(holds_without_not(child, hits) for child in node.children)
    return evaluate(node, hits)


def touched(node: Node, hits: Hits) -> bool:
    """Whether any term of ``node``, negated or not, fired."""
    return any(term_id in hits for term_id in all_terms(node))


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
    """``node`` as one function of the hits, equivalent to :func:`evaluate` but without a tree walk.

    The function is a composition of closures (no generated source): nested ANDs and ORs are flattened,
    plain term checks are bound ``frozenset.isdisjoint`` calls, and each branch of an OR is guarded by a set
    of terms it cannot hold without, so the branches of an item that has none of their terms cost one set
    operation and no call.
    """
    return _compile(_flatten(node))


def _flatten(node: Node) -> Node:
    """The same condition with AND-in-AND and OR-in-OR merged, term checks merged and double negation gone."""
    if isinstance(node, Not):
        child = _flatten(node.child)
        return child.child if isinstance(child, Not) else Not(child)
    if isinstance(node, AllOf | AnyOf):
        kind = type(node)
        flat: list[Node] = []
        for child in (_flatten(c) for c in node.children):
            flat += child.children if isinstance(child, kind) else (child,)
        if isinstance(node, AnyOf):
            return any_of(flat) if flat else node
        return all_of(flat) if flat else node
    return node


def _term_set(node: Node) -> frozenset[int] | None:
    """The terms of a plain term check (one of them must have fired), or None for any other node."""
    if isinstance(node, Leaf):
        return frozenset((node.term_id,))
    if isinstance(node, AnyTerm):
        return node.term_ids
    return None


def _always(hits: Hits) -> bool:
    return True


def _compile(node: Node) -> Predicate:
    if isinstance(node, Leaf):
        term_id = node.term_id
        return lambda hits: term_id in hits
    if isinstance(node, AnyTerm):
        disjoint = node.term_ids.isdisjoint
        return lambda hits: not disjoint(hits)
    if isinstance(node, Near):
        return partial(_near, node)
    if isinstance(node, Not):
        return _compile_not(node.child)
    if isinstance(node, AllOf):
        return _compile_all(node.children)
    return _compile_any(node.children)


def _compile_not(child: Node) -> Predicate:
    terms = _term_set(child)
    if terms is not None:
        return terms.isdisjoint
    inner = _compile(child)
    return lambda hits: not inner(hits)


def _compile_all(children: Sequence[Node]) -> Predicate:
    """AND: every term check first (one set operation each), then the other children in cost order."""
    if not children:
        return _always
    disjoints = tuple(terms.isdisjoint for c in children if (terms := _term_set(c)) is not None)
    others = tuple(_compile(c) for c in children if _term_set(c) is None)
    if len(disjoints) == 1 and len(others) == 1:
        disjoint, other = disjoints[0], others[0]
        return lambda hits: not disjoint(hits) and other(hits)
    if len(disjoints) == 2 and not others:
        first, second = disjoints
        return lambda hits: not first(hits) and not second(hits)
    if not disjoints and len(others) == 2:
        one, two = others
        return lambda hits: one(hits) and two(hits)

    def all_hold(hits: Hits) -> bool:
        for disjoint in disjoints:
            if disjoint(hits):
                return False
        for other in others:  # noqa: SIM110 - a plain loop: all() over a generator costs a frame per call
            if not other(hits):
                return False
        return True

    return all_hold


def _guarded(node: Node) -> tuple[Callable[[Hits], bool], Predicate] | None:
    """A branch of an OR as (``isdisjoint`` of terms it needs, the rest of its test), or None when it can hold
    without any particular term (a NOT)."""
    if isinstance(node, Near):
        return node.left.isdisjoint, partial(_near, node)
    if isinstance(node, AllOf):
        for position, child in enumerate(node.children):
            terms = _term_set(child)
            if terms is not None:
                rest = node.children[:position] + node.children[position + 1 :]
                return terms.isdisjoint, _compile_all(rest)
        needed = _needed(node)
        if needed is not None:
            return needed.isdisjoint, _compile(node)
        return None
    needed = _needed(node)
    return None if needed is None else (needed.isdisjoint, _compile(node))


def _needed(node: Node) -> frozenset[int] | None:
    """Terms of which at least one must have fired for ``node`` to hold (None: it can hold without any)."""
    terms = _term_set(node)
    if terms is not None:
        return terms
    if isinstance(node, Near):
        return node.left
    if isinstance(node, AllOf):
        found = [n for n in (_needed(c) for c in node.children) if n is not None]
        return min(found, key=len) if found else None
    if isinstance(node, AnyOf):
        parts = [_needed(c) for c in node.children]
        if not parts or any(p is None for p in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))
    return None


def _compile_any(children: Sequence[Node]) -> Predicate:
    """OR: the plain terms as one set operation, then each branch behind the set of terms it needs."""
    terms: frozenset[int] = frozenset()
    guarded: list[tuple[Callable[[Hits], bool], Predicate]] = []
    unguarded: list[Predicate] = []
    for child in children:
        child_terms = _term_set(child)
        if child_terms is not None:
            terms |= child_terms
            continue
        branch = _guarded(child)
        if branch is None:
            unguarded.append(_compile(child))
        else:
            guarded.append(branch)
    disjoint = terms.isdisjoint
    has_terms = bool(terms)
    branches = tuple(guarded)
    rest = tuple(unguarded)
    if not branches and not rest:
        return (lambda hits: not disjoint(hits)) if has_terms else _never

    def any_holds(hits: Hits) -> bool:
        if has_terms and not disjoint(hits):
            return True
        for lacks, test in branches:
            if not lacks(hits) and test(hits):
                return True
        for test in rest:  # noqa: SIM110 - as in _compile_all
            if test(hits):
                return True
        return False

    return any_holds


def _never(hits: Hits) -> bool:
    return False
