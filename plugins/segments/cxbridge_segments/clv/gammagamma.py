"""The Gamma-Gamma model of average spend per transaction.

References: P. S. Fader, B. G. S. Hardie, K. L. Lee, "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", *Journal of Marketing Research* 42(4), 415-430 (2005), and P. S. Fader, B. G. S. Hardie, "The
Gamma-Gamma Model of Monetary Value" (2013 note, brucehardie.com/notes/025).

A customer's ``x`` transaction values ``z_i`` are Gamma(``p``, ``nu``) around her mean; ``nu ~ Gamma(q, gamma)``
across customers. Only the average ``zbar`` of her ``x`` (repeat) transactions enters the likelihood:

``f(zbar | p, q, gamma, x) = Gamma(px+q) / (Gamma(px) Gamma(q)) * gamma^q zbar^(px-1) x^(px)
/ (gamma + x zbar)^(px+q)``

and the conditional expectation of her mean spend is a weighted average of the population mean
``p gamma / (q - 1)`` and her observed ``zbar``:

``E[M | p, q, gamma, x, zbar] = (q - 1)/(px + q - 1) * p gamma/(q - 1) + px/(px + q - 1) * zbar``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from ._util import compress_rows

__all__ = [
    "GammaGammaFit",
    "GammaGammaParams",
    "conditional_expected_spend",
    "fit_gamma_gamma",
    "log_likelihood",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma parameters ``p``, ``q`` and ``gamma`` (called ``v`` in some software)."""

    p: float
    q: float
    gamma: float

    @property
    def population_mean(self) -> float:
        """Mean spend per transaction across customers, ``p gamma / (q - 1)`` (infinite for ``q <= 1``)."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1.0 else float("inf")

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma}


@dataclass(frozen=True)
class GammaGammaFit:
    """Result of :func:`fit_gamma_gamma`."""

    params: GammaGammaParams
    log_likelihood: float
    n: int
    converged: bool
    message: str = ""


def _arrays(x: ArrayLike, zbar: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    xa = np.asarray(x, dtype=np.float64)
    za = np.asarray(zbar, dtype=np.float64)
    if np.any(xa <= 0) or np.any(za <= 0):
        raise ValueError("Gamma-Gamma needs x > 0 transactions and a positive average value zbar")
    return xa, za


def _ll(
    theta: NDArray[np.float64],
    x: NDArray[np.float64],
    z: NDArray[np.float64],
    groups: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None,
) -> NDArray[np.float64]:
    # gammaln terms depend on x alone: evaluate them per distinct x and gather.
    p, q, g = np.exp(theta)
    xu, inverse = groups if groups is not None else np.unique(x, return_inverse=True)
    pxu = p * xu
    per_x = special.gammaln(pxu + q) - special.gammaln(pxu) - special.gammaln(q) + pxu * np.log(xu)
    px = pxu[inverse]
    out: NDArray[np.float64] = (
        per_x[inverse] + q * np.log(g) + (px - 1.0) * np.log(z) - (px + q) * np.log(g + x * z)
    )
    return out


def log_likelihood(params: GammaGammaParams, x: ArrayLike, zbar: ArrayLike) -> NDArray[np.float64]:
    """Per-customer log-likelihood of the average transaction value ``zbar`` over ``x`` transactions."""
    xa, za = _arrays(x, zbar)
    return _ll(np.log([params.p, params.q, params.gamma]), xa, za)


def fit_gamma_gamma(x: ArrayLike, zbar: ArrayLike, *, max_iter: int = 4000) -> GammaGammaFit:
    """Fit ``p``, ``q``, ``gamma`` by maximum likelihood (log-parameters, Nelder-Mead + L-BFGS-B polish).

    Pass only customers with at least one (repeat) transaction and a positive average value.

    :raises ValueError: on invalid input or fewer than 2 customers.
    """
    xa, za = _arrays(x, zbar)
    if xa.size < 2:
        raise ValueError("Gamma-Gamma needs at least 2 customers to fit")
    (xu, zu), weights = compress_rows(xa, za)
    groups = np.unique(xu, return_inverse=True)
    n = int(xa.size)
    # Method-of-moments-ish start: p ~ 1, q ~ 2, gamma so that the population mean matches the data.
    start = np.log([1.0, 2.0, max(float(np.mean(za)), 1e-6)])

    def objective(theta: NDArray[np.float64]) -> float:
        if np.any(np.abs(theta) > 40):
            return float("inf")
        with np.errstate(all="ignore"):
            value = -float(np.sum(weights * _ll(theta, xu, zu, groups))) / n
        return value if np.isfinite(value) else float("inf")

    # L-BFGS-B (bounded log-parameters keep exp() finite) is fast and precise on well-posed data; Nelder-Mead
    # takes over when it fails, e.g. on ridges where a parameter runs off to infinity.
    bounds = [(-35.0, 35.0)] * len(start)
    first = optimize.minimize(objective, start, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-7})
    polish = first
    if not first.success or not np.isfinite(first.fun):
        polish = optimize.minimize(objective, first.x if np.isfinite(first.fun) else start, method="Nelder-Mead",
                                   options={"maxiter": max_iter, "xatol": 1e-8, "fatol": 1e-12})
    best = polish if polish.fun <= first.fun else first
    p, q, g = (float(v) for v in np.exp(best.x))
    converged = bool(first.success or polish.success) and np.isfinite(best.fun)
    if q <= 1.0:
        logger.warning("Gamma-Gamma fit has q = %.3f <= 1: the population mean spend is not finite", q)
    if not converged:
        logger.warning("Gamma-Gamma fit did not converge: %s", best.message)
    return GammaGammaFit(
        params=GammaGammaParams(p=p, q=q, gamma=g),
        log_likelihood=-float(best.fun) * n,
        n=n,
        converged=converged,
        message=str(best.message),
    )


def conditional_expected_spend(params: GammaGammaParams, x: ArrayLike, zbar: ArrayLike) -> NDArray[np.float64]:
    """E[M | x, zbar]: expected average spend per future transaction, vectorised.

    Customers with ``x == 0`` (or a non-positive / missing ``zbar``) get the population mean ``p gamma/(q-1)``.

    :raises ValueError: if ``q <= 1`` (the model then has no finite mean).
    """
    if params.q <= 1.0:
        raise ValueError(f"Gamma-Gamma q = {params.q:.4g} <= 1: expected spend is not finite")
    xa = np.asarray(x, dtype=np.float64)
    za = np.nan_to_num(np.asarray(zbar, dtype=np.float64), nan=0.0)
    valid = (xa > 0) & (za > 0)
    xv = np.where(valid, xa, 0.0)
    zv = np.where(valid, za, 0.0)
    p, q, g = params.p, params.q, params.gamma
    px = p * xv
    out: NDArray[np.float64] = (p * g + px * zv) / (px + q - 1.0)
    return out
