"""The numeric column's mergeable summary: what a window remembers instead of its values.

A column is summarised by one of two kinds, both small, both mergeable so that windows
summarised apart (by time slice, by partition, by replica) merge into the summary of the
whole (:data:`~watchkeeper.detectors.column_sketch.ColumnSketch`): this module's

* :class:`NumericSketch` — exact counts of values, nulls, NaNs and infinities, exact min,
  max, mean and variance, and an Apache DataSketches KLL sketch for quantiles, CDFs and
  histograms on any bin edges. KLL's normalised rank error at k = 200 is ≈ 1.33 % for a
  single quantile query with 99 % confidence (Karnin, Lang & Liberty 2016; DataSketches'
  KLL accuracy docs); ``rank_error`` reports the bound for the sketch at hand. KLL is
  randomised (its compactions flip coins), so the same values sketched twice can answer a
  query differently within that bound — past ``k`` values: up to ``k`` the values are
  held exactly and every answer is exact (KLL itself compacts nothing below ``k``). A
  sketch can also be told, before its first value, the bin edges it will be scored on
  (:meth:`NumericSketch.count_bins_on`: the edges of the reference in force); it then
  counts those bins exactly (``searchsorted`` + ``bincount``), and
  :meth:`~NumericSketch.histogram` on those edges is exact and the same run after run.
  Any other edges come from KLL, approximately.
* :class:`~watchkeeper.detectors.category_counts.CategoryCounts` for categories.

Both also count values that were *missing* (the key absent from the record), which is
not the same as present-but-null, for schema-drift checks.

>>> s = NumericSketch(k=200)
>>> s.update(np.array([1.0, 2.0, np.nan, 4.0]), nulls=1)
>>> (s.count, s.nans, s.nulls, s.min, s.max)
(3, 1, 1, 1.0, 4.0)
>>> e = NumericSketch(k=8)
>>> e.count_bins_on((0.5, 2.5))
>>> e.update(np.arange(100.0) / 10)
>>> e.histogram((0.5, 2.5)).tolist(), e.counts_exactly((0.5, 2.5))
([6.0, 20.0, 74.0], True)
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch
from watchkeeper.detectors.settle import settle_sketches

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


PENDING_VALUES = 1024
"""Values a sketch queues before summarising them (see :meth:`NumericSketch.update`)."""
PENDING_CHUNKS = 32
"""Updates a sketch queues before summarising them."""


@lru_cache(maxsize=256)
def _checked_edges(edges: tuple[float, ...]) -> FloatArray:
    # one validated, read-only array per distinct edges: every window of a model asks
    # for the same reference edges, and checking them each time cost more than counting
    cut = np.asarray([float(e) for e in edges], dtype=np.float64)
    if cut.size and not (np.all(np.isfinite(cut)) and np.all(np.diff(cut) > 0)):
        raise ValueError("bin edges must be finite and strictly increasing")
    cut.setflags(write=False)
    return cut


def coarsened(
    pinned: FloatArray, counts: np.ndarray[Any, np.dtype[np.int64]], edges: Iterable[float]
) -> np.ndarray[Any, np.dtype[np.int64]] | None:
    """Counts on the bins cut at ``edges``, summed from ``counts`` on the bins cut at
    ``pinned``, when every edge is one of ``pinned`` (None otherwise): a sketch pinned on
    the reference's edges plus its out-of-range limits (:func:`range_edges`) still
    answers the reference's bins exactly.

    >>> coarsened(np.array([0.0, 1.0, 2.0]), np.array([1, 2, 3, 4]), (1.0,)).tolist()
    [3, 7]
    >>> coarsened(np.array([0.0, 1.0]), np.array([1, 2, 3]), (0.5,)) is None
    True
    """
    cut = np.asarray([float(e) for e in edges], dtype=np.float64)
    if cut.size == pinned.size:
        return counts if bool(np.array_equal(cut, pinned)) else None
    if cut.size > pinned.size:
        return None
    at = np.searchsorted(pinned, cut)
    if np.any(at >= pinned.size) or not np.array_equal(pinned[at], cut):
        return None
    out: np.ndarray[Any, np.dtype[np.int64]] = np.add.reduceat(
        counts, np.concatenate(([0], at + 1))
    )
    return out


def range_edges(low: float, high: float) -> tuple[float, float]:
    """The two edges whose bins count values below ``low`` and above ``high`` exactly:
    (-inf, low⁻] holds x < low (low⁻ the float just below ``low``), (high, inf) x > high.

    >>> lo, hi = range_edges(0.0, 1.0); (lo < 0.0, hi)
    (True, 1.0)
    """
    return float(np.nextafter(low, -np.inf)), float(high)


class PinnedEdges(tuple[float, ...]):
    """Edges a window counts exactly (the reference's bins and its out-of-range limits)
    that remember the reference's own bin edges: a segment's fine grid
    (:class:`~watchkeeper.detectors.grid_sketch.GridSketch`) is cut from those alone, as a
    grid cut at far-out limits would be coarse where the values are.

    >>> e = PinnedEdges((-1.0, 0.0, 2.0), (0.0,)); (e == (-1.0, 0.0, 2.0), e.reference)
    (True, (0.0,))
    """

    reference: tuple[float, ...]

    def __new__(cls, edges: Iterable[float], reference: tuple[float, ...]) -> PinnedEdges:
        out = super().__new__(cls, edges)
        out.reference = reference
        return out


class NumericSketch:
    """Summary of a numeric column; see the module docstring.

    Cheap while small: :meth:`update` only queues its values (up to
    :data:`PENDING_VALUES` values or :data:`PENDING_CHUNKS` updates), summarised when the
    sketch is next read, merged or stored, or for many sketches at once by
    :func:`settle_sketches` (one vectorised pass over a flush's windows). Up to ``k``
    finite values are kept as an exact buffer, and the KLL sketch is built only beyond:
    KLL holds every item exactly below ``k`` anyway, and the sketch it becomes is the one
    it would have been had it been fed from the start (same items, same order)."""

    kind = "numeric"

    def __init__(self, k: int = 200) -> None:
        self.k = k
        self._kll: kll_doubles_sketch | None = None  # built past k finite values
        self._exact: FloatArray | None = None  # the finite values while at most k
        self._pending: list[FloatArray] = []  # queued updates, summarised on demand
        self._pending_size = 0
        self._count = 0  # finite values
        self.nulls = 0
        self.missing = 0
        self._nans = 0
        self._infs = 0
        self._min = math.inf
        self._max = -math.inf
        self._mean = 0.0
        self._m2 = 0.0
        # exact counts on pinned bin edges (None: not pinned, or lost in a merge)
        self._edges: FloatArray | None = None
        self._bins: np.ndarray[Any, np.dtype[np.int64]] | None = None

    # -- building ----------------------------------------------------------------------
    def count_bins_on(self, edges: Iterable[float]) -> None:
        """Count the bins cut at the increasing inner ``edges`` exactly from now on.

        Only before the first finite value: counts of values already sketched are not
        known exactly. Raises ``ValueError`` otherwise or for edges not increasing."""
        cut = _checked_edges(edges if isinstance(edges, tuple) else tuple(edges))
        if self._count or self._pending:
            raise ValueError("exact bins must be chosen before the first value")
        self._edges = cut
        self._bins = np.zeros(cut.size + 1, dtype=np.int64)

    def counts_exactly(self, edges: Iterable[float]) -> bool:
        """Whether :meth:`histogram` on ``edges`` is exact (edges pinned, or no value)."""
        if not self.count:
            return True
        if self._edges is None or self._bins is None:
            return False
        # the pinned edges may hold more than ``edges`` (the out-of-range limits)
        return coarsened(self._edges, self._bins, edges) is not None

    def update(
        self, values: FloatArray, nulls: int = 0, missing: int = 0, *, defer: bool = False
    ) -> None:
        """Add ``values`` (NaN and ±inf are counted apart, not sketched) and null counts.

        With ``defer`` the queue may pass its bounds: the caller, which fed many sketches,
        settles them together with :func:`~watchkeeper.detectors.settle.settle_full` (one
        pass, not one per sketch)."""
        self.nulls += nulls
        self.missing += missing
        if values.size == 0:
            return
        # a copy: the caller may reuse its array, and a queued view would keep its whole
        # batch alive
        self._pending.append(np.array(values, dtype=np.float64).ravel())
        self._pending_size += values.size
        if not defer and self.queue_full:
            self._settle()

    @property
    def queue_full(self) -> bool:
        """Whether the queued updates reached :data:`PENDING_VALUES` or
        :data:`PENDING_CHUNKS` (summarised at the next update, or by
        :func:`~watchkeeper.detectors.settle.settle_full`)."""
        return self._pending_size >= PENDING_VALUES or len(self._pending) >= PENDING_CHUNKS

    def _settle(self) -> None:
        if self._pending:
            settle_sketches((self,))

    @property
    def queued(self) -> list[FloatArray]:
        """The updates queued since the sketch was last summarised (:mod:`settle`)."""
        return self._pending

    @property
    def pinned_edges(self) -> FloatArray | None:
        """The edges whose bins it counts exactly, or None."""
        return self._edges if self._bins is not None else None

    def absorb(
        self,
        finite: FloatArray,
        nans: int,
        infs: int,
        moments: tuple[float, float, float, float],
        bins: np.ndarray[Any, np.dtype[np.int64]] | None,
    ) -> None:
        """Fold in its queued values, summarised
        (:func:`~watchkeeper.detectors.settle.settle_sketches`)."""
        self._pending, self._pending_size = [], 0
        self._nans += nans
        self._infs += infs
        if finite.size == 0:
            return
        if self._bins is not None and bins is not None:
            self._bins += bins
        self._keep(finite)
        mean, m2, lo, hi = moments
        if self._count:
            self._combine(finite.size, mean, m2, lo, hi)
        else:  # the common case of a new window: nothing to combine with
            self._count, self._mean, self._m2, self._min, self._max = finite.size, mean, m2, lo, hi

    def _keep(self, finite: FloatArray) -> None:
        """Finite values into the exact buffer, or the KLL sketch once past ``k``."""
        if self._kll is not None:
            self._kll.update(finite)
            return
        if self._exact is None:
            if finite.size <= self.k:
                self._exact = finite
                return
        elif self._exact.size + finite.size <= self.k:
            self._exact = np.concatenate([self._exact, finite])
            return
        self._kll = self._built_kll()
        self._kll.update(finite)
        self._exact = None

    def _built_kll(self) -> kll_doubles_sketch:
        kll = kll_doubles_sketch(self.k)
        if self._exact is not None and self._exact.size:
            kll.update(np.ascontiguousarray(self._exact))
        return kll

    def _combine(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        # Chan, Golub & LeVeque (1979) pairwise update: exact for merged partial moments.
        # In Python floats: the same IEEE double operations as numpy's scalars (overflow to
        # inf, inf - inf to nan) without np.errstate, whose context cost more than the sum
        # (tests/unit/test_sketch_combine.py checks the two bit for bit)
        total = self._count + n
        mine = float(self._mean)
        delta = float(mean) - mine
        self._mean = mine + delta * n / total
        self._m2 = float(self._m2) + (float(m2) + delta * delta * self._count * n / total)
        self._count = total
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)

    def merge(self, other: NumericSketch) -> None:
        """Fold ``other`` into this sketch; the result equals sketching both inputs at once."""
        self._settle()
        other._settle()
        self.nulls += other.nulls
        self.missing += other.missing
        self._nans += other._nans
        self._infs += other._infs
        self._merge_bins(other)
        if other._count:
            if other._kll is None:
                assert other._exact is not None
                self._keep(other._exact)
            else:
                if self._kll is None:
                    self._kll = self._built_kll()
                    self._exact = None
                self._kll.merge(other._kll)
            self._combine(other._count, other._mean, other._m2, other._min, other._max)

    def _merge_bins(self, other: NumericSketch) -> None:
        # exact counts survive a merge only when both sides count the same bins; a side
        # with no finite value adds nothing (an empty self takes the other side's bins)
        if not other._count:
            return
        mine, theirs = self._bins, other._bins
        same = (
            self._edges is not None
            and other._edges is not None
            and np.array_equal(self._edges, other._edges)
        )
        if same and mine is not None and theirs is not None:
            self._bins = mine + theirs
        elif not self._count:
            self._edges = other._edges
            self._bins = None if theirs is None else theirs.copy()
        else:
            self._edges, self._bins = None, None

    # -- reading -----------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Finite values seen."""
        self._settle()
        return self._count

    @property
    def nans(self) -> int:
        self._settle()
        return self._nans

    @property
    def infs(self) -> int:
        self._settle()
        return self._infs

    @property
    def min(self) -> float:
        self._settle()
        return self._min

    @property
    def max(self) -> float:
        self._settle()
        return self._max

    @property
    def total(self) -> int:
        """Every value seen, finite or not, null included (missing keys excluded)."""
        return self.count + self.nulls + self._nans + self._infs

    @property
    def mean(self) -> float:
        return self._mean if self.count else math.nan

    @property
    def variance(self) -> float:
        """Population variance of the finite values."""
        return self._m2 / self.count if self.count else math.nan

    @property
    def rank_error(self) -> float:
        """Normalised rank error of a single quantile / CDF query (99 % confidence).

        The bound of a KLL sketch of this ``k``, also while the values are held exactly
        (then the answers are exact: the bound still holds)."""
        if not self.count:
            return 0.0
        return float(kll_doubles_sketch.get_normalized_rank_error(self.k, False))

    def _sorted(self) -> FloatArray:
        assert self._exact is not None
        return np.sort(self._exact)

    def quantiles(self, ranks: Iterable[float]) -> FloatArray:
        """Values at the given ranks in [0, 1]; NaN when the sketch holds no finite value."""
        ranks = list(ranks)
        if not self.count:
            return np.full(len(ranks), np.nan)
        # inclusive: the smallest x with F(x) ≥ rank (numpy's "inverted_cdf" definition)
        if self._kll is not None:
            return np.asarray(self._kll.get_quantiles(ranks, True), dtype=np.float64)
        # held exactly: as KLL's sorted view answers, the first value whose cumulative
        # weight reaches ceil(rank · n)
        ordered = self._sorted()
        weight = np.ceil(np.asarray(ranks, dtype=np.float64) * ordered.size).astype(np.int64)
        at = np.clip(np.maximum(weight, 1) - 1, 0, ordered.size - 1)
        out: FloatArray = ordered[at]
        return out

    def cdf(self, points: Iterable[float]) -> FloatArray:
        """Fraction of finite values ≤ each of ``points`` (any order, repeats allowed)."""
        pts = np.asarray([float(p) for p in points], dtype=np.float64)
        if not self.count:
            return np.full(pts.size, np.nan)
        if self._kll is None:
            ordered = self._sorted()
            return np.searchsorted(ordered, pts, side="right") / ordered.size
        # the sketch wants strictly increasing points: ask for the distinct ones, map back
        unique, back = np.unique(pts, return_inverse=True)
        values = np.asarray(self._kll.get_cdf(unique.tolist(), True), dtype=np.float64)[:-1]
        return values[back]

    def histogram(self, edges: Iterable[float]) -> FloatArray:
        """Counts in the open-ended bins cut at the increasing inner ``edges``.

        With edges e₁ < … < eₘ the bins are (-inf, e₁], (e₁, e₂], …, (eₘ, inf): m + 1 bins.
        """
        pts = [float(e) for e in edges]
        if not self.count:
            return np.zeros(len(pts) + 1)
        if self._bins is not None and self._edges is not None:
            exact = coarsened(self._edges, self._bins, pts)
            if exact is not None:
                return exact.astype(np.float64)
        if self._kll is None:
            below = np.searchsorted(self._sorted(), np.asarray(pts), side="right")
            return np.diff(np.concatenate([[0], below, [self._count]])).astype(np.float64)
        pmf = np.asarray(self._kll.get_pmf(pts, True), dtype=np.float64)
        return np.rint(pmf * self._count)  # KLL weights are integers: undo float error

    def outside(self, low: float, high: float) -> tuple[int, int] | None:
        """Exact counts of finite values below ``low`` and above ``high``, when the pinned
        edges hold :func:`range_edges` of them (the reference's out-of-range limits, put
        in force with its bins), or the values are held exactly; else None."""
        if not self.count:
            return 0, 0
        limits = range_edges(low, high)
        if not (self.counts_exactly(limits) or self._exact is not None):
            return None
        below, _, above = self.histogram(limits)
        return int(below), int(above)

    def _kll_serialised(self) -> bytes:
        kll = self._kll if self._kll is not None else self._built_kll()
        return bytes(kll.serialize())

    def kll_bytes(self) -> bytes:
        """The quantile sketch alone, serialised (empty when no finite value was seen)."""
        return self._kll_serialised() if self.count else b""

    # -- storage -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._settle()
        count = self._count
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
            # the stored form is always a KLL sketch (exact below k), as before buffering
            "kll": base64.b64encode(self._kll_serialised()).decode() if count else None,
            **(
                {"bin_edges": self._edges.tolist(), "bins": self._bins.tolist()}
                if self._edges is not None and self._bins is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSketch:
        out = cls(int(data["k"]))
        out._count = int(data["count"])
        out.nulls, out.missing = int(data["nulls"]), int(data["missing"])
        out._nans, out._infs = int(data["nans"]), int(data["infs"])
        if out._count:
            out._min, out._max = float(data["min"]), float(data["max"])
            out._kll = kll_doubles_sketch.deserialize(base64.b64decode(data["kll"]))
        out._mean, out._m2 = float(data["mean"]), float(data["m2"])
        if data.get("bin_edges") is not None:  # absent in windows stored before exact bins
            out._edges = np.asarray(data["bin_edges"], dtype=np.float64)
            out._bins = np.asarray(data["bins"], dtype=np.int64)
        return out
