"""Performance estimates (CBPE on window state): exact against a row-by-row computation,
mergeable, tracking realised metrics under covariate shift, and the trust check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import auc
from watchkeeper.detectors.calibrator import (
    MulticlassCalibrator,
    StepCalibrator,
    calibrator_from_dict,
)
from watchkeeper.detectors.calibrator_fit import (
    fit_binary_calibrator,
    fit_multiclass_calibrator,
    score_bins,
)
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimate_sketch import (
    SCALE,
    BinaryEstimateSketch,
    MulticlassEstimateSketch,
    class_index,
    estimate_sketch_from_dict,
)
from watchkeeper.detectors.estimate_trust import EstimateTrust
from watchkeeper.detectors.estimated_performance import (
    ESTIMATED_METRICS,
    EstimatedClassificationMetric,
    binary_estimates,
    multiclass_estimates,
)
from watchkeeper.detectors.estimation_reference import (
    Estimation,
    fit_binary_estimation,
    fit_multiclass_estimation,
    realised_binary,
)
from watchkeeper.detectors.performance import PerformanceSketch

BINS = 128


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def binary_data(rng: np.random.Generator, n: int, mu: float = 0.0, concept: float = 0.0):
    """x ~ N(mu, 1); P(y = 1 | x) = σ(1.2 x − 0.4 + concept); the model's score is a
    monotone but miscalibrated σ(2.2 x − 0.1) (over-confident)."""
    x = rng.normal(mu, 1.0, n)
    y = rng.random(n) < sigmoid(1.2 * x - 0.4 + concept)
    score = sigmoid(2.2 * x - 0.1)
    return score, y


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    return binary_data(np.random.default_rng(11), 20_000)


@pytest.fixture(scope="module")
def calibrator(reference: tuple[np.ndarray, np.ndarray]) -> StepCalibrator:
    s, y = reference
    return fit_binary_calibrator(s, y, threshold=0.5, bins=BINS)


def row_by_row(ref_s, ref_y, win_s, threshold=0.5):
    """The independent computation: scikit-learn's IsotonicRegression fitted row by row on
    the fine-bin index of each reference score, applied to each window row; then the
    expected confusion matrix and NannyML's estimate_roc_auc, row by row."""
    edges = score_bins(ref_s, BINS, threshold)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.searchsorted(edges, ref_s, side="right").astype(float), ref_y.astype(float))
    p = iso.predict(np.searchsorted(edges, win_s, side="right").astype(float))
    pred = win_s >= threshold
    tp, fp = p[pred].sum(), (1 - p[pred]).sum()
    fn, tn = p[~pred].sum(), (1 - p[~pred]).sum()
    order = np.argsort(-win_s, kind="stable")
    tps = np.r_[0, np.cumsum(p[order])]
    fps = np.r_[0, np.cumsum(1 - p[order])]
    return p, {
        "accuracy": (tp + tn) / win_s.size,
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "roc_auc": auc(fps / fps[-1], tps / tps[-1]),
    }


def test_sketch_estimates_equal_the_row_by_row_computation(reference, calibrator) -> None:
    ref_s, ref_y = reference
    assert calibrator.decision.calibrate  # the score is miscalibrated on purpose
    win_s, _ = binary_data(np.random.default_rng(5), 7_000, mu=0.6)
    p, expected = row_by_row(ref_s, ref_y, win_s)
    assert calibrator.calibrate(win_s) == pytest.approx(p, rel=1e-12, abs=1e-15)
    sketch = BinaryEstimateSketch.for_calibrator(calibrator)
    sketch.update(calibrator, win_s)
    got = binary_estimates(sketch, calibrator)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-11), name
    # the step function is small: far fewer steps than fine bins, threshold an edge
    assert calibrator.steps < BINS and 0.5 in calibrator.edges


def test_predicted_class_from_the_events_is_counted_as_given(calibrator) -> None:
    rng = np.random.default_rng(3)
    s = rng.random(3000)
    pred = s >= 0.3  # a model deployed with another cut-off than the calibrator's
    sketch = BinaryEstimateSketch.for_calibrator(calibrator)
    sketch.update(calibrator, s, pred)
    p = calibrator.calibrate(s)
    got = binary_estimates(sketch, calibrator)
    tp, fp = p[pred].sum(), (1 - p[pred]).sum()
    assert got["precision"] == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert sketch.counts[1].sum() == pred.sum()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4000), min_size=1, max_size=6), st.integers(0, 2**31))
def test_merged_partial_sketches_equal_the_whole(cuts: list[int], seed: int) -> None:
    cal = _shared_calibrator()
    rng = np.random.default_rng(seed)
    s = rng.random(4000)
    s[rng.random(4000) < 0.02] = np.nan
    whole = BinaryEstimateSketch.for_calibrator(cal)
    whole.update(cal, s)
    merged = BinaryEstimateSketch.for_calibrator(cal)
    for part in np.split(s, sorted(set(cuts))):
        piece = BinaryEstimateSketch.for_calibrator(cal)
        piece.update(cal, part)
        # through storage, as flushes and replicas would
        merged.merge(BinaryEstimateSketch.from_dict(json.loads(json.dumps(piece.to_dict()))))
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.nan_scores == whole.nan_scores
    assert binary_estimates(merged, cal) == binary_estimates(whole, cal)  # bit for bit


_CACHE: dict[str, StepCalibrator] = {}


def _shared_calibrator() -> StepCalibrator:
    if "cal" not in _CACHE:
        s, y = binary_data(np.random.default_rng(2), 5000)
        _CACHE["cal"] = fit_binary_calibrator(s, y, bins=64)
    return _CACHE["cal"]


def test_nan_scores_are_counted_not_crashing(calibrator) -> None:
    rng = np.random.default_rng(4)
    s = rng.random(1000)
    with_nan = s.copy()
    with_nan[::10] = np.nan
    with_nan[5] = np.inf
    a = BinaryEstimateSketch.for_calibrator(calibrator)
    a.update(calibrator, with_nan)
    b = BinaryEstimateSketch.for_calibrator(calibrator)
    b.update(calibrator, with_nan[np.isfinite(with_nan)])
    assert a.nan_scores == 101 and a.n == 899
    assert binary_estimates(a, calibrator) == binary_estimates(b, calibrator)
    only_nan = BinaryEstimateSketch.for_calibrator(calibrator)
    only_nan.update(calibrator, np.full(10, np.nan))
    with pytest.raises(InsufficientDataError):
        binary_estimates(only_nan, calibrator)


def test_empty_window_is_insufficient_data_never_a_number(calibrator) -> None:
    empty = BinaryEstimateSketch.for_calibrator(calibrator)
    with pytest.raises(InsufficientDataError):
        binary_estimates(empty, calibrator)
    with pytest.raises(InsufficientDataError):
        EstimatedClassificationMetric("estimated_accuracy").score(empty, calibrator, None)


def test_undefined_metrics_are_left_out(calibrator) -> None:
    low = BinaryEstimateSketch.for_calibrator(calibrator)
    low.update(calibrator, np.full(50, 0.01))  # nothing predicted positive
    got = binary_estimates(low, calibrator)
    assert "accuracy" in got and "precision" not in got
    with pytest.raises(InsufficientDataError):
        EstimatedClassificationMetric("estimated_precision").score(low, calibrator, None)


def test_sketches_of_another_calibrator_never_mix(calibrator) -> None:
    other = _shared_calibrator()
    a = BinaryEstimateSketch.for_calibrator(calibrator)
    b = BinaryEstimateSketch.for_calibrator(other)
    with pytest.raises(ValueError, match="another reference"):
        a.merge(b)
    with pytest.raises(ValueError, match="another reference"):
        a.update(other, np.array([0.5]))


# -- calibration decisions ---------------------------------------------------------------


def test_calibrated_scores_are_left_alone() -> None:
    """Ten references whose scores are calibrated already: NannyML's ECE comparison alone
    would calibrate about half (noise against noise); with the calibration test first at
    most one in ten is (1 % level × half)."""
    calibrated = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        s = rng.beta(2, 3, 10_000)
        y = rng.random(10_000) < s  # P(y = 1 | s) = s
        calibrated.append(fit_binary_calibrator(s, y, bins=128))
    assert sum(c.decision.calibrate for c in calibrated) <= 1, [c.decision for c in calibrated]
    cal = next(c for c in calibrated if not c.decision.calibrate)
    d = cal.decision
    assert d.p_value is not None and d.p_value >= 0.01 and "calibration test" in d.reason
    assert d.ece_raw is not None and d.ece_calibrated is not None
    assert d.folds == 10 and d.rows == 10_000
    # the identity, discretised: each step holds the mean raw score of its reference rows
    rng = np.random.default_rng(calibrated.index(cal))
    s = rng.beta(2, 3, 10_000)
    edges = score_bins(s, 128, 0.5)
    idx = np.searchsorted(edges, s, side="right")
    means = np.bincount(idx, weights=s) / np.bincount(idx)
    np.testing.assert_allclose(cal.calibrate(s), means[idx], rtol=1e-12)


def test_miscalibrated_scores_are_calibrated(reference, calibrator) -> None:
    d = calibrator.decision
    assert d.calibrate and d.ece_calibrated < d.ece_raw, d
    assert d.p_value is not None and d.p_value < 0.01 and "lowers" in d.reason


def test_scores_outside_zero_one_are_always_calibrated() -> None:
    rng = np.random.default_rng(9)
    logit = rng.normal(size=5000)
    y = rng.random(5000) < sigmoid(logit)
    cal = fit_binary_calibrator(logit, y, threshold=0.0)
    assert cal.decision.calibrate and "not probabilities" in cal.decision.reason
    assert np.all(np.diff(cal.values) >= 0) and 0.0 in cal.edges


def test_single_class_and_nan_references() -> None:
    rng = np.random.default_rng(10)
    s = rng.random(500)
    cal = fit_binary_calibrator(s, np.zeros(500, dtype=bool))
    assert set(cal.values) == {0.0} and "single class" in cal.decision.reason
    s[:50] = np.nan
    cal = fit_binary_calibrator(s, rng.random(500) < 0.5)
    assert cal.decision.nan_scores == 50 and cal.decision.rows == 450
    with pytest.raises(InsufficientDataError):
        fit_binary_calibrator(np.full(5, np.nan), np.ones(5, dtype=bool))


def test_calibrators_round_trip_through_json(calibrator) -> None:
    text = json.dumps(calibrator.to_dict(), allow_nan=False)
    back = calibrator_from_dict(json.loads(text))
    assert back == calibrator and back.fingerprint == calibrator.fingerprint
    with pytest.raises(ValueError, match="calibrator"):
        StepCalibrator.from_dict({**calibrator.to_dict(), "format": "other/v9"})


# -- estimates track realised metrics under covariate shift; the trust check -----------


def _window(est: Estimation, rng, n, mu, concept=0.0):
    s, y = binary_data(rng, n, mu=mu, concept=concept)
    sketch = est.new_sketch()
    assert isinstance(sketch, BinaryEstimateSketch)
    sketch.update(est.calibrator, s)
    perf = PerformanceSketch("classification")
    pred = s >= 0.5
    perf.update_classification(
        y.astype(int).astype(str).tolist(), pred.astype(int).astype(str).tolist(), s
    )
    return sketch, perf.metrics(), realised_binary(s, y, pred)


@pytest.fixture(scope="module")
def estimation(reference) -> Estimation:
    s, y = reference
    return fit_binary_estimation(s, y, bins=BINS)


def test_estimates_track_realised_metrics_under_covariate_shift(estimation) -> None:
    """P(y | x) unchanged, x shifted by up to 1.2 σ: accuracy moves by several points, and
    the realised value falls inside the estimate's band in ≥ 97 % of 200 windows (±3 SE is
    99.7 % nominal)."""
    rng = np.random.default_rng(21)
    inside: dict[str, int] = {}
    moved = []
    windows = 200
    for w in range(windows):
        mu = 1.2 * w / windows
        sketch, _, realised = _window(estimation, rng, 2000, mu)
        for metric in ("estimated_accuracy", "estimated_f1", "estimated_roc_auc"):
            e = estimation.estimate(metric, sketch)
            assert e.band is not None and 0.0 <= e.band.lower <= e.band.upper <= 1.0
            real = realised[ESTIMATED_METRICS[metric].realised]
            inside[metric] = inside.get(metric, 0) + e.band.contains(real)
            if metric == "estimated_accuracy":
                moved.append(real)
    assert max(moved) - min(moved) > 0.05  # the shift really moved accuracy
    for metric, count in inside.items():
        assert count / windows >= 0.97, (metric, count)


def test_trust_check_quiet_without_concept_drift_and_flags_it(estimation) -> None:
    rng = np.random.default_rng(22)
    trust = EstimateTrust()
    spread = estimation.spreads["accuracy"]
    false_alarms = 0
    for _ in range(100):
        sketch, realised, _ = _window(estimation, rng, 3000, mu=0.8)
        e = estimation.estimate("estimated_accuracy", sketch)
        false_alarms += trust.score(realised["accuracy"], 3000, e, spread).disagrees
    assert false_alarms <= 2
    flagged = 0
    for _ in range(20):  # P(y | x) moved: the same inputs now lead to other labels
        sketch, realised, _ = _window(estimation, rng, 3000, mu=0.8, concept=-1.5)
        e = estimation.estimate("estimated_accuracy", sketch)
        verdict = trust.score(realised["accuracy"], 3000, e, spread)
        flagged += verdict.disagrees
        assert verdict.gap < 0  # realised worse than estimated
    assert flagged == 20


def test_estimate_all_equals_one_by_one(estimation) -> None:
    rng = np.random.default_rng(23)
    sketch = estimation.new_sketch()
    sketch.update(estimation.calibrator, rng.random(5000))  # type: ignore[arg-type]
    every = estimation.estimate_all(sketch)
    assert set(every) == set(estimation.metrics)
    for metric, e in every.items():
        assert e == estimation.estimate(metric, sketch)
    with pytest.raises(InsufficientDataError):
        estimation.estimate_all(estimation.new_sketch())


def test_band_never_leaves_the_metric_range(estimation, calibrator) -> None:
    sketch = estimation.new_sketch()
    assert isinstance(sketch, BinaryEstimateSketch)
    sketch.update(estimation.calibrator, np.array([0.99, 0.98, 0.01]))  # three rows
    for metric in ("estimated_accuracy", "estimated_recall", "estimated_specificity"):
        e = estimation.estimate(metric, sketch)
        assert e.band is not None and e.band.lower >= 0.0 and e.band.upper <= 1.0
        assert e.n == 3


def test_estimation_round_trips_and_reference_values(estimation, reference) -> None:
    back = Estimation.from_dict(json.loads(json.dumps(estimation.to_dict(), allow_nan=False)))
    assert back == estimation
    s, y = reference
    assert estimation.reference["accuracy"] == pytest.approx(np.mean((s >= 0.5) == y))
    # in-sample, a calibrated estimate reproduces the reference's realised accuracy
    assert estimation.estimated_reference["accuracy"] == pytest.approx(
        estimation.reference["accuracy"], abs=0.01
    )
    assert set(estimation.spreads) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert estimation.metrics == tuple(
        n for n, spec in ESTIMATED_METRICS.items() if "binary" in spec.problems
    )


# -- multiclass --------------------------------------------------------------------------

CLASSES = ("a", "b", "c")


def multiclass_data(rng, n, mu=0.0):
    x = rng.normal(mu, 1.0, (n, 2))
    logits = np.column_stack([x[:, 0], x[:, 1], -x[:, 0] - x[:, 1]])
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array(CLASSES)[(rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)]
    raw = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)  # over-confident
    return raw, labels


@pytest.fixture(scope="module")
def mc_reference():
    return multiclass_data(np.random.default_rng(31), 12_000)


@pytest.fixture(scope="module")
def mc_calibrator(mc_reference) -> MulticlassCalibrator:
    s, labels = mc_reference
    return fit_multiclass_calibrator(s, labels, CLASSES, bins=BINS)


def test_multiclass_estimates_equal_the_row_by_row_computation(mc_reference, mc_calibrator):
    ref_s, ref_labels = mc_reference
    win, _ = multiclass_data(np.random.default_rng(32), 5000, mu=0.4)
    columns = []
    for k, cls in enumerate(CLASSES):  # one-vs-rest isotonic per class, then renormalise
        edges = score_bins(ref_s[:, k], BINS, None)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(np.searchsorted(edges, ref_s[:, k], side="right").astype(float),
                (ref_labels == cls).astype(float))  # fmt: skip
        columns.append(iso.predict(np.searchsorted(edges, win[:, k], side="right").astype(float)))
    q = np.column_stack(columns)
    q = q / q.sum(axis=1, keepdims=True)
    pred = win.argmax(axis=1)
    confusion = np.zeros((3, 3))
    for k in range(3):
        confusion[:, k] = q[pred == k].sum(axis=0)  # [true, predicted]
    sketch = MulticlassEstimateSketch.for_calibrator(mc_calibrator)
    sketch.update(mc_calibrator, win)
    # fixed point: each row's probability is within 2⁻³³ of its float value
    np.testing.assert_allclose(sketch.expected_confusion(), confusion, atol=5000 * 2**-32)
    got = multiclass_estimates(sketch, mc_calibrator)
    assert got["accuracy"] == pytest.approx(np.trace(confusion) / 5000, abs=1e-9)
    precision = np.diag(confusion) / confusion.sum(axis=0)
    recall = np.diag(confusion) / confusion.sum(axis=1)
    assert got["precision"] == pytest.approx(precision.mean(), abs=1e-9)
    assert got["recall"] == pytest.approx(recall.mean(), abs=1e-9)
    f1 = 2 * precision * recall / (precision + recall)
    assert got["f1"] == pytest.approx(f1.mean(), abs=1e-9)
    # one-vs-rest AUC with the rows of a step tied, row by row
    aucs = []
    for k in range(3):
        step = mc_calibrator.per_class[k].step_of(win[:, k])
        pos = np.bincount(step, weights=q[:, k], minlength=mc_calibrator.per_class[k].steps)
        neg = np.bincount(step, weights=1 - q[:, k], minlength=pos.size)
        above = np.cumsum(pos[::-1])[::-1] - pos
        aucs.append(np.sum(neg * (above + pos / 2)) / (pos.sum() * neg.sum()))
    assert got["roc_auc"] == pytest.approx(np.mean(aucs), abs=1e-8)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 1500), min_size=1, max_size=5), st.integers(0, 2**31))
def test_multiclass_merges_are_exact(cuts: list[int], seed: int) -> None:
    cal = _mc_shared()
    rng = np.random.default_rng(seed)
    s, _ = multiclass_data(rng, 1500)
    s[rng.random(1500) < 0.03, 1] = np.nan
    whole = MulticlassEstimateSketch.for_calibrator(cal)
    whole.update(cal, s)
    merged = MulticlassEstimateSketch.for_calibrator(cal)
    for part in np.split(s, sorted(set(cuts))):
        piece = MulticlassEstimateSketch.for_calibrator(cal)
        piece.update(cal, part)
        merged.merge(estimate_sketch_from_dict(json.loads(json.dumps(piece.to_dict()))))  # type: ignore[arg-type]
    assert np.array_equal(merged.expected, whole.expected)
    assert all(np.array_equal(a, b) for a, b in zip(merged.step_mass, whole.step_mass, strict=True))
    assert merged.nan_scores == whole.nan_scores > 0
    assert multiclass_estimates(merged, cal) == multiclass_estimates(whole, cal)


_MC: dict[str, MulticlassCalibrator] = {}


def _mc_shared() -> MulticlassCalibrator:
    if "cal" not in _MC:
        s, labels = multiclass_data(np.random.default_rng(33), 3000)
        _MC["cal"] = fit_multiclass_calibrator(s, labels, CLASSES, bins=64)
    return _MC["cal"]


def test_classes_missing_from_a_window_and_unknown_predictions(mc_calibrator) -> None:
    rng = np.random.default_rng(34)
    s, _ = multiclass_data(rng, 2000)
    only_ab = s[s.argmax(axis=1) != 2]  # class "c" is never predicted in this window
    sketch = MulticlassEstimateSketch.for_calibrator(mc_calibrator)
    sketch.update(mc_calibrator, only_ab)
    got = multiclass_estimates(sketch, mc_calibrator)
    assert sketch.predicted[2] == 0
    assert all(0.0 <= v <= 1.0 for v in got.values()) and "roc_auc" in got
    named = class_index(CLASSES, ["a", "b", "zzz", "c"])
    assert named.tolist() == [0, 1, -1, 2]
    other = MulticlassEstimateSketch.for_calibrator(mc_calibrator)
    other.update(mc_calibrator, s[:4], named)
    assert other.unknown_class == 1 and other.n == 3
    empty = MulticlassEstimateSketch.for_calibrator(mc_calibrator)
    with pytest.raises(InsufficientDataError):
        multiclass_estimates(empty, mc_calibrator)


def test_multiclass_estimation_tracks_realised_accuracy(mc_reference) -> None:
    s, labels = mc_reference
    est = fit_multiclass_estimation(s, labels, CLASSES, bins=BINS)
    back = Estimation.from_dict(json.loads(json.dumps(est.to_dict(), allow_nan=False)))
    assert back == est
    rng = np.random.default_rng(35)
    inside = 0
    for w in range(40):
        win, truth = multiclass_data(rng, 2000, mu=0.5 * w / 40)
        sketch = est.new_sketch()
        assert isinstance(sketch, MulticlassEstimateSketch)
        sketch.update(est.calibrator, win)  # type: ignore[arg-type]
        e = est.estimate("estimated_accuracy", sketch)
        realised = float(np.mean(np.array(CLASSES)[win.argmax(axis=1)] == truth))
        assert e.band is not None
        inside += e.band.contains(realised)
    assert inside >= 38


def test_scale_is_fixed_point_of_thirty_two_bits() -> None:
    assert SCALE == 2.0**32 and math.isclose(1 / SCALE, 2.3283064365386963e-10)
