"""Kolmogorov–Smirnov statistic D = supₓ |F_ref(x) − F_cur(x)|, from the two KLL sketches.

The supremum is taken over both sketches' quantiles on a fine grid, which is where the
step functions jump; each CDF is within its sketch's rank error, so D is within the sum
of the two errors of the exact two-sample statistic (``scipy.stats.ks_2samp``). Only the
statistic is reported: the p-value of a 10⁶-row window rejects any difference at all, so
thresholds on D (a distance) are the default.

>>> import numpy as np
>>> from watchkeeper.detectors.profile import numeric_profile
>>> from watchkeeper.detectors.sketches import NumericSketch
>>> a, b = NumericSketch(), NumericSketch()
>>> a.update(np.arange(100.0)); b.update(np.arange(50.0, 150.0))
>>> KS().score(numeric_profile(a, ()), b).value
0.5
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from watchkeeper.detectors.base import Score
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ColumnProfile, NumericProfile
from watchkeeper.detectors.sketches import NumericSketch


class KS:
    name: ClassVar[str] = "ks"
    kinds: ClassVar[frozenset[str]] = frozenset({"numeric"})

    def __init__(self, grid: int = 512) -> None:
        self.grid = grid

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score:
        if not isinstance(reference, NumericProfile) or not isinstance(current, NumericSketch):
            raise InsufficientDataError("ks applies to numeric columns")
        if reference.count == 0 or current.count == 0:
            raise InsufficientDataError("no finite values to compare")
        ref = reference.kll()
        ranks = np.linspace(0.0, 1.0, self.grid + 1).tolist()
        points = np.unique(
            np.concatenate([np.asarray(ref.get_quantiles(ranks, True)), current.quantiles(ranks)])
        )
        f_ref = np.asarray(ref.get_cdf(points.tolist(), True))[:-1]
        f_cur = current.cdf(points)
        gaps = np.abs(f_ref - f_cur)
        at = int(np.argmax(gaps))
        error = float(ref.normalized_rank_error(False)) + current.rank_error
        return Score(float(gaps[at]), {"at": float(points[at]), "error_bound": error})
