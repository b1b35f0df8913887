"""Mergeable summaries of one column: what a window remembers instead of its raw values.

Two kinds, both small, both mergeable so that windows summarised apart (by time slice,
by partition, by replica) merge into the summary of the whole:

* :class:`NumericSketch` — exact counts of values, nulls, NaNs and infinities, exact min,
  max, mean and variance, and an Apache DataSketches KLL sketch for quantiles, CDFs and
  histograms on any bin edges. KLL's normalised rank error at k = 200 is ≈ 1.33 % for a
  single quantile query with 99 % confidence (Karnin, Lang & Liberty 2016; DataSketches'
  KLL accuracy docs); ``rank_error`` reports the bound for the sketch at hand. KLL is
  randomised (its compactions flip coins), so the same values sketched twice can answer a
  query differently within that bound. A sketch can also be told, before its first
  value, the bin edges it will be scored on (:meth:`NumericSketch.count_bins_on`: the
  edges of the reference in force); it then counts those bins exactly (``searchsorted`` +
  ``bincount``), and :meth:`~NumericSketch.histogram` on those edges is exact and the same
  run after run. Any other edges come from KLL, approximately.
* :class:`CategoryCounts` — exact counts per category up to ``max_categories``
  distinct values; beyond that the rarest are folded into an ``overflow`` count, so memory
  stays bounded when a feature turns out to be an identifier.

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
>>> c = CategoryCounts(max_categories=2)
>>> c.update(["DE", "FR", "DE", "US"])
>>> (c.counts, c.overflow)
({'DE': 2, 'FR': 1}, 1)
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class NumericSketch:
    """Summary of a numeric column; see the module docstring."""

    kind = "numeric"

    def __init__(self, k: int = 200) -> None:
        self.k = k
        self._kll = kll_doubles_sketch(k)
        self.count = 0  # finite values
        self.nulls = 0
        self.missing = 0
        self.nans = 0
        self.infs = 0
        self.min = math.inf
        self.max = -math.inf
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
        cut = np.asarray([float(e) for e in edges], dtype=np.float64)
        if self.count:
            raise ValueError("exact bins must be chosen before the first value")
        if cut.size and not (np.all(np.isfinite(cut)) and np.all(np.diff(cut) > 0)):
            raise ValueError("bin edges must be finite and strictly increasing")
        self._edges = cut
        self._bins = np.zeros(cut.size + 1, dtype=np.int64)

    def counts_exactly(self, edges: Iterable[float]) -> bool:
        """Whether :meth:`histogram` on ``edges`` is exact (edges pinned, or no value)."""
        if not self.count:
            return True
        if self._edges is None:
            return False
        cut = [float(e) for e in edges]
        return len(cut) == self._edges.size and bool(np.array_equal(self._edges, cut))

    def update(self, values: FloatArray, nulls: int = 0, missing: int = 0) -> None:
        """Add ``values`` (NaN and ±inf are counted apart, not sketched) and null counts."""
        self.nulls += nulls
        self.missing += missing
        if values.size == 0:
            return
        finite = np.isfinite(values)
        nan = np.isnan(values)
        self.nans += int(nan.sum())
        self.infs += int(values.size - finite.sum() - nan.sum())
        vals = values[finite] if not finite.all() else values
        if vals.size == 0:
            return
        self._kll.update(np.ascontiguousarray(vals, dtype=np.float64))
        if self._edges is not None and self._bins is not None:
            # bins are right-closed, (e[i-1], e[i]]: side="left" puts v == e[i] in bin i
            where = np.searchsorted(self._edges, vals, side="left")
            self._bins += np.bincount(where, minlength=self._bins.size)
        # moments of values near the float64 limit overflow to inf: a signal, not a crash
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(vals.mean())
            m2 = float(((vals - mean) ** 2).sum())
            self._combine(vals.size, mean, m2, float(vals.min()), float(vals.max()))

    def _combine(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        # Chan, Golub & LeVeque (1979) pairwise update: exact for merged partial moments.
        total = self.count + n
        with np.errstate(over="ignore", invalid="ignore"):
            self._combine_moments(n, total, mean, m2)
        self.count = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def _combine_moments(self, n: int, total: int, mean: float, m2: float) -> None:
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * self.count * n / total

    def merge(self, other: NumericSketch) -> None:
        """Fold ``other`` into this sketch; the result equals sketching both inputs at once."""
        self.nulls += other.nulls
        self.missing += other.missing
        self.nans += other.nans
        self.infs += other.infs
        self._merge_bins(other)
        if other.count:
            self._kll.merge(other._kll)
            self._combine(other.count, other._mean, other._m2, other.min, other.max)

    def _merge_bins(self, other: NumericSketch) -> None:
        # exact counts survive a merge only when both sides count the same bins; a side
        # with no finite value adds nothing (an empty self takes the other side's bins)
        if not other.count:
            return
        mine, theirs = self._bins, other._bins
        same = (
            self._edges is not None
            and other._edges is not None
            and np.array_equal(self._edges, other._edges)
        )
        if same and mine is not None and theirs is not None:
            self._bins = mine + theirs
        elif not self.count:
            self._edges = other._edges
            self._bins = None if theirs is None else theirs.copy()
        else:
            self._edges, self._bins = None, None

    # -- reading -----------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Every value seen, finite or not, null included (missing keys excluded)."""
        return self.count + self.nulls + self.nans + self.infs

    @property
    def mean(self) -> float:
        return self._mean if self.count else math.nan

    @property
    def variance(self) -> float:
        """Population variance of the finite values."""
        return self._m2 / self.count if self.count else math.nan

    @property
    def rank_error(self) -> float:
        """Normalised rank error of a single quantile / CDF query (99 % confidence)."""
        return float(self._kll.normalized_rank_error(False)) if self.count else 0.0

    def quantiles(self, ranks: Iterable[float]) -> FloatArray:
        """Values at the given ranks in [0, 1]; NaN when the sketch holds no finite value."""
        ranks = list(ranks)
        if not self.count:
            return np.full(len(ranks), np.nan)
        # inclusive: the smallest x with F(x) ≥ rank (numpy's "inverted_cdf" definition)
        return np.asarray(self._kll.get_quantiles(ranks, True), dtype=np.float64)

    def cdf(self, points: Iterable[float]) -> FloatArray:
        """Fraction of finite values ≤ each of ``points`` (any order, repeats allowed)."""
        pts = [float(p) for p in points]
        if not self.count:
            return np.full(len(pts), np.nan)
        # the sketch wants strictly increasing points: ask for the distinct ones, map back
        unique, back = np.unique(np.asarray(pts, dtype=np.float64), return_inverse=True)
        values = np.asarray(self._kll.get_cdf(unique.tolist(), True), dtype=np.float64)[:-1]
        return values[back]

    def histogram(self, edges: Iterable[float]) -> FloatArray:
        """Counts in the open-ended bins cut at the increasing inner ``edges``.

        With edges e₁ < … < eₘ the bins are (-inf, e₁], (e₁, e₂], …, (eₘ, inf): m + 1 bins.
        """
        pts = [float(e) for e in edges]
        if not self.count:
            return np.zeros(len(pts) + 1)
        if self._bins is not None and self.counts_exactly(pts):
            return self._bins.astype(np.float64)
        pmf = np.asarray(self._kll.get_pmf(pts, True), dtype=np.float64)
        return np.rint(pmf * self.count)  # KLL weights are integers: undo float error

    def kll_bytes(self) -> bytes:
        """The quantile sketch alone, serialised (empty when no finite value was seen)."""
        return bytes(self._kll.serialize()) if self.count else b""

    # -- storage -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "k": self.k,
            "count": self.count,
            "nulls": self.nulls,
            "missing": self.missing,
            "nans": self.nans,
            "infs": self.infs,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "mean": self._mean,
            "m2": self._m2,
            "kll": base64.b64encode(self._kll.serialize()).decode() if self.count else None,
            **(
                {"bin_edges": self._edges.tolist(), "bins": self._bins.tolist()}
                if self._edges is not None and self._bins is not None
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NumericSketch:
        out = cls(int(data["k"]))
        out.count = int(data["count"])
        out.nulls, out.missing = int(data["nulls"]), int(data["missing"])
        out.nans, out.infs = int(data["nans"]), int(data["infs"])
        if out.count:
            out.min, out.max = float(data["min"]), float(data["max"])
            out._kll = kll_doubles_sketch.deserialize(base64.b64decode(data["kll"]))
        out._mean, out._m2 = float(data["mean"]), float(data["m2"])
        if data.get("bin_edges") is not None:  # absent in windows stored before exact bins
            out._edges = np.asarray(data["bin_edges"], dtype=np.float64)
            out._bins = np.asarray(data["bins"], dtype=np.int64)
        return out


class CategoryCounts:
    """Counts per category, bounded at ``max_categories``; see the module docstring."""

    kind = "categorical"

    def __init__(self, max_categories: int = 256) -> None:
        self.max_categories = max_categories
        self.counts: dict[str, int] = {}
        self.nulls = 0
        self.missing = 0
        self.overflow = 0

    def update(self, values: Iterable[str], nulls: int = 0, missing: int = 0) -> None:
        """Count ``values`` (strings; ``Counter`` does the loop in C)."""
        self.nulls += nulls
        self.missing += missing
        self._add(Counter(values))

    def _add(self, counts: dict[str, int]) -> None:
        merged = Counter(self.counts)
        merged.update(counts)
        if len(merged) > self.max_categories:
            # keep the most frequent; ties broken by name so the result is deterministic
            ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = dict(ranked[: self.max_categories])
            self.overflow += sum(c for _, c in ranked[self.max_categories :])
            self.counts = kept
        else:
            self.counts = dict(merged)

    def merge(self, other: CategoryCounts) -> None:
        """Fold ``other`` in; exact while the union has at most ``max_categories`` values."""
        self.nulls += other.nulls
        self.missing += other.missing
        self.overflow += other.overflow
        self._add(other.counts)

    @property
    def count(self) -> int:
        """Non-null values seen (overflowed ones included)."""
        return sum(self.counts.values()) + self.overflow

    @property
    def total(self) -> int:
        return self.count + self.nulls

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "max_categories": self.max_categories,
            "counts": self.counts,
            "nulls": self.nulls,
            "missing": self.missing,
            "overflow": self.overflow,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CategoryCounts:
        out = cls(int(data["max_categories"]))
        out.counts = {str(k): int(v) for k, v in data["counts"].items()}
        out.nulls, out.missing = int(data["nulls"]), int(data["missing"])
        out.overflow = int(data["overflow"])
        return out


ColumnSketch = NumericSketch | CategoryCounts


def sketch_from_dict(data: dict[str, Any]) -> ColumnSketch:
    """Rebuild a stored column sketch of either kind."""
    if data["kind"] == NumericSketch.kind:
        return NumericSketch.from_dict(data)
    if data["kind"] == CategoryCounts.kind:
        return CategoryCounts.from_dict(data)
    raise ValueError(f"unknown sketch kind {data['kind']!r}")
