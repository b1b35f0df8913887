"""Summaries of feature attributions, and the statistics that compare two of them.

:class:`AttributionSummary` is what a window keeps of the attributions of its sampled
rows (from :mod:`shapley`, or any per-row attribution): per feature Σ|φ|, Σφ² (for the
standard error of the mean |φ|) and Σφ, with the row count. Sums merge exactly, so
summaries of small flushes, of replicas and of windows combine into the summary of all
the rows. Importance is the mean |φ| per feature (SHAP's global importance, Lundberg et
al. 2020), its *share* that importance over the sum across features.

Comparisons of a baseline summary (production, or the reference sample) with another
(a candidate on the same rows, or the current window):

* :func:`rank_correlation` — Spearman's ρ of the mean |φ| per feature (average ranks for
  ties), 1 when both order the features alike;
* :func:`topk_overlap` — the share of the baseline's k most important features that are
  among the other's k most important (ties broken by feature order, so it is
  deterministic);
* :func:`protected_change` — among the features named protected, the largest change in
  share of attribution, |candidate share − baseline share|, with the feature and its
  signed change ("a protected attribute gained weight" is the signed change > 0).

:class:`AttributionComparison` turns two summaries into the metric values
``shadow_attribution_rank_corr``, ``shadow_attribution_topk_overlap``,
``shadow_protected_attribution_delta`` (a candidate against production on the same
rows) and ``attribution_shift`` (production's window sample against its reference
sample: the rank correlation, so "the model now leans on another feature" is an alert).

>>> base = AttributionSummary(["amount", "age", "country"])
>>> base.update(np.array([[3.0, -1.0, 0.5], [-2.0, 1.0, 0.0]]))
>>> cand = AttributionSummary(["amount", "age", "country"])
>>> cand.update(np.array([[0.5, -1.0, 2.5], [0.0, 1.0, -1.5]]))
>>> c = AttributionComparison(top_k=1, protected=("country",), min_rows=2)
>>> m = c.shadow_metrics(base, cand).values
>>> m["shadow_attribution_rank_corr"], m["shadow_attribution_topk_overlap"]
(-1.0, 0.0)
>>> round(m["shadow_protected_attribution_delta"], 3)
0.549
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Direction = Literal["higher_is_worse", "lower_is_worse"]


@dataclass(frozen=True)
class AttributionMetric:
    """What a registry entry for an attribution metric needs."""

    name: str
    direction: Direction
    description: str
    threshold: float
    """A sensible default for a rule (fire when the value is on the bad side of it)."""


ATTRIBUTION_METRICS: dict[str, AttributionMetric] = {
    m.name: m
    for m in (
        AttributionMetric(
            "shadow_attribution_rank_corr",
            "lower_is_worse",
            "Spearman ρ of mean |attribution| per feature, candidate vs production",
            0.8,
        ),
        AttributionMetric(
            "shadow_attribution_topk_overlap",
            "lower_is_worse",
            "share of production's top-k features among the candidate's top k",
            0.8,
        ),
        AttributionMetric(
            "shadow_protected_attribution_delta",
            "higher_is_worse",
            "largest |change| in attribution share of a protected feature",
            0.05,
        ),
        AttributionMetric(
            "attribution_shift",
            "lower_is_worse",
            "Spearman ρ of mean |attribution| per feature, window vs reference sample",
            0.7,
        ),
    )
}


class AttributionSummary:
    """Mergeable sums of per-row attributions over named features; see the module doc.

    Rows with a non-finite attribution are skipped and counted in ``skipped``.
    """

    def __init__(self, features: Sequence[str]) -> None:
        self.features = tuple(features)
        if len(set(self.features)) != len(self.features) or not self.features:
            raise ValueError("attribution features are distinct names, at least one")
        d = len(self.features)
        self.rows = 0
        self.skipped = 0
        self._abs = np.zeros(d)
        self._sq = np.zeros(d)
        self._signed = np.zeros(d)

    def update(self, attributions: FloatArray) -> None:
        """Add the attributions [rows, features] of some rows."""
        a = np.asarray(attributions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != len(self.features):
            raise ValueError(f"attributions are [rows, {len(self.features)}], not {a.shape}")
        finite = np.isfinite(a).all(axis=1)
        self.skipped += int(a.shape[0] - finite.sum())
        a = a[finite] if not finite.all() else a
        self.rows += int(a.shape[0])
        self._abs += np.abs(a).sum(axis=0)
        self._sq += (a * a).sum(axis=0)
        self._signed += a.sum(axis=0)

    def merge(self, other: AttributionSummary) -> None:
        if other.features != self.features:
            raise ValueError("only summaries over the same features (in order) merge")
        self.rows += other.rows
        self.skipped += other.skipped
        self._abs += other._abs
        self._sq += other._sq
        self._signed += other._signed

    # -- reading -------------------------------------------------------------------------
    def _need_rows(self) -> None:
        if not self.rows:
            raise InsufficientDataError("no attributed rows")

    def mean_abs(self) -> FloatArray:
        """Importance per feature: the mean |attribution|."""
        self._need_rows()
        out: FloatArray = self._abs / self.rows
        return out

    def mean(self) -> FloatArray:
        """Mean signed attribution per feature (its direction on average)."""
        self._need_rows()
        out: FloatArray = self._signed / self.rows
        return out

    def shares(self) -> FloatArray:
        """Each feature's share of the total mean |attribution| (sums to 1)."""
        importance = self.mean_abs()
        total = float(importance.sum())
        if not total > 0:
            raise InsufficientDataError("every attribution is 0: no shares")
        out: FloatArray = importance / total
        return out

    def standard_errors(self) -> FloatArray:
        """Standard error of each mean |attribution| (from Σφ² and Σ|φ|)."""
        self._need_rows()
        if self.rows < 2:
            return np.full(len(self.features), np.inf)
        mean = self._abs / self.rows
        var = np.maximum(0.0, self._sq - self.rows * mean * mean) / (self.rows - 1)
        out: FloatArray = np.sqrt(var / self.rows)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "rows": self.rows,
            "skipped": self.skipped,
            "abs": self._abs.tolist(),
            "sq": self._sq.tolist(),
            "signed": self._signed.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributionSummary:
        out = cls(d["features"])
        out.rows, out.skipped = int(d["rows"]), int(d["skipped"])
        for name in ("abs", "sq", "signed"):
            values = np.asarray(d[name], dtype=np.float64)
            if values.shape != (len(out.features),):
                raise ValueError(f"attribution sums '{name}' do not match the features")
            setattr(out, f"_{name}", values)
        return out


def rank_correlation(a: FloatArray, b: FloatArray) -> float:
    """Spearman's ρ: the Pearson correlation of the average ranks of ``a`` and ``b``."""
    if a.shape != b.shape or a.size < 2:
        raise InsufficientDataError("a rank correlation needs two equal vectors of ≥ 2 values")
    from scipy.stats import rankdata  # attributions run in the shadow worker only

    ra, rb = rankdata(a) - (a.size + 1) / 2, rankdata(b) - (b.size + 1) / 2
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    if denominator == 0:
        raise InsufficientDataError("every feature is equally important on one side: no ranks")
    return float((ra * rb).sum() / denominator)


def top_features(importance: FloatArray, k: int) -> list[int]:
    """Indices of the k largest values, ties broken by position (stable)."""
    order = np.argsort(-importance, kind="stable")[: min(k, importance.size)]
    return [int(i) for i in order]


def topk_overlap(a: FloatArray, b: FloatArray, k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k (k capped at the number of features)."""
    if k < 1:
        raise ValueError("k ≥ 1")
    k = min(k, a.size)
    return len(set(top_features(a, k)) & set(top_features(b, k))) / k


@dataclass(frozen=True)
class ProtectedChange:
    value: float
    """Largest |candidate share − baseline share| over the protected features."""
    feature: str
    change: float
    """Signed: > 0 when the feature gained weight."""
    baseline_share: float
    candidate_share: float


def protected_change(
    features: Sequence[str],
    baseline_shares: FloatArray,
    candidate_shares: FloatArray,
    protected: Sequence[str],
) -> ProtectedChange:
    index = {name: i for i, name in enumerate(features)}
    present = [p for p in protected if p in index]
    if not present:
        raise InsufficientDataError("none of the protected features is attributed")
    changes = [(candidate_shares[index[p]] - baseline_shares[index[p]], p) for p in present]
    change, name = max(changes, key=lambda c: abs(c[0]))
    i = index[name]
    return ProtectedChange(
        abs(float(change)),
        name,
        float(change),
        float(baseline_shares[i]),
        float(candidate_shares[i]),
    )


@dataclass(frozen=True)
class AttributionResult:
    values: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


class AttributionComparison:
    """Attribution metrics of two summaries over the same features; see the module doc.

    ``top_k``: size of the top-feature sets compared. ``protected``: feature names whose
    share of attribution must not move. ``min_rows``: attributed rows each side needs.
    """

    def __init__(self, top_k: int = 5, protected: Sequence[str] = (), min_rows: int = 30):
        if top_k < 1 or min_rows < 1:
            raise ValueError("top_k ≥ 1 and min_rows ≥ 1")
        self.top_k = top_k
        self.protected = tuple(protected)
        self.min_rows = min_rows

    def _check(self, baseline: AttributionSummary, other: AttributionSummary) -> None:
        if baseline.features != other.features:
            raise ValueError("attribution summaries over different features")
        n = min(baseline.rows, other.rows)
        if n < self.min_rows:
            raise InsufficientDataError(f"{n} attributed rows < min_rows {self.min_rows}")

    def shadow_metrics(
        self, production: AttributionSummary, candidate: AttributionSummary
    ) -> AttributionResult:
        """A candidate's attributions against production's (on the same rows)."""
        self._check(production, candidate)
        a, b = production.mean_abs(), candidate.mean_abs()
        features = production.features
        values: dict[str, float] = {}
        unavailable: dict[str, str] = {}
        try:
            values["shadow_attribution_rank_corr"] = rank_correlation(a, b)
        except InsufficientDataError as exc:
            unavailable["shadow_attribution_rank_corr"] = str(exc)
        values["shadow_attribution_topk_overlap"] = topk_overlap(a, b, self.top_k)
        details: dict[str, Any] = {
            "rows": min(production.rows, candidate.rows),
            "top_k": min(self.top_k, len(features)),
            "production_top": [features[i] for i in top_features(a, self.top_k)],
            "candidate_top": [features[i] for i in top_features(b, self.top_k)],
        }
        name = "shadow_protected_attribution_delta"
        if not self.protected:
            unavailable[name] = "no protected features are named"
        else:
            try:
                change = protected_change(
                    features, production.shares(), candidate.shares(), self.protected
                )
            except InsufficientDataError as exc:
                unavailable[name] = str(exc)
            else:
                values[name] = change.value
                details["protected"] = {
                    "feature": change.feature,
                    "change": change.change,
                    "production_share": change.baseline_share,
                    "candidate_share": change.candidate_share,
                }
        return AttributionResult(values, details, unavailable)

    def shift(self, reference: AttributionSummary, window: AttributionSummary) -> AttributionResult:
        """``attribution_shift``: production's window attributions against its reference's."""
        self._check(reference, window)
        a, b = reference.mean_abs(), window.mean_abs()
        details = {
            "rows": window.rows,
            "reference_rows": reference.rows,
            "reference_top": [reference.features[i] for i in top_features(a, self.top_k)],
            "window_top": [window.features[i] for i in top_features(b, self.top_k)],
        }
        try:
            return AttributionResult({"attribution_shift": rank_correlation(a, b)}, details)
        except InsufficientDataError as exc:
            return AttributionResult({}, details, {"attribution_shift": str(exc)})
