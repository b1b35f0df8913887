"""Shadow comparison of a candidate model with production, as a mergeable summary.

One :class:`ShadowStats` covers one candidate of one model over one window. It holds, for
the rows run through the candidate:

* agreement of predicted classes with production's (classification);
* a sketch of the absolute score difference |candidate − production|;
* sketches of both score distributions, compared with PSI and Jensen–Shannon distance on
  production's decile bins (the same detectors as feature drift, :mod:`psi`, :mod:`js`);
* once labels arrive, performance and calibration (ECE) sketches of both models on the
  same rows, so deltas compare like with like;
* per-row and per-batch latency of the candidate and of the baseline it is compared with
  (production's own ONNX file run beside it, or else production's logged latency);
* rows dropped because inference could not keep up, and rows the candidate failed on;
* on a sampled subset of the rows, :class:`AttributionSummary` of both models' feature
  attributions (:mod:`shapley`) on the same rows, and the rows chosen for attribution but
  skipped because attribution was over its CPU budget.

Every part merges exactly (sums, KLL sketches), like :class:`WindowSummary`, so small
flushes, replicas and windows combine. :meth:`ShadowStats.metrics` turns a summary into
the ``shadow_*`` metric values that policy rules and promotion criteria use.

Rows are sampled by their record key (:func:`sample_mask`), so a replay, a replica and
every candidate at the same rate pick the same rows, and lower rates pick subsets.

>>> s = ShadowStats("classification")
>>> s.update(np.array([0.9, 0.2, 0.6]), np.array([0.8, 0.3, 0.4]),
...          ["1", "0", "1"], ["1", "0", "0"])
>>> m = s.metrics(); (m["shadow_rows"], round(m["shadow_agreement"], 3))
(3.0, 0.667)
>>> round(m["shadow_mean_abs_diff"], 3)
0.133
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.attribution import (
    ATTRIBUTION_METRICS,
    AttributionComparison,
    AttributionSummary,
)
from watchkeeper.detectors.base import Direction
from watchkeeper.detectors.calibration import CalibrationSketch, confidence_of
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.js import JSDistance
from watchkeeper.detectors.performance import PerformanceSketch, Task
from watchkeeper.detectors.profile import column_profile
from watchkeeper.detectors.psi import PSI
from watchkeeper.detectors.sketches import NumericSketch

Array = np.ndarray[Any, Any]
Side = Literal["candidate", "baseline"]
SCORE_BINS = 10  # deciles of production's scores, as PSI's usual binning
LABELLED_METRICS = {
    "classification": ("accuracy", "f1", "roc_auc"),
    "regression": ("mae", "rmse"),
}

# name → (direction, what it is); the registry publishes these for policy files
SHADOW_METRICS: dict[str, tuple[Direction, str]] = {
    "shadow_rows": ("lower_is_worse", "rows run through the candidate"),
    "shadow_agreement": ("lower_is_worse", "share of rows whose predicted class matches"),
    "shadow_mean_abs_diff": ("higher_is_worse", "mean |candidate − production| score"),
    "shadow_p99_abs_diff": ("higher_is_worse", "p99 of |candidate − production| score"),
    "shadow_psi": ("higher_is_worse", "PSI of candidate vs production scores (deciles)"),
    "shadow_js_distance": ("higher_is_worse", "JS distance of candidate vs production scores"),
    "shadow_accuracy_delta": ("lower_is_worse", "candidate − production accuracy on labels"),
    "shadow_f1_delta": ("lower_is_worse", "candidate − production F1 on labels"),
    "shadow_auc_delta": ("lower_is_worse", "candidate − production ROC AUC on labels"),
    "shadow_mae_delta": ("higher_is_worse", "candidate − production MAE on labels"),
    "shadow_rmse_delta": ("higher_is_worse", "candidate − production RMSE on labels"),
    "shadow_ece_delta": ("higher_is_worse", "candidate − production expected calibration error"),
    "shadow_labelled_rows": ("lower_is_worse", "shadow rows with a label"),
    "shadow_latency_p50_ms": ("higher_is_worse", "candidate latency p50 per row (ms)"),
    "shadow_latency_p99_ms": ("higher_is_worse", "candidate latency p99 per row (ms)"),
    "shadow_batch_latency_p99_ms": ("higher_is_worse", "candidate latency p99 per batch (ms)"),
    "shadow_latency_p50_ratio": ("higher_is_worse", "candidate / baseline p50 latency per row"),
    "shadow_latency_p99_ratio": ("higher_is_worse", "candidate / baseline p99 latency per row"),
    "shadow_batch_latency_p99_ratio": ("higher_is_worse", "candidate / baseline p99 per batch"),
    "shadow_size_ratio": ("higher_is_worse", "candidate / baseline model file size"),
    "shadow_drop_rate": ("higher_is_worse", "share of sampled rows dropped (queue full)"),
    "shadow_error_rate": ("higher_is_worse", "share of rows the candidate failed on"),
    "shadow_attributed_rows": ("lower_is_worse", "shadow rows attributed by both models"),
    **{name: (m.direction, m.description) for name, m in ATTRIBUTION_METRICS.items()},
}
ATTRIBUTION_SHADOW_METRICS = (
    "shadow_attribution_rank_corr",
    "shadow_attribution_topk_overlap",
    "shadow_protected_attribution_delta",
)


def label_based(metric: str) -> bool:
    """Whether a ``shadow_*`` metric compares the models on labelled rows."""
    return metric.endswith("_delta") and metric not in ATTRIBUTION_SHADOW_METRICS


def attribution_based(metric: str) -> bool:
    """Whether a ``shadow_*`` metric compares the models' feature attributions."""
    return metric in ATTRIBUTION_SHADOW_METRICS or metric == "shadow_attributed_rows"


def sample_mask(keys: Array, rate: float) -> Array:
    """Rows to evaluate at ``rate``: those whose 64-bit record key falls below rate·2⁶⁴.

    >>> keys = np.array([0, 2**62, 2**63 + 1, 2**64 - 1], dtype=np.uint64)
    >>> sample_mask(keys, 0.5).tolist()
    [True, True, False, False]
    """
    if rate >= 1.0:
        return np.ones(keys.shape, dtype=bool)
    return np.asarray(keys < np.uint64(int(rate * 2.0**64)))


def _ratio(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        raise InsufficientDataError("no baseline latency to compare with")
    return a / b


class ShadowStats:
    """See the module docstring."""

    def __init__(self, task: Task, k: int = 200) -> None:
        self.task = task
        self.k = k
        self.rows = 0
        self.dropped = 0
        self.errors = 0
        self.compared = 0
        self.agree = 0
        self.diff = NumericSketch(k)
        self.scores = {"candidate": NumericSketch(k), "production": NumericSketch(k)}
        self.row_ms = {"candidate": NumericSketch(k), "baseline": NumericSketch(k)}
        self.batch_ms = {"candidate": NumericSketch(k), "baseline": NumericSketch(k)}
        self.baseline_basis = "logged"
        """``onnx`` when production's own model file ran beside the candidate."""
        self.performance = {
            "candidate": PerformanceSketch(task),
            "production": PerformanceSketch(task),
        }
        self.calibration = {"candidate": CalibrationSketch(), "production": CalibrationSketch()}
        self.size_bytes = 0
        self.baseline_size_bytes = 0
        self.parameters = 0
        self.attribution: dict[str, AttributionSummary] | None = None
        """``production`` and ``candidate`` attributions of the same rows (None: none yet)."""
        self.attribution_skipped = 0
        """Rows chosen for attribution but skipped: attribution was over its CPU budget."""

    # -- building ----------------------------------------------------------------------
    def update(
        self,
        candidate: Array,
        production: Array,
        candidate_classes: Sequence[str | None] | None = None,
        production_classes: Sequence[str | None] | None = None,
    ) -> None:
        """Add rows: both models' scores (NaN where unknown) and, for classifiers, classes."""
        self.rows += int(candidate.size)
        self.scores["candidate"].update(candidate.astype(np.float64, copy=False))
        self.scores["production"].update(production.astype(np.float64, copy=False))
        both = np.isfinite(candidate) & np.isfinite(production)
        if both.any():
            self.diff.update(np.abs(candidate[both] - production[both]).astype(np.float64))
        if candidate_classes is not None and production_classes is not None:
            c = np.asarray(candidate_classes, dtype=object)
            p = np.asarray(production_classes, dtype=object)
            known = (c != None) & (p != None)  # noqa: E711 (element-wise on object arrays)
            self.compared += int(known.sum())
            self.agree += int((c[known] == p[known]).sum())

    def update_latency(self, side: Side, row_ms: Array, batch_ms: Array) -> None:
        self.row_ms[side].update(np.asarray(row_ms, dtype=np.float64))
        self.batch_ms[side].update(np.asarray(batch_ms, dtype=np.float64))

    def update_labelled(
        self,
        labels: Array,
        candidate: Array,
        production: Array,
        candidate_classes: Sequence[str | None] | None = None,
        production_classes: Sequence[str | None] | None = None,
    ) -> None:
        """Add labelled rows of both models (labels as class names, or numbers)."""
        if self.task == "regression":
            y = labels.astype(np.float64)
            self.performance["candidate"].update_regression(y, candidate.astype(np.float64))
            self.performance["production"].update_regression(y, production.astype(np.float64))
            return
        assert candidate_classes is not None and production_classes is not None
        names = [str(v) for v in labels.tolist()]
        binary = set(names) | {c for c in candidate_classes if c} <= {"0", "1"}
        for side, classes, scores in (
            ("candidate", candidate_classes, candidate),
            ("production", production_classes, production),
        ):
            known = [i for i, c in enumerate(classes) if c is not None]
            self.performance[side].update_classification(
                [names[i] for i in known],
                [str(classes[i]) for i in known],
                scores[known] if binary else None,
            )
            hit = np.array([classes[i] == names[i] for i in known], dtype=bool)
            self.calibration[side].update(confidence_of(scores[known], binary), hit)

    def update_attribution(
        self, features: Sequence[str], production: Array, candidate: Array
    ) -> None:
        """Add both models' attributions [rows, features] of the same rows."""
        if self.attribution is None or self.attribution["production"].features != tuple(features):
            # first rows, or the inputs changed with a policy reload: start afresh
            self.attribution = {
                "production": AttributionSummary(features),
                "candidate": AttributionSummary(features),
            }
        self.attribution["production"].update(production)
        self.attribution["candidate"].update(candidate)

    def _merge_attribution(self, other: ShadowStats) -> None:
        self.attribution_skipped += other.attribution_skipped
        if other.attribution is None:
            return
        mine = self.attribution
        if mine is None or mine["production"].features != other.attribution["production"].features:
            # summaries over other inputs do not merge: the later (``other``) ones win
            self.attribution = {
                side: AttributionSummary.from_dict(s.to_dict())
                for side, s in other.attribution.items()
            }
            return
        for side, summary in other.attribution.items():
            mine[side].merge(summary)

    def merge(self, other: ShadowStats) -> None:
        if other.task != self.task:
            raise ValueError("cannot merge shadow summaries of different tasks")
        self.rows += other.rows
        self.dropped += other.dropped
        self.errors += other.errors
        self.compared += other.compared
        self.agree += other.agree
        self.diff.merge(other.diff)
        for mine, theirs in (
            (self.scores, other.scores),
            (self.row_ms, other.row_ms),
            (self.batch_ms, other.batch_ms),
        ):
            for side, sketch in theirs.items():
                mine[side].merge(sketch)
        for side, perf in other.performance.items():
            self.performance[side].merge(perf)
        for side, cal in other.calibration.items():
            self.calibration[side].merge(cal)
        if other.baseline_basis == "onnx":
            self.baseline_basis = "onnx"
        self.size_bytes = other.size_bytes or self.size_bytes
        self.baseline_size_bytes = other.baseline_size_bytes or self.baseline_size_bytes
        self.parameters = other.parameters or self.parameters
        self._merge_attribution(other)

    # -- reading -----------------------------------------------------------------------
    def metrics(self, attribution: AttributionComparison | None = None) -> dict[str, float]:
        """Every ``shadow_*`` value the summary allows (absent ones are left out).

        ``attribution``: how attributions are compared (the policy's ``protected``
        features and ``attributions`` settings); default top 5, no protected features."""
        out: dict[str, float] = {"shadow_rows": float(self.rows)}
        offered = self.rows + self.dropped
        if offered:
            out["shadow_drop_rate"] = self.dropped / offered
        if self.rows + self.errors:
            out["shadow_error_rate"] = self.errors / (self.rows + self.errors)
        if self.compared:
            out["shadow_agreement"] = self.agree / self.compared
        if self.diff.count:
            out["shadow_mean_abs_diff"] = self.diff.mean
            out["shadow_p99_abs_diff"] = float(self.diff.quantiles([0.99])[0])
        production, candidate = self.scores["production"], self.scores["candidate"]
        if production.count and candidate.count:
            profile = column_profile(production, SCORE_BINS)
            out["shadow_psi"] = PSI().score(profile, candidate).value
            out["shadow_js_distance"] = JSDistance().score(profile, candidate).value
        out.update(self._labelled())
        out.update(self._latency())
        if self.size_bytes and self.baseline_size_bytes:
            out["shadow_size_ratio"] = self.size_bytes / self.baseline_size_bytes
        out.update(self.attribution_result(attribution)[0])
        return out

    def attribution_result(
        self, comparison: AttributionComparison | None = None
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """(the attribution metrics, their details) — what is missing says why in
        ``details["unavailable"]``."""
        details: dict[str, Any] = {"skipped": self.attribution_skipped}
        if self.attribution is None:
            details["rows"] = 0
            details["unavailable"] = dict.fromkeys(ATTRIBUTION_SHADOW_METRICS, "no attributed rows")
            return {}, details
        comparison = comparison or AttributionComparison()
        production, candidate = self.attribution["production"], self.attribution["candidate"]
        rows = min(production.rows, candidate.rows)
        values: dict[str, float] = {"shadow_attributed_rows": float(rows)}
        details["rows"] = rows
        details["features"] = list(production.features)
        try:
            result = comparison.shadow_metrics(production, candidate)
        except InsufficientDataError as exc:
            details["unavailable"] = {m: str(exc) for m in ATTRIBUTION_SHADOW_METRICS}
            return values, details
        values.update(result.values)
        details.update(result.details)
        details["unavailable"] = dict(result.unavailable)
        try:
            details["production_shares"] = production.shares().round(6).tolist()
            details["candidate_shares"] = candidate.shares().round(6).tolist()
        except InsufficientDataError:
            pass
        return values, details

    def _labelled(self) -> dict[str, float]:
        cand, prod = self.performance["candidate"], self.performance["production"]
        out: dict[str, float] = {"shadow_labelled_rows": float(min(cand.n, prod.n))}
        mc, mp = cand.metrics(), prod.metrics()
        for name in LABELLED_METRICS[self.task]:
            if name in mc and name in mp:
                out[f"shadow_{'auc' if name == 'roc_auc' else name}_delta"] = mc[name] - mp[name]
        cc, cp = self.calibration["candidate"], self.calibration["production"]
        if cc.n and cp.n:
            out["shadow_ece_delta"] = cc.ece() - cp.ece()
        return out

    def _latency(self) -> dict[str, float]:
        out: dict[str, float] = {}
        row, batch = self.row_ms["candidate"], self.batch_ms["candidate"]
        if not row.count:
            return out
        p50, p99 = (float(v) for v in row.quantiles([0.5, 0.99]))
        out["shadow_latency_p50_ms"] = p50
        out["shadow_latency_p99_ms"] = p99
        if batch.count:
            out["shadow_batch_latency_p99_ms"] = float(batch.quantiles([0.99])[0])
        base_row, base_batch = self.row_ms["baseline"], self.batch_ms["baseline"]
        if base_row.count:
            b50, b99 = (float(v) for v in base_row.quantiles([0.5, 0.99]))
            try:
                out["shadow_latency_p50_ratio"] = _ratio(p50, b50)
                out["shadow_latency_p99_ratio"] = _ratio(p99, b99)
            except InsufficientDataError:
                pass
        if batch.count and base_batch.count:
            with_batch = float(base_batch.quantiles([0.99])[0])
            if with_batch > 0:
                out["shadow_batch_latency_p99_ratio"] = out["shadow_batch_latency_p99_ms"] / (
                    with_batch
                )
        return out

    # -- storage -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "k": self.k,
            "counts": [self.rows, self.dropped, self.errors, self.compared, self.agree],
            "diff": self.diff.to_dict(),
            "scores": {s: v.to_dict() for s, v in self.scores.items()},
            "row_ms": {s: v.to_dict() for s, v in self.row_ms.items()},
            "batch_ms": {s: v.to_dict() for s, v in self.batch_ms.items()},
            "baseline_basis": self.baseline_basis,
            "performance": {s: v.to_dict() for s, v in self.performance.items()},
            "calibration": {s: v.to_dict() for s, v in self.calibration.items()},
            "sizes": [self.size_bytes, self.baseline_size_bytes, self.parameters],
            "attribution": None
            if self.attribution is None
            else {side: a.to_dict() for side, a in self.attribution.items()},
            "attribution_skipped": self.attribution_skipped,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShadowStats:
        out = cls(d["task"], int(d["k"]))
        out.rows, out.dropped, out.errors, out.compared, out.agree = (int(x) for x in d["counts"])
        out.diff = NumericSketch.from_dict(d["diff"])
        out.scores = {s: NumericSketch.from_dict(v) for s, v in d["scores"].items()}
        out.row_ms = {s: NumericSketch.from_dict(v) for s, v in d["row_ms"].items()}
        out.batch_ms = {s: NumericSketch.from_dict(v) for s, v in d["batch_ms"].items()}
        out.baseline_basis = str(d["baseline_basis"])
        out.performance = {s: PerformanceSketch.from_dict(v) for s, v in d["performance"].items()}
        out.calibration = {s: CalibrationSketch.from_dict(v) for s, v in d["calibration"].items()}
        out.size_bytes, out.baseline_size_bytes, out.parameters = (int(x) for x in d["sizes"])
        # summaries stored before attributions existed have neither key
        attribution = d.get("attribution")
        if attribution is not None:
            out.attribution = {
                side: AttributionSummary.from_dict(a) for side, a in attribution.items()
            }
        out.attribution_skipped = int(d.get("attribution_skipped", 0))
        return out
