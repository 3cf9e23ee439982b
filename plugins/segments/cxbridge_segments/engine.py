"""Fitting and scoring, on arrays: RFM quintiles, CLV models and tier boundaries.

:func:`fit_model` learns everything that depends on the whole customer base (quintile boundaries, BG/NBD and
Gamma-Gamma parameters, tier boundaries) into a :class:`ModelState`; :func:`score` applies a state to any set of
customers -- all of them after a refit, or the few that changed in a sync batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .clv import (
    BgNbdParams,
    GammaGammaParams,
    customer_lifetime_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
)
from .clv.gammagamma import conditional_expected_spend
from .clv.value import DAYS_PER_MONTH
from .features import CustomerFeatures
from .rfm import QuintileEdges, RfmResult, SegmentMap, fit_edges, score_rfm
from .settings import SegmentsSettings
from .tiers import assign_tiers, fit_tier_bounds

__all__ = ["ClvInputs", "ModelState", "Scores", "clv_inputs", "fit_model", "score"]

logger = logging.getLogger(__name__)


@dataclass
class ModelState:
    """Everything a refit learns; JSON-serialisable through :meth:`as_dict`."""

    as_of_day: int
    edges: QuintileEdges
    tier_bounds: list[float]
    bgnbd: BgNbdParams | None = None
    gamma_gamma: GammaGammaParams | None = None
    fitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    customers: int = 0
    purchasers: int = 0
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of_day": self.as_of_day,
            "edges": self.edges.as_dict(),
            "tier_bounds": self.tier_bounds,
            "bgnbd": self.bgnbd.as_dict() if self.bgnbd else None,
            "gamma_gamma": self.gamma_gamma.as_dict() if self.gamma_gamma else None,
            "fitted_at": self.fitted_at.isoformat(),
            "customers": self.customers,
            "purchasers": self.purchasers,
            "diagnostics": self.diagnostics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelState:
        return cls(
            as_of_day=int(data["as_of_day"]),
            edges=QuintileEdges.from_dict(data["edges"]),
            tier_bounds=[float(b) for b in data["tier_bounds"]],
            bgnbd=BgNbdParams(**data["bgnbd"]) if data.get("bgnbd") else None,
            gamma_gamma=GammaGammaParams(**data["gamma_gamma"]) if data.get("gamma_gamma") else None,
            fitted_at=datetime.fromisoformat(data["fitted_at"]),
            customers=int(data.get("customers", 0)),
            purchasers=int(data.get("purchasers", 0)),
            diagnostics=dict(data.get("diagnostics", {})),
        )


@dataclass
class ClvInputs:
    """BG/NBD / Gamma-Gamma summary per customer, in model time units."""

    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    zbar: NDArray[np.float64]


def clv_inputs(features: CustomerFeatures, as_of_day: int, time_unit_days: float) -> ClvInputs:
    """``(x, t_x, T, zbar)`` from purchase features; customers without purchases get zeros."""
    has = features.has_purchases
    first = np.where(has, features.first_day, as_of_day)
    last = np.where(has, features.last_day, as_of_day)
    x = np.where(has, features.purchase_days - 1, 0).astype(np.float64)
    t_x = (last - first) / time_unit_days
    T = (as_of_day - first) / time_unit_days
    with np.errstate(divide="ignore", invalid="ignore"):
        zbar = np.where(x > 0, features.repeat_value / np.maximum(x, 1.0), 0.0)
    return ClvInputs(x=x, t_x=t_x.astype(np.float64), T=T.astype(np.float64), zbar=zbar)


@dataclass
class Scores:
    """Scores per customer (arrays aligned with the features they came from). CLV arrays are NaN without
    a model or without purchases."""

    rfm: RfmResult
    revenue: NDArray[np.float64]
    clv: NDArray[np.float64]
    p_alive: NDArray[np.float64]
    expected_purchases: NDArray[np.float64]
    expected_spend: NDArray[np.float64]
    tier: NDArray[np.int8]


def fit_model(
    features: CustomerFeatures, settings: SegmentsSettings, as_of_day: int, *, seed: int = 0
) -> tuple[ModelState, Scores]:
    """Fit quintiles, CLV models (on a random sample of purchasers if there are many) and tier boundaries,
    then score every customer with the new state."""
    has = features.has_purchases
    purchasers = int(has.sum())
    edges = fit_edges(features, as_of_day, settings.rfm.monetary)
    state = ModelState(as_of_day=as_of_day, edges=edges, tier_bounds=[], customers=features.n,
                       purchasers=purchasers)
    clv_cfg = settings.clv
    if clv_cfg.enabled and purchasers >= clv_cfg.min_customers:
        inputs = clv_inputs(features, as_of_day, clv_cfg.time_unit_days)
        index = np.flatnonzero(has)
        if index.size > clv_cfg.fit_sample_size:
            index = np.sort(np.random.default_rng(seed).choice(index, clv_cfg.fit_sample_size, replace=False))
        try:
            started = time.perf_counter()
            bg = fit_bgnbd(inputs.x[index], inputs.t_x[index], inputs.T[index])
            state.diagnostics["bgnbd_fit_seconds"] = round(time.perf_counter() - started, 3)
            state.bgnbd = bg.params
            state.diagnostics["bgnbd"] = {"log_likelihood": bg.log_likelihood, "n": bg.n,
                                          "converged": bg.converged}
            repeat = index[(inputs.x[index] > 0) & (inputs.zbar[index] > 0)]
            if repeat.size >= clv_cfg.min_customers:
                started = time.perf_counter()
                gg = fit_gamma_gamma(inputs.x[repeat], inputs.zbar[repeat])
                state.diagnostics["gamma_gamma_fit_seconds"] = round(time.perf_counter() - started, 3)
                if gg.params.q > 1.0:
                    state.gamma_gamma = gg.params
                state.diagnostics["gamma_gamma"] = {"log_likelihood": gg.log_likelihood, "n": gg.n,
                                                    "converged": gg.converged}
            else:
                state.diagnostics["gamma_gamma"] = {"skipped": f"only {repeat.size} repeat buyers"}
        except (ValueError, FloatingPointError) as exc:  # a degenerate base must not stop RFM and tiers
            logger.warning("CLV fit failed, CLV traits stay empty: %s", exc)
            state.diagnostics["clv_error"] = str(exc)
    elif clv_cfg.enabled:
        state.diagnostics["clv_skipped"] = f"{purchasers} purchasers < min_customers {clv_cfg.min_customers}"
    scores = score(features, state, settings, as_of_day, assign=False)
    metric = scores.clv if settings.tiers.metric == "clv" else scores.revenue
    state.tier_bounds = fit_tier_bounds(settings.tiers, np.nan_to_num(metric, nan=0.0), has)
    scores.tier = assign_tiers(state.tier_bounds, metric)
    return state, scores


def score(
    features: CustomerFeatures,
    state: ModelState,
    settings: SegmentsSettings,
    as_of_day: int,
    *,
    assign: bool = True,
) -> Scores:
    """Score customers against a fitted state (vectorised)."""
    segment_map = SegmentMap(settings.rfm.segment_map)
    rfm = score_rfm(features, as_of_day, state.edges, segment_map,
                    monetary=settings.rfm.monetary, fm_combine=settings.rfm.fm_combine)
    n = features.n
    nan = np.full(n, np.nan)
    clv, p_alive, exp_purchases, exp_spend = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    has = features.has_purchases
    cfg = settings.clv
    if state.bgnbd is not None and np.any(has):
        inputs = clv_inputs(features, as_of_day, cfg.time_unit_days)
        idx = np.flatnonzero(has)
        x, t_x, T = inputs.x[idx], inputs.t_x[idx], inputs.T[idx]
        p_alive[idx] = probability_alive(state.bgnbd, x, t_x, T)
        horizon = cfg.horizon_months * DAYS_PER_MONTH / cfg.time_unit_days
        exp_purchases[idx] = expected_purchases(state.bgnbd, horizon, x, t_x, T)
        if state.gamma_gamma is not None:
            exp_spend[idx] = conditional_expected_spend(state.gamma_gamma, x, inputs.zbar[idx])
            clv[idx] = customer_lifetime_value(
                state.bgnbd, state.gamma_gamma, x, t_x, T, inputs.zbar[idx],
                horizon_months=cfg.horizon_months, monthly_discount_rate=cfg.monthly_discount_rate,
                time_unit_days=cfg.time_unit_days, margin=cfg.margin,
            )
    revenue = features.net_value.astype(np.float64)
    if assign:
        metric = clv if settings.tiers.metric == "clv" else revenue
        tier = assign_tiers(state.tier_bounds, metric)
    else:
        tier = np.zeros(n, dtype=np.int8)
    return Scores(rfm=rfm, revenue=revenue, clv=clv, p_alive=p_alive, expected_purchases=exp_purchases,
                  expected_spend=exp_spend, tier=tier)


