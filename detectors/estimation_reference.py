"""What the reference build fits for estimates, in one JSON-able object per model.

:func:`fit_binary_estimation`, :func:`fit_multiclass_estimation` and
:func:`fit_regression_estimation` take the reference's rows (labels included) and return
an :class:`Estimation`: the calibrator or loss model, the reference's *realised* metrics
(on raw scores: the base of ``relative: true``), the estimates on the reference itself
(a check that calibration worked there), and the chunk spread of each realised metric
for the bands (:mod:`watchkeeper.detectors.sampling_band`). It is meant to sit in the
reference profile under ``"estimation"`` (the profile's format version is bumped when it
does; a profile without it has no estimates).

:meth:`Estimation.new_sketch` gives the empty window state to update at ingest, and
:meth:`Estimation.estimate` turns a window's state into an :class:`~watchkeeper.detectors.
estimated_performance.Estimate` with its band.

>>> rng = np.random.default_rng(2)
>>> s = rng.random(4000); y = rng.random(4000) < s
>>> est = fit_binary_estimation(s, y)
>>> window = est.new_sketch()
>>> window.update(est.calibrator, rng.random(1000))
>>> e = est.estimate("estimated_accuracy", window)
>>> e.band.lower < e.value < e.band.upper, e.n
(True, 1000)
>>> Estimation.from_dict(est.to_dict()) == est
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.calibrator import (
    MulticlassCalibrator,
    StepCalibrator,
    calibrator_from_dict,
)
from watchkeeper.detectors.calibrator_fit import fit_binary_calibrator, fit_multiclass_calibrator
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimate_sketch import (
    BinaryEstimateSketch,
    EstimateSketch,
    MulticlassEstimateSketch,
    class_index,
    estimate_sketch_from_dict,
)
from watchkeeper.detectors.estimated_performance import (
    ESTIMATED_METRICS,
    Estimate,
    EstimatedClassificationMetric,
    binary_estimates,
    confusion_ratios,
    multiclass_estimates,
)
from watchkeeper.detectors.loss_model import LossModel, fit_loss_model
from watchkeeper.detectors.loss_sketch import EstimatedRegressionMetric, LossSketch
from watchkeeper.detectors.sampling_band import (
    DEFAULT_CHUNKS,
    SAMPLING_ERROR_RANGE,
    MetricSpread,
    band_around,
    chunk_spreads,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
ESTIMATION_FORMAT = "watchkeeper.estimation/v1"
Problem = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Estimation:
    """A model's estimation reference; see the module docstring."""

    problem: Problem
    model: StepCalibrator | MulticlassCalibrator | LossModel
    reference: dict[str, float]
    """Realised metrics of the whole reference, raw scores (``accuracy``, … / ``mae``, …)."""
    estimated_reference: dict[str, float]
    """The estimates computed on the reference's own rows."""
    spreads: dict[str, MetricSpread] = field(default_factory=dict)
    """Per realised metric: its σ over reference chunks."""

    @property
    def fingerprint(self) -> str:
        """Names the calibrator or loss model: window state counted under it carries it."""
        return self.model.fingerprint

    @property
    def calibrator(self) -> StepCalibrator | MulticlassCalibrator:
        if isinstance(self.model, LossModel):
            raise TypeError("a regression estimation has a loss model, not a calibrator")
        return self.model

    @property
    def metrics(self) -> tuple[str, ...]:
        """The ``estimated_*`` metrics this reference supports."""
        return tuple(n for n, s in ESTIMATED_METRICS.items() if self.problem in s.problems)

    def new_sketch(self) -> EstimateSketch | LossSketch:
        """Empty window state for these estimates."""
        if isinstance(self.model, StepCalibrator):
            return BinaryEstimateSketch.for_calibrator(self.model)
        if isinstance(self.model, MulticlassCalibrator):
            return MulticlassEstimateSketch.for_calibrator(self.model)
        return LossSketch(self.model.fingerprint, self.model.exponents)

    def estimate(
        self,
        metric: str,
        sketch: EstimateSketch | LossSketch,
        width: float = SAMPLING_ERROR_RANGE,
    ) -> Estimate:
        """One ``estimated_*`` metric of a window, with its band and the reference value."""
        spec = ESTIMATED_METRICS.get(metric)
        if spec is None or self.problem not in spec.problems:
            raise ValueError(f"{metric!r} is not an estimate for a {self.problem} model")
        spread = self.spreads.get(spec.realised)
        if isinstance(sketch, LossSketch):
            out = EstimatedRegressionMetric(metric, width).score(sketch, spread)
        else:
            out = EstimatedClassificationMetric(metric, width).score(
                sketch, self.calibrator, spread
            )
        details = {"reference": self.reference.get(spec.realised)}
        return Estimate(out.metric, out.value, out.band, out.n, out.nan_scores, details)

    def estimate_all(
        self, sketch: EstimateSketch | LossSketch, width: float = SAMPLING_ERROR_RANGE
    ) -> dict[str, Estimate]:
        """Every estimate the window allows (the metrics computed once, not per metric);
        an undefined one is left out. Raises InsufficientDataError for an empty window."""
        if isinstance(sketch, LossSketch):
            values = sketch.estimates()
            n, nan = sketch.n, sketch.nan_predictions
        elif isinstance(sketch, BinaryEstimateSketch) and isinstance(self.model, StepCalibrator):
            values, n, nan = binary_estimates(sketch, self.model), sketch.n, sketch.nan_scores
        elif isinstance(sketch, MulticlassEstimateSketch) and isinstance(
            self.model, MulticlassCalibrator
        ):
            values, n, nan = multiclass_estimates(sketch, self.model), sketch.n, sketch.nan_scores
        else:
            raise ValueError(f"a {type(sketch).__name__} does not fit a {self.problem} model")
        out = {}
        for metric in self.metrics:
            spec = ESTIMATED_METRICS[metric]
            if spec.realised not in values:
                continue
            value = values[spec.realised]
            spread = self.spreads.get(spec.realised)
            band = (
                None
                if spread is None
                else band_around(value, spread, n, spec.lower_limit, spec.upper_limit, width)
            )
            details = {"reference": self.reference.get(spec.realised)}
            out[metric] = Estimate(metric, value, band, n, nan, details)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ESTIMATION_FORMAT,
            "problem": self.problem,
            "model": self.model.to_dict(),
            "reference": self.reference,
            "estimated_reference": self.estimated_reference,
            "spreads": {k: s.to_dict() for k, s in sorted(self.spreads.items())},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimation:
        if d.get("format") != ESTIMATION_FORMAT:
            raise ValueError(f"not a {ESTIMATION_FORMAT} object (format {d.get('format')!r})")
        problem = d["problem"]
        if problem not in ("binary", "multiclass", "regression"):
            raise ValueError(f"unknown problem {problem!r}")
        model: StepCalibrator | MulticlassCalibrator | LossModel = (
            LossModel.from_dict(d["model"])
            if problem == "regression"
            else calibrator_from_dict(d["model"])
        )
        return cls(
            problem=problem,
            model=model,
            reference={k: float(v) for k, v in d["reference"].items()},
            estimated_reference={k: float(v) for k, v in d["estimated_reference"].items()},
            spreads={k: MetricSpread.from_dict(s) for k, s in d["spreads"].items()},
        )


def window_estimate_from_dict(d: dict[str, Any]) -> EstimateSketch | LossSketch:
    """Any of the three window states from its stored form (``kind`` tells which)."""
    if d.get("kind") == LossSketch.kind:
        return LossSketch.from_dict(d)
    return estimate_sketch_from_dict(d)


# -- realised metrics on reference rows (raw scores; reference time only) ---------------


def realised_binary(
    scores: FloatArray, labels: np.ndarray[Any, Any], predicted: np.ndarray[Any, Any]
) -> dict[str, float]:
    """Realised metrics on raw scores, the definitions of scikit-learn."""
    from sklearn.metrics import roc_auc_score

    y, p = labels.astype(bool), predicted.astype(bool)
    out = confusion_ratios(
        float(np.sum(y & p)), float(np.sum(~y & p)), float(np.sum(y & ~p)), float(np.sum(~y & ~p))
    )
    if y.any() and not y.all():
        out["roc_auc"] = float(roc_auc_score(y, scores))
    return out


def realised_multiclass(
    scores: FloatArray, labels: IntArray, predicted: IntArray, classes: int
) -> dict[str, float]:
    """Accuracy and macro metrics over the classes present (labels or predictions), the
    one-vs-rest AUC of each class on its own raw score column, averaged."""
    from sklearn.metrics import roc_auc_score

    out = {"accuracy": float(np.mean(labels == predicted))}
    per: dict[str, list[float]] = {"precision": [], "recall": [], "specificity": [], "f1": []}
    for k in range(classes):
        y, p = labels == k, predicted == k
        if not (y.any() or p.any()):
            continue
        ratios = confusion_ratios(
            float(np.sum(y & p)),
            float(np.sum(~y & p)),
            float(np.sum(y & ~p)),
            float(np.sum(~y & ~p)),
        )
        for name in per:
            per[name].append(ratios.get(name, 0.0))
    out.update({name: float(np.mean(v)) for name, v in per.items() if v})
    aucs = [
        float(roc_auc_score(labels == k, scores[:, k]))
        for k in range(classes)
        if (labels == k).any() and not (labels == k).all()
    ]
    if aucs:
        out["roc_auc"] = float(np.mean(aucs))
    return out


# -- fitting ---------------------------------------------------------------------------


def fit_binary_estimation(
    scores: Any,
    labels: Any,
    threshold: float = 0.5,
    predicted: Any = None,
    bins: int = 256,
    chunks: int = DEFAULT_CHUNKS,
) -> Estimation:
    """Calibrator, reference metrics and spreads from reference rows: raw scores P(1),
    0/1 labels, and the predicted classes when the model gives them (else score ≥
    ``threshold``). Rows with a non-finite score are left out (counted in the decision)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    calibrator = fit_binary_calibrator(s, y, threshold=threshold, bins=bins)
    ok = np.isfinite(s)
    pred = s >= threshold if predicted is None else np.asarray(predicted).astype(bool)
    s, y, pred = s[ok], y[ok], pred[ok]
    sketch = BinaryEstimateSketch.for_calibrator(calibrator)
    sketch.update(calibrator, s, None if predicted is None else pred)
    return Estimation(
        "binary",
        calibrator,
        realised_binary(s, y, pred),
        binary_estimates(sketch, calibrator),
        chunk_spreads(lambda i: realised_binary(s[i], y[i], pred[i]), s.size, chunks),
    )


def fit_multiclass_estimation(
    scores: Any,
    labels: Any,
    classes: list[str] | tuple[str, ...],
    predicted: Any = None,
    bins: int = 256,
    chunks: int = DEFAULT_CHUNKS,
) -> Estimation:
    """As :func:`fit_binary_estimation` for an n × classes score matrix and class-name
    labels; predicted classes default to the arg-max of the raw scores."""
    s = np.asarray(scores, dtype=np.float64)
    names = tuple(str(c) for c in classes)
    calibrator = fit_multiclass_calibrator(s, labels, names, bins=bins)
    ok = np.isfinite(s).all(axis=1)
    y = class_index(names, [str(v) for v in labels])
    pred = (
        np.argmax(np.where(np.isfinite(s), s, -np.inf), axis=1)
        if predicted is None
        else class_index(names, [str(v) for v in predicted])
    )
    ok &= (y >= 0) & (pred >= 0)
    s, y, pred = s[ok], y[ok], pred[ok]
    sketch = MulticlassEstimateSketch.for_calibrator(calibrator)
    sketch.update(calibrator, s, pred)
    k = len(names)
    return Estimation(
        "multiclass",
        calibrator,
        realised_multiclass(s, y, pred, k),
        multiclass_estimates(sketch, calibrator),
        chunk_spreads(lambda i: realised_multiclass(s[i], y[i], pred[i], k), s.shape[0], chunks),
    )


def fit_regression_estimation(
    columns: Mapping[str, Any],
    prediction: Any,
    target: Any,
    categorical: frozenset[str] = frozenset(),
    params: dict[str, Any] | None = None,
    chunks: int = DEFAULT_CHUNKS,
) -> Estimation:
    """Loss model (:func:`~watchkeeper.detectors.loss_model.fit_loss_model`), reference
    MAE / RMSE and their chunk spreads from labelled reference rows."""
    pred = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    model = fit_loss_model(columns, pred, y, categorical=categorical, params=params)
    ok = np.isfinite(pred) & np.isfinite(y)
    if not ok.any():
        raise InsufficientDataError("no labelled reference rows")
    err = y[ok] - pred[ok]

    def realised(i: IntArray) -> dict[str, float]:
        e = err[i]
        return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e**2).mean()))}

    sketch = LossSketch(model.fingerprint)
    sketch.update(model, columns, pred)
    return Estimation(
        "regression",
        model,
        realised(np.arange(err.size)),
        sketch.estimates(),
        chunk_spreads(realised, err.size, chunks, relative=frozenset({"mae", "rmse"})),
    )
