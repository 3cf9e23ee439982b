"""Comparing CRM values and making idempotency keys."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["idempotency_key", "parse_rule_tag", "rule_tag", "values_equal"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
        return number if number.is_finite() else None
    return None


def values_equal(ours: Any, theirs: Any) -> bool:
    """Whether a CRM's value ``theirs`` equals the value ``ours`` we want to write.

    CRMs hand values back in their own types (HubSpot returns every property as a string, Salesforce
    returns ``1.0`` for ``1``, empty fields come back as ``""`` or ``null``), so comparison is by meaning:
    ``None == ""``, numbers by value (``"100" == 100 == 100.0``), booleans against ``"true"``/``"false"``,
    datetimes by their ISO form, lists and dicts element-wise.
    """
    if ours is None or ours == "":
        return theirs is None or theirs == "" or theirs == []
    if theirs is None:
        return False
    if isinstance(ours, bool) or isinstance(theirs, bool):
        a, b = (str(v).strip().lower() if not isinstance(v, bool) else str(v).lower() for v in (ours, theirs))
        a = "true" if a in _TRUE else "false" if a in _FALSE else a
        b = "true" if b in _TRUE else "false" if b in _FALSE else b
        return a == b
    na, nb = _number(ours), _number(theirs)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(ours, datetime | date) or isinstance(theirs, datetime | date):
        return _iso(ours) == _iso(theirs)
    if isinstance(ours, list | tuple) and isinstance(theirs, list | tuple):
        return len(ours) == len(theirs) and all(values_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(values_equal(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, str) and isinstance(theirs, str):
        return ours == theirs
    return bool(ours == theirs) or str(ours) == str(theirs)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return text


def idempotency_key(*parts: Any) -> str:
    """A stable key (sha256 hex) for an intended write, from JSON-serializable ``parts``."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def rule_tag(kind: str, name: str, channel: str) -> str:
    """The outbox ``rule`` column: ``writeback:segments.tier@processing``, ``action:nps@email``."""
    return f"{kind}:{name}@{channel}"


def parse_rule_tag(tag: str | None) -> tuple[str, str, str]:
    """``(kind, name, channel)`` of a :func:`rule_tag`; the channel defaults to ``processing``."""
    if not tag:
        return ("", "", "processing")
    head, _, channel = tag.partition("@")
    kind, _, name = head.partition(":")
    return (kind, name, channel or "processing")
