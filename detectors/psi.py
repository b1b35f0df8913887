"""Population Stability Index.

PSI = Σᵢ (qᵢ − pᵢ) · ln(qᵢ / pᵢ) over the reference's bins, p the reference and q the
current proportions (Siddiqi, "Credit Risk Scorecards", 2006; Yurdakul, "Statistical
properties of population stability index", 2018). Common reading: < 0.1 stable,
0.1–0.25 moderate shift, > 0.25 significant shift. Symmetric in p and q, ≥ 0.

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> ref = CategoricalProfile(count=100, nulls=0, proportions={"a": 0.5, "b": 0.5})
>>> cur = CategoryCounts(); cur.update(["a"] * 90 + ["b"] * 10)
>>> round(PSI().score(ref, cur).value, 4)
0.8789
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.binning import Smoothing, binned, proportions
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.profile import ColumnProfile


class PSI:
    name: ClassVar[str] = "psi"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def __init__(self, smoothing: Smoothing = "epsilon", epsilon: float = 1e-4) -> None:
        self.smoothing = smoothing
        self.epsilon = epsilon

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        b = binned(reference, current)
        p, q = proportions(b, self.smoothing, self.epsilon)
        terms = (q - p) * np.log(q / p)
        worst = int(np.argmax(terms))
        # first-order propagation of the sketch's per-bin error: ∂PSI/∂qᵢ = ln(qᵢ/pᵢ) + 1 − pᵢ/qᵢ
        bound = float(np.sum(np.abs(np.log(q / p) + 1 - p / q)) * b.rank_error)
        details = {
            "top_bin": b.labels[worst],
            "top_bin_contribution": float(terms[worst]),
            "error_bound": bound,
            "bins": int((b.reference > 0).sum()),
        }
        return Score(float(terms.sum()), details)
