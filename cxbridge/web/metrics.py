"""Prometheus metrics in the text exposition format, without a client library.

:class:`Metrics` holds counters and gauges (thread-safe); :func:`render` writes families in the format
Prometheus scrapes (https://prometheus.io/docs/instrumenting/exposition_formats/ -- ``# HELP`` / ``# TYPE``
lines, label values escaped for backslash, double quote and newline, HELP text for backslash and newline).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CONTENT_TYPE", "MetricFamily", "Metrics", "render"]

#: The exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["counter", "gauge", "untyped"]
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = tuple[tuple[str, str], ...]


@dataclass
class MetricFamily:
    """One metric name with its samples: ``{labels: value}``."""

    name: str
    type: MetricType
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")

    def add(self, value: float, labels: Mapping[str, object] | None = None) -> MetricFamily:
        """Set the sample for ``labels`` (returns self, for chaining)."""
        self.samples[_labels(labels)] = float(value)
        return self


def _labels(labels: Mapping[str, object] | None) -> Labels:
    items = tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items()))
    for key, _ in items:
        if not _LABEL_RE.match(key) or key.startswith("__"):
            raise ValueError(f"invalid label name {key!r}")
    return items


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def render(families: Iterable[MetricFamily]) -> str:
    """The text exposition of ``families`` (a family name appearing twice is merged, first HELP wins)."""
    merged: dict[str, MetricFamily] = {}
    for family in families:
        existing = merged.get(family.name)
        if existing is None:
            merged[family.name] = MetricFamily(family.name, family.type, family.help, dict(family.samples))
        else:
            existing.samples.update(family.samples)
    lines: list[str] = []
    for family in merged.values():
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in sorted(family.samples.items()):
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(
                f"{family.name}{{{label_text}}} {_number(value)}" if labels else f"{family.name} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


class Metrics:
    """Process-local counters and gauges, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, MetricFamily] = {}

    def _family(self, name: str, type_: MetricType, help_: str) -> MetricFamily:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = MetricFamily(name, type_, help_)
        elif family.type != type_:
            raise ValueError(f"metric {name} is a {family.type}, not a {type_}")
        return family

    def inc(self, name: str, help: str, value: float = 1, labels: Mapping[str, object] | None = None) -> None:
        """Add ``value`` (>= 0) to a counter (names of counters end in ``_total``)."""
        if value < 0:
            raise ValueError("counters only go up")
        key = _labels(labels)
        with self._lock:
            family = self._family(name, "counter", help)
            family.samples[key] = family.samples.get(key, 0.0) + value

    def set(self, name: str, help: str, value: float, labels: Mapping[str, object] | None = None) -> None:
        """Set a gauge."""
        key = _labels(labels)
        with self._lock:
            self._family(name, "gauge", help).samples[key] = float(value)

    def collect(self) -> list[MetricFamily]:
        """A consistent copy of every family."""
        with self._lock:
            return [MetricFamily(f.name, f.type, f.help, dict(f.samples)) for f in self._families.values()]
