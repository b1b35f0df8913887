"""A batch file's numeric column held whole, for ``watchkeeper drift``: exact and repeatable.

A window in the daemon cannot keep its values, so its quantiles and CDF come from a KLL
sketch, randomised: the same values sketched twice answer within its rank error, not bit
for bit. A file checked offline can: :class:`HeldSketch` is a
:class:`~watchkeeper.detectors.sketches.NumericSketch` (every count, moment and pinned
bin as usual, and what it stores) that also keeps the column's finite values, so its
quantiles, CDF and histograms on any edges are exact — KS and Wasserstein read them, and
their current side is exact (the reference side is the profile's KLL sketch, within its
rank error, which ``error_bound`` reports). Out-of-range counts and the reference's bins
are counted exactly on the pinned edges anyway.

Held values cost 8 bytes each: a file's columns share one :class:`HoldBudget`
(:data:`HELD_VALUES`, 25 M values ≈ 200 MB by default); a column that would pass it stops
holding and answers from KLL, as the daemon does (its ``rank_error`` then says so, and
KS's ``error_bound`` includes it).

>>> budget = HoldBudget(10)
>>> s = HeldSketch(4, budget)
>>> s.update(np.array([3.0, 1.0, np.nan, 2.0, 5.0, 4.0]))
>>> s.quantiles([0.5]).tolist(), s.cdf([2.0]).tolist(), s.rank_error, budget.left
([3.0], [0.4], 0.0, 5)
>>> s.outside(2.0, 4.0)
(1, 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from watchkeeper.detectors.sketches import FloatArray, NumericSketch

HELD_VALUES = 25_000_000
"""Finite values ``watchkeeper drift`` holds over all of a file's numeric columns."""


class HoldBudget:
    """Values the columns of one file may still hold."""

    def __init__(self, limit: int = HELD_VALUES) -> None:
        self.left = limit

    def take(self, n: int) -> bool:
        """Whether ``n`` more values may be held (and if so, they are counted)."""
        if n > self.left:
            return False
        self.left -= n
        return True


class HeldSketch(NumericSketch):
    """See the module docstring."""

    def __init__(self, k: int, budget: HoldBudget) -> None:
        super().__init__(k)
        self._budget = budget
        self._parts: list[FloatArray] | None = []  # None: stopped holding (over budget)
        self._ordered: FloatArray | None = None

    def update(
        self, values: FloatArray, nulls: int = 0, missing: int = 0, *, defer: bool = False
    ) -> None:
        super().update(values, nulls, missing, defer=defer)
        if self._parts is None:
            return
        flat = np.asarray(values, dtype=np.float64).ravel()
        finite = flat[np.isfinite(flat)]
        if not self._budget.take(finite.size):
            self._budget.left += sum(p.size for p in self._parts)  # give back what it held
            self._parts, self._ordered = None, None
            return
        self._parts.append(finite)
        self._ordered = None

    def merge(self, other: NumericSketch) -> None:
        """As a sketch's merge; the merged column no longer holds its values."""
        if self._parts is not None:
            self._budget.left += sum(p.size for p in self._parts)
        self._parts, self._ordered = None, None
        super().merge(other)

    @property
    def holds_values(self) -> bool:
        """Whether every finite value is held (quantiles and CDF exact)."""
        return self._parts is not None

    def _values(self) -> FloatArray | None:
        if self._parts is None:
            return None
        if self._ordered is None:
            self._ordered = np.sort(np.concatenate(self._parts)) if self._parts else np.empty(0)
            self._parts = [self._ordered]
        return self._ordered

    @property
    def rank_error(self) -> float:
        return 0.0 if self.holds_values else super().rank_error

    def quantiles(self, ranks: Iterable[float]) -> FloatArray:
        ordered = self._values()
        if ordered is None or not ordered.size:
            return super().quantiles(ranks)
        # the smallest x with F(x) ≥ rank: numpy's "inverted_cdf", as KLL's inclusive
        # quantiles and NumericSketch's exact buffer answer
        weight = np.ceil(np.asarray(list(ranks), dtype=np.float64) * ordered.size)
        at = np.clip(np.maximum(weight.astype(np.int64), 1) - 1, 0, ordered.size - 1)
        out: FloatArray = ordered[at]
        return out

    def cdf(self, points: Iterable[float]) -> FloatArray:
        ordered = self._values()
        if ordered is None or not ordered.size:
            return super().cdf(points)
        pts = np.asarray([float(p) for p in points], dtype=np.float64)
        out: FloatArray = np.searchsorted(ordered, pts, side="right") / ordered.size
        return out

    def outside(self, low: float, high: float) -> tuple[int, int] | None:
        """Counted in the held values: any range (a rule's own ``margin`` too) is exact."""
        ordered = self._values()
        if ordered is None or not ordered.size:
            return super().outside(low, high)
        below = int(np.searchsorted(ordered, low, side="left"))
        return below, int(ordered.size - np.searchsorted(ordered, high, side="right"))

    def histogram(self, edges: Iterable[float]) -> FloatArray:
        pts = [float(e) for e in edges]
        ordered = self._values()
        if ordered is None or not ordered.size or self.counts_exactly(pts):
            return super().histogram(pts)
        below = np.searchsorted(ordered, np.asarray(pts, dtype=np.float64), side="right")
        counts: Any = np.diff(np.concatenate([[0], below, [ordered.size]]))
        return np.asarray(counts, dtype=np.float64)
