"""Kullback–Leibler divergence KL(reference ‖ current), in nats, on the reference's bins.

KL(P ‖ Q) = Σᵢ pᵢ · ln(pᵢ / qᵢ) (Kullback & Leibler 1951). The direction matches
Evidently's ``kl_div`` (reference first): it weighs bins by how common they were in the
reference, and grows without bound as the current window empties a bin the reference
used — hence the empty-bin treatment of :mod:`~watchkeeper.detectors.binning`.

>>> from watchkeeper.detectors.profile import CategoricalProfile
>>> from watchkeeper.detectors.category_counts import CategoryCounts
>>> ref = CategoricalProfile(count=100, nulls=0, proportions={"a": 0.5, "b": 0.5})
>>> cur = CategoryCounts(); cur.update(["a"] * 90 + ["b"] * 10)
>>> round(KLDivergence().score(ref, cur).value, 4)
0.5108
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.binning import Smoothing, binned, proportions
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.profile import ColumnProfile


class KLDivergence:
    name: ClassVar[str] = "kl_divergence"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric", "categorical"})

    def __init__(self, smoothing: Smoothing = "epsilon", epsilon: float = 1e-4) -> None:
        self.smoothing = smoothing
        self.epsilon = epsilon

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        b = binned(reference, current)
        p, q = proportions(b, self.smoothing, self.epsilon)
        return Score(float(np.sum(p * np.log(p / q))), {"bins": int((b.reference > 0).sum())})
