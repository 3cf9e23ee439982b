"""Customer lifetime value: BG/NBD (purchases, P(alive)) and Gamma-Gamma (spend), fitted with numpy/scipy."""

from __future__ import annotations

from .bgnbd import BgNbdFit, BgNbdParams, expected_purchases, fit_bgnbd, probability_alive
from .gammagamma import GammaGammaFit, GammaGammaParams, conditional_expected_spend, fit_gamma_gamma
from .value import DAYS_PER_MONTH, customer_lifetime_value

__all__ = [
    "DAYS_PER_MONTH",
    "BgNbdFit",
    "BgNbdParams",
    "GammaGammaFit",
    "GammaGammaParams",
    "conditional_expected_spend",
    "customer_lifetime_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "probability_alive",
]
