"""The BG/NBD model of repeat buying (Fader, Hardie & Lee 2005).

Reference: P. S. Fader, B. G. S. Hardie, K. L. Lee, "'Counting Your Customers' the Easy Way: An Alternative to
the Pareto/NBD Model", *Marketing Science* 24(2), 275-284 (2005). Equation numbers below refer to that paper.

Each customer is summarised by ``(x, t_x, T)``: ``x`` repeat purchases, the last at ``t_x`` and the customer
observed for ``T`` time units since the first purchase. Purchases while alive are Poisson(``lambda``) with
``lambda ~ Gamma(r, alpha)``; after every purchase the customer drops out with probability ``p ~ Beta(a, b)``.

Everything is vectorised over customers with numpy; the fit maximises the summed log-likelihood (eq. 6) over
the log-parameters with :func:`scipy.optimize.minimize`, on the unique ``(x, t_x, T)`` rows with counts as
weights (integer day data repeats a lot, which makes fits on millions of customers cheap).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from ._util import compress_rows, hyp2f1_safe

__all__ = [
    "BgNbdFit",
    "BgNbdParams",
    "expected_purchases",
    "fit_bgnbd",
    "log_likelihood",
    "probability_alive",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD parameters: purchase rate ~ Gamma(``r``, ``alpha``), dropout probability ~ Beta(``a``, ``b``)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class BgNbdFit:
    """Result of :func:`fit_bgnbd`.

    :param log_likelihood: the maximised (summed, weighted) log-likelihood.
    :param n: number of customers the fit used.
    :param converged: whether the optimiser reported success.
    """

    params: BgNbdParams
    log_likelihood: float
    n: int
    converged: bool
    message: str = ""


def _arrays(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    xa = np.asarray(x, dtype=np.float64)
    ta = np.asarray(t_x, dtype=np.float64)
    Ta = np.asarray(T, dtype=np.float64)
    if np.any(xa < 0) or np.any(ta < 0) or np.any(ta > Ta + 1e-9):
        raise ValueError("BG/NBD needs x >= 0 and 0 <= t_x <= T for every customer")
    return xa, ta, Ta


def log_likelihood(
    params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """Per-customer log-likelihood ``ln L(r, alpha, a, b | x, t_x, T)`` (eq. 6), vectorised.

    ``L = B(a, b+x)/B(a, b) * Gamma(r+x) alpha^r / (Gamma(r) (alpha+T)^(r+x))
    + [x > 0] B(a+1, b+x-1)/B(a, b) * Gamma(r+x) alpha^r / (Gamma(r) (alpha+t_x)^(r+x))``, evaluated in logs
    (``logaddexp``) so that large ``x`` or ``T`` do not overflow.
    """
    xa, ta, Ta = _arrays(x, t_x, T)
    return _ll(np.log([params.r, params.alpha, params.a, params.b]), xa, ta, Ta)


def _ll(
    log_params: NDArray[np.float64], x: NDArray[np.float64], t_x: NDArray[np.float64], T: NDArray[np.float64]
) -> NDArray[np.float64]:
    r, alpha, a, b = np.exp(log_params)
    beta_ab = special.betaln(a, b)
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    alive = special.betaln(a, b + x) - beta_ab - (r + x) * np.log(alpha + T)
    repeat = x > 0
    # The dropout term exists only for x > 0; b + x - 1 > 0 there. Use a harmless placeholder elsewhere.
    xm = np.where(repeat, x, 1.0)
    dropped = special.betaln(a + 1.0, b + xm - 1.0) - beta_ab - (r + xm) * np.log(alpha + t_x)
    dropped = np.where(repeat, dropped, -np.inf)
    out: NDArray[np.float64] = common + np.logaddexp(alive, dropped)
    return out


def fit_bgnbd(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    *,
    initial: BgNbdParams | None = None,
    max_iter: int = 2000,
) -> BgNbdFit:
    """Fit the BG/NBD model by maximum likelihood.

    The optimiser works on ``log(r, alpha, a, b)`` (so all four stay positive without bounds) with
    Nelder-Mead followed by an L-BFGS-B polish, on the unique ``(x, t_x, T)`` rows weighted by their counts.

    :param x: repeat purchases per customer.
    :param t_x: time of the last purchase since the first one (same unit as ``T``).
    :param T: time observed since the first purchase.
    :param initial: starting point (default ``r = alpha = a = b = 1`` scaled to the data's time unit).
    :param max_iter: optimiser iteration cap.
    :raises ValueError: on inconsistent input or fewer than 2 customers.
    """
    xa, ta, Ta = _arrays(x, t_x, T)
    if xa.size < 2:
        raise ValueError("BG/NBD needs at least 2 customers to fit")
    (xu, tu, Tu), weights = compress_rows(xa, ta, Ta)
    n = int(xa.size)
    if initial is None:
        # alpha is in time units: start at the mean observation length so the fit is unit-independent.
        start = np.log([1.0, max(float(np.mean(Ta)), 1e-3), 1.0, 1.0])
    else:
        start = np.log([initial.r, initial.alpha, initial.a, initial.b])

    def objective(theta: NDArray[np.float64]) -> float:
        if np.any(np.abs(theta) > 30):  # keep exp() finite; the optimum is never this far out
            return float("inf")
        with np.errstate(all="ignore"):
            value = -float(np.dot(weights, _ll(theta, xu, tu, Tu))) / n
        return value if np.isfinite(value) else float("inf")

    first = optimize.minimize(
        objective, start, method="Nelder-Mead",
        options={"maxiter": max_iter, "xatol": 1e-8, "fatol": 1e-12},
    )
    polish = optimize.minimize(objective, first.x, method="L-BFGS-B", options={"maxiter": max_iter})
    best = polish if polish.fun <= first.fun else first
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    converged = bool(first.success or polish.success) and np.isfinite(best.fun)
    if not converged:
        logger.warning("BG/NBD fit did not converge: %s", best.message)
    return BgNbdFit(
        params=BgNbdParams(r=r, alpha=alpha, a=a, b=b),
        log_likelihood=-float(best.fun) * n,
        n=n,
        converged=converged,
        message=str(best.message),
    )


def probability_alive(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> NDArray[np.float64]:
    """P(alive | x, t_x, T) (eq. 11): ``1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``."""
    xa, ta, Ta = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    xm = np.where(xa > 0, xa, 1.0)
    log_odds = np.log(a) - np.log(b + xm - 1.0) + (r + xa) * (np.log(alpha + Ta) - np.log(alpha + ta))
    out: NDArray[np.float64] = np.where(xa > 0, special.expit(-log_odds), 1.0)
    return out


def expected_purchases(
    params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> NDArray[np.float64]:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` time units (eq. 10), vectorised.

    ``t`` broadcasts against the customer arrays (pass ``t[:, None]`` for a grid of horizons).
    """
    xa, ta, Ta = _arrays(x, t_x, T)
    ts = np.asarray(t, dtype=np.float64)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < 1e-9:  # a == 1 is a removable singularity; the expression is continuous there
        return expected_purchases(BgNbdParams(r, alpha, a + 1e-6, b), ts, xa, ta, Ta)
    z = ts / (alpha + Ta + ts)
    # Eq. 10 has ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; z). For heavy buyers the power
    # underflows while 2F1 overflows. Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z)
    # with 1 - z = (alpha+T)/(alpha+T+t) turns the product into (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z),
    # in which x only grows C -- numerically benign for any x.
    head = (a + b + xa - 1.0) / (a - 1.0)
    term = np.power(1.0 - z, a - 1.0) * hyp2f1_safe(a + b - 1.0 - r, a - 1.0, a + b + xa - 1.0, z)
    xm = np.where(xa > 0, xa, 1.0)
    log_odds = np.log(a) - np.log(b + xm - 1.0) + (r + xa) * (np.log(alpha + Ta) - np.log(alpha + ta))
    with np.errstate(over="ignore"):  # overflow -> inf -> expected purchases 0, which is the limit
        denom = 1.0 + np.where(xa > 0, np.exp(log_odds), 0.0)
    out: NDArray[np.float64] = head * (1.0 - term) / denom
    return out
