"""The watchlist query language: a small boolean grammar parsed into an immutable tree.

Grammar (operators are upper case; ``and``/``or`` in lower case are ordinary words, ``or`` being French)::

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*          adjacent operands are ANDed
    unary   := "NOT" unary | near
    near    := primary ("NEAR/" N primary)*    both sides within N words, in the same field
    primary := "(" query ")" | FIELD ":" primary | atom
    atom    := '"quoted phrase"' | word | prefix* | @set
    FIELD   := title | summary | link

Parsing is pure; errors carry the character offset inside the query string.

Parentheses nest at most :data:`MAX_DEPTH` levels, checked before parsing, so that neither the parser (which
recurses once per group) nor the walks of the compiled condition can run out of stack. Runs of ``NOT`` and of
``field:`` prefixes are read in a loop, whatever their length: ``NOT NOT NOT x`` is ``NOT x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIELDS = ("title", "summary", "link")
# Real queries group 3 or 4 deep; 32 groups keep parsing and every walk of the tree a few hundred frames deep.
MAX_DEPTH = 32

_LEXEME = re.compile(
    r"""(?P<space>\s+)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<phrase>"[^"]*"?)
      | (?P<near>NEAR/(?P<distance>\d*))
      | (?P<field>(?:title|summary|link):)
      | (?P<word>[^\s()"]+)""",
    re.VERBOSE,
)
_OPERATORS = {"AND", "OR", "NOT"}


class QuerySyntaxError(ValueError):
    """A query does not parse; ``offset`` is the 0-based character position in the query string."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class QTerm:
    """A word, ``prefix*`` or quoted phrase; ``field`` is None when not scoped."""

    text: str
    offset: int
    prefix: bool = False
    field: str | None = None


@dataclass(frozen=True, slots=True)
class QSet:
    """A reference to a named term set, ``@name``."""

    name: str
    offset: int
    field: str | None = None


@dataclass(frozen=True, slots=True)
class QAnd:
    children: tuple[QNode, ...]


@dataclass(frozen=True, slots=True)
class QOr:
    children: tuple[QNode, ...]


@dataclass(frozen=True, slots=True)
class QNot:
    child: QNode


@dataclass(frozen=True, slots=True)
class QNear:
    left: QNode
    right: QNode
    distance: int


QNode = QTerm | QSet | QAnd | QOr | QNot | QNear


@dataclass(frozen=True, slots=True)
class _Lexeme:
    kind: str
    text: str
    offset: int
    distance: int = 0


def parse_query(query: str) -> QNode:
    """Parse ``query`` into a tree; raise :class:`QuerySyntaxError` with the offset of the problem."""
    lexemes = _lex(query)
    _refuse_deep_nesting(lexemes)
    return _Parser(lexemes, len(query)).parse()


def _refuse_deep_nesting(lexemes: list[_Lexeme]) -> None:
    """Refuse more than :data:`MAX_DEPTH` nested parentheses, at the first one too deep."""
    depth = deepest = 0
    first_too_deep: int | None = None
    for lexeme in lexemes:
        if lexeme.kind == "lparen":
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH and first_too_deep is None:
                first_too_deep = lexeme.offset
        elif lexeme.kind == "rparen":
            depth = max(depth - 1, 0)
    if first_too_deep is not None:
        raise QuerySyntaxError(
            f"parentheses nested {deepest} deep; at most {MAX_DEPTH} levels are allowed", first_too_deep
        )


def _lex(query: str) -> list[_Lexeme]:
    out: list[_Lexeme] = []
    for found in _LEXEME.finditer(query):
        kind = found.lastgroup or ""
        text = found.group()
        if kind == "space":
            continue
        if kind == "distance":
            kind = "near"
        if kind == "phrase" and (len(text) < 2 or not text.endswith('"')):
            raise QuerySyntaxError("unterminated quoted phrase", found.start())
        if kind == "near":
            digits = found.group("distance")
            if not digits:
                raise QuerySyntaxError("NEAR needs a distance, as in NEAR/5", found.start())
            out.append(_Lexeme("near", text, found.start(), int(digits)))
            continue
        if kind == "word" and text in _OPERATORS:
            kind = text.lower()
        out.append(_Lexeme(kind, text, found.start()))
    return out


class _Parser:
    def __init__(self, lexemes: list[_Lexeme], length: int) -> None:
        self.lexemes = lexemes
        self.index = 0
        self.length = length

    def parse(self) -> QNode:
        if not self.lexemes:
            raise QuerySyntaxError("empty query", 0)
        node = self._or()
        if self.index < len(self.lexemes):
            extra = self.lexemes[self.index]
            raise QuerySyntaxError(f"unexpected {extra.text!r}", extra.offset)
        return node

    def _peek(self) -> _Lexeme | None:
        return self.lexemes[self.index] if self.index < len(self.lexemes) else None

    def _take(self) -> _Lexeme:
        lexeme = self.lexemes[self.index]
        self.index += 1
        return lexeme

    def _or(self) -> QNode:
        children = [self._and()]
        while (ahead := self._peek()) is not None and ahead.kind == "or":
            self._take()
            children.append(self._and())
        return children[0] if len(children) == 1 else QOr(tuple(children))

    def _and(self) -> QNode:
        children = [self._unary()]
        while (ahead := self._peek()) is not None and ahead.kind not in ("or", "rparen"):
            if ahead.kind == "and":
                self._take()
            children.append(self._unary())
        return children[0] if len(children) == 1 else QAnd(tuple(children))

    def _unary(self) -> QNode:
        negations = 0
        while (ahead := self._peek()) is not None and ahead.kind == "not":
            self._take()
            negations += 1
        node = self._near()
        # NOT NOT x stays two nodes (its terms are negated, so never evidence); any longer run is one of those.
        for _ in range(negations if negations <= 2 else 2 - negations % 2):
            node = QNot(node)
        return node

    def _near(self) -> QNode:
        node = self._primary()
        while (ahead := self._peek()) is not None and ahead.kind == "near":
            self._take()
            right = self._primary()
            for side, where in ((node, ahead.offset), (right, ahead.offset)):
                if not _is_near_operand(side):
                    raise QuerySyntaxError(
                        "NEAR joins words, phrases, @sets or (a OR b) groups of them", where
                    )
            node = QNear(node, right, ahead.distance)
        return node

    def _primary(self) -> QNode:
        field: str | None = None
        while True:
            lexeme = self._peek()
            if lexeme is None:
                raise QuerySyntaxError("query ends where a word was expected", self.length)
            self._take()
            if lexeme.kind != "field":
                break
            field = lexeme.text[:-1]  # in title:summary:x the innermost scope wins
        if lexeme.kind == "lparen":
            node = self._or()
            closing = self._peek()
            if closing is None or closing.kind != "rparen":
                raise QuerySyntaxError("unclosed parenthesis", lexeme.offset)
            self._take()
            return _scoped(node, field)
        return self._atom(lexeme, field)

    def _atom(self, lexeme: _Lexeme, field: str | None) -> QNode:
        if lexeme.kind == "phrase":
            return QTerm(lexeme.text[1:-1], lexeme.offset + 1, field=field)
        if lexeme.kind == "word":
            if lexeme.text.startswith("@"):
                return QSet(lexeme.text[1:], lexeme.offset, field)
            if lexeme.text.endswith("*"):
                return QTerm(lexeme.text[:-1], lexeme.offset, prefix=True, field=field)
            return QTerm(lexeme.text, lexeme.offset, field=field)
        raise QuerySyntaxError(f"unexpected {lexeme.text!r}", lexeme.offset)


def _is_near_operand(node: QNode) -> bool:
    if isinstance(node, QTerm | QSet):
        return True
    return isinstance(node, QOr) and all(isinstance(c, QTerm | QSet) for c in node.children)


def _scoped(node: QNode, field: str | None) -> QNode:
    """Apply a ``field:`` scope to every atom inside a parenthesised group (inner scopes win)."""
    if field is None:
        return node
    if isinstance(node, QTerm | QSet):
        return node if node.field is not None else _with_field(node, field)
    if isinstance(node, QAnd):
        return QAnd(tuple(_scoped(c, field) for c in node.children))
    if isinstance(node, QOr):
        return QOr(tuple(_scoped(c, field) for c in node.children))
    if isinstance(node, QNot):
        return QNot(_scoped(node.child, field))
    return QNear(_scoped(node.left, field), _scoped(node.right, field), node.distance)


def _with_field(node: QTerm | QSet, field: str) -> QNode:
    if isinstance(node, QTerm):
        return QTerm(node.text, node.offset, node.prefix, field)
    return QSet(node.name, node.offset, field)
