"""The traits the plugin produces, and how one customer's scores become trait values."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from cxbridge.hooktypes import TraitInfo

from .engine import Scores
from .settings import SegmentsSettings

__all__ = ["PRODUCER", "STATIC_TRAITS", "cleared_traits", "customer_traits", "rule_trait", "trait_infos"]

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


def customer_traits(
    i: int, scores: Scores, settings: SegmentsSettings, segment_names: list[str], unknown: str | None = None
) -> dict[str, Any]:
    """Trait values of customer ``i`` of a scored batch (rule traits are added by the pipeline).

    Values are rounded (money to cents, probabilities to 4 digits) so re-scoring with unchanged data writes
    nothing back.
    """
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
    level = settings.tiers.levels[int(scores.tier[i])]
    traits["segments.tier"] = level.name
    for key, value in level.service_level.model_dump().items():
        traits[f"segments.service_level.{key}"] = value
    return traits


def cleared_traits(rule_names: Iterable[str]) -> dict[str, Any]:
    """All segment traits set to null (customers who object to profiling)."""
    out: dict[str, Any] = {name: None for name, _, _ in STATIC_TRAITS}
    out.update({rule_trait(r): None for r in rule_names})
    return out
