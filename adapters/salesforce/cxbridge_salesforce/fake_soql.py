"""A small SOQL interpreter for the fake org (:mod:`cxbridge_salesforce.testing`).

It understands the subset of SOQL cxbridge and typical tests issue::

    SELECT f1, f2 | COUNT() FROM Object
        [WHERE <cond>]               -- AND / OR / NOT / parentheses; = != < <= > >= ; IN (...)
        [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
        [LIMIT n]

Literals: 'strings' (backslash escapes), unquoted date-times (``2024-05-01T10:00:00Z``, ``...+02:00``,
``...000+0000``), dates (``2024-05-01``), numbers, ``true`` / ``false`` / ``null``.
Anything else raises :class:`SoqlError` (the fake answers 400 ``MALFORMED_QUERY``, as Salesforce does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["Query", "SoqlError", "parse"]

Row = dict[str, Any]


class SoqlError(ValueError):
    """The query is not valid (or not in the supported subset)."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<str>'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*(?:\(\))?)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SoqlError(f"unexpected token at {text[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _literal(kind: str, value: str) -> Any:
    if kind == "dt":
        text = value.replace("Z", "+00:00")
        if re.search(r"[+-]\d{4}$", text):
            text = text[:-2] + ":" + text[-2:]
        return datetime.fromisoformat(text).astimezone(UTC)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "num":
        return float(value) if "." in value else int(value)
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    raise SoqlError(f"not a literal: {value!r}")


@dataclass
class Query:
    """A parsed query."""

    object_type: str
    fields: list[str]
    count: bool = False
    where: Callable[[Row], bool] = field(default=lambda row: True)
    where_fields: set[str] = field(default_factory=set)
    order: list[tuple[str, bool]] = field(default_factory=list)
    limit: int | None = None


def _compare(left: Any, op: str, right: Any) -> bool:
    if op in ("=",):
        return left == right
    if op in ("!=", "<>"):
        return left != right
    if left is None or right is None:
        return False
    if isinstance(left, datetime) and isinstance(right, datetime):
        pass
    elif isinstance(left, str) != isinstance(right, str):
        raise SoqlError(f"cannot compare {left!r} with {right!r}")
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.fields: set[str] = set()

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def word(self, *options: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].upper() in options:
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        token = self.peek()
        if not token or token[1].upper() != value.upper():
            raise SoqlError(f"expected {value!r}, got {token[1] if token else 'end of query'!r}")
        self.pos += 1

    def name(self) -> str:
        token = self.peek()
        if not token or token[0] != "word":
            raise SoqlError(f"expected a field name, got {token[1] if token else 'end of query'!r}")
        self.pos += 1
        return token[1]

    def value(self) -> Any:
        token = self.peek()
        if token is None:
            raise SoqlError("expected a value")
        self.pos += 1
        return _literal(*token)

    def expr(self) -> Callable[[Row], bool]:
        parts = [self.term()]
        while self.word("OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def term(self) -> Callable[[Row], bool]:
        parts = [self.factor()]
        while self.word("AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def factor(self) -> Callable[[Row], bool]:
        if self.word("NOT"):
            inner = self.factor()
            return lambda row: not inner(row)
        token = self.peek()
        if token and token[1] == "(":
            self.pos += 1
            inner = self.expr()
            self.expect(")")
            return inner
        name = self.name()
        self.fields.add(name)
        if self.word("IN"):
            self.expect("(")
            values = [self.value()]
            while self.peek() and self.peek()[1] == ",":  # type: ignore[index]
                self.pos += 1
                values.append(self.value())
            self.expect(")")
            allowed = set(values)
            return lambda row: row.get(name) in allowed
        op_token = self.peek()
        if not op_token or op_token[0] != "op":
            raise SoqlError(f"expected an operator after {name}")
        self.pos += 1
        right = self.value()
        op = op_token[1]
        return lambda row: _compare(row.get(name), op, right)


def parse(text: str) -> Query:
    """Parse ``text``; raise :class:`SoqlError` when it is outside the supported subset."""
    parser = _Parser(_tokens(text))
    parser.expect("SELECT")
    fields: list[str] = []
    count = False
    if parser.word("COUNT()"):
        count = True
    else:
        fields.append(parser.name())
        while parser.peek() and parser.peek()[1] == ",":  # type: ignore[index]
            parser.pos += 1
            fields.append(parser.name())
    parser.expect("FROM")
    query = Query(object_type=parser.name(), fields=fields, count=count)
    if parser.word("WHERE"):
        query.where = parser.expr()
        query.where_fields = set(parser.fields)
    if parser.word("ORDER"):
        parser.expect("BY")
        while True:
            name = parser.name()
            descending = False
            if parser.word("DESC"):
                descending = True
            else:
                parser.word("ASC")
            if parser.word("NULLS"):
                parser.word("FIRST", "LAST")
            query.order.append((name, descending))
            if parser.peek() and parser.peek()[1] == ",":  # type: ignore[index]
                parser.pos += 1
                continue
            break
    if parser.word("LIMIT"):
        query.limit = int(parser.value())
    if parser.peek() is not None:
        raise SoqlError(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return query
