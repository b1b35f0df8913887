"""Wasserstein-1 (earth mover's) distance, normalised by the reference's standard deviation.

W₁ = ∫₀¹ |Q_ref(u) − Q_cur(u)| du, the area between the quantile functions (equal to
``scipy.stats.wasserstein_distance`` on the raw samples), approximated on a midpoint grid
of ranks from the two KLL sketches. Divided by the reference's standard deviation so a
threshold means "moved by this many reference σ" on every feature (a mean shift of 0.3 σ
gives ≈ 0.3); a constant reference (σ = 0) is not normalised.

>>> import numpy as np
>>> from watchkeeper.detectors.profile import numeric_profile
>>> from watchkeeper.detectors.sketches import NumericSketch
>>> a, b = NumericSketch(), NumericSketch()
>>> x = np.random.default_rng(0).normal(size=150)  # below k: the sketches are exact
>>> a.update(x); b.update(x + 2 * x.std())
>>> round(Wasserstein().score(numeric_profile(a, ()), b).value, 6)
2.0
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile, NumericProfile
from watchkeeper.detectors.sketches import NumericSketch


class Wasserstein:
    name: ClassVar[str] = "wasserstein"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, grid: int = 1000, normalise: bool = True) -> None:
        self.grid = grid
        self.normalise = normalise

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        if not isinstance(reference, NumericProfile) or not isinstance(current, NumericSketch):
            raise InsufficientDataError("wasserstein applies to numeric columns")
        if reference.count == 0 or current.count == 0:
            raise InsufficientDataError("no finite values to compare")
        ranks = ((np.arange(self.grid) + 0.5) / self.grid).tolist()
        q_ref = np.asarray(reference.kll().get_quantiles(ranks, True))
        q_cur = current.quantiles(ranks)
        raw = float(np.mean(np.abs(q_ref - q_cur)))
        scale = reference.std if self.normalise and reference.std > 0 else 1.0
        return Score(raw / scale, {"raw": raw, "scale": scale})
