"""RFM: recency, frequency and monetary value, 1-5 quintile scores and the named RFM segments.

Scores are quintiles of the customers *who have purchased* (customers without purchases get no scores and no
segment; their ``segments.rfm_segment`` trait is ``None``). Boundaries are computed at refit time
(:func:`fit_edges`) and stored, so that a changed customer is re-scored against the same boundaries as
everyone else until the next scheduled refit.

Ties are handled by value, deterministically: a value equal to a boundary falls into the lower-value bin, so
two customers with the same value always get the same score (a heavily tied metric such as "1 purchase" can
leave a score unused rather than splitting equal customers arbitrarily). Recency is scored in reverse: 5 =
most recent.

Segments come from a grid of R score x FM score, ``FM = round_half_up((F + M) / 2)`` by default. There is no
single authoritative grid; the default is the widely reproduced 5x5 R-by-FM convention behind the ten classic
names (Champions ``5[4-5]``, Loyal ``[3-4][4-5]``, Potential Loyalist ``[4-5][2-3]``, New ``51``, Promising
``41``, Need Attention ``33``, About to Sleep ``3[1-2]``, At Risk ``[1-2][3-4]``, Can't Lose Them ``[1-2]5``,
Hibernating ``[1-2][1-2]``; the same names and meanings are listed e.g. in edrone's RFM help page,
help.edrone.me/faq-english/rfm-segmentation, and Putler's RFM guide), with the eleventh segment, Lost, carved
out of the Hibernating corner (R=1, FM=1: least recent, least valuable). The map is configurable
(``plugins.segments.rfm.segment_map``) and validated to cover each of the 25 cells exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .features import CustomerFeatures

__all__ = [
    "DEFAULT_SEGMENT_MAP",
    "QuintileEdges",
    "RfmResult",
    "SegmentMap",
    "fit_edges",
    "rfm_values",
    "score_rfm",
]

#: segment -> R/FM cells as two characters "<R><FM>", each a digit or a class like "[4-5]".
DEFAULT_SEGMENT_MAP: dict[str, list[str]] = {
    "Champions": ["5[4-5]"],
    "Loyal": ["[3-4][4-5]"],
    "Potential Loyalist": ["[4-5][2-3]"],
    "New": ["51"],
    "Promising": ["41"],
    "Need Attention": ["33"],
    "About to Sleep": ["3[1-2]"],
    "At Risk": ["[1-2][3-4]"],
    "Can't Lose Them": ["[1-2]5"],
    "Hibernating": ["12", "2[1-2]"],
    "Lost": ["11"],
}

_CELL = re.compile(r"^(\d|\[\d-\d\])(\d|\[\d-\d\])$")
_QUINTILES = (0.2, 0.4, 0.6, 0.8)


def _expand(part: str) -> list[int]:
    if part.startswith("["):
        lo, hi = int(part[1]), int(part[3])
        return list(range(lo, hi + 1))
    return [int(part)]


class SegmentMap:
    """A complete map from (R score, FM score) in 1..5 x 1..5 to a segment name, as a lookup table.

    :raises ValueError: if a pattern is malformed, a cell is claimed twice or a cell is not covered (the
        message names the segment / cell).
    """

    def __init__(self, mapping: Mapping[str, Sequence[str]]) -> None:
        self.names: list[str] = list(mapping)
        table = np.full((6, 6), -1, dtype=np.int16)
        for index, (name, patterns) in enumerate(mapping.items()):
            for pattern in patterns:
                match = _CELL.match(pattern.replace(" ", ""))
                if not match:
                    raise ValueError(
                        f"segment {name!r}: cell pattern {pattern!r} must be two parts '<R><FM>', each a digit "
                        "1-5 or a range like [4-5]"
                    )
                for r in _expand(match.group(1)):
                    for fm in _expand(match.group(2)):
                        if not (1 <= r <= 5 and 1 <= fm <= 5):
                            raise ValueError(f"segment {name!r}: cell {r}{fm} is outside 1..5")
                        if table[r, fm] >= 0:
                            raise ValueError(
                                f"cell R={r} FM={fm} is claimed by both {self.names[table[r, fm]]!r} and {name!r}"
                            )
                        table[r, fm] = index
        missing = [f"{r}{fm}" for r in range(1, 6) for fm in range(1, 6) if table[r, fm] < 0]
        if missing:
            raise ValueError(f"segment map leaves R/FM cells without a segment: {', '.join(missing)}")
        self.table = table

    def lookup(self, r: NDArray[np.int8], fm: NDArray[np.int8]) -> NDArray[np.int16]:
        """Segment index per customer (-1 where a score is 0, i.e. no purchases)."""
        out: NDArray[np.int16] = self.table[r, fm]
        return np.where((r > 0) & (fm > 0), out, -1).astype(np.int16)


@dataclass(frozen=True)
class QuintileEdges:
    """The four inner quintile boundaries of each metric, fitted on customers with purchases."""

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]

    def as_dict(self) -> dict[str, list[float]]:
        return {"recency": list(self.recency), "frequency": list(self.frequency), "monetary": list(self.monetary)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> QuintileEdges:
        return cls(tuple(data["recency"]), tuple(data["frequency"]), tuple(data["monetary"]))


@dataclass
class RfmResult:
    """RFM values and scores per customer; scores are 0 and ``segment`` is -1 for customers without purchases."""

    recency_days: NDArray[np.int64]
    frequency: NDArray[np.int64]
    monetary: NDArray[np.float64]
    r: NDArray[np.int8]
    f: NDArray[np.int8]
    m: NDArray[np.int8]
    fm: NDArray[np.int8]
    segment: NDArray[np.int16]


def rfm_values(
    features: CustomerFeatures, as_of_day: int, monetary: Literal["total", "average"] = "total"
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Recency in days since the last purchase (-1 if none), purchase count, net monetary value."""
    has = features.has_purchases
    recency = np.where(has, as_of_day - features.last_day, -1).astype(np.int64)
    if monetary == "average":
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(has, features.net_value / np.maximum(features.purchases, 1), 0.0)
    else:
        value = features.net_value.astype(np.float64, copy=True)
    return recency, features.purchases, value


def fit_edges(
    features: CustomerFeatures, as_of_day: int, monetary: Literal["total", "average"] = "total"
) -> QuintileEdges:
    """Quintile boundaries of R, F and M over the customers with purchases (zeros if there are none)."""
    recency, frequency, value = rfm_values(features, as_of_day, monetary)
    has = features.has_purchases
    if not np.any(has):
        zero = (0.0, 0.0, 0.0, 0.0)
        return QuintileEdges(zero, zero, zero)

    def q(arr: NDArray[np.generic]) -> tuple[float, ...]:
        return tuple(float(v) for v in np.quantile(arr[has].astype(np.float64), _QUINTILES))

    return QuintileEdges(q(recency), q(frequency), q(value))


def _score(values: NDArray[np.generic], edges: Sequence[float], *, reverse: bool) -> NDArray[np.int8]:
    below = np.searchsorted(np.asarray(edges, dtype=np.float64), values.astype(np.float64), side="left")
    return (5 - below if reverse else 1 + below).astype(np.int8)


def score_rfm(
    features: CustomerFeatures,
    as_of_day: int,
    edges: QuintileEdges,
    segment_map: SegmentMap,
    *,
    monetary: Literal["total", "average"] = "total",
    fm_combine: Literal["mean", "frequency", "monetary"] = "mean",
) -> RfmResult:
    """Score every customer against fixed quintile boundaries and look up her segment."""
    recency, frequency, value = rfm_values(features, as_of_day, monetary)
    has = features.has_purchases
    r = np.where(has, _score(recency, edges.recency, reverse=True), 0).astype(np.int8)
    f = np.where(has, _score(frequency, edges.frequency, reverse=False), 0).astype(np.int8)
    m = np.where(has, _score(value, edges.monetary, reverse=False), 0).astype(np.int8)
    if fm_combine == "frequency":
        fm = f.copy()
    elif fm_combine == "monetary":
        fm = m.copy()
    else:
        fm = ((f.astype(np.int16) + m.astype(np.int16) + 1) // 2).astype(np.int8)  # round half up
    return RfmResult(recency, frequency, value, r, f, m, fm, segment_map.lookup(r, fm))
