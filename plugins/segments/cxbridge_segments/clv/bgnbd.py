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
    "expected_purchases_quadrature",
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
    log_params: NDArray[np.float64],
    x: NDArray[np.float64],
    t_x: NDArray[np.float64],
    T: NDArray[np.float64],
    groups: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None,
) -> NDArray[np.float64]:
    # Everything that depends on x alone (gammaln, betaln) is evaluated once per distinct x -- a few hundred
    # values even for millions of customers -- and gathered; per customer only two logs remain.
    r, alpha, a, b = np.exp(log_params)
    xu, inverse = groups if groups is not None else np.unique(x, return_inverse=True)
    beta_ab = special.betaln(a, b)
    common = special.gammaln(r + xu) - special.gammaln(r) + r * np.log(alpha)
    alive = special.betaln(a, b + xu) - beta_ab
    repeat = xu > 0
    # The dropout term exists only for x > 0 (b + x - 1 > 0 there); a harmless placeholder elsewhere.
    xm = np.where(repeat, xu, 1.0)
    dropped = np.where(repeat, special.betaln(a + 1.0, b + xm - 1.0) - beta_ab, -np.inf)
    rx = (r + xu)[inverse]
    out: NDArray[np.float64] = common[inverse] + np.logaddexp(
        alive[inverse] - rx * np.log(alpha + T), dropped[inverse] - rx * np.log(alpha + t_x)
    )
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
    groups = np.unique(xu, return_inverse=True)
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
            value = -float(np.sum(weights * _ll(theta, xu, tu, Tu, groups))) / n
        return value if np.isfinite(value) else float("inf")

    # L-BFGS-B (bounded log-parameters keep exp() finite) is fast and precise on well-posed data; Nelder-Mead
    # takes over when it fails, e.g. on ridges where a parameter runs off to infinity.
    bounds = [(-25.0, 25.0)] * len(start)
    first = optimize.minimize(objective, start, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-7})
    polish = first
    if not first.success or not np.isfinite(first.fun):
        polish = optimize.minimize(objective, first.x if np.isfinite(first.fun) else start, method="Nelder-Mead",
                                   options={"maxiter": max_iter, "xatol": 1e-8, "fatol": 1e-12})
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
    with np.errstate(all="ignore"):  # inf * 0 -> nan is caught below and recomputed by quadrature
        term = np.power(1.0 - z, a - 1.0) * hyp2f1_safe(a + b - 1.0 - r, a - 1.0, a + b + xa - 1.0, z)
    xm = np.where(xa > 0, xa, 1.0)
    log_odds = np.log(a) - np.log(b + xm - 1.0) + (r + xa) * (np.log(alpha + Ta) - np.log(alpha + ta))
    with np.errstate(over="ignore"):  # overflow -> inf -> expected purchases 0, which is the limit
        denom = 1.0 + np.where(xa > 0, np.exp(log_odds), 0.0)
    with np.errstate(all="ignore"):
        out: NDArray[np.float64] = np.asarray(head * (1.0 - term) / denom, dtype=np.float64)
    # With large a and b (a nearly homogeneous dropout probability) the closed form can lose all precision.
    # Where it is not finite or leaves the bounds 0 <= E <= P(alive) E[lambda | alive] t, use quadrature.
    bound = (r + xa) / (alpha + Ta) * ts / denom
    bad = ~np.isfinite(out) | (out < -1e-12) | (out > bound * (1 + 1e-9) + 1e-12)
    if np.any(bad):
        out = np.array(np.broadcast_to(out, bad.shape), dtype=np.float64)
        shape = bad.shape
        parts = [np.broadcast_to(v, shape)[bad] for v in (ts, xa, ta, Ta)]
        out[bad] = expected_purchases_quadrature(params, *parts)
        logger.debug("BG/NBD expected purchases: %d values by quadrature", int(bad.sum()))
    return out


def expected_purchases_quadrature(
    params: BgNbdParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, nodes: int = 48
) -> NDArray[np.float64]:
    """E[Y(t) | x, t_x, T] by Gauss-Jacobi quadrature instead of the hypergeometric closed form.

    Given alive, ``lambda ~ Gamma(r+x, alpha+T)`` and ``p ~ Beta(a, b+x)`` independently, and a customer with
    rate ``lambda`` and dropout ``p`` makes ``(1 - exp(-lambda p t)) / p`` expected purchases in ``t``. Taking
    the expectation over ``lambda`` first gives
    ``E[Y(t)] = P(alive) * E_p[(1 - (1 + p t/(alpha+T))^-(r+x)) / p]``, a smooth integrand against a Beta
    weight. Gauss-Jacobi rules integrate it to ~1e-12 for any size of ``a`` and ``b`` -- exactly where the closed
    form breaks down -- but lose accuracy (up to ~1 % with 48 nodes) when ``t/(alpha+T)`` is huge and ``a < 1``,
    where the closed form is fine; hence :func:`expected_purchases` uses this only as its fallback.
    Arrays must have one shape (no broadcasting); customers are grouped by ``x`` (one rule per Beta weight).
    """
    ts = np.asarray(t, dtype=np.float64).ravel()
    xa = np.asarray(x, dtype=np.float64).ravel()
    ta = np.asarray(t_x, dtype=np.float64).ravel()
    Ta = np.asarray(T, dtype=np.float64).ravel()
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    out = np.empty(xa.shape, dtype=np.float64)
    for value in np.unique(xa):
        rows = np.flatnonzero(xa == value)
        p, w = beta_quadrature(nodes, a, b + value)
        k = ts[rows, None] / (alpha + Ta[rows, None])
        given_alive = np.sum(-np.expm1(-(r + value) * np.log1p(p * k)) / p * w, axis=1)
        out[rows] = given_alive
    alive = probability_alive(params, xa, ta, Ta)
    result: NDArray[np.float64] = out * alive
    return result.reshape(np.asarray(x).shape) if np.ndim(x) else result


def beta_quadrature(nodes: int, a: float, b: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gauss-Jacobi nodes on [0, 1] and normalised weights for the Beta(``a``, ``b``) distribution.

    Golub-Welsch on the monic Jacobi recurrence for the weight ``(1-u)^(b-1) (1+u)^(a-1)`` on [-1, 1], with
    weights from the eigenvectors (they sum to 1 by construction). Unlike ``scipy.special.roots_jacobi``
    this never forms the normalising constant ``2^(al+be+1) B(al+1, be+1)``, which overflows for large
    parameters.
    """
    from scipy.linalg import eigh_tridiagonal

    al, be = b - 1.0, a - 1.0
    k = np.arange(nodes, dtype=np.float64)
    s = 2.0 * k + al + be
    diag = np.empty(nodes)
    diag[0] = (be - al) / (al + be + 2.0)
    diag[1:] = (be * be - al * al) / (s[1:] * (s[1:] + 2.0))
    kk = k[1:]
    sk = s[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        off_sq = 4.0 * kk * (kk + al) * (kk + be) * (kk + al + be) / (sk * sk * (sk + 1.0) * (sk - 1.0))
    # k = 1: the factor (k + al + be) / (s - 1) is 1 exactly; avoid 0/0 when al + be = -1.
    off_sq[0] = 4.0 * (1.0 + al) * (1.0 + be) / ((2.0 + al + be) ** 2 * (3.0 + al + be))
    u, vectors = eigh_tridiagonal(diag, np.sqrt(off_sq))
    weights = vectors[0, :] ** 2
    return (1.0 + u) / 2.0, weights / weights.sum()
