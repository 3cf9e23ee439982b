"""Conversion of interaction amounts into the reporting currency with fixed rates."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["FxTable"]

logger = logging.getLogger(__name__)


class FxTable:
    """Fixed exchange rates into one reporting currency.

    ``rates[code]`` is the value of one unit of ``code`` in the reporting currency (``{"USD": 0.92}`` with
    reporting currency EUR means 1 USD = 0.92 EUR). The reporting currency itself always has rate 1.

    :param reporting_currency: ISO 4217 code results are expressed in.
    :param rates: rates of the other currencies.
    :param default_currency: assumed for amounts without a currency (default: the reporting currency).
    """

    def __init__(
        self,
        reporting_currency: str,
        rates: Mapping[str, float] | None = None,
        default_currency: str | None = None,
    ) -> None:
        self.reporting_currency = reporting_currency.upper()
        self.rates: dict[str, float] = {k.upper(): float(v) for k, v in (rates or {}).items()}
        self.rates[self.reporting_currency] = 1.0
        self.default_currency = (default_currency or self.reporting_currency).upper()
        self._warned: set[str] = set()

    def rate(self, currency: str | None) -> float | None:
        """Rate of ``currency`` (``None`` means the default currency); ``None`` if unknown."""
        return self.rates.get((currency or self.default_currency).upper())

    def convert(
        self, amounts: NDArray[np.float64], currencies: Sequence[str | None]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Convert amounts; returns ``(converted, unknown)``.

        Rows in a currency without a rate are ``unknown``: their converted amount is 0 (they are left out of
        monetary values, never guessed) and a warning is logged once per currency code.
        """
        codes = np.asarray([(c or self.default_currency).upper() for c in currencies], dtype=object)
        if codes.size == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        uniq, inverse = np.unique(codes, return_inverse=True)
        rates = np.array([self.rates.get(str(c), np.nan) for c in uniq])
        row_rates = rates[inverse]
        unknown = np.isnan(row_rates)
        for code in uniq[np.isnan(rates)]:
            if code not in self._warned:
                self._warned.add(str(code))
                logger.warning(
                    "no exchange rate for currency %s into %s: its amounts are left out of monetary values "
                    "(add plugins.segments.fx_rates.%s)", code, self.reporting_currency, code,
                )
        converted = np.where(unknown, 0.0, np.asarray(amounts, dtype=np.float64) * np.nan_to_num(row_rates))
        return converted, unknown
