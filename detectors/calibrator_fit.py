"""Fitting step calibrators at reference time (see :mod:`watchkeeper.detectors.calibrator`
for the method and the calibration decision). scikit-learn and scipy are imported inside
the functions only.

>>> rng = np.random.default_rng(0)
>>> s = rng.random(4000)
>>> cal = fit_binary_calibrator(s, rng.random(4000) < s, bins=64)   # calibrated already
>>> cal.decision.calibrate, cal.decision.p_value is not None
(False, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from watchkeeper.detectors.calibrator import (
    CalibrationDecision,
    MulticlassCalibrator,
    StepCalibrator,
)
from watchkeeper.detectors.errors import InsufficientDataError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
ECE_BINS = 10  # NannyML's default bin_count for the decision
FOLDS = 10  # NannyML's split_count
HOLDOUT = 0.1  # NannyML's test_size
CALIBRATION_TEST_LEVEL = 0.01


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
    cuts = [float(edges[i]) for i in keep]
    if threshold is not None and np.isfinite(threshold) and float(threshold) not in cuts:
        # every reference score on one side of the threshold: it is still made a step
        # boundary (both sides keep the same value), so that "step ≥ threshold_step" and
        # "score ≥ threshold" decide every window row alike
        at = int(np.searchsorted(np.asarray(cuts), threshold))
        cuts.insert(at, float(threshold))
        values.insert(at, values[at])
    return StepCalibrator(
        edges=tuple(cuts),
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
