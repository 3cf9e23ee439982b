"""A safe expression language for rule segments, compiled to closures (no ``eval``/``exec``).

The text is parsed with :func:`ast.parse` in ``eval`` mode and every node is checked against a whitelist:
literals (numbers, strings, booleans, ``None``, tuples / lists of them), names from :data:`VARIABLES`,
``and``/``or``/``not``, comparisons (``== != < <= > >= in not in is is not``, chained), arithmetic
(``+ - * / // % **``), conditional expressions, attribute access below ``customer`` (declared model fields
only; nothing starting with ``_``), subscripts (``traits["nps.category"]``, ``customer.emails[0]``) and calls of
the functions in :data:`FUNCTIONS`, by name only. Anything else (imports, lambdas, comprehensions, dunder
attributes, keyword arguments, starred arguments...) is rejected at config load with the rule's key and the
position. Exponents must be numeric literals with ``|exponent| <= 64`` (``9**9**9`` is rejected), strings and
sequences cannot be multiplied beyond 10,000 items, and integers beyond 4,096 bits raise an error.

Comparisons involving ``None`` (a customer without purchases has no ``days_since_last_purchase``) are false
for ordering operators, like SQL's NULL; arithmetic with ``None`` gives ``None``; the rule's result is
``bool(value)``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import RuleEvaluationError, RuleSyntaxError
from .runtime import FUNCTIONS, VARIABLES, Env, ModelView

__all__ = ["CompiledRule", "compile_rule"]

MAX_LENGTH = 2000
MAX_NODES = 400
MAX_EXPONENT = 64
MAX_SEQUENCE = 10_000
MAX_INT_BITS = 4096

Fn = Callable[[Env], Any]


@dataclass(frozen=True)
class CompiledRule:
    """A parsed and checked rule. Call :meth:`evaluate` with a customer's :class:`Env`."""

    key: str
    source: str
    _fn: Fn
    names: frozenset[str] = frozenset()  # variables and functions the rule uses

    def evaluate(self, env: Env) -> bool:
        """Whether the customer is in the segment. Raises :class:`RuleEvaluationError` on a runtime error."""
        try:
            return bool(self._fn(env))
        except RuleEvaluationError:
            raise
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as exc:
            raise RuleEvaluationError(f"{self.key}: {type(exc).__name__}: {exc}") from None


def compile_rule(source: str, *, key: str) -> CompiledRule:
    """Parse, check and compile a rule.

    :param source: the expression text.
    :param key: config key used in error messages (``plugins.segments.rules.<name>``).
    :raises RuleSyntaxError: naming ``key``, the line and the column.
    """
    if not isinstance(source, str) or not source.strip():
        raise RuleSyntaxError("empty rule", key=key, line=1, column=1)
    if len(source) > MAX_LENGTH:
        raise RuleSyntaxError(f"rule longer than {MAX_LENGTH} characters", key=key, line=1, column=MAX_LENGTH)
    text = " ".join(source.strip().splitlines())  # rules may span lines in TOML multi-line strings
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        # CPython reports offset 0 when the rule ends too early: point just past the end.
        column = exc.offset if exc.offset else len(text) + 1
        raise RuleSyntaxError(f"invalid syntax: {exc.msg}", key=key, line=exc.lineno or 1, column=column) from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise RuleSyntaxError(f"rule too complex ({count} nodes > {MAX_NODES})", key=key, line=1, column=1)
    compiler = _Compiler(key)
    fn = compiler.compile(tree.body)
    return CompiledRule(key=key, source=source, _fn=fn, names=frozenset(compiler.names))


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _model_fields() -> frozenset[str]:
    from cxbridge import models

    parts = (models.Customer, models.Demographics, models.Consent, models.Address, models.SocialProfile,
             models.SourceLink, models.Provenance, models.Trait)
    return frozenset(name for model in parts for name in model.model_fields)


#: Attribute names a rule may read below ``customer``: declared fields of the customer model and its parts
#: (so methods such as ``model_dump`` are rejected at load time, not only when evaluated).
_FIELDS = _model_fields()


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise RuleEvaluationError(f"number too large (more than {MAX_INT_BITS} bits)")
    if isinstance(value, str | tuple | list) and len(value) > MAX_SEQUENCE:
        raise RuleEvaluationError(f"value too long (more than {MAX_SEQUENCE} items)")
    return value


def _mul(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, str | tuple | list) and isinstance(n, int) and len(seq) * max(n, 0) > MAX_SEQUENCE:
            raise RuleEvaluationError(f"value too long (more than {MAX_SEQUENCE} items)")
    return a * b


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a.bit_length() * b > MAX_INT_BITS:
        raise RuleEvaluationError(f"number too large (more than {MAX_INT_BITS} bits)")
    return a**b


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow,
}


class _Compiler:
    def __init__(self, key: str) -> None:
        self.key = key
        self.names: set[str] = set()

    def fail(self, node: ast.AST, message: str) -> RuleSyntaxError:
        return RuleSyntaxError(
            message, key=self.key, line=getattr(node, "lineno", 1), column=getattr(node, "col_offset", 0) + 1
        )

    def compile(self, node: ast.expr) -> Fn:
        method = getattr(self, f"c_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{type(node).__name__} is not allowed in rules")
        fn: Fn = method(node)
        return fn

    # -- literals ------------------------------------------------------------------------------------------
    def c_Constant(self, node: ast.Constant) -> Fn:
        value = node.value
        if not isinstance(value, str | int | float | bool | type(None)):
            raise self.fail(node, f"literal of type {type(value).__name__} is not allowed")
        _check_size(value)
        return lambda env: value

    def _sequence(self, node: ast.Tuple | ast.List) -> Fn:
        if len(node.elts) > 1000:
            raise self.fail(node, "literal list too long")
        items = [self.compile(e) for e in node.elts]
        return lambda env: tuple(item(env) for item in items)

    c_Tuple = _sequence
    c_List = _sequence

    # -- names, attributes, subscripts ---------------------------------------------------------------------
    def c_Name(self, node: ast.Name) -> Fn:
        name = node.id
        self.names.add(name)
        if name not in VARIABLES:
            hint = " (functions must be called)" if name in FUNCTIONS else ""
            raise self.fail(node, f"unknown name {name!r}{hint}")
        return lambda env: env.lookup(name)

    def c_Attribute(self, node: ast.Attribute) -> Fn:
        attr = node.attr
        if attr.startswith("_"):
            raise self.fail(node, f"attribute {attr!r} is not allowed")
        root: ast.expr = node
        while isinstance(root, ast.Attribute | ast.Subscript):
            root = root.value
        if not (isinstance(root, ast.Name) and root.id == "customer"):
            raise self.fail(node, "attribute access is only allowed below 'customer'")
        if attr not in _FIELDS:
            raise self.fail(node, f"customer data has no field {attr!r}")
        value = self.compile(node.value)

        def get(env: Env) -> Any:
            obj = value(env)
            if obj is None:
                return None
            if not isinstance(obj, ModelView):
                raise RuleEvaluationError(f"cannot read .{attr} of a {type(obj).__name__}")
            return obj.get(attr)

        return get

    def c_Subscript(self, node: ast.Subscript) -> Fn:
        index_node = node.slice
        if not (isinstance(index_node, ast.Constant) and isinstance(index_node.value, str | int)
                and not isinstance(index_node.value, bool)):
            raise self.fail(index_node, "subscripts must be a string or integer literal")
        index = index_node.value
        value = self.compile(node.value)

        def get(env: Env) -> Any:
            obj = value(env)
            if obj is None:
                return None
            if isinstance(obj, dict | type(env.traits)) and isinstance(index, str):
                return obj.get(index)
            if isinstance(obj, tuple) and isinstance(index, int):
                return obj[index] if -len(obj) <= index < len(obj) else None
            if hasattr(obj, "get") and isinstance(index, str) and not isinstance(obj, ModelView):
                return obj.get(index)
            raise RuleEvaluationError(f"cannot index a {type(obj).__name__} with {index!r}")

        return get

    # -- calls ---------------------------------------------------------------------------------------------
    def c_Call(self, node: ast.Call) -> Fn:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise self.fail(node, "only the rule functions may be called: " + ", ".join(sorted(FUNCTIONS)))
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, "keyword and starred arguments are not allowed")
        self.names.add(node.func.id)
        fn, lo, hi = FUNCTIONS[node.func.id]
        if not lo <= len(node.args) <= hi:
            raise self.fail(node, f"{node.func.id}() takes {lo}..{hi} arguments, got {len(node.args)}")
        args = [self.compile(a) for a in node.args]
        return lambda env: _check_size(fn(env, *(a(env) for a in args)))

    # -- operators -----------------------------------------------------------------------------------------
    def c_BoolOp(self, node: ast.BoolOp) -> Fn:
        parts = [self.compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            def all_(env: Env) -> Any:
                result: Any = True
                for part in parts:
                    result = part(env)
                    if not result:
                        return result
                return result
            return all_

        def any_(env: Env) -> Any:
            result: Any = False
            for part in parts:
                result = part(env)
                if result:
                    return result
            return result
        return any_

    def c_UnaryOp(self, node: ast.UnaryOp) -> Fn:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1

            def neg(env: Env) -> Any:
                value = operand(env)
                if value is None:
                    return None
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise RuleEvaluationError(f"unary minus of {type(value).__name__}")
                return sign * value
            return neg
        raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")

    def c_BinOp(self, node: ast.BinOp) -> Fn:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node.op, ast.Pow):
            exp = node.right
            literal = exp.operand if isinstance(exp, ast.UnaryOp) and isinstance(exp.op, ast.USub) else exp
            if not (isinstance(literal, ast.Constant) and isinstance(literal.value, int | float)
                    and not isinstance(literal.value, bool) and abs(literal.value) <= MAX_EXPONENT):
                raise self.fail(exp, f"exponents must be number literals with |exponent| <= {MAX_EXPONENT}")
        left, right = self.compile(node.left), self.compile(node.right)

        def binop(env: Env) -> Any:
            a, b = left(env), right(env)
            if a is None or b is None:
                return None
            return _check_size(op(a, b))
        return binop

    def c_Compare(self, node: ast.Compare) -> Fn:
        first = self.compile(node.left)
        rest = [(type(o), _COMPARE[type(o)], self.compile(c)) for o, c in zip(node.ops, node.comparators,
                                                                                strict=True)]

        def compare(env: Env) -> bool:
            a = first(env)
            for kind, op, comp in rest:
                b = comp(env)
                if kind in _ORDERING and (a is None or b is None):
                    return False
                if kind in (ast.In, ast.NotIn) and b is None:
                    return kind is ast.NotIn
                if not op(a, b):
                    return False
                a = b
            return True
        return compare

    def c_IfExp(self, node: ast.IfExp) -> Fn:
        test, body, orelse = self.compile(node.test), self.compile(node.body), self.compile(node.orelse)
        return lambda env: body(env) if test(env) else orelse(env)
