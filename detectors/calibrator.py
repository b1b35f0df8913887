"""Score calibration fitted at reference time, as step functions that window state can count.

Performance estimation (NannyML's CBPE) needs P(y = 1 | score). A model's score is often
not that probability, so a calibrator is fitted on the reference's (score, label) pairs.
Ours is a *step function* of the raw score: the reference's scores are cut into fine
equal-mass bins (quantiles, ``bins`` of them, the decision threshold inserted as an
edge), isotonic regression (scikit-learn's ``IsotonicRegression``, pool-adjacent-
violators) maps each bin index to a probability, and adjacent bins of equal probability
on the same side of the threshold merge into one step. A window then only has to count
its rows per step × predicted class — integers, which merge exactly across flushes,
windows and replicas (:mod:`watchkeeper.detectors.estimate_sketch`).

Whether calibration helps is decided as NannyML does (``nannyml/calibration.py``,
``needs_calibration``): ten stratified shuffle splits holding out 10 % of the reference,
the calibrator fitted on the rest, and the expected calibration error (ECE, 10 equal-mass
bins) of the pooled held-out rows compared before and after; calibrate only if it drops.
That comparison alone is a coin toss for scores that are calibrated already: both ECEs
are then sampling noise (≈ 0.01 on 2,000-row bins), and isotonic regression "wins" about
half the time. So the raw scores must also fail a calibration test first: the
Hosmer–Lemeshow statistic Σ_b (O_b − E_b)² / Σ_{i∈b} p_i(1 − p_i) over the same ten
equal-mass bins, χ²(10) under calibration (Hosmer & Lemeshow, *Applied Logistic
Regression*, 2nd ed., §5.2.2, with the exact binomial variance per bin), rejected at
p < 0.01 (:data:`CALIBRATION_TEST_LEVEL`). Unlike NannyML the numbers are kept
(:class:`CalibrationDecision`). When calibration does not help, the steps hold the mean
raw score of the reference rows in each fine bin — the identity, discretised so that it
stays countable. Scores outside [0, 1] are not
probabilities: those are always calibrated.

Multiclass models get one calibrator per class (one-vs-rest) and each row's calibrated
vector is renormalised to sum to 1 (NannyML's ``_calibrate_predicted_probabilities``).

scikit-learn is imported inside the fitting functions only: the daemon's ingest path
evaluates a fitted calibrator with numpy alone. Calibrators round-trip through JSON.

>>> rng = np.random.default_rng(0)
>>> s = rng.random(5000)
>>> y = rng.random(5000) < s ** 2          # the score overstates P(y = 1)
>>> cal = fit_binary_calibrator(s, y, bins=50)
>>> cal.decision.calibrate, cal.decision.ece_calibrated < cal.decision.ece_raw
(True, True)
>>> float(cal.calibrate(np.array([0.5]))[0]) < 0.35
True
>>> StepCalibrator.from_dict(cal.to_dict()) == cal
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
CALIBRATOR_FORMAT = "watchkeeper.calibrator/v1"
ECE_BINS = 10  # NannyML's default bin_count for the decision
FOLDS = 10  # NannyML's split_count
HOLDOUT = 0.1  # NannyML's test_size
CALIBRATION_TEST_LEVEL = 0.01


@dataclass(frozen=True)
class CalibrationDecision:
    """Whether the calibrated scores are used, and the held-out numbers behind it."""

    calibrate: bool
    reason: str
    ece_raw: float | None = None
    """ECE of the raw scores on the pooled held-out rows (None when not computed)."""
    ece_calibrated: float | None = None
    p_value: float | None = None
    """Hosmer–Lemeshow test of the raw scores on the whole reference: P(a χ² this large |
    the raw scores are calibrated)."""
    folds: int = 0
    rows: int = 0
    """Reference rows with a finite score used for the fit."""
    nan_scores: int = 0
    """Reference rows left out because their score was NaN or infinite."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibrate": self.calibrate,
            "reason": self.reason,
            "ece_raw": self.ece_raw,
            "ece_calibrated": self.ece_calibrated,
            "p_value": self.p_value,
            "folds": self.folds,
            "rows": self.rows,
            "nan_scores": self.nan_scores,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationDecision:
        def opt(x: Any) -> float | None:
            return None if x is None else float(x)

        return cls(
            calibrate=bool(d["calibrate"]),
            reason=str(d["reason"]),
            ece_raw=opt(d.get("ece_raw")),
            ece_calibrated=opt(d.get("ece_calibrated")),
            p_value=opt(d.get("p_value")),
            folds=int(d.get("folds", 0)),
            rows=int(d.get("rows", 0)),
            nan_scores=int(d.get("nan_scores", 0)),
        )


@dataclass(frozen=True)
class StepCalibrator:
    """P(y = 1 | raw score) as a step function; see the module docstring.

    Step ``i`` covers raw scores in ``[edges[i-1], edges[i])`` (step 0 is everything below
    ``edges[0]``, the last step everything from ``edges[-1]`` up), so ``len(values) ==
    len(edges) + 1``. Rows with a raw score ≥ ``threshold`` are predicted positive, and the
    threshold is an edge unless every reference score lies on one side of it.
    """

    edges: tuple[float, ...]
    values: tuple[float, ...]
    threshold: float | None
    """None for a one-vs-rest calibrator: its class is chosen by arg-max, not a cut-off."""
    decision: CalibrationDecision

    def __post_init__(self) -> None:
        if len(self.values) != len(self.edges) + 1:
            raise ValueError("a step calibrator needs one more value than edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("step edges must increase strictly")

    @property
    def steps(self) -> int:
        return len(self.values)

    @property
    def threshold_step(self) -> int:
        """The first step whose raw scores are predicted positive (``steps`` if none is)."""
        if self.threshold is None:
            return self.steps
        return int(np.searchsorted(np.asarray(self.edges), self.threshold, side="right"))

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the step function: window state counted under another one never mixes."""
        blob = json.dumps([self.edges, self.values, self.threshold]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def step_of(self, scores: FloatArray) -> IntArray:
        """Each score's step (NaN scores land in the last step: mask them first)."""
        edges = np.asarray(self.edges, dtype=np.float64)
        return np.searchsorted(edges, np.asarray(scores, dtype=np.float64), side="right")

    def calibrate(self, scores: FloatArray) -> FloatArray:
        """Calibrated P(y = 1) per score; NaN where the score is not finite."""
        s = np.asarray(scores, dtype=np.float64)
        out = np.asarray(self.values, dtype=np.float64)[self.step_of(s)]
        return np.where(np.isfinite(s), out, np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATOR_FORMAT,
            "kind": "binary",
            "edges": list(self.edges),
            "values": list(self.values),
            "threshold": self.threshold,
            "decision": self.decision.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepCalibrator:
        _check_format(d, "binary")
        return cls(
            edges=tuple(float(e) for e in d["edges"]),
            values=tuple(float(v) for v in d["values"]),
            threshold=None if d["threshold"] is None else float(d["threshold"]),
            decision=CalibrationDecision.from_dict(d["decision"]),
        )


@dataclass(frozen=True)
class MulticlassCalibrator:
    """One :class:`StepCalibrator` per class (one-vs-rest); rows renormalised to sum 1."""

    classes: tuple[str, ...]
    per_class: tuple[StepCalibrator, ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.per_class) or len(self.classes) < 2:
            raise ValueError("a multiclass calibrator needs one calibrator per class (≥ 2)")

    @cached_property
    def fingerprint(self) -> str:
        blob = json.dumps([self.classes, [c.fingerprint for c in self.per_class]]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def calibrate(self, scores: FloatArray) -> FloatArray:
        """Renormalised calibrated probabilities, shape (n, classes); NaN rows stay NaN.

        A row whose calibrated values are all 0 becomes uniform (it carries no information
        about which class, and must still count as one row).
        """
        s = np.asarray(scores, dtype=np.float64)
        cal = np.column_stack([c.calibrate(s[:, k]) for k, c in enumerate(self.per_class)])
        total = cal.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(total > 0, cal / total, 1.0 / len(self.classes))
        return np.where(np.isfinite(total), out, np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATOR_FORMAT,
            "kind": "multiclass",
            "classes": list(self.classes),
            "per_class": [c.to_dict() for c in self.per_class],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MulticlassCalibrator:
        _check_format(d, "multiclass")
        return cls(
            classes=tuple(str(c) for c in d["classes"]),
            per_class=tuple(StepCalibrator.from_dict(c) for c in d["per_class"]),
        )


Calibrator = StepCalibrator | MulticlassCalibrator


def calibrator_from_dict(d: dict[str, Any]) -> Calibrator:
    """Either kind of calibrator from its JSON form (refuses other formats)."""
    if d.get("kind") == "multiclass":
        return MulticlassCalibrator.from_dict(d)
    return StepCalibrator.from_dict(d)


def _check_format(d: dict[str, Any], kind: str) -> None:
    if d.get("format") != CALIBRATOR_FORMAT or d.get("kind") != kind:
        raise ValueError(
            f"not a {CALIBRATOR_FORMAT} {kind} calibrator "
            f"(format {d.get('format')!r}, kind {d.get('kind')!r})"
        )


# -- fitting (reference time; scikit-learn imported here only) ---------------------------


def score_bins(scores: FloatArray, bins: int, threshold: float | None) -> FloatArray:
    """The fine bins' inner edges: reference quantiles (data points, so no bin is empty)
    with the threshold inserted when it lies inside the scores' range."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return np.empty(0)
    ranks = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(s, ranks, method="inverted_cdf"))
    edges = edges[edges > s.min()]  # an edge at the minimum would leave bin 0 empty
    if threshold is not None and s.min() < threshold <= s.max():
        edges = np.union1d(edges, [threshold])
    return edges


def equal_mass_ece(probabilities: FloatArray, labels: np.ndarray[Any, Any], bins: int) -> float:
    """ECE with equal-count bins of the rows sorted by probability, NannyML's definition
    (``_calculate_expected_calibration_error``): Σ_b (n_b / n) · |mean p_b − mean y_b|."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    parts = np.array_split(np.arange(p.size), min(bins, max(p.size // 2, 1)))
    total = 0.0
    for part in parts:
        rows = order[part]
        total += rows.size / p.size * abs(float(p[rows].mean()) - float(y[rows].mean()))
    return total


def hosmer_lemeshow(probabilities: FloatArray, labels: np.ndarray[Any, Any], bins: int) -> float:
    """p-value of the Hosmer–Lemeshow test of calibration (see the module docstring)."""
    from scipy import stats

    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    statistic, groups = 0.0, 0
    for rows in np.array_split(order, min(bins, max(p.size // 2, 1))):
        variance = float(np.sum(p[rows] * (1 - p[rows])))
        if variance > 0:
            statistic += (float(y[rows].sum()) - float(p[rows].sum())) ** 2 / variance
            groups += 1
        elif y[rows].sum() != p[rows].sum():
            return 0.0  # certain scores (0 or 1) contradicted by a label
    return float(stats.chi2.sf(statistic, groups)) if groups else 1.0


def _fine_fit(
    scores: FloatArray, labels: np.ndarray[Any, Any], edges: FloatArray, isotonic: bool
) -> FloatArray:
    """Per fine bin: the isotonic fit of P(y = 1 | bin index), or the mean raw score."""
    from sklearn.isotonic import IsotonicRegression

    nbins = edges.size + 1
    idx = np.searchsorted(edges, scores, side="right")
    count = np.bincount(idx, minlength=nbins).astype(np.float64)
    used = np.flatnonzero(count > 0)
    target = labels.astype(np.float64) if isotonic else np.clip(scores, 0.0, 1.0)
    mean = np.bincount(idx, weights=target, minlength=nbins)[used] / count[used]
    # weighted PAV on bin means equals the row-level fit on bin indices (sklearn pools
    # tied x into their weighted mean first); empty bins are interpolated by predict
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(used.astype(np.float64), mean, sample_weight=count[used])
    return np.asarray(model.predict(np.arange(nbins, dtype=np.float64)), dtype=np.float64)


def _steps(
    edges: FloatArray, fine: FloatArray, threshold: float | None, decision: CalibrationDecision
) -> StepCalibrator:
    """Merge adjacent fine bins of equal value unless the threshold separates them."""
    keep = [
        i
        for i, e in enumerate(edges.tolist())
        if fine[i] != fine[i + 1] or e == threshold  # an edge survives if it changes something
    ]
    values = [float(fine[0])] + [float(fine[i + 1]) for i in keep]
    return StepCalibrator(
        edges=tuple(float(edges[i]) for i in keep),
        values=tuple(values),
        threshold=None if threshold is None else float(threshold),
        decision=decision,
    )


def fit_binary_calibrator(
    scores: FloatArray,
    labels: np.ndarray[Any, Any],
    threshold: float | None = 0.5,
    bins: int = 256,
    folds: int = FOLDS,
    seed: int = 42,
) -> StepCalibrator:
    """Fit on the reference's raw scores and 0/1 (or bool) labels; see the module docstring.

    Rows with a NaN / infinite score are left out and counted in the decision.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    ok = np.isfinite(s)
    nan_scores = int(s.size - ok.sum())
    s, y = s[ok], y[ok]
    if s.size < 2:
        raise InsufficientDataError("calibration needs at least two scored, labelled rows")
    edges = score_bins(s, bins, threshold)

    def decided(calibrate: bool, reason: str, **numbers: Any) -> StepCalibrator:
        decision = CalibrationDecision(
            calibrate, reason, rows=int(s.size), nan_scores=nan_scores, **numbers
        )
        return _steps(edges, _fine_fit(s, y, edges, calibrate), threshold, decision)

    probabilities = bool(s.min() >= 0.0 and s.max() <= 1.0)
    if y.all() or not y.any():
        # one class only: the isotonic fit is that constant, which is what the data says
        return decided(True, "the reference has a single class")
    if not probabilities:
        return decided(True, "the scores are not probabilities (outside [0, 1])")
    # NannyML skips calibration of a (near) perfect ranker: nothing to gain, and folds
    # without a mixed bin make the ECE comparison noise
    if roc_auc_score(y, s) > 0.999:
        return decided(False, "the reference's ROC AUC exceeds 0.999")
    if min(int(y.sum()), int((~y).sum())) < 2:
        return decided(True, "too few rows of one class for held-out folds")
    split = StratifiedShuffleSplit(n_splits=folds, test_size=HOLDOUT, random_state=seed)
    held_y, held_raw, held_cal = [], [], []
    for train, test in split.split(s.reshape(-1, 1), y):
        fold_edges = score_bins(s[train], bins, threshold)
        fine = _fine_fit(s[train], y[train], fold_edges, True)
        held_cal.append(fine[np.searchsorted(fold_edges, s[test], side="right")])
        held_raw.append(s[test])
        held_y.append(y[test])
    ys = np.concatenate(held_y)
    before = equal_mass_ece(np.concatenate(held_raw), ys, ECE_BINS)
    after = equal_mass_ece(np.concatenate(held_cal), ys, ECE_BINS)
    p_value = hosmer_lemeshow(s, y, ECE_BINS)
    if p_value >= CALIBRATION_TEST_LEVEL:
        helps = False
        reason = f"the raw scores pass the calibration test (p ≥ {CALIBRATION_TEST_LEVEL})"
    elif after < before:
        helps, reason = True, "calibration lowers the held-out ECE"
    else:
        helps, reason = False, "calibration does not lower the held-out ECE"
    numbers = {"ece_raw": before, "ece_calibrated": after, "p_value": p_value}
    return decided(helps, reason, folds=folds, **numbers)


def fit_multiclass_calibrator(
    scores: FloatArray,
    labels: list[str] | np.ndarray[Any, Any],
    classes: list[str] | tuple[str, ...],
    bins: int = 256,
    folds: int = FOLDS,
    seed: int = 42,
) -> MulticlassCalibrator:
    """One-vs-rest calibrators on the columns of ``scores`` (one per class, in ``classes``
    order), each with its own decision. Rows with any non-finite score are left out."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(classes):
        raise ValueError(f"scores must have one column per class ({len(classes)})")
    lab = np.asarray([str(v) for v in labels], dtype=object)
    ok = np.isfinite(s).all(axis=1)
    per_class = []
    for k, cls in enumerate(classes):
        # no threshold: the predicted class is the arg-max, not a cut-off
        column = np.where(ok, s[:, k], np.nan)
        per_class.append(
            fit_binary_calibrator(
                column, lab == cls, threshold=None, bins=bins, folds=folds, seed=seed
            )
        )
    return MulticlassCalibrator(tuple(str(c) for c in classes), tuple(per_class))
