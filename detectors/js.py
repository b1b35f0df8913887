"""Jensen–Shannon distance on the reference's bins, base 2, so it lies in [0, 1].

JSD(P, Q) = √(½ KL(P ‖ M) + ½ KL(Q ‖ M)), M = ½(P + Q) (Lin 1991; Endres & Schindelin
2003 for the square root being a metric). Symmetric, finite with empty bins, so no
smoothing is needed; equals ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> ref = CategoricalProfile(count=100, nulls=0, proportions={"a": 0.5, "b": 0.5})
>>> cur = CategoryCounts(); cur.update(["a"] * 90 + ["b"] * 10)
>>> round(JSDistance().score(ref, cur).value, 4)
0.3831
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.binning import binned
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.profile import ColumnProfile


def _kl2(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    mask = a > 0
    return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))


class JSDistance:
    name: ClassVar[str] = "js_distance"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        b = binned(reference, current)
        p = b.reference / b.reference.sum()
        q = b.current / b.current.sum()
        m = 0.5 * (p + q)
        divergence = max(0.0, 0.5 * _kl2(p, m) + 0.5 * _kl2(q, m))
        return Score(float(min(1.0, np.sqrt(divergence))), {"bins": int((p > 0).sum())})
