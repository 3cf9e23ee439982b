"""Value tiers with service levels.

Tiers are cut on a metric (CLV or net revenue) either by fixed thresholds (``min_value``) or by quantiles of the
metric over the customers who have purchased (boundaries computed at refit time and stored, like the RFM
quintiles). Customers without purchases (or without a CLV) have metric 0 and land in the lowest tier they
qualify for -- normally the catch-all -- so every customer has a service level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .settings import TiersSettings

__all__ = ["assign_tiers", "fit_tier_bounds", "service_level_traits"]


def fit_tier_bounds(
    settings: TiersSettings, metric: NDArray[np.float64], eligible: NDArray[np.bool_]
) -> list[float]:
    """Lower bounds of every tier but the last, best first.

    :param metric: the tier metric per customer.
    :param eligible: customers the quantiles are computed over (those with purchases).
    """
    levels = settings.levels[:-1]
    if settings.mode == "threshold":
        return [float(level.min_value) for level in levels]  # type: ignore[arg-type]
    values = metric[eligible & np.isfinite(metric)]
    if values.size == 0:
        return [float("inf")] * len(levels)  # nobody qualifies for a bounded tier yet
    return [float(np.quantile(values, level.quantile)) for level in levels]  # type: ignore[arg-type]


def assign_tiers(bounds: Sequence[float], metric: NDArray[np.float64]) -> NDArray[np.int8]:
    """Index of each customer's tier (0 = best): the first tier whose lower bound the metric reaches.

    A metric exactly equal to a bound belongs to that (better) tier; NaN counts as 0.
    """
    values = np.nan_to_num(metric.astype(np.float64), nan=0.0)
    # bounds decrease: count how many bounds are above the value -> that many tiers are out of reach.
    descending = np.asarray(bounds, dtype=np.float64)
    above = np.searchsorted(-descending, -values, side="left")
    return above.astype(np.int8)


def service_level_traits(settings: TiersSettings, tier_index: int) -> dict[str, Any]:
    """The ``segments.tier`` and ``segments.service_level.*`` trait values of one tier."""
    level = settings.levels[tier_index]
    traits: dict[str, Any] = {"segments.tier": level.name}
    for key, value in level.service_level.model_dump().items():
        traits[f"segments.service_level.{key}"] = value
    return traits
