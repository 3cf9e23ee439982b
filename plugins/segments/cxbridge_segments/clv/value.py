"""Customer lifetime value from a fitted BG/NBD model and a fitted Gamma-Gamma model.

``CLV = margin * sum_{m=1..H} (E[Y(m)] - E[Y(m-1)]) * E[M] / (1 + d)^m``: the expected purchases in each future
month (BG/NBD, conditional on the customer's history) times her expected spend per purchase (Gamma-Gamma),
discounted monthly at rate ``d`` over a horizon of ``H`` months (the discrete-time form used by Fader, Hardie &
Lee 2005, "RFM and CLV", with monthly instead of continuous discounting).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .bgnbd import BgNbdParams, expected_purchases
from .gammagamma import GammaGammaParams, conditional_expected_spend

__all__ = ["DAYS_PER_MONTH", "customer_lifetime_value"]

DAYS_PER_MONTH = 365.25 / 12.0


def customer_lifetime_value(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    zbar: ArrayLike,
    *,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
    time_unit_days: float = 7.0,
    margin: float = 1.0,
    chunk_size: int = 200_000,
) -> NDArray[np.float64]:
    """Discounted expected value of each customer's purchases over the next ``horizon_months``.

    :param x: repeat purchases (BG/NBD frequency).
    :param t_x: time of the last purchase since the first, in model time units.
    :param T: observation length since the first purchase, in model time units.
    :param zbar: average value of the repeat purchases (reporting currency); ignored where ``x == 0``.
    :param horizon_months: months to look ahead.
    :param monthly_discount_rate: discount rate per month (0.01 = 1 %/month).
    :param time_unit_days: length of one model time unit in days (7 = the model was fitted in weeks).
    :param margin: share of revenue that is profit (1.0 = value in revenue terms).
    :param chunk_size: customers per vectorised chunk (bounds memory to ``chunk_size * horizon`` floats).
    """
    if horizon_months < 1:
        raise ValueError("horizon_months must be >= 1")
    if monthly_discount_rate < 0:
        raise ValueError("monthly_discount_rate must be >= 0")
    xa = np.asarray(x, dtype=np.float64)
    ta = np.asarray(t_x, dtype=np.float64)
    Ta = np.asarray(T, dtype=np.float64)
    spend = conditional_expected_spend(gamma_gamma, xa, zbar)
    months = np.arange(1, horizon_months + 1, dtype=np.float64)
    t_grid = months * DAYS_PER_MONTH / time_unit_days
    discount = (1.0 + monthly_discount_rate) ** -months
    out = np.empty(xa.shape, dtype=np.float64)
    for lo in range(0, xa.size, chunk_size):
        hi = min(lo + chunk_size, xa.size)
        cum = expected_purchases(bgnbd, t_grid[:, None], xa[lo:hi], ta[lo:hi], Ta[lo:hi])
        per_month = np.diff(cum, axis=0, prepend=0.0)
        out[lo:hi] = np.sum(discount[:, None] * per_month, axis=0)
    result: NDArray[np.float64] = margin * out * spend
    return result
