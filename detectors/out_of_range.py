"""Share of current values outside the reference's [min, max], widened by a margin.

The range is [min − m·(max − min), max + m·(max − min)], m = ``margin`` (default 0.1:
10 % of the reference's range on each side), so a value a hair past the training
extremes is not an alarm but an order-of-magnitude unit change is. The exact min and max
of the window settle the common case (nothing outside) exactly. Otherwise the counts
below and above the range are exact when the window counted them
(:meth:`~watchkeeper.detectors.sketches.NumericSketch.outside`: the range limits are
pinned edges beside the reference's bins, :func:`pinned_edges`, wherever the reference
was in force from the window's first value, and in ``watchkeeper drift`` on a file; not
in a segment's grid, cut at the reference's bins alone) or
held its values exactly; else they come from the window's KLL sketch, within twice its
rank error (``exact`` and ``error_bound`` in the details say which).

>>> import numpy as np
>>> from watchkeeper.detectors.profile import numeric_profile
>>> from watchkeeper.detectors.sketches import NumericSketch
>>> ref, cur = NumericSketch(), NumericSketch()
>>> ref.update(np.arange(0.0, 101.0)); cur.update(np.array([50.0, 105.0, 111.0, 500.0]))
>>> OutOfRange().score(numeric_profile(ref, ()), cur).value
0.5
>>> range_limits(numeric_profile(ref, ()))
(-10.0, 110.0)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile, NumericProfile
from watchkeeper.detectors.sketches import NumericSketch, PinnedEdges, range_edges

DEFAULT_MARGIN = 0.1


def range_limits(reference: NumericProfile, margin: float = DEFAULT_MARGIN) -> tuple[float, float]:
    """The reference's range widened by ``margin`` of its width on each side: one formula
    for the ingest's pinned edges and the detector, so both give the same floats."""
    width = reference.max - reference.min
    return reference.min - margin * width, reference.max + margin * width


def pinned_edges(reference: NumericProfile, margin: float = DEFAULT_MARGIN) -> tuple[float, ...]:
    """The reference's bin edges plus :func:`~watchkeeper.detectors.sketches.range_edges`
    of its out-of-range limits: what a window sketch counts exactly for PSI / KL / JS / χ²
    and ``out_of_range_rate`` alike (its bins on the reference's edges are sums of these).

    >>> p = NumericProfile(10, 0, 0, 0.0, 10.0, 5.0, 3.0, (5.0,), (0.5, 0.5))
    >>> pinned_edges(p)[1:]
    (5.0, 11.0)
    """
    if reference.count == 0:
        return reference.edges
    low, high = range_edges(*range_limits(reference, margin))
    cut = np.unique(np.asarray([low, *reference.edges, high], dtype=np.float64))
    return PinnedEdges((float(e) for e in cut), reference.edges)


class OutOfRange:
    name: ClassVar[str] = "out_of_range_rate"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        self.margin = margin

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        if not isinstance(reference, NumericProfile) or not isinstance(current, NumericSketch):
            raise InsufficientDataError("out_of_range_rate applies to numeric columns")
        if reference.count == 0 or current.count == 0:
            raise InsufficientDataError("no finite values to compare")
        lo, hi = range_limits(reference, self.margin)
        details = {"low": lo, "high": hi, "min": current.min, "max": current.max}
        if current.min >= lo and current.max <= hi:
            return Score(0.0, {**details, "exact": True})
        counted = current.outside(lo, hi)
        if counted is not None:
            below, above = counted
            return Score((below + above) / current.count, {**details, "exact": True})
        # KLL: the share below lo⁻ and above hi, each within the sketch's rank error
        share_below, _, share_above = current.histogram(range_edges(lo, hi)) / current.count
        share_below = share_below if current.min < lo else 0.0
        share_above = share_above if current.max > hi else 0.0
        return Score(
            float(min(1.0, share_below + share_above)),
            {**details, "exact": False, "error_bound": 2 * current.rank_error},
        )
