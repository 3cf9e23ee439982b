"""Value tiers: quantile and threshold modes, service levels, validation."""

from __future__ import annotations

import numpy as np
import pytest
from cxbridge_segments.settings import SegmentsSettings, TiersSettings
from cxbridge_segments.tiers import assign_tiers, fit_tier_bounds, service_level_traits
from pydantic import ValidationError

LEVELS = [
    {"name": "gold", "min_value": 1000, "service_level": {"response_time_hours": 2, "channel": "phone",
                                                          "account_manager": True}},
    {"name": "silver", "min_value": 100, "service_level": {"response_time_hours": 24, "channel": "email"}},
    {"name": "bronze", "service_level": {"response_time_hours": 72, "channel": "email"}},
]


def test_threshold_tiers_include_the_boundary() -> None:
    tiers = TiersSettings.model_validate({"mode": "threshold", "levels": LEVELS})
    bounds = fit_tier_bounds(tiers, np.zeros(1), np.ones(1, dtype=bool))
    assert bounds == [1000.0, 100.0]
    metric = np.array([5000, 1000, 999.99, 100, 0, -20, np.nan])
    assert assign_tiers(bounds, metric).tolist() == [0, 0, 1, 1, 2, 2, 2]


def test_quantile_tiers_are_cut_over_purchasers() -> None:
    tiers = TiersSettings()  # platinum top 5 %, gold top 20 %, silver top 50 %, bronze rest
    revenue = np.arange(1, 101, dtype=float)
    eligible = np.ones(100, dtype=bool)
    bounds = fit_tier_bounds(tiers, np.r_[revenue, np.zeros(50)], np.r_[eligible, np.zeros(50, dtype=bool)])
    tier = assign_tiers(bounds, np.r_[revenue, np.zeros(50)])
    counts = np.bincount(tier, minlength=4).tolist()
    assert counts == [5, 15, 30, 50 + 50]  # non-purchasers land in the catch-all tier


def test_service_level_traits() -> None:
    tiers = TiersSettings.model_validate({"mode": "threshold", "levels": LEVELS})
    assert service_level_traits(tiers, 0) == {
        "segments.tier": "gold",
        "segments.service_level.response_time_hours": 2.0,
        "segments.service_level.channel": "phone",
        "segments.service_level.account_manager": True,
        "segments.service_level.priority": "normal",
    }


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ({"levels": LEVELS[:2]}, "at least 3"),
        ({"mode": "threshold", "levels": [LEVELS[1], LEVELS[0], LEVELS[2]]}, "strictly decrease"),
        ({"mode": "quantile", "levels": LEVELS}, "needs 'quantile'"),
        ({"mode": "threshold", "levels": [LEVELS[0], LEVELS[0], LEVELS[2]]}, "unique"),
        ({"levels": [{**LEVELS[0], "service_level": {"channel": "phone"}}, *LEVELS[1:]]}, "response_time_hours"),
        ({"metric": "nps"}, "metric"),
    ],
)
def test_tier_settings_are_validated(tiers, message) -> None:
    with pytest.raises(ValidationError) as info:
        SegmentsSettings.model_validate({"tiers": tiers})
    assert message in str(info.value)
