"""Every metric against an independent computation, edge cases, and properties."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial.distance import jensenshannon
from watchkeeper.detectors.binning import binned, proportions
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.chi2 import ChiSquare
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.js import JSDistance
from watchkeeper.detectors.kl import KLDivergence
from watchkeeper.detectors.ks import KS
from watchkeeper.detectors.nan_rate import NanRate
from watchkeeper.detectors.out_of_range import OutOfRange
from watchkeeper.detectors.profile import (
    CategoricalProfile,
    ReferenceProfile,
    bin_counts,
    categorical_profile,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.psi import PSI
from watchkeeper.detectors.reserved_names import PREDICTION, UNSEEN
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.unseen import UnseenMass
from watchkeeper.detectors.wasserstein import Wasserstein
from watchkeeper.detectors.window import WindowSummary

EXACT_K = 4000  # KLL holds every value below this many: sketch answers are exact


def sketch(x: np.ndarray, k: int = EXACT_K) -> NumericSketch:
    s = NumericSketch(k)
    s.update(np.asarray(x, dtype=np.float64))
    return s


def profile(x: np.ndarray, bins: int = 10, edges: tuple[float, ...] | None = None):
    s = sketch(x)
    edges = quantile_edges(s, bins) if edges is None else edges
    return numeric_profile(s, edges, bin_counts(np.asarray(x, dtype=np.float64), edges))


def exact_proportions(x_ref: np.ndarray, x_cur: np.ndarray, edges: tuple[float, ...]):
    p = bin_counts(x_ref, edges)
    q = bin_counts(x_cur, edges)
    return p / p.sum(), q / q.sum()


@pytest.fixture
def shifted() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=3000), rng.normal(0.4, 1.2, size=2500)


def test_psi_kl_js_match_scipy_on_the_same_bins(shifted: tuple[np.ndarray, np.ndarray]) -> None:
    x_ref, x_cur = shifted
    ref, cur = profile(x_ref), sketch(x_cur)
    assert np.array_equal(cur.histogram(ref.edges), bin_counts(x_cur, ref.edges))  # exact
    p, q = exact_proportions(x_ref, x_cur, ref.edges)
    assert (p > 0).all() and (q > 0).all()  # no smoothing involved here
    assert PSI().score(ref, cur).value == pytest.approx(np.sum((q - p) * np.log(q / p)))
    assert KLDivergence().score(ref, cur).value == pytest.approx(special.rel_entr(p, q).sum())
    assert JSDistance().score(ref, cur).value == pytest.approx(jensenshannon(p, q, base=2))


def test_ks_and_wasserstein_match_scipy(shifted: tuple[np.ndarray, np.ndarray]) -> None:
    x_ref, x_cur = shifted
    ref, cur = profile(x_ref), sketch(x_cur)
    ks = KS(grid=4096).score(ref, cur)
    assert ks.value == pytest.approx(stats.ks_2samp(x_ref, x_cur).statistic, abs=1e-3)
    w = Wasserstein(grid=4000).score(ref, cur)
    exact = stats.wasserstein_distance(x_ref, x_cur) / np.std(x_ref)
    assert w.value == pytest.approx(exact, rel=0.01)


def test_sketch_based_values_within_the_sketch_error_on_large_data() -> None:
    rng = np.random.default_rng(4)
    x_ref, x_cur = rng.normal(size=200_000), rng.normal(0.2, 1, size=200_000)
    ref = profile(x_ref)
    cur = sketch(x_cur, k=200)  # the daemon's default: not exact any more
    p, q = exact_proportions(x_ref, x_cur, ref.edges)
    approx_q = cur.histogram(ref.edges) / cur.count
    assert np.abs(approx_q - q).max() <= 2 * cur.rank_error
    ks = KS().score(ref, cur)
    assert abs(ks.value - stats.ks_2samp(x_ref, x_cur).statistic) <= ks.details["error_bound"]
    exact_psi = np.sum((q - p) * np.log(q / p))
    psi = PSI().score(ref, cur)
    assert abs(psi.value - exact_psi) <= psi.details["error_bound"]


def test_chi2_matches_scipy_chisquare() -> None:
    ref = CategoricalProfile(count=1000, nulls=0, proportions={"a": 0.5, "b": 0.3, "c": 0.2})
    cur = CategoryCounts()
    cur.update(["a"] * 40 + ["b"] * 35 + ["c"] * 25)
    score = ChiSquare().score(ref, cur)
    expected = stats.chisquare([40, 35, 25], [50, 30, 20])
    assert score.value == pytest.approx(expected.statistic)
    assert score.details["p_value"] == pytest.approx(expected.pvalue)


def test_new_categories_have_their_own_bucket_and_are_named() -> None:
    ref = categorical_profile(_counts(["DE"] * 60 + ["FR"] * 40))
    cur = _counts(["DE"] * 50 + ["FR"] * 30 + ["BR"] * 15 + ["AR"] * 5)
    b = binned(ref, cur)
    assert b.labels[-1] == UNSEEN and b.current[-1] == 20
    assert b.unseen == {"BR": 15, "AR": 5}
    unseen = UnseenMass().score(ref, cur)
    assert unseen.value == pytest.approx(0.2)
    assert list(unseen.details["categories"]) == ["BR", "AR"]
    psi = PSI().score(ref, cur).value
    assert math.isfinite(psi) and psi > 0.25  # 20 % mass where the reference had none


def _counts(values: list[str], nulls: int = 0) -> CategoryCounts:
    c = CategoryCounts()
    c.update(values, nulls=nulls)
    return c


def test_psi_agrees_with_evidently_when_binned_the_same_way() -> None:
    """Evidently bins numeric columns with Sturges' rule on reference + current (equal
    width) and replaces empty bins by 0.0001; on those bins and that treatment our PSI is
    Evidently's. With our default (reference deciles) the values differ, and recomputing
    Evidently's formula on our bins gives our value: the difference is only the binning."""
    with warnings.catch_warnings():  # Evidently's own imports warn about numpy / pydantic
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests.psi import _psi
        from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(8)
    x_ref, x_cur = rng.normal(size=3000), rng.normal(0.3, 1, size=2000)
    evidently_value, _ = _psi(pd.Series(x_ref), pd.Series(x_cur), ColumnType.Numerical, 0.1)
    sturges = np.histogram_bin_edges(np.concatenate([x_ref, x_cur]), bins="sturges")
    # Evidently's bins are [e0, e1), …, [e_{m-1}, e_m]; ours are (-inf, e1], …: the inner
    # edges are the same cut points and no value sits exactly on one
    inner = tuple(float(e) for e in sturges[1:-1])
    ours = PSI(smoothing="epsilon", epsilon=1e-4).score(profile(x_ref, edges=inner), sketch(x_cur))
    assert ours.value == pytest.approx(evidently_value, rel=1e-9)
    deciles = PSI().score(profile(x_ref), sketch(x_cur)).value
    p, q = exact_proportions(x_ref, x_cur, profile(x_ref).edges)
    assert deciles == pytest.approx(np.sum((p - q) * np.log(p / q)))
    assert deciles != pytest.approx(evidently_value, rel=1e-3)


def test_empty_bins_never_give_inf_or_nan() -> None:
    x_ref = np.arange(1000.0)
    for x_cur in (np.full(500, 10.0), np.full(500, 5000.0), np.full(500, -5.0)):
        ref, cur = profile(x_ref), sketch(x_cur)
        for detector in (
            PSI(),
            KLDivergence(),
            PSI(smoothing="laplace"),
            KLDivergence(smoothing="laplace"),
            JSDistance(),
        ):
            value = detector.score(ref, cur).value
            assert math.isfinite(value) and value >= 0


def test_laplace_smoothing_is_a_proper_distribution() -> None:
    ref = profile(np.arange(1000.0))
    p, q = proportions(binned(ref, sketch(np.full(100, 3.0))), "laplace")
    assert p.sum() == pytest.approx(1) and q.sum() == pytest.approx(1) and (q > 0).all()


def test_constant_reference() -> None:
    ref = profile(np.full(500, 7.0))
    assert ref.edges == () and ref.proportions == (1.0,)
    assert PSI().score(ref, sketch(np.full(300, 7.0))).value == pytest.approx(0.0)
    moved = sketch(np.full(300, 9.0))
    assert OutOfRange().score(ref, moved).value == 1.0
    assert Wasserstein().score(ref, moved).value == pytest.approx(2.0)  # not normalised


def test_huge_outliers_stay_finite_and_count_as_out_of_range() -> None:
    ref = profile(np.random.default_rng(1).normal(size=2000))
    cur = sketch(np.concatenate([np.random.default_rng(2).normal(size=990), np.full(10, 1e12)]))
    assert OutOfRange().score(ref, cur).value == pytest.approx(0.01)
    for d in (PSI(), KLDivergence(), JSDistance(), KS(), Wasserstein()):
        assert math.isfinite(d.score(ref, cur).value)


def test_all_nan_feature_and_single_value_and_empty_window() -> None:
    ref_profile = ReferenceProfile(
        "m", {"x": profile(np.random.default_rng(0).normal(size=500))}, rows=500
    )
    window = WindowSummary("m", "1", 0, 60_000)
    window.features["x"] = NumericSketch()
    window.features["x"].update(np.full(300, np.nan))  # type: ignore[union-attr]
    window.events = {"predictions": 300}
    found = {
        f.metric: f
        for f in evaluate(ref_profile, window, ["psi", "nan_rate", "ks"], min_samples=100)
    }
    assert found["nan_rate"].value == 1.0 and found["nan_rate"].status == "ok"
    assert found["psi"].status == "insufficient_data" and found["psi"].value is None
    assert NanRate().score(ref_profile.features["x"], window.features["x"]).value == 1.0
    single = WindowSummary("m", "1", 0, 60_000)
    single.features["x"] = sketch(np.array([0.5]))
    (f,) = evaluate(ref_profile, single, ["psi"], min_samples=1)
    assert f.status == "ok" and math.isfinite(f.value or 0)
    empty = WindowSummary("m", "1", 0, 60_000)
    assert {
        f.status for f in evaluate(ref_profile, empty, ["psi", "latency_p99_ms", "accuracy"])
    } == {"insufficient_data"}


def test_sample_size_guard_says_insufficient_data_never_drift() -> None:
    rng = np.random.default_rng(5)
    ref = ReferenceProfile("m", {"x": profile(rng.normal(size=2000))}, rows=2000)
    window = WindowSummary("m", "1", 0, 60_000)
    window.features["x"] = sketch(rng.normal(5, 1, size=50))  # wildly drifted, but 50 rows
    (f,) = evaluate(ref, window, ["psi"], min_samples=100)
    assert (f.status, f.value, f.n_current) == ("insufficient_data", None, 50)
    assert "50 values < min_samples 100" in f.details["reason"]
    (f,) = evaluate(ref, window, ["psi"], min_samples=20)
    assert f.status == "ok" and f.value is not None and f.value > 1


def test_findings_cover_features_and_prediction_with_sizes() -> None:
    rng = np.random.default_rng(6)
    ref = ReferenceProfile(
        "fraud",
        {"a": profile(rng.normal(size=1000)), "b": profile(rng.normal(size=1000))},
        rows=1000,
        prediction=profile(rng.random(1000)),
    )
    window = WindowSummary("fraud", "3", 60_000, 60_000)
    window.features["a"] = sketch(rng.normal(size=400))
    window.features["b"] = sketch(rng.normal(size=400))
    window.prediction = sketch(rng.random(400))
    findings = evaluate(ref, window, ["psi", "js_distance"], features=["a", PREDICTION])
    assert [(f.metric, f.feature) for f in findings] == [
        ("psi", "a"),
        ("psi", PREDICTION),
        ("js_distance", "a"),
        ("js_distance", PREDICTION),
    ]
    assert all(
        f.n_current == 400
        and f.n_reference == 1000
        and f.model == "fraud"
        and (f.window_start_ms, f.window_end_ms) == (60_000, 120_000)
        for f in findings
    )
    # `features: all` is the input features; the prediction is selected by name, so a
    # rule over all features and a prediction rule never report the same column twice
    every = evaluate(ref, window, ["psi"], features=None)
    assert [f.feature for f in every] == ["a", "b"]
    only = evaluate(ref, window, ["psi"], features=[PREDICTION])
    assert [f.feature for f in only] == [PREDICTION]


def test_latency_percentiles_match_numpy() -> None:
    window = WindowSummary("m", "1", 0, 60_000)
    lat = np.random.default_rng(7).gamma(3, 10, size=3000)
    window.latency = sketch(lat)
    window.events = {"predictions": 3000}
    found = {
        f.metric: f.value
        for f in evaluate(
            None,
            window,
            [
                "latency_p50_ms",
                "latency_p95_ms",
                "latency_p99_ms",
                "latency_max_ms",
                "throughput_eps",
            ],
        )
    }
    for name, q in (("latency_p50_ms", 50), ("latency_p95_ms", 95), ("latency_p99_ms", 99)):
        assert found[name] == pytest.approx(np.percentile(lat, q, method="inverted_cdf"))
    assert found["latency_max_ms"] == lat.max()
    assert found["throughput_eps"] == pytest.approx(50.0)


# -- properties ------------------------------------------------------------------------
counts = st.lists(st.integers(min_value=1, max_value=10_000), min_size=2, max_size=12)


def _pair(a: list[int], b: list[int]) -> tuple[CategoricalProfile, CategoryCounts]:
    names = [f"c{i}" for i in range(len(a))]
    ref = CategoricalProfile(
        count=sum(a), nulls=0, proportions={n: c / sum(a) for n, c in zip(names, a, strict=True)}
    )
    cur = CategoryCounts(max_categories=100)
    cur.counts = dict(zip(names, b, strict=True))
    return ref, cur


@settings(max_examples=200, deadline=None)
@given(counts, st.data())
def test_divergence_properties(a: list[int], data: st.DataObject) -> None:
    b = data.draw(
        st.lists(st.integers(min_value=1, max_value=10_000), min_size=len(a), max_size=len(a))
    )
    ref_a, cur_b = _pair(a, b)
    ref_b, cur_a = _pair(b, a)
    _, same = _pair(a, a)
    psi = PSI().score(ref_a, cur_b).value
    assert psi >= -1e-12
    assert PSI().score(ref_a, same).value == pytest.approx(0.0, abs=1e-9)
    assert KLDivergence().score(ref_a, cur_b).value >= -1e-12
    js = JSDistance().score(ref_a, cur_b).value
    assert 0.0 <= js <= 1.0
    assert PSI().score(ref_b, cur_a).value == pytest.approx(psi, rel=1e-9, abs=1e-12)
    assert JSDistance().score(ref_b, cur_a).value == pytest.approx(js, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
)
def test_numeric_metrics_are_finite_and_bounded(x: list[float], y: list[float]) -> None:
    ref, cur = profile(np.array(x)), sketch(np.array(y))
    assert PSI().score(ref, cur).value >= -1e-12
    assert 0.0 <= JSDistance().score(ref, cur).value <= 1.0
    assert 0.0 <= KS().score(ref, cur).value <= 1.0
    assert Wasserstein().score(ref, cur).value >= 0
    assert KS().score(ref, sketch(np.array(x))).value == pytest.approx(0.0, abs=1e-12)


def test_performance_metrics_match_scikit_learn() -> None:
    from sklearn import metrics as skm
    from watchkeeper.detectors.performance import PerformanceSketch

    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 5000)
    score = np.clip(0.35 * y + rng.random(5000) * 0.65, 0, 1)
    pred = (score >= 0.5).astype(int)
    halves = [PerformanceSketch("classification"), PerformanceSketch("classification")]
    for part, sl in zip(halves, (slice(0, 2000), slice(2000, None)), strict=True):
        part.update_classification(
            y[sl].astype(str).tolist(), pred[sl].astype(str).tolist(), score[sl]
        )
    halves[0].merge(halves[1])
    m = halves[0].metrics()
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    # specificity TN / (TN + FP), counted apart: exact ratio of the same integers
    tn, fp = int(np.sum((y == 0) & (pred == 0))), int(np.sum((y == 0) & (pred == 1)))
    assert m["specificity"] == tn / (tn + fp)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=2e-3)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, score))

    t = rng.normal(10, 3, 3000)
    t[::100] = 0.0
    yhat = t + rng.normal(0, 1, 3000)
    reg = PerformanceSketch("regression")
    reg.update_regression(t, yhat)
    r = reg.metrics()
    assert r["mae"] == pytest.approx(skm.mean_absolute_error(t, yhat))
    assert r["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(t, yhat)))
    nz = t != 0
    assert r["mape"] == pytest.approx(skm.mean_absolute_percentage_error(t[nz], yhat[nz]))

    multi = PerformanceSketch("classification")
    labels = rng.choice(["a", "b", "c"], 600).tolist()
    guesses = [lab if rng.random() < 0.7 else "a" for lab in labels]
    multi.update_classification(labels, guesses)
    mm = multi.metrics()
    assert mm["f1"] == pytest.approx(skm.f1_score(labels, guesses, average="macro"))
    lab, gue = np.array(labels), np.array(guesses)
    macro = [
        np.sum((lab != c) & (gue != c)) / np.sum(lab != c) for c in ("a", "b", "c")
    ]  # one-vs-rest, as estimated_specificity
    assert mm["specificity"] == pytest.approx(float(np.mean(macro)), rel=1e-12)
    assert "roc_auc" not in mm
