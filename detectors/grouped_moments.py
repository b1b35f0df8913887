"""Per-group exact summaries of many small float arrays, in one vectorised pass.

What :class:`~watchkeeper.detectors.sketches.NumericSketch` needs from each batch of
values — counts of finite values, NaNs and infinities, min, max, mean, the sum of squared
deviations and (optionally) counts on bin edges — computed for many groups at once: the
groups' values are concatenated and reduced with ``np.add.reduceat`` and friends, so
thousands of small windows (a backfill) cost a few numpy calls, not a few per window.

The mean is the group's sum over its count and ``m2`` the sum of squared deviations from
it (two-pass; Chan, Golub & LeVeque 1979 combine these exactly across groups later).
Values near the float64 limit overflow to inf in the moments: a signal, not a crash.

>>> g = group_moments([np.array([1.0, 2.0, np.nan]), np.array([np.inf, 4.0])])
>>> g.finite.tolist(), g.nans.tolist(), g.infs.tolist(), g.mean.tolist(), g.m2.tolist()
([2, 1], [1, 0], [0, 1], [1.5, 4.0], [0.5, 0.0])
>>> [v.tolist() for v in g.values], g.lo.tolist(), g.hi.tolist()
([[1.0, 2.0], [4.0]], [1.0, 4.0], [2.0, 4.0])
>>> group_bins([np.array([0.0, 1.0, 2.0]), np.array([5.0])], np.array([1.0, 3.0])).tolist()
[[2, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class GroupMoments:
    """One entry per group; ``values`` holds each group's finite values, in order."""

    finite: IntArray
    nans: IntArray
    infs: IntArray
    lo: FloatArray
    hi: FloatArray
    mean: FloatArray
    m2: FloatArray
    values: list[FloatArray]


def group_moments(groups: Sequence[FloatArray]) -> GroupMoments:
    """Exact summaries of each of ``groups`` (each non-empty; NaN and ±inf counted apart)."""
    lengths = np.fromiter((g.size for g in groups), dtype=np.int64, count=len(groups))
    if lengths.size == 0 or not lengths.all():
        raise ValueError("every group needs at least one value")
    cat = np.concatenate(groups) if len(groups) > 1 else np.asarray(groups[0])
    cat = cat.astype(np.float64, copy=False)
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    finite = np.isfinite(cat)
    n_finite = np.add.reduceat(finite.astype(np.int64), starts)
    n_nan = np.add.reduceat(np.isnan(cat).astype(np.int64), starts)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sums = np.add.reduceat(np.where(finite, cat, 0.0), starts)
        mean = np.where(n_finite > 0, sums / np.maximum(n_finite, 1), 0.0)
        dev = np.where(finite, cat - np.repeat(mean, lengths), 0.0)
        m2 = np.add.reduceat(dev * dev, starts)
        lo = np.minimum.reduceat(np.where(finite, cat, np.inf), starts)
        hi = np.maximum.reduceat(np.where(finite, cat, -np.inf), starts)
    kept = cat[finite] if not finite.all() else cat
    # slices by hand: np.split runs a slower Python loop of its own
    ends = np.cumsum(n_finite).tolist()
    values = [kept[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    return GroupMoments(
        finite=n_finite,
        nans=n_nan,
        infs=lengths - n_finite - n_nan,
        lo=lo,
        hi=hi,
        mean=mean,
        m2=m2,
        values=values,
    )


def group_bins(groups: Sequence[FloatArray], edges: FloatArray) -> IntArray:
    """Counts of each group's (finite) values in the bins cut at the inner ``edges``:
    (-inf, e₁], (e₁, e₂], …, (eₘ, inf), one row per group."""
    width = edges.size + 1
    lengths = np.fromiter((g.size for g in groups), dtype=np.int64, count=len(groups))
    cat = np.concatenate(groups) if len(groups) > 1 else np.asarray(groups[0])
    # bins are right-closed, (e[i-1], e[i]]: side="left" puts v == e[i] in bin i
    where = np.searchsorted(edges, cat, side="left")
    owner = np.repeat(np.arange(len(groups), dtype=np.int64), lengths)
    flat = np.bincount(owner * width + where, minlength=len(groups) * width)
    return flat.reshape(len(groups), width)
