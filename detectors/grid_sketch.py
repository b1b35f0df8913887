"""A segment's numeric summary: exact counts on a fine grid cut from the reference's bins.

A window keeps, per segment feature, up to K + 1 segment children, each with one summary
per numeric column: too many for one KLL sketch each (a C call and ≈ 35 ns a value per
segment and column). A segment's column needs exact counts on the reference's own bins
(PSI, KL, JS, χ² per segment) and a CDF for KS, Wasserstein, quantiles and out-of-range
rates. :class:`GridSketch` gives both from one exact histogram on a **fine grid** derived
deterministically from the reference's inner bin edges e₁ < … < eₘ (:mod:`fine_grid`):

* each inner bin (eᵢ, eᵢ₊₁] cut into :data:`GRID_STEPS` equal sub-bins, so every
  reference edge is a grid edge and the reference's bins are sums of grid bins — exact;
* below e₁ and above eₘ, :data:`TAIL_BINS` bins each, widening by :data:`TAIL_GROWTH`
  from the width of the neighbouring sub-bin (a reference's outer deciles are its widest
  bins; a heavy tail needs reach, not resolution);
* the two open ends (-inf, g₁] and (g_last, inf) clamped to the sketch's exact min / max.

All of a feature's segments are counted in one pass per column (:func:`feed_grid`: one
``searchsorted`` on the grid and one ``bincount`` over segment × grid bin, ``bincount``
moments, ``reduceat`` min / max), so a segment costs a few numpy passes per column, not
a C call per segment. Up to ``k`` finite values are also held exactly (small segments
answer exactly, as KLL does below k).

**Error bound.** A CDF query at a grid edge is exact; between edges it interpolates
linearly inside the bin holding the point, clamped to [min, max], and the true CDF is
between the bin's two ends, so the error of any CDF or rank query is at most the largest
mass (count / total) of one grid bin with a positive width after clamping
(:attr:`GridSketch.rank_error`, computed from the counts: a bound that always holds, not a
probability). KS between a segment and its reference segment is then within
``rank_error`` plus the reference's KLL error. With a reference's 9 decile edges the grid
has 290 bins; on data distributed like the reference the largest holds 0.5–0.9 % of the
values (normal, lognormal, exponential, uniform, rounded; ≈ 2–3 % for a bimodal column
whose gap falls inside one decile; measured in tests/unit/test_grid_sketch.py, where the
actual CDF errors stay under 0.5 %), against ≈ 2.6 % (at 99 % confidence) for the KLL
sketch at k = 100 it replaces; a segment that moved far from the reference can pile up in
a few wide tail bins, and ``rank_error`` says so. Counts are integers, so merges across flushes,
replicas and roll-ups are exact and the summary does not depend on the order of rows or
parts. Parts cut on different grids (the reference changed mid-window, or one part had
none) merge as a KLL sketch (:func:`merged_numeric`), each grid bin's values entered spread
evenly over the bin: its answers are within KLL's rank error plus the grid's bound (its
``rank_error`` reports KLL's alone).

>>> s = GridSketch(2, (0.0, 1.0))
>>> s.update(np.array([0.25, 0.5, 0.75, 2.0]))
>>> s.histogram((0.0, 1.0)).tolist(), s.counts_exactly((0.0, 1.0)), s.count
([0.0, 3.0, 1.0], True, 4)
>>> float(s.cdf([1.0])[0]), s.rank_error <= 0.25
(0.75, True)
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch
from watchkeeper.detectors.column_sketch import ColumnSketch, sketch_from_dict
from watchkeeper.detectors.fine_grid import fine_grid, grid_lookup
from watchkeeper.detectors.sketches import NumericSketch, coarsened

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

SPREAD_CHUNK = 1 << 20
"""Values generated at once when a KLL sketch is built from a grid (:meth:`spread`)."""


class GridSketch(NumericSketch):
    """A numeric column's summary on the fine grid of ``edges``; see the module docstring.

    A :class:`NumericSketch` to every reader (counts, moments, min / max, exact bins on
    ``edges``, quantiles, CDF, histogram, ``rank_error``); no KLL sketch is kept."""

    def __init__(self, k: int, edges: Iterable[float]) -> None:
        super().__init__(k)
        key = edges if isinstance(edges, tuple) else tuple(float(e) for e in edges)
        self._grid, self._at = fine_grid(key)
        self.lookup = grid_lookup(key)
        self._bounds = np.concatenate(([0], self._at + 1))
        self._cut: FloatArray = self._grid[self._at]
        self._edges = self._cut  # what NumericSketch's readers see: bins pinned on them
        self.grid_counts: IntArray = np.zeros(self._grid.size + 1, dtype=np.int64)
        """Finite values per grid bin (-inf, g₁], (g₁, g₂], …, (g_last, inf)."""

    @property
    def grid(self) -> FloatArray:
        return self._grid

    # -- building ----------------------------------------------------------------------
    def count_bins_on(self, edges: Iterable[float]) -> None:
        raise ValueError("a grid sketch counts its reference's bins from construction")

    def update(
        self, values: FloatArray, nulls: int = 0, missing: int = 0, *, defer: bool = False
    ) -> None:
        feed_grid([self], np.asarray(values, dtype=np.float64).ravel(), None, [nulls], [missing])

    def _settle(self) -> None:
        """Nothing is queued: :func:`feed_grid` summarises as it goes."""

    def _add(
        self,
        counts: IntArray,
        finite: FloatArray,
        nans: int,
        infs: int,
        moments: tuple[float, float, float, float],
    ) -> None:
        """One group of :func:`feed_grid` (``finite`` its finite values, in row order)."""
        self._nans += nans
        self._infs += infs
        n = finite.size
        if not n:
            return
        self.grid_counts += counts
        self._hold(finite)
        mean, m2, lo, hi = moments
        if self._count:
            self._combine(n, mean, m2, lo, hi)
        else:
            self._count, self._mean, self._m2, self._min, self._max = n, mean, m2, lo, hi

    def _hold(self, finite: FloatArray) -> None:
        # the values themselves while at most k (before _count grows): exact answers
        if self._count + finite.size > self.k:
            self._exact = None
        elif self._exact is None:
            self._exact = np.array(finite, dtype=np.float64)
        else:
            self._exact = np.concatenate([self._exact, finite])

    def same_grid(self, other: NumericSketch) -> bool:
        return isinstance(other, GridSketch) and (
            other._grid is self._grid or np.array_equal(other._grid, self._grid)
        )

    def merge(self, other: NumericSketch) -> None:
        """Fold a sketch on the same grid in (exact); others merge by
        :func:`merged_numeric`, as KLL."""
        if not isinstance(other, GridSketch) or not self.same_grid(other):
            raise ValueError("only grid sketches on the same grid merge in place")
        self.nulls += other.nulls
        self.missing += other.missing
        self._nans += other._nans
        self._infs += other._infs
        if not other._count:
            return
        self.grid_counts += other.grid_counts
        if other._exact is not None:
            self._hold(other._exact)
        else:
            self._exact = None
        self._combine(other._count, other._mean, other._m2, other._min, other._max)

    # -- reading -----------------------------------------------------------------------
    @property
    def held_exactly(self) -> bool:
        """Whether every finite value is held (at most ``k``): answers are exact."""
        return self._exact is not None or not self._count

    def _ranges(self) -> tuple[FloatArray, FloatArray]:
        """Each grid bin's [low, high], clamped to the values' min and max."""
        lo = np.concatenate(([self._min], self._grid))
        hi = np.concatenate((self._grid, [self._max]))
        return np.clip(lo, self._min, self._max), np.clip(hi, self._min, self._max)

    @property
    def rank_error(self) -> float:
        """Largest mass of one grid bin whose clamped range has a positive width: a bound
        on the error of any CDF or rank answer (0 while the values are held exactly)."""
        if self.held_exactly:
            return 0.0
        lo, hi = self._ranges()
        wide = self.grid_counts[hi > lo]
        return float(wide.max()) / self._count if wide.size else 0.0

    def cdf(self, points: Iterable[float]) -> FloatArray:
        if self.held_exactly:
            return super().cdf(points)
        pts = np.asarray([float(p) for p in points], dtype=np.float64)
        lo, hi = self._ranges()
        below = np.concatenate(([0], np.cumsum(self.grid_counts)))
        b = np.searchsorted(self._grid, pts, side="left")
        width = hi[b] - lo[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(width > 0, (pts - lo[b]) / width, (pts >= lo[b]) * 1.0)
        frac = np.clip(np.nan_to_num(frac, nan=0.0), 0.0, 1.0)
        out: FloatArray = (below[b] + self.grid_counts[b] * frac) / self._count
        return out

    def quantiles(self, ranks: Iterable[float]) -> FloatArray:
        if self.held_exactly:
            return super().quantiles(ranks)
        r = np.clip(np.asarray(list(ranks), dtype=np.float64), 0.0, 1.0)
        lo, hi = self._ranges()
        cum = np.cumsum(self.grid_counts)
        # inclusive, as KLL: the bin where the cumulative count first reaches r · n
        target = np.maximum(r * self._count, 1e-12)
        b = np.minimum(np.searchsorted(cum, target, side="left"), cum.size - 1)
        before = cum[b] - self.grid_counts[b]
        frac = (target - before) / np.maximum(self.grid_counts[b], 1)
        out: FloatArray = lo[b] + (hi[b] - lo[b]) * np.clip(frac, 0.0, 1.0)
        out[r <= 0.0] = self._min
        return out

    def counts_exactly(self, edges: Iterable[float]) -> bool:
        if not self.count:
            return True
        return coarsened(self._cut, self._bin_counts(), edges) is not None

    def histogram(self, edges: Iterable[float]) -> FloatArray:
        pts = [float(e) for e in edges]
        if not self._count:
            return np.zeros(len(pts) + 1)
        exact = coarsened(self._cut, self._bin_counts(), pts)  # a subset of its edges too
        if exact is not None:
            return exact.astype(np.float64)
        if self.held_exactly:
            return super().histogram(pts)
        below = self.cdf(pts) * self._count
        return np.rint(np.diff(np.concatenate([[0.0], below, [float(self._count)]])))

    def _bin_counts(self) -> IntArray:
        """Counts on the reference's bins: unions of grid bins, so exact."""
        out: IntArray = np.add.reduceat(self.grid_counts, self._bounds)
        return out

    def spread(self, first: int = 0, size: int | None = None) -> FloatArray:
        """Values ``first`` … ``first + size`` (in order) of the column as held (exactly,
        while at most ``k``), else with each grid bin's count spread evenly over its
        clamped range: what a KLL sketch built from this one is fed, in chunks."""
        if self._exact is not None:
            return np.sort(self._exact)[first : None if size is None else first + size]
        lo, hi = self._ranges()
        ends = np.cumsum(self.grid_counts)
        stop = int(ends[-1]) if size is None else min(int(ends[-1]), first + size)
        j = np.arange(first, stop, dtype=np.int64)
        owner = np.searchsorted(ends, j, side="right")
        offset = j - (ends[owner] - self.grid_counts[owner])
        pos = (offset + 0.5) / self.grid_counts[owner]
        out: FloatArray = lo[owner] + (hi[owner] - lo[owner]) * pos
        return out

    def _kll_serialised(self) -> bytes:
        kll = kll_doubles_sketch(self.k)
        for first in range(0, self._count, SPREAD_CHUNK):  # bounded memory, not time
            kll.update(np.ascontiguousarray(self.spread(first, SPREAD_CHUNK)))
        return bytes(kll.serialize())

    def as_numeric(self) -> NumericSketch:
        """The same column as a KLL :class:`NumericSketch` (exact bins on ``edges`` kept):
        how a grid part merges with a part on another grid or none."""
        out = NumericSketch(self.k)
        out.count_bins_on(tuple(self._cut.tolist()))
        data = out.to_dict()
        data.update(
            count=self._count,
            nulls=self.nulls,
            missing=self.missing,
            nans=self._nans,
            infs=self._infs,
            min=self._min if self._count else None,
            max=self._max if self._count else None,
            mean=self._mean,
            m2=self._m2,
            kll=base64.b64encode(self._kll_serialised()).decode() if self._count else None,
            bins=self._bin_counts().tolist(),
        )
        return NumericSketch.from_dict(data)

    # -- storage -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        count = self._count
        top = int(self.grid_counts.max()) if count else 0
        dtype = next(d for d in ("<u1", "<u2", "<u4", "<u8") if top < 2 ** (8 * int(d[2])))
        return {
            "kind": self.kind,
            "k": self.k,
            "count": count,
            "nulls": self.nulls,
            "missing": self.missing,
            "nans": self._nans,
            "infs": self._infs,
            "min": self._min if count else None,
            "max": self._max if count else None,
            "mean": self._mean,
            "m2": self._m2,
            "kll": None,
            "bin_edges": self._cut.tolist(),
            "bins": self._bin_counts().tolist(),
            # the grid follows from bin_edges (fine_grid); its counts in the narrowest
            # unsigned integers that hold them, little-endian, base64
            "grid": {
                "dtype": dtype,
                "counts": base64.b64encode(self.grid_counts.astype(dtype).tobytes()).decode(),
            },
            "values": None if self._exact is None else self._exact.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridSketch:
        out = cls(int(data["k"]), tuple(float(e) for e in data["bin_edges"]))
        out._count = int(data["count"])
        out.nulls, out.missing = int(data["nulls"]), int(data["missing"])
        out._nans, out._infs = int(data["nans"]), int(data["infs"])
        if out._count:
            out._min, out._max = float(data["min"]), float(data["max"])
        out._mean, out._m2 = float(data["mean"]), float(data["m2"])
        grid = data["grid"]
        raw = np.frombuffer(base64.b64decode(grid["counts"]), dtype=grid["dtype"])
        if raw.size != out.grid_counts.size:
            raise ValueError("grid counts do not match the grid of these bin edges")
        out.grid_counts = raw.astype(np.int64)
        values = data.get("values")
        out._exact = None if values is None else np.asarray(values, dtype=np.float64)
        return out


def load_sketch(data: dict[str, Any]) -> ColumnSketch:
    """A stored column sketch of any kind, grid sketches included (parts written before
    grids hold KLL sketches and load as :class:`NumericSketch`)."""
    if data.get("grid") is not None:
        return GridSketch.from_dict(data)
    return sketch_from_dict(data)


def merged_numeric(mine: NumericSketch, theirs: NumericSketch) -> NumericSketch:
    """``theirs`` folded into ``mine``: in place when both are KLL sketches or both grid
    sketches on one grid (exact); otherwise a KLL sketch of both (see the module
    docstring), ``mine`` replaced."""
    grids = isinstance(mine, GridSketch), isinstance(theirs, GridSketch)
    if not any(grids) or (isinstance(mine, GridSketch) and mine.same_grid(theirs)):
        mine.merge(theirs)
        return mine
    out = mine.as_numeric() if isinstance(mine, GridSketch) else mine
    out.merge(theirs.as_numeric() if isinstance(theirs, GridSketch) else theirs)
    return out


def feed_grid(
    sketches: Sequence[GridSketch],
    values: FloatArray,
    groups: np.ndarray[Any, Any] | None,
    nulls: Sequence[int] | None = None,
    missing: Sequence[int] | None = None,
    where: np.ndarray[Any, Any] | None = None,
    *,
    cell: np.ndarray[Any, Any] | None = None,
    sizes: np.ndarray[Any, Any] | None = None,
) -> None:
    """Present ``values`` into their groups' sketches (all on one grid): ``groups[i]`` the
    group of ``values[i]``, ascending (rows grouped by segment; None: one group). One
    ``searchsorted`` and one ``bincount`` for every group's grid counts, ``bincount``
    moments (two-pass: the mean, then squared deviations from it), ``reduceat`` min / max.
    ``where``: the grid bins of ``values`` when known (shared by segment features);
    ``cell``: ``groups · (bins + 1) + where`` and ``sizes`` each group's count, when every
    value is known finite (the caller's usual case: nothing to check or filter).
    """
    g = len(sketches)
    if groups is None:
        groups = np.zeros(values.size, dtype=np.intp)
    if cell is not None and sizes is not None:
        _count_grid(sketches, values, groups, cell, np.asarray(sizes), nulls, missing)
        return
    finite = np.isfinite(values)
    if finite.all():
        nans = infs = [0] * g
    else:
        nan = np.isnan(values)
        nans = np.bincount(groups[nan], minlength=g).tolist()
        infs = np.bincount(groups[~finite & ~nan], minlength=g).tolist()
        values, groups = values[finite], groups[finite]
        where = None if where is None else where[finite]
    n = np.bincount(groups, minlength=g)
    if not values.size:
        for j, sketch in enumerate(sketches):
            sketch.nulls += nulls[j] if nulls else 0
            sketch.missing += missing[j] if missing else 0
            sketch._nans += nans[j]
            sketch._infs += infs[j]
        return
    lookup = sketches[0].lookup
    width = lookup.grid.size + 1
    if where is None:
        where = lookup.index(values)
    cell = groups * width
    cell += where
    _count_grid(sketches, values, groups, cell, n, nulls, missing, nans, infs)


def _count_grid(
    sketches: Sequence[GridSketch],
    values: FloatArray,
    groups: np.ndarray[Any, Any],
    cell: np.ndarray[Any, Any],
    n: np.ndarray[Any, Any],
    nulls: Sequence[int] | None,
    missing: Sequence[int] | None,
    nans: Sequence[int] | None = None,
    infs: Sequence[int] | None = None,
) -> None:
    """The grid counts and moments of finite ``values`` in their groups (``n`` each
    group's count, ``cell`` each value's group × grid-bin cell)."""
    g = len(sketches)
    width = sketches[0].lookup.grid.size + 1
    nans = nans or [0] * g
    infs = infs or [0] * g
    hist = np.bincount(cell, minlength=g * width).reshape(g, width)
    sums = np.bincount(groups, weights=values, minlength=g)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = sums / np.maximum(n, 1)
        dev = values - mean[groups]
        dev *= dev
        m2 = np.bincount(groups, weights=dev, minlength=g)
    starts = np.concatenate(([0], np.cumsum(n)[:-1]))
    filled = np.flatnonzero(n)
    lo = np.full(g, math.inf)
    hi = np.full(g, -math.inf)
    lo[filled] = np.minimum.reduceat(values, starts[filled])
    hi[filled] = np.maximum.reduceat(values, starts[filled])
    bounds = np.concatenate(([0], np.cumsum(n))).tolist()
    counts = n.tolist()
    for j, sketch in enumerate(sketches):
        sketch.nulls += nulls[j] if nulls else 0
        sketch.missing += missing[j] if missing else 0
        if not counts[j]:
            sketch._nans += nans[j]
            sketch._infs += infs[j]
            continue
        sketch._add(
            hist[j],
            values[bounds[j] : bounds[j + 1]],
            nans[j],
            infs[j],
            (float(mean[j]), float(m2[j]), float(lo[j]), float(hi[j])),
        )
