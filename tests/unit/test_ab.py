"""A/B metrics of two versions' window summaries against direct computations on the rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from watchkeeper.detectors.ab import (
    AB_METRICS,
    ABComparison,
    abs_error_stats,
    accuracy_stats,
    js_noise_floor,
)
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.sequential import MeanStats, SequentialDifference
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary

EXACT = SketchSettings(k=4000)  # KLL holds every value below this many: exact quantiles


def version(
    name: str,
    rng: np.random.Generator,
    n: int,
    accuracy: float = 0.9,
    score_shift: float = 0.0,
    latency_scale: float = 1.0,
) -> tuple[WindowSummary, dict[str, np.ndarray]]:
    """A window summary of ``n`` classified rows and the raw values it summarises."""
    w = WindowSummary("fraud", name, 0, 3_600_000, EXACT)
    scores = np.clip(rng.beta(2, 5, n) + score_shift, 0, 1)
    hit = rng.random(n) < accuracy
    labels = rng.integers(0, 2, n).astype(str)
    predicted = np.where(hit, labels, np.where(labels == "1", "0", "1"))
    w.performance = PerformanceSketch("classification")
    w.performance.update_classification(labels.tolist(), predicted.tolist())
    w.prediction = NumericSketch(EXACT.k)
    w.prediction.update(scores)
    w.prediction_class = CategoryCounts()
    w.prediction_class.update(predicted.tolist())
    latency = rng.lognormal(2.0, 0.5, n) * latency_scale
    w.latency.update(latency)
    return w, {"hit": hit, "scores": scores, "latency": latency, "predicted": predicted}


def regression_version(name: str, errors: np.ndarray) -> WindowSummary:
    w = WindowSummary("price", name, 0, 3_600_000, EXACT)
    w.performance = PerformanceSketch("regression")
    w.performance.update_regression(np.zeros(errors.size), errors)
    return w


def test_accuracy_delta_equals_the_direct_difference_with_its_interval() -> None:
    rng = np.random.default_rng(0)
    (a, ra), (b, rb) = version("3", rng, 3_000, 0.90), version("4", rng, 2_000, 0.86)
    result = ABComparison().compare(a, b)
    v = result.values["ab_accuracy_delta"]
    assert v.value == rb["hit"].mean() - ra["hit"].mean()  # exact: ratios of counts
    base, cand = MeanStats(), MeanStats()
    base.update_binary(ra["hit"])
    cand.update_binary(rb["hit"])
    iv = SequentialDifference().interval(base, cand)
    assert v.interval == iv
    assert v.details["n_baseline"] == 3_000 and v.details["n_candidate"] == 2_000
    assert v.details["decision"] == "worse"
    assert v.details["confidence"] == 0.95


def test_mae_delta_equals_the_direct_difference_with_its_interval() -> None:
    rng = np.random.default_rng(1)
    ea, eb = rng.normal(0, 1.0, 4_000), rng.normal(0, 1.0, 4_000)
    result = ABComparison().compare(regression_version("1", ea), regression_version("2", eb))
    v = result.values["ab_mae_delta"]
    assert v.value == pytest.approx(np.abs(eb).mean() - np.abs(ea).mean(), abs=1e-12)
    direct = SequentialDifference().interval(MeanStats.of(np.abs(ea)), MeanStats.of(np.abs(eb)))
    assert v.interval is not None
    assert (v.interval.low, v.interval.high) == pytest.approx((direct.low, direct.high))
    assert v.details["decision"] == "no_evidence"  # same error distribution
    assert "ab_accuracy_delta" in result.unavailable
    assert "classification labels" in result.unavailable["ab_accuracy_delta"]


def test_score_mean_delta_from_the_prediction_sketch() -> None:
    rng = np.random.default_rng(2)
    (a, ra), (b, rb) = version("3", rng, 5_000), version("4", rng, 5_000, score_shift=0.03)
    v = ABComparison().compare(a, b).values["ab_score_mean_delta"]
    assert v.value == pytest.approx(rb["scores"].mean() - ra["scores"].mean(), abs=1e-12)
    direct = SequentialDifference().interval(MeanStats.of(ra["scores"]), MeanStats.of(rb["scores"]))
    assert v.interval is not None
    assert (v.interval.low, v.interval.high) == pytest.approx((direct.low, direct.high))
    assert v.details["decision"] == "changed"


def test_latency_ratios_from_the_latency_sketches() -> None:
    rng = np.random.default_rng(3)
    (a, ra), (b, rb) = version("3", rng, 3_000), version("4", rng, 3_000, latency_scale=1.5)
    values = ABComparison().compare(a, b).values
    for name, q in (("ab_latency_p50_ratio", 0.5), ("ab_latency_p99_ratio", 0.99)):
        want = np.quantile(rb["latency"], q, method="inverted_cdf") / np.quantile(
            ra["latency"], q, method="inverted_cdf"
        )
        assert values[name].value == pytest.approx(want, rel=1e-12)  # exact below k values
        assert values[name].interval is None
        low, high = values[name].details["sketch_range"]
        assert low <= values[name].value <= high


def test_latency_ratio_range_covers_the_exact_ratio_beyond_the_sketch_size() -> None:
    rng = np.random.default_rng(8)
    a, b = WindowSummary("m", "3", 0, 60_000), WindowSummary("m", "4", 0, 60_000)
    la, lb = rng.lognormal(2.0, 0.6, 200_000), rng.lognormal(2.1, 0.6, 150_000)
    a.latency.update(la)
    b.latency.update(lb)
    v = ABComparison().compare(a, b).values["ab_latency_p99_ratio"]
    exact = np.quantile(lb, 0.99) / np.quantile(la, 0.99)
    low, high = v.details["sketch_range"]
    assert low <= exact <= high and low < v.value < high
    assert v.details["rank_error"] > 0


def test_score_js_distance_on_the_baseline_deciles() -> None:
    rng = np.random.default_rng(4)
    (a, ra), (b, rb) = version("3", rng, 3_000), version("4", rng, 3_000, score_shift=0.1)
    v = ABComparison().compare(a, b).values["ab_score_js_distance"]
    edges = np.quantile(ra["scores"], np.arange(1, 10) / 10, method="inverted_cdf")
    p = np.bincount(np.searchsorted(edges, ra["scores"], side="left"), minlength=10)
    q = np.bincount(np.searchsorted(edges, rb["scores"], side="left"), minlength=10)
    assert v.value == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)
    assert v.value > 5 * v.details["noise_floor"]


def test_class_js_distance_on_predicted_classes() -> None:
    rng = np.random.default_rng(5)
    (a, ra), (b, rb) = version("3", rng, 2_000), version("4", rng, 2_000, accuracy=0.6)
    v = ABComparison().compare(a, b).values["ab_class_js_distance"]
    p = [np.sum(ra["predicted"] == c) for c in ("0", "1")]
    q = [np.sum(rb["predicted"] == c) for c in ("0", "1")]
    assert v.value == pytest.approx(jensenshannon(p, q, base=2), rel=1e-9)


def test_js_noise_floor_matches_simulation_under_no_difference() -> None:
    # the mean squared JS distance of two samples of one distribution, by simulation,
    # against the χ² approximation the floor uses (within 15 %)
    rng = np.random.default_rng(6)
    comparison = ABComparison()
    squares = []
    for _ in range(150):
        (a, _), (b, _) = version("3", rng, 2_000), version("4", rng, 1_000)
        squares.append(comparison.compare(a, b).values["ab_score_js_distance"].value ** 2)
    floor = js_noise_floor(10, 2_000, 1_000)
    assert float(np.mean(squares)) == pytest.approx(floor**2, rel=0.15)


def test_rolled_up_windows_compare_as_one_summary_of_all_rows() -> None:
    rng = np.random.default_rng(7)
    parts_a, parts_b, hits_a, hits_b = [], [], [], []
    for i in range(4):
        (a, ra), (b, rb) = version("3", rng, 800), version("4", rng, 600, accuracy=0.85)
        for w in (a, b):
            w.start_ms, w.size_ms = i * 900_000, 900_000
        parts_a.append(a)
        parts_b.append(b)
        hits_a.append(ra["hit"])
        hits_b.append(rb["hit"])
    a = WindowSummary.rollup(parts_a, 0, 3_600_000)
    b = WindowSummary.rollup(parts_b, 0, 3_600_000)
    v = ABComparison().compare(a, b).values["ab_accuracy_delta"]
    ha, hb = np.concatenate(hits_a), np.concatenate(hits_b)
    assert v.value == hb.mean() - ha.mean()
    assert a.performance is not None and b.performance is not None
    assert accuracy_stats(a.performance).n == 3_200
    assert (v.details["n_baseline"], v.details["n_candidate"]) == (3_200, 2_400)


def test_unavailable_metrics_say_why() -> None:
    a = WindowSummary("m", "1", 0, 60_000)
    b = WindowSummary("m", "2", 0, 60_000)
    result = ABComparison().compare(a, b)
    assert result.values == {}
    assert set(result.unavailable) == set(AB_METRICS)
    assert result.unavailable["ab_accuracy_delta"] == "version 1 has no labelled rows"
    assert "latencies" in result.unavailable["ab_latency_p99_ratio"]
    with pytest.raises(ValueError, match="one model"):
        ABComparison().compare(a, WindowSummary("other", "2", 0, 60_000))


def test_sufficient_statistics_come_from_existing_sketches() -> None:
    perf = PerformanceSketch("regression")
    perf.update_regression(np.array([1.0, 2.0, 3.0]), np.array([1.5, 1.0, 3.0]))
    s = abs_error_stats(perf)
    assert (s.n, s.total, s.total_sq) == (3, 1.5, 1.25)
    perf = PerformanceSketch("classification")
    perf.update_classification(["1", "0", "1"], ["1", "1", "1"])
    assert (accuracy_stats(perf).n, accuracy_stats(perf).total) == (3, 2.0)


def test_metric_table_is_complete() -> None:
    for name, info in AB_METRICS.items():
        assert name.startswith("ab_") and info.name == name
        assert info.direction in ("higher_is_worse", "lower_is_worse", "two_sided")
    assert AB_METRICS["ab_accuracy_delta"].interval
    assert not AB_METRICS["ab_latency_p99_ratio"].interval
