"""What rule expressions can see: a read-only view of the customer, traits, aggregates and a few functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from .errors import RuleEvaluationError

__all__ = ["FUNCTIONS", "VARIABLES", "Env", "ModelView"]

#: Variables a rule may use besides ``customer`` and ``traits`` (documented in the README).
VARIABLES: dict[str, str] = {
    "customer": "the golden customer (read-only; fields of cxbridge.models.Customer)",
    "traits": "all traits of the customer by name (this run's segments traits included)",
    "today": "the as-of date",
    "purchases_count": "number of purchases",
    "refunds_count": "number of refunds",
    "revenue": "net revenue in the reporting currency (refunds deducted)",
    "monetary": "RFM monetary value (total or average, per settings)",
    "days_since_last_purchase": "days since the last purchase (None without purchases)",
    "last_purchase_days": "alias of days_since_last_purchase",
    "days_since_first_purchase": "days since the first purchase (None without purchases)",
    "r_score": "RFM recency score 1-5 (0 without purchases)",
    "f_score": "RFM frequency score 1-5 (0 without purchases)",
    "m_score": "RFM monetary score 1-5 (0 without purchases)",
    "rfm_segment": "named RFM segment (None without purchases)",
    "tier": "value tier name",
    "clv": "customer lifetime value (None without a fitted model)",
    "p_alive": "BG/NBD probability the customer is still active (None without a model)",
    "expected_purchases": "expected purchases over the CLV horizon (None without a model)",
}


class ModelView:
    """Read-only attribute view of a pydantic model: only declared fields, never methods or dunders."""

    __slots__ = ("_model",)

    def __init__(self, model: BaseModel) -> None:
        self._model = model

    def get(self, name: str) -> Any:
        if name.startswith("_") or name not in type(self._model).model_fields:
            raise RuleEvaluationError(f"{type(self._model).__name__} has no field {name!r}")
        return wrap(getattr(self._model, name))


def wrap(value: Any) -> Any:
    """Values as rules see them: models become views, lists become tuples, enums their value."""
    if isinstance(value, BaseModel):
        return ModelView(value)
    if isinstance(value, list | tuple):
        return tuple(wrap(v) for v in value)
    if isinstance(value, dict):
        return {k: wrap(v) for k, v in value.items()}
    if hasattr(value, "value") and type(value).__module__.startswith("cxbridge"):
        return value.value
    return value


class Env:
    """One customer's evaluation environment.

    :param variables: aggregate variables (see :data:`VARIABLES`).
    :param traits: trait name -> value.
    :param interactions: ``(type, day_number)`` pairs for ``interactions_count``.
    :param today: the as-of date.
    """

    __slots__ = ("interactions", "today", "traits", "variables")

    def __init__(
        self,
        variables: Mapping[str, Any],
        traits: Mapping[str, Any],
        today: date,
        interactions: Sequence[tuple[str, date]] = (),
    ) -> None:
        self.variables = variables
        self.traits = traits
        self.today = today
        self.interactions = interactions

    def lookup(self, name: str) -> Any:
        if name == "traits":
            return self.traits
        if name == "today":
            return self.today
        if name in self.variables:
            return wrap(self.variables[name])
        raise RuleEvaluationError(f"unknown name {name!r}")


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return _as_date(datetime.fromisoformat(value))
        except ValueError:
            raise RuleEvaluationError(f"days_since(): not an ISO date: {value!r}") from None
    raise RuleEvaluationError(f"days_since(): expected a date, got {type(value).__name__}")


def _days_since(env: Env, value: Any) -> int | None:
    day = _as_date(value)
    return None if day is None else (env.today - day).days


def _trait(env: Env, name: Any, default: Any = None) -> Any:
    if not isinstance(name, str):
        raise RuleEvaluationError("trait() takes a trait name string")
    return wrap(env.traits.get(name, default))


def _has_trait(env: Env, name: Any) -> bool:
    return env.traits.get(name) is not None


def _interactions_count(env: Env, kind: Any, days: Any = None) -> int:
    if not isinstance(kind, str):
        raise RuleEvaluationError("interactions_count() takes an interaction type string")
    if days is None:
        return sum(1 for k, _ in env.interactions if k == kind)
    if not isinstance(days, int | float):
        raise RuleEvaluationError("interactions_count(type, days): days must be a number")
    return sum(1 for k, d in env.interactions if k == kind and (env.today - d).days <= days)


def _str_fn(name: str, fn: Callable[[str], Any]) -> Callable[[Env, Any], Any]:
    def call(env: Env, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise RuleEvaluationError(f"{name}() takes a string")
        return fn(value)

    return call


def _len(env: Env, value: Any) -> int:
    if isinstance(value, str | tuple | list | dict):
        return len(value)
    if value is None:
        return 0
    raise RuleEvaluationError(f"len() of {type(value).__name__}")


def _num(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(env: Env, *args: Any) -> Any:
        if any(a is None for a in args):
            return None
        if not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args):
            raise RuleEvaluationError(f"{name}() takes numbers")
        return fn(*args)

    return call


#: name -> (callable taking the Env first, min args, max args)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "days_since": (_days_since, 1, 1),
    "trait": (_trait, 1, 2),
    "has_trait": (_has_trait, 1, 1),
    "interactions_count": (_interactions_count, 1, 2),
    "len": (_len, 1, 1),
    "lower": (_str_fn("lower", str.lower), 1, 1),
    "upper": (_str_fn("upper", str.upper), 1, 1),
    "abs": (_num("abs", abs), 1, 1),
    "min": (_num("min", min), 2, 8),
    "max": (_num("max", max), 2, 8),
    "round": (_num("round", round), 1, 2),
}
