"""Current and reference distributions over the reference's bins, and empty-bin handling.

Numeric columns are compared on the reference's quantile bins: the reference proportions
are stored in its profile, the current counts come from the window's KLL sketch at the
same edges (exact while the window holds fewer than ~k values; within the sketch's rank
error beyond). Categorical columns are compared over the reference's categories, plus
one bucket for the reference's folded rare categories (``other``) and one for categories
the reference never saw (``unseen``).

Empty bins make PSI and KL infinite. Two documented treatments (``smoothing``):

* ``"epsilon"`` (default, ε = 1e-4): a zero proportion is replaced by ε, as Evidently
  does (``evidently.legacy.calculations.stattests.utils.get_binned_data``), so values
  agree with Evidently's on the same bins;
* ``"laplace"``: add-α smoothing of the counts, (cᵢ + α) / (n + α·k), α = 0.5 by default
  (Jeffreys' prior), which keeps the result a proper distribution.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import CategoricalProfile, ColumnProfile, NumericProfile
from watchkeeper.detectors.reserved_names import OTHER, UNSEEN
from watchkeeper.detectors.sketches import NumericSketch

Smoothing = Literal["epsilon", "laplace"]
Array = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Binned:
    """Reference proportions and current counts over the same buckets."""

    labels: tuple[str, ...]
    reference: Array  # proportions, sums to 1
    current: Array  # counts
    n_reference: int
    unseen: dict[str, int]
    rank_error: float = 0.0
    """Bound on each current proportion's error from the sketch (0 when counts are exact)."""

    @property
    def n_current(self) -> int:
        return int(self.current.sum())


def _edge_labels(edges: tuple[float, ...]) -> tuple[str, ...]:
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    return tuple(f"({a}, {b}]" for a, b in itertools.pairwise(bounds))


def binned(reference: ColumnProfile, current: ColumnSketch) -> Binned:
    """Both sides on the reference's buckets; raises if the kinds differ or nothing is left."""
    if isinstance(reference, NumericProfile) and isinstance(current, NumericSketch):
        if current.count == 0 or reference.count == 0:
            raise InsufficientDataError("no finite values to compare")
        # exact when the window counted the reference's own bins (NumericSketch.count_bins_on);
        # otherwise each bin's share comes from two CDF queries, each within the rank error,
        # and while the sketch holds fewer than k values it holds them all and is exact
        exact = current.counts_exactly(reference.edges) or current.count <= current.k
        error = 0.0 if exact else 2 * current.rank_error
        hist = current.histogram(reference.edges)
        props = np.asarray(reference.proportions)
        return Binned(_edge_labels(reference.edges), props, hist, reference.count, {}, error)
    if isinstance(reference, CategoricalProfile) and isinstance(current, CategoryCounts):
        if current.count == 0 or reference.count == 0:
            raise InsufficientDataError("no values to compare")
        names = sorted(reference.proportions)
        known = set(names)
        unseen = {k: v for k, v in current.counts.items() if k not in known}
        counts = [float(current.counts.get(n, 0)) for n in names]
        # overflowed current values cannot be named: they count as unseen mass
        counts += [0.0, float(sum(unseen.values()) + current.overflow)]
        ref = [reference.proportions[n] for n in names] + [reference.other, 0.0]
        return Binned(
            (*names, OTHER, UNSEEN), np.asarray(ref), np.asarray(counts), reference.count, unseen
        )
    raise InsufficientDataError(
        f"the reference column is {reference.kind} but the window's is {current.kind}"
    )


def proportions(
    binned_: Binned, smoothing: Smoothing = "epsilon", epsilon: float = 1e-4, alpha: float = 0.5
) -> tuple[Array, Array]:
    """Reference and current proportions with empty buckets treated as configured."""
    p = binned_.reference.astype(np.float64)
    q_counts = binned_.current.astype(np.float64)
    if smoothing == "laplace":
        k = p.size
        n_ref = max(binned_.n_reference, 1)
        p = (p * n_ref + alpha) / (n_ref + alpha * k)
        q = (q_counts + alpha) / (q_counts.sum() + alpha * k)
        return p, q
    q = q_counts / q_counts.sum()
    return np.where(p > 0, p, epsilon), np.where(q > 0, q, epsilon)
