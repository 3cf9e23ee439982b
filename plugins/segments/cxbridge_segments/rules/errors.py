"""Errors of the rule language."""

from __future__ import annotations

__all__ = ["RuleError", "RuleEvaluationError", "RuleSyntaxError"]


class RuleError(ValueError):
    """Base of rule errors (a ``ValueError`` so pydantic reports it as a validation error of the settings)."""


class RuleSyntaxError(RuleError):
    """A rule that cannot be parsed or uses something the language does not allow.

    :param key: the config key of the rule, e.g. ``plugins.segments.rules.lapsed_gold``.
    :param line: 1-based line of the offending token.
    :param column: 1-based column of the offending token.
    """

    def __init__(self, message: str, *, key: str, line: int, column: int) -> None:
        super().__init__(f"{key}: {message} (line {line}, column {column})")
        self.key = key
        self.line = line
        self.column = column
        self.reason = message


class RuleEvaluationError(RuleError):
    """A rule failed for one customer (type mismatch, number too large...)."""
