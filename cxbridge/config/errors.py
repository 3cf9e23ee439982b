"""Turning pydantic validation errors into :class:`~cxbridge.errors.ConfigError` lines that name the key.

Rules: the key is the dotted path in ``cxbridge.toml`` (``sources.hubspot.connection.token``,
``writeback[0].consent``); unknown keys list the allowed ones; literal / enum errors list the allowed values
(pydantic's own message); the wrong value is shown only when it is a short scalar under a key that is not
secret-looking and not a resolved secret reference -- and even then through :func:`cxbridge.secrets.redact`.
"""

from __future__ import annotations

import types
import typing
from collections import abc
from collections.abc import Collection, Sequence
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from ..secrets import is_secret_key, redact, registry

__all__ = ["ConfigValidationError", "dotted", "from_validation_error"]


class ConfigValidationError(ConfigError):
    """A :class:`ConfigError` for one or more invalid keys; ``problems`` holds ``(key, message)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        key, message = problems[0]
        if len(problems) > 1:
            more = "; ".join(f"{k}: {m}" for k, m in problems[1:4])
            extra = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
            message = f"{message} -- also {more}{extra}"
        super().__init__(message, key=key)
        self.problems = list(problems)


def dotted(loc: Sequence[str | int], prefix: str = "") -> str:
    """``("writeback", 0, "trait")`` -> ``writeback[0].trait`` (under ``prefix`` if given)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _unwrap(annotation: Any, part: str | int) -> Any:
    """The annotation one step down ``part`` from ``annotation`` (through Optional, dict, list)."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        field = annotation.model_fields.get(part)
        return field.annotation if field else None
    if origin in (dict, abc.Mapping, abc.MutableMapping):
        args = typing.get_args(annotation)
        return args[1] if len(args) == 2 else None
    if origin in (list, tuple, set, frozenset, abc.Sequence):
        args = typing.get_args(annotation)
        return args[0] if args else None
    return None


def allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the model found at ``loc`` inside ``model`` (None if not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return None
    origin = typing.get_origin(current)
    if origin in (Union, types.UnionType):
        current = next(
            (a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def _show_value(key: str, value: Any, secret_keys: Collection[str]) -> str:
    if key in secret_keys or is_secret_key(key.rsplit(".", 1)[-1]) or value in registry:
        return f"a {type(value).__name__} value (hidden: secret)"
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 60):
        return redact(repr(value))
    return f"a {type(value).__name__} value"


def from_validation_error(
    error: ValidationError,
    model: type[BaseModel],
    *,
    prefix: str = "",
    secret_keys: Collection[str] = (),
) -> ConfigValidationError:
    """Build the one-line :class:`ConfigValidationError` for a pydantic ``error`` raised by ``model``.

    :param prefix: dotted path of the table ``model`` validated (``sources.shop.connection``).
    :param secret_keys: dotted keys whose values came from secret references.
    """
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        # Tagged unions / function validators add non-key parts like "function-after[...]"; drop them.
        loc = tuple(p for p in loc if isinstance(p, int) or ("[" not in p and "(" not in p))
        key = dotted(loc, prefix) or prefix or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            allowed = allowed_keys(model, loc[:-1])
            listed = ", ".join(allowed) if allowed else "(none)"
            message = f"unknown key {str(loc[-1])!r}; allowed keys here: {listed}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            shown = _show_value(key, item.get("input"), secret_keys)
            message = f"{redact(item['msg'])} (got {shown})"
        problems.append((key, message))
    return ConfigValidationError(problems)
