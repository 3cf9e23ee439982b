"""The traits the plugin produces, and how one customer's scores become trait values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cxbridge.hooktypes import TraitInfo

from .engine import Scores
from .settings import SegmentsSettings

__all__ = [
    "PRODUCER",
    "STATIC_TRAITS",
    "batch_traits",
    "cleared_traits",
    "customer_traits",
    "rule_trait",
    "service_level_values",
    "trait_infos",
]

PRODUCER = "segments"

#: (name, type, description) of every trait except the per-rule ones.
STATIC_TRAITS: tuple[tuple[str, str, str], ...] = (
    ("segments.rfm_segment", "string", "Named RFM segment (Champions ... Lost); null without purchases"),
    ("segments.rfm.score", "string", "R, F and M scores as three digits, e.g. '545'"),
    ("segments.rfm.r_score", "integer", "Recency score 1-5 (5 = most recent)"),
    ("segments.rfm.f_score", "integer", "Frequency score 1-5"),
    ("segments.rfm.m_score", "integer", "Monetary score 1-5"),
    ("segments.rfm.recency_days", "integer", "Days since the last purchase"),
    ("segments.rfm.frequency", "integer", "Number of purchases"),
    ("segments.rfm.monetary", "number", "Net spend (total or average) in the reporting currency"),
    ("segments.revenue", "number", "Net revenue in the reporting currency (refunds deducted)"),
    ("segments.unconverted_currencies", "string", "Currencies without an exchange rate left out of revenue"),
    ("segments.clv", "number", "Customer lifetime value over the configured horizon (discounted)"),
    ("segments.p_alive", "number", "BG/NBD probability that the customer is still active"),
    ("segments.expected_purchases", "number", "Expected purchases over the CLV horizon"),
    ("segments.expected_spend", "number", "Expected spend per purchase (Gamma-Gamma)"),
    ("segments.tier", "string", "Value tier"),
    ("segments.service_level.response_time_hours", "number", "Tier's maximum first-response time (hours)"),
    ("segments.service_level.channel", "string", "Tier's service channel"),
    ("segments.service_level.account_manager", "boolean", "Tier has a named account manager"),
    ("segments.service_level.priority", "string", "Tier's queue priority"),
)


def rule_trait(name: str) -> str:
    return f"segments.rule.{name}"


def trait_infos(rule_names: Iterable[str] = ()) -> list[TraitInfo]:
    """TraitInfo records for ``register_traits`` (rule traits for the rules known at the time)."""
    infos = [TraitInfo(name=n, type=t, description=d) for n, t, d in STATIC_TRAITS]  # type: ignore[arg-type]
    infos += [TraitInfo(name=rule_trait(r), type="boolean", description=f"Member of rule segment {r!r}")
              for r in rule_names]
    return infos


def _num(value: float, digits: int) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else round(value, digits)


def _rounded(values: np.ndarray, digits: int, mask: np.ndarray | None = None) -> list[float | None]:
    out = np.round(values.astype(np.float64), digits)
    valid = np.isfinite(out) if mask is None else (np.isfinite(out) & mask)
    listed: list[float | None] = out.tolist()
    for i in np.flatnonzero(~valid).tolist():
        listed[i] = None
    return listed


def batch_traits(
    scores: Scores,
    settings: SegmentsSettings,
    segment_names: Sequence[str],
    unknown: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Trait values of every customer of a scored batch, built column-wise (rule traits are added later).

    Values are rounded (money to cents, probabilities to 4 digits) so that re-scoring unchanged data writes
    nothing back. Customers without purchases get ``None`` RFM traits.
    """
    rfm = scores.rfm
    n = int(rfm.r.size)
    has = rfm.r > 0
    seg_names = [*segment_names, None]
    segment = np.where(has & (rfm.segment >= 0), rfm.segment, len(segment_names)).tolist()
    codes = (rfm.r.astype(np.int32) * 100 + rfm.f.astype(np.int32) * 10 + rfm.m.astype(np.int32)).tolist()

    def ints(values: np.ndarray) -> list[int | None]:
        listed: list[int | None] = values.astype(np.int64).tolist()
        for i in np.flatnonzero(~has).tolist():
            listed[i] = None
        return listed

    columns: dict[str, list[Any]] = {
        "segments.rfm_segment": [seg_names[i] for i in segment],
        "segments.rfm.score": [str(c) if h else None for c, h in zip(codes, has.tolist(), strict=True)],
        "segments.rfm.r_score": ints(rfm.r),
        "segments.rfm.f_score": ints(rfm.f),
        "segments.rfm.m_score": ints(rfm.m),
        "segments.rfm.recency_days": ints(rfm.recency_days),
        "segments.rfm.frequency": rfm.frequency.astype(np.int64).tolist(),
        "segments.rfm.monetary": _rounded(rfm.monetary, 2, has),
        "segments.revenue": _rounded(scores.revenue, 2),
        "segments.unconverted_currencies": [None] * n,
        "segments.clv": _rounded(scores.clv, 2),
        "segments.p_alive": _rounded(scores.p_alive, 4),
        "segments.expected_purchases": _rounded(scores.expected_purchases, 3),
        "segments.expected_spend": _rounded(scores.expected_spend, 2),
    }
    for index, text in (unknown or {}).items():
        columns["segments.unconverted_currencies"][index] = text
    levels = [service_level_values(settings, t) for t in range(len(settings.tiers.levels))]
    tiers = scores.tier.tolist()
    names = list(columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    for row, tier in zip(rows, tiers, strict=True):
        row.update(levels[tier])
    return rows


def service_level_values(settings: SegmentsSettings, tier_index: int) -> dict[str, Any]:
    """``segments.tier`` and ``segments.service_level.*`` of one tier."""
    level = settings.tiers.levels[tier_index]
    values: dict[str, Any] = {"segments.tier": level.name}
    for key, value in level.service_level.model_dump().items():
        values[f"segments.service_level.{key}"] = value
    return values


def customer_traits(
    i: int, scores: Scores, settings: SegmentsSettings, segment_names: list[str], unknown: str | None = None
) -> dict[str, Any]:
    """Trait values of customer ``i`` of a scored batch (see :func:`batch_traits`)."""
    rfm = scores.rfm
    has = rfm.r[i] > 0
    seg = int(rfm.segment[i])
    traits: dict[str, Any] = {
        "segments.rfm_segment": segment_names[seg] if has and seg >= 0 else None,
        "segments.rfm.score": f"{rfm.r[i]}{rfm.f[i]}{rfm.m[i]}" if has else None,
        "segments.rfm.r_score": int(rfm.r[i]) if has else None,
        "segments.rfm.f_score": int(rfm.f[i]) if has else None,
        "segments.rfm.m_score": int(rfm.m[i]) if has else None,
        "segments.rfm.recency_days": int(rfm.recency_days[i]) if has else None,
        "segments.rfm.frequency": int(rfm.frequency[i]),
        "segments.rfm.monetary": _num(rfm.monetary[i], 2) if has else None,
        "segments.revenue": _num(scores.revenue[i], 2),
        "segments.unconverted_currencies": unknown,
        "segments.clv": _num(scores.clv[i], 2),
        "segments.p_alive": _num(scores.p_alive[i], 4),
        "segments.expected_purchases": _num(scores.expected_purchases[i], 3),
        "segments.expected_spend": _num(scores.expected_spend[i], 2),
    }
    traits.update(service_level_values(settings, int(scores.tier[i])))
    return traits


def cleared_traits(rule_names: Iterable[str]) -> dict[str, Any]:
    """All segment traits set to null (customers who object to profiling)."""
    out: dict[str, Any] = {name: None for name, _, _ in STATIC_TRAITS}
    out.update({rule_trait(r): None for r in rule_names})
    return out
