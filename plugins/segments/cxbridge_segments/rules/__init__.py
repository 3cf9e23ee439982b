"""Rule segments: a small, safe expression language over customers, aggregates and traits."""

from __future__ import annotations

from .compiler import CompiledRule, compile_rule
from .errors import RuleError, RuleEvaluationError, RuleSyntaxError
from .runtime import FUNCTIONS, VARIABLES, Env

__all__ = [
    "FUNCTIONS",
    "VARIABLES",
    "CompiledRule",
    "Env",
    "RuleError",
    "RuleEvaluationError",
    "RuleSyntaxError",
    "compile_rule",
]
