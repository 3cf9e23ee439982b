"""BG/NBD and Gamma-Gamma against the published CDNOW results.

The CDNOW summaries ship inside the ``lifetimes`` wheel (used here only as a data source; its modelling code is
never imported -- the files are located with ``importlib.util.find_spec`` without executing the package).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from cxbridge_segments.clv import (
    BgNbdParams,
    GammaGammaParams,
    conditional_expected_spend,
    customer_lifetime_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    probability_alive,
)
from cxbridge_segments.clv.bgnbd import log_likelihood


def _dataset(name: str) -> Path:
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the 'lifetimes' wheel (CDNOW data source, test extra of cxbridge-segments) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / name
    if not path.exists():
        pytest.skip(f"lifetimes wheel has no datasets/{name}")
    return path


def _columns(name: str, *cols: str) -> list[np.ndarray]:
    with _dataset(name).open() as fh:
        rows = list(csv.DictReader(fh))
    return [np.array([float(r[c]) for r in rows]) for c in cols]


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, T = _columns("cdnow_customers_summary.csv", "frequency", "recency", "T")
    assert x.size == 2357
    return x, t_x, T


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow) -> None:
    # Fader, Hardie & Lee (2005), Marketing Science 24(2): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
    # LL = -9582.4 on the 2,357-customer CDNOW sample (weeks).
    fit = fit_bgnbd(*cdnow)
    assert fit.converged
    p = fit.params
    assert round(p.r, 3) == 0.243
    assert round(p.alpha, 3) == 4.414
    assert round(p.a, 3) == 0.793
    assert round(p.b, 3) == 2.426
    assert round(fit.log_likelihood, 1) == -9582.4


def test_bgnbd_log_likelihood_at_published_parameters(cdnow) -> None:
    ll = log_likelihood(BgNbdParams(0.243, 4.414, 0.793, 2.426), *cdnow).sum()
    assert ll == pytest.approx(-9582.4, abs=0.1)


def test_bgnbd_is_time_unit_invariant(cdnow) -> None:
    x, t_x, T = cdnow
    weeks = fit_bgnbd(x, t_x, T).params
    days = fit_bgnbd(x, t_x * 7, T * 7).params
    assert days.r == pytest.approx(weeks.r, rel=1e-3)
    assert days.a == pytest.approx(weeks.a, rel=1e-3)
    assert days.b == pytest.approx(weeks.b, rel=1e-3)
    assert days.alpha == pytest.approx(weeks.alpha * 7, rel=1e-3)


def test_bgnbd_predictions_behave(cdnow) -> None:
    x, t_x, T = cdnow
    params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    alive = probability_alive(params, x, t_x, T)
    assert np.all((alive > 0) & (alive <= 1))
    assert np.all(alive[x == 0] == 1.0)  # no repeat purchase: no opportunity to have dropped out yet
    # Same x and T, a more recent last purchase -> more likely alive and more expected purchases.
    assert probability_alive(params, 5, 35, 38.86) > probability_alive(params, 5, 10, 38.86)
    grid = expected_purchases(params, np.array([13.0, 26.0, 39.0, 52.0])[:, None], x, t_x, T)
    assert np.all(np.diff(grid, axis=0) > 0)  # cumulative in t
    # Aggregate check: the expected repeat purchases of the whole panel in the 39-week holdout is in the
    # range the paper's Figure 3 shows (~1,800-1,900 cumulative repeat transactions by week 78).
    assert 1500 < grid[2].sum() < 2300


def test_gamma_gamma_reproduces_fader_hardie_note() -> None:
    x, zbar = _columns("cdnow_customers_summary_with_transactions.csv", "x", "zbar")
    repeat = x > 0
    assert repeat.sum() == 946
    fit = fit_gamma_gamma(x[repeat], zbar[repeat])
    p = fit.params
    # Fader & Hardie, "The Gamma-Gamma Model of Monetary Value" (2013 note): p = 6.25, q = 3.74,
    # gamma = 15.44. p and q are checked to the published precision. gamma is checked to +-0.01: the
    # likelihood is very flat along the p-gamma ridge and our optimum is 15.4477 (the lifetimes docs print
    # v = 15.45 for the same data), which does not round to the note's 15.44. We could not re-read the note
    # offline to tell whether its 15.44 is truncated or a Solver stopping point, so we assert the band.
    assert round(p.p, 2) == 6.25
    assert round(p.q, 2) == 3.74
    assert abs(p.gamma - 15.44) < 0.01
    # Conditional expected average spend for the first customers (x=2, zbar=22.35 -> 24.66; etc.), as
    # printed in the lifetimes documentation for this data set.
    spend = conditional_expected_spend(p, x[:3], zbar[:3])
    assert spend == pytest.approx([24.6586, 18.9115, 35.1710], abs=2e-3)
    # x = 0 customers get the population mean p*gamma/(q-1).
    assert conditional_expected_spend(p, [0], [0])[0] == pytest.approx(p.population_mean)


def test_clv_properties(cdnow) -> None:
    x, t_x, T = cdnow
    bg = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    zbar = np.where(x > 0, 30.0, 0.0)
    base = customer_lifetime_value(bg, gg, x, t_x, T, zbar, horizon_months=12, monthly_discount_rate=0.01)
    longer = customer_lifetime_value(bg, gg, x, t_x, T, zbar, horizon_months=24, monthly_discount_rate=0.01)
    undiscounted = customer_lifetime_value(bg, gg, x, t_x, T, zbar, horizon_months=12, monthly_discount_rate=0)
    half = customer_lifetime_value(bg, gg, x, t_x, T, zbar, horizon_months=12, margin=0.5)
    assert np.all(base > 0) and np.all(longer > base) and np.all(undiscounted > base)
    assert half == pytest.approx(base / 2)
    # Without discounting, CLV = E[Y(12 months)] * E[M].
    t12 = 12 * (365.25 / 12) / 7
    expected = expected_purchases(bg, t12, x, t_x, T) * conditional_expected_spend(gg, x, zbar)
    assert undiscounted == pytest.approx(expected, rel=1e-9)


def test_fits_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_bgnbd([1, 2], [5, 3], [4, 10])  # t_x > T
    with pytest.raises(ValueError):
        fit_gamma_gamma([1, 2], [10.0, -1.0])
    with pytest.raises(ValueError):
        conditional_expected_spend(GammaGammaParams(1.0, 0.9, 1.0), [1], [1.0])


def test_expected_purchases_survive_heavy_buyers() -> None:
    # Very large x stresses 2F1 (Fader & Hardie's "#NUM!" note); results must stay finite and sensible.
    params = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    out = expected_purchases(params, 52.0, [500.0, 2000.0], [77.0, 77.5], [78.0, 78.0])
    assert np.all(np.isfinite(out)) and np.all(out > 0)


@pytest.mark.parametrize(
    "params",
    [
        BgNbdParams(0.385, 1.152, 852.5, 2463.8),  # near-homogeneous dropout: the closed form breaks down
        BgNbdParams(0.5, 0.1, 50.0, 5.0),
        BgNbdParams(2.0, 10.0, 1.5, 0.3),
    ],
)
def test_expected_purchases_closed_form_and_quadrature_agree(params) -> None:
    # Two independent derivations of E[Y(t)]: Euler-transformed 2F1 (with automatic fallback) and
    # Gauss-Jacobi quadrature over the dropout probability.
    from cxbridge_segments.clv.bgnbd import expected_purchases_quadrature

    rng = np.random.default_rng(3)
    n = 3000
    T = rng.uniform(0.05, 100, n)
    t_x = T * rng.random(n)
    x = rng.integers(0, 60, n).astype(float)
    t_x[x == 0] = 0
    t = rng.uniform(1, 104, n)
    closed = expected_purchases(params, t, x, t_x, T)
    quad = expected_purchases_quadrature(params, t, x, t_x, T)
    assert np.all(np.isfinite(closed))
    assert closed == pytest.approx(quad, rel=1e-6, abs=1e-12)
