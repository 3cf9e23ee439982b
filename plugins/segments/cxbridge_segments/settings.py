"""Settings of the segments plugin: the ``[plugins.segments]`` table of ``cxbridge.toml``.

Example::

    [plugins.segments]
    reporting_currency = "EUR"
    fx_rates = { USD = 0.92, GBP = 1.17 }
    refit_every_seconds = 86400

    [plugins.segments.tiers]
    metric = "clv"                      # or "revenue"
    mode = "quantile"                   # or "threshold" (min_value per tier)

    [[plugins.segments.tiers.levels]]
    name = "platinum"
    quantile = 0.95                     # top 5 %
    service_level = { response_time_hours = 1, channel = "phone", account_manager = true }
    # ... gold, silver; the last level is the catch-all

    [plugins.segments.rules]
    lapsed_gold = 'tier == "gold" and days_since_last_purchase > 90'
"""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .rfm import DEFAULT_SEGMENT_MAP, SegmentMap
from .rules import CompiledRule, compile_rule

__all__ = [
    "ClvSettings",
    "RfmSettings",
    "SegmentsSettings",
    "ServiceLevel",
    "TierLevel",
    "TiersSettings",
]


#: Rule names of every validated settings object in this process. The core validates write-back rules
#: (``collect_traits``) before it calls ``config_loaded``, so ``register_traits`` declares the per-rule traits
#: (``segments.rule.<name>``) from here; a write-back rule can then target a rule segment.
RULE_NAMES_SEEN: set[str] = set()


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceLevel(_Settings):
    """What a tier's customers are promised; each field becomes a ``segments.service_level.<field>`` trait."""

    response_time_hours: float = Field(gt=0, description="Maximum first-response time in hours.")
    channel: str = Field(description="Preferred service channel: phone, email, chat...")
    account_manager: bool = Field(False, description="Has a named account manager.")
    priority: Literal["low", "normal", "high", "urgent"] = Field("normal", description="Queue priority.")


class TierLevel(_Settings):
    """One value tier. Levels are listed best first; the last one is the catch-all."""

    name: str = Field(min_length=1, max_length=40, description="Tier name written to the CRM, e.g. 'gold'.")
    quantile: float | None = Field(
        None, ge=0, lt=1, description="quantile mode: lower bound as a quantile of the metric (0.95 = top 5 %)."
    )
    min_value: float | None = Field(None, description="threshold mode: lower bound of the metric.")
    service_level: ServiceLevel


def _default_levels() -> list[TierLevel]:
    return [
        TierLevel(name="platinum", quantile=0.95, service_level=ServiceLevel(
            response_time_hours=1, channel="phone", account_manager=True, priority="urgent")),
        TierLevel(name="gold", quantile=0.80, service_level=ServiceLevel(
            response_time_hours=4, channel="phone", account_manager=False, priority="high")),
        TierLevel(name="silver", quantile=0.50, service_level=ServiceLevel(
            response_time_hours=24, channel="email", priority="normal")),
        TierLevel(name="bronze", service_level=ServiceLevel(
            response_time_hours=72, channel="email", priority="low")),
    ]


class TiersSettings(_Settings):
    """Value tiers: 3 or 4 levels on CLV or revenue, by quantiles (refitted on schedule) or fixed thresholds."""

    metric: Literal["clv", "revenue"] = Field("revenue", description="Metric tiers are cut on.")
    mode: Literal["quantile", "threshold"] = "quantile"
    levels: list[TierLevel] = Field(default_factory=_default_levels, min_length=3, max_length=4)

    @model_validator(mode="after")
    def _check_levels(self) -> TiersSettings:
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        bounded = self.levels[:-1]
        attr = "quantile" if self.mode == "quantile" else "min_value"
        bounds = [getattr(level, attr) for level in bounded]
        for level, bound in zip(bounded, bounds, strict=True):
            if bound is None:
                raise ValueError(f"tier {level.name!r} needs '{attr}' in {self.mode} mode (only the last is open)")
        if any(b2 >= b1 for b1, b2 in itertools.pairwise(bounds)):
            raise ValueError(f"tier '{attr}' bounds must strictly decrease from the first (best) tier: {bounds}")
        return self


class RfmSettings(_Settings):
    """RFM scoring."""

    monetary: Literal["total", "average"] = Field("total", description="Net spend in total or per purchase.")
    fm_combine: Literal["mean", "frequency", "monetary"] = Field(
        "mean", description="How the grid's FM axis is made: round-half-up mean of F and M, or F or M alone."
    )
    segment_map: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_SEGMENT_MAP.items()},
        description="segment -> R/FM cells ('5[4-5]'); must cover the 5x5 grid exactly once.",
    )

    @field_validator("segment_map")
    @classmethod
    def _valid_map(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        SegmentMap(value)  # raises ValueError naming the cell / segment
        return value


class ClvSettings(_Settings):
    """CLV: BG/NBD + Gamma-Gamma."""

    enabled: bool = True
    horizon_months: int = Field(12, ge=1, le=120)
    monthly_discount_rate: float = Field(0.01, ge=0, le=1, description="Discount rate per month.")
    margin: float = Field(1.0, gt=0, le=1, description="Profit share of revenue; 1 = CLV in revenue terms.")
    time_unit_days: float = Field(7.0, gt=0, description="Model time unit in days (7 = weeks, as in the paper).")
    fit_sample_size: int = Field(
        250_000, ge=100, description="Fit on a random sample of this many purchasers when there are more."
    )
    min_customers: int = Field(20, ge=2, description="Fewer purchasers than this: no fit, CLV traits are null.")


class SegmentsSettings(_Settings):
    """``[plugins.segments]``."""

    reporting_currency: str = Field("EUR", description="ISO 4217 code monetary values are reported in.")
    fx_rates: dict[str, float] = Field(
        default_factory=dict, description="Value of one unit of each currency in the reporting currency."
    )
    default_currency: str | None = Field(None, description="Assumed for amounts without a currency.")
    as_of: datetime | date | None = Field(None, description="Score as of this date instead of now.")
    refit_every_seconds: float = Field(86400, gt=0, description="Interval of the segments.refit job.")
    refit_growth_share: float = Field(
        0.10, ge=0,
        description="Refit as soon as the number of purchasers has grown by more than this share since the fit "
                    "(an initial load arriving in many pages is not scored against its first pages' population).",
    )
    rfm: RfmSettings = Field(default_factory=RfmSettings)
    tiers: TiersSettings = Field(default_factory=TiersSettings)
    clv: ClvSettings = Field(default_factory=ClvSettings)
    rules: dict[str, str] = Field(
        default_factory=dict, description="Rule segments: name -> expression (see the README for the language)."
    )

    _compiled: dict[str, CompiledRule] = PrivateAttr(default_factory=dict)

    @field_validator("reporting_currency", "default_currency")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"not an ISO 4217 currency code: {value!r}")
        return value.upper() if value else value

    @field_validator("fx_rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for code, rate in value.items():
            if not re.fullmatch(r"[A-Za-z]{3}", code):
                raise ValueError(f"fx_rates.{code}: not an ISO 4217 currency code")
            if not rate > 0:
                raise ValueError(f"fx_rates.{code}: rate must be > 0, got {rate}")
            out[code.upper()] = float(rate)
        return out

    @model_validator(mode="after")
    def _compile_rules(self) -> SegmentsSettings:
        compiled: dict[str, CompiledRule] = {}
        for name, expression in self.rules.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"plugins.segments.rules.{name}: rule names must be lower snake case")
            compiled[name] = compile_rule(expression, key=f"plugins.segments.rules.{name}")
        self._compiled = compiled
        RULE_NAMES_SEEN.update(compiled)
        return self

    @property
    def compiled_rules(self) -> dict[str, CompiledRule]:
        """The rules, parsed and checked at load time."""
        return self._compiled
