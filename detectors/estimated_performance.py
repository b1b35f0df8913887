"""Estimated performance of a window from its estimate sketch: CBPE on mergeable state.

Confidence-based performance estimation (NannyML's CBPE,
``nannyml/performance_estimation/confidence_based/metrics.py``): if the calibrated
probability p of a row is right, the row is a true positive with probability p when
predicted 1 and a false negative with probability p when predicted 0, so

    E[TP] = Σ_{ŷ=1} p,   E[FP] = Σ_{ŷ=1} (1 − p),   E[FN] = Σ_{ŷ=0} p,   E[TN] = Σ_{ŷ=0} (1 − p)

and accuracy, precision, recall, specificity and F1 are the same ratios of these
expected counts (NannyML's ``estimate_accuracy`` … ``estimate_f1``). With a step
calibrator p is constant per step, so Σ_{ŷ=1} p = Σ_i counts[1, i] · p_i: the sketch's
integer counts give exactly the row-by-row sums (up to the order of float additions).

ROC AUC. NannyML's ``estimate_roc_auc`` ranks rows by raw score (highest first), walks
the ROC curve with one step of (Δfp, Δtp) = (1 − p, p) per row and integrates it with the
trapezoid rule. All rows of one calibrator step have the same p, so inside a step the
curve is one straight segment from (F, T) to (F + N_i, T + P_i), where P_i = n_i · p_i and
N_i = n_i · (1 − p_i) — whatever the order of the rows inside the step, and equal raw
scores never straddle two steps. The trapezoid over that segment is N_i · (T + P_i / 2),
T being the expected positives of the higher steps, so

    AUC = Σ_i N_i · (Σ_{j>i} P_j + P_i / 2) / (P · N)

computed from the step counts alone equals the row-by-row value with the same
calibrator (tested against it). Multiclass one-vs-rest AUC uses the same formula on the
class's own steps, with P_i the summed renormalised probabilities of the step; there
the rows of a step are treated as tied (the renormalised p varies inside a step).

Multiclass: the expected confusion matrix E[C]_{jk} = Σ_{ŷ=k} p_j (renormalised one-vs-rest
probabilities), macro averages over the classes present (with expected label mass or
predictions), an undefined per-class term (no predicted rows, say) counting 0 as in
scikit-learn's ``zero_division=0`` and :class:`watchkeeper.detectors.performance.PerformanceSketch`.

An empty window, or a metric whose denominator is 0, raises
:class:`~watchkeeper.detectors.errors.InsufficientDataError`: never a number.

>>> from watchkeeper.detectors.calibrator import CalibrationDecision, StepCalibrator
>>> from watchkeeper.detectors.estimate_sketch import BinaryEstimateSketch
>>> cal = StepCalibrator((0.5,), (0.2, 0.9), 0.5, CalibrationDecision(True, "example"))
>>> s = BinaryEstimateSketch.for_calibrator(cal)
>>> s.update(cal, np.array([0.1, 0.2, 0.7, 0.8]))
>>> m = binary_estimates(s, cal)
>>> (round(m["accuracy"], 3), round(m["precision"], 3), round(m["roc_auc"], 4))
(0.85, 0.9, 0.8535)
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from watchkeeper.detectors.calibrator import MulticlassCalibrator, StepCalibrator
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimate_sketch import (
    SCALE,
    BinaryEstimateSketch,
    MulticlassEstimateSketch,
)
from watchkeeper.detectors.sampling_band import (
    SAMPLING_ERROR_RANGE,
    Band,
    MetricSpread,
    band_around,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Problem = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class EstimatedMetricSpec:
    """What a registry entry needs for one estimated metric."""

    name: str
    realised: str
    """The realised metric it predicts (``accuracy`` for ``estimated_accuracy``): its
    reference value is the base of ``relative: true`` and its window value the trust check's."""
    problems: frozenset[Problem]
    direction: Literal["lower_is_worse", "higher_is_worse"]
    lower_limit: float
    upper_limit: float
    description: str
    warn_relative: float = -0.01  # the realised metrics' defaults (issue 19)
    critical_relative: float = -0.02


_CLS: frozenset[Problem] = frozenset({"binary", "multiclass"})
_LIMITS = {"lower_limit": 0.0, "upper_limit": 1.0}
ESTIMATED_METRICS: dict[str, EstimatedMetricSpec] = {
    s.name: s
    for s in [
        EstimatedMetricSpec(
            "estimated_accuracy", "accuracy", _CLS, "lower_is_worse", **_LIMITS,
            description="accuracy expected from calibrated scores (CBPE)",
        ),
        EstimatedMetricSpec(
            "estimated_precision", "precision", _CLS, "lower_is_worse", **_LIMITS,
            description="precision (macro for multiclass) expected from calibrated scores",
        ),
        EstimatedMetricSpec(
            "estimated_recall", "recall", _CLS, "lower_is_worse", **_LIMITS,
            description="recall (macro for multiclass) expected from calibrated scores",
        ),
        EstimatedMetricSpec(
            "estimated_specificity", "specificity", _CLS, "lower_is_worse", **_LIMITS,
            description="specificity (macro for multiclass) expected from calibrated scores",
        ),
        EstimatedMetricSpec(
            "estimated_f1", "f1", _CLS, "lower_is_worse", **_LIMITS,
            description="F1 (macro for multiclass) expected from calibrated scores",
        ),
        EstimatedMetricSpec(
            "estimated_roc_auc", "roc_auc", _CLS, "lower_is_worse", **_LIMITS,
            description="ROC AUC (macro one-vs-rest) expected from calibrated scores",
        ),
        EstimatedMetricSpec(
            "estimated_mae", "mae", frozenset({"regression"}), "higher_is_worse",
            0.0, math.inf, "mean absolute error predicted by the loss model (DLE)",
            warn_relative=0.01, critical_relative=0.02,
        ),
        EstimatedMetricSpec(
            "estimated_rmse", "rmse", frozenset({"regression"}), "higher_is_worse",
            0.0, math.inf, "root mean squared error predicted by the loss model (DLE)",
            warn_relative=0.01, critical_relative=0.02,
        ),
    ]
}  # fmt: skip


def _ratio(num: float, den: float, what: str) -> float:
    if den <= 0:
        raise InsufficientDataError(f"{what} is undefined: its denominator is 0 in this window")
    return num / den


def _auc(positives: FloatArray, negatives: FloatArray) -> float:
    """Σ_i N_i · (P above i + P_i / 2) / (P · N), steps in increasing raw-score order."""
    p_total, n_total = float(positives.sum()), float(negatives.sum())
    if p_total <= 0 or n_total <= 0:
        raise InsufficientDataError("ROC AUC needs expected positives and negatives")
    above = np.concatenate([np.cumsum(positives[::-1])[::-1][1:], [0.0]])
    return float(np.sum(negatives * (above + positives / 2)) / (p_total * n_total))


def binary_confusion(sketch: BinaryEstimateSketch, calibrator: StepCalibrator) -> dict[str, float]:
    """Expected TP, FP, FN, TN of the window (see the module docstring)."""
    if sketch.fingerprint != calibrator.fingerprint:
        raise ValueError("the sketch was counted under another calibrator")
    p = np.asarray(calibrator.values, dtype=np.float64)
    neg_pred, pos_pred = sketch.counts.astype(np.float64)
    return {
        "tp": float(pos_pred @ p),
        "fp": float(pos_pred @ (1 - p)),
        "fn": float(neg_pred @ p),
        "tn": float(neg_pred @ (1 - p)),
    }


def confusion_ratios(tp: float, fp: float, fn: float, tn: float) -> dict[str, float]:
    """Accuracy, precision, recall, specificity and F1 of (expected or counted) cells; a
    ratio with a zero denominator is left out."""
    out: dict[str, float] = {}
    for name, num, den in (
        ("accuracy", tp + tn, tp + fp + fn + tn),
        ("precision", tp, tp + fp),
        ("recall", tp, tp + fn),
        ("specificity", tn, tn + fp),
        ("f1", 2 * tp, 2 * tp + fp + fn),
    ):
        if den > 0:
            out[name] = num / den
    return out


def binary_estimates(sketch: BinaryEstimateSketch, calibrator: StepCalibrator) -> dict[str, float]:
    """Every estimate the window allows, by realised name (``accuracy``, …, ``roc_auc``);
    undefined ones are left out. Raises InsufficientDataError for an empty window."""
    if sketch.n == 0:
        raise InsufficientDataError("no scored predictions in this window")
    c = binary_confusion(sketch, calibrator)
    out = confusion_ratios(c["tp"], c["fp"], c["fn"], c["tn"])
    p = np.asarray(calibrator.values, dtype=np.float64)
    n_step = sketch.counts.sum(axis=0).astype(np.float64)
    with contextlib.suppress(InsufficientDataError):
        out["roc_auc"] = _auc(n_step * p, n_step * (1 - p))
    return out


def multiclass_estimates(
    sketch: MulticlassEstimateSketch, calibrator: MulticlassCalibrator
) -> dict[str, float]:
    """Accuracy and macro precision / recall / specificity / F1 / one-vs-rest ROC AUC."""
    if sketch.fingerprint != calibrator.fingerprint:
        raise ValueError("the sketch was counted under another calibrator")
    if sketch.n == 0:
        raise InsufficientDataError("no scored predictions in this window")
    conf = sketch.expected_confusion()  # [true, predicted]
    total = float(conf.sum())
    truth, predicted = conf.sum(axis=1), conf.sum(axis=0)
    present = [k for k in range(sketch.classes) if truth[k] > 0 or sketch.predicted[k] > 0]
    per: dict[str, list[float]] = {"precision": [], "recall": [], "specificity": [], "f1": []}
    for k in present:
        tp = float(conf[k, k])
        fp, fn = float(predicted[k]) - tp, float(truth[k]) - tp
        tn = total - tp - fp - fn
        per["precision"].append(tp / (tp + fp) if tp + fp > 0 else 0.0)
        per["recall"].append(tp / (tp + fn) if tp + fn > 0 else 0.0)
        per["specificity"].append(tn / (tn + fp) if tn + fp > 0 else 0.0)
        per["f1"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
    out = {"accuracy": float(np.trace(conf)) / total}
    out.update({name: float(np.mean(v)) for name, v in per.items()})
    aucs = []
    for k in range(sketch.classes):
        mass = sketch.step_mass[k].astype(np.float64) / SCALE
        try:
            aucs.append(_auc(mass, sketch.step_count[k] - mass))
        except InsufficientDataError:
            continue
    if aucs:
        out["roc_auc"] = float(np.mean(aucs))
    return out


@dataclass(frozen=True)
class Estimate:
    """One estimated metric of one window, with its band and sample sizes."""

    metric: str
    value: float
    band: Band | None
    """None when the reference gave no spread for this metric (too few usable chunks)."""
    n: int
    nan_scores: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "band": None if self.band is None else self.band.to_dict(),
            "n": self.n,
            "nan_scores": self.nan_scores,
            "details": self.details,
        }


class EstimatedClassificationMetric:
    """One ``estimated_*`` classification metric of a window, with its sampling band.

    Configuration: the metric name and the band's width in standard errors. ``score``
    takes the window's sketch, the reference's calibrator and the reference's spread of
    the realised metric (None: no band).

    >>> from watchkeeper.detectors.calibrator import CalibrationDecision, StepCalibrator
    >>> from watchkeeper.detectors.estimate_sketch import BinaryEstimateSketch
    >>> from watchkeeper.detectors.sampling_band import MetricSpread
    >>> cal = StepCalibrator((0.5,), (0.2, 0.9), 0.5, CalibrationDecision(True, "example"))
    >>> s = BinaryEstimateSketch.for_calibrator(cal)
    >>> s.update(cal, np.array([0.1, 0.2, 0.7, 0.8] * 100))
    >>> e = EstimatedClassificationMetric("estimated_accuracy").score(
    ...     s, cal, MetricSpread(std=0.03, chunk_size=400, chunks=20))
    >>> (round(e.value, 3), round(e.band.lower, 3), round(e.band.upper, 3), e.n)
    (0.85, 0.76, 0.94, 400)
    """

    kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, width: float = SAMPLING_ERROR_RANGE) -> None:
        spec = ESTIMATED_METRICS.get(name)
        if spec is None or "regression" in spec.problems:
            raise ValueError(f"unknown estimated classification metric {name!r}")
        self.name = name
        self.width = width
        self._spec = spec

    def score(
        self,
        sketch: BinaryEstimateSketch | MulticlassEstimateSketch,
        calibrator: StepCalibrator | MulticlassCalibrator,
        spread: MetricSpread | None,
    ) -> Estimate:
        if isinstance(sketch, BinaryEstimateSketch) and isinstance(calibrator, StepCalibrator):
            values = binary_estimates(sketch, calibrator)
        elif isinstance(sketch, MulticlassEstimateSketch) and isinstance(
            calibrator, MulticlassCalibrator
        ):
            values = multiclass_estimates(sketch, calibrator)
        else:
            raise ValueError("a binary sketch needs a binary calibrator, multiclass likewise")
        realised = self._spec.realised
        if realised not in values:
            raise InsufficientDataError(f"{self.name} is undefined for this window")
        value = values[realised]
        band = (
            None
            if spread is None
            else band_around(
                value,
                spread,
                sketch.n,
                self._spec.lower_limit,
                self._spec.upper_limit,
                self.width,
            )
        )
        return Estimate(self.name, value, band, sketch.n, sketch.nan_scores)
