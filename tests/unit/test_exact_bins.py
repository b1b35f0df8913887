"""Exact bins: a sketch told the reference's edges counts them exactly, so PSI / KL / JS /
χ² against that reference equal an independent numpy computation and repeat bit for bit;
the offline ``drift`` on a file is exact."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial import distance
from watchkeeper.daemon.offline.drift import drift_findings, summarize_file
from watchkeeper.daemon.offline.reference import build_reference
from watchkeeper.detectors.chi2 import ChiSquare
from watchkeeper.detectors.js import JSDistance
from watchkeeper.detectors.kl import KLDivergence
from watchkeeper.detectors.profile import NumericProfile
from watchkeeper.detectors.psi import PSI
from watchkeeper.detectors.sketches import NumericSketch

EDGES = (-1.0, -0.25, 0.0, 0.5, 2.0)


def numpy_bins(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Right-closed bins (-inf, e1], (e1, e2], …, (em, inf), counted one mask per bin."""
    finite = values[np.isfinite(values)]
    bounds = [-np.inf, *edges, np.inf]
    return np.array(
        [np.count_nonzero((finite > lo) & (finite <= hi)) for lo, hi in itertools.pairwise(bounds)],
        dtype=np.float64,
    )


floats = st.one_of(st.floats(min_value=-5, max_value=5), st.sampled_from([np.nan, np.inf, -np.inf]))
# values on the edges themselves, where a bin boundary is decided
on_edges = st.sampled_from(EDGES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(floats, on_edges), max_size=300), min_size=1, max_size=4))
def test_exact_bins_equal_numpy_through_updates_and_merges(batches: list[list[float]]) -> None:
    merged = NumericSketch(k=8)  # k small: KLL compacts early and would be approximate
    for batch in batches:
        part = NumericSketch(k=8)
        part.count_bins_on(EDGES)
        part.update(np.asarray(batch, dtype=np.float64))
        merged.merge(part)
    everything = np.asarray([v for b in batches for v in b], dtype=np.float64)
    assert merged.counts_exactly(EDGES)
    assert np.array_equal(merged.histogram(EDGES), numpy_bins(everything, EDGES))
    again = NumericSketch.from_dict(merged.to_dict())
    assert np.array_equal(again.histogram(EDGES), merged.histogram(EDGES))


def test_exact_bins_are_lost_only_where_they_cannot_be_known() -> None:
    pinned = NumericSketch(k=8)
    pinned.count_bins_on(EDGES)
    pinned.update(np.linspace(-3, 3, 500))
    plain = NumericSketch(k=8)
    plain.update(np.linspace(-3, 3, 500))
    assert not plain.counts_exactly(EDGES)
    other_edges = NumericSketch(k=8)
    other_edges.count_bins_on((0.0,))
    other_edges.update(np.ones(3))
    for second in (plain, other_edges):
        whole = NumericSketch(k=8)
        whole.merge(pinned)
        whole.merge(second)
        assert not whole.counts_exactly(EDGES)  # falls back to KLL, never a wrong count
        assert whole.histogram(EDGES).sum() == 500 + second.count
    empty = NumericSketch(k=8)
    pinned.merge(empty)  # nothing added: still exact
    assert pinned.counts_exactly(EDGES)
    with pytest.raises(ValueError, match="before the first value"):
        plain.count_bins_on(EDGES)
    with pytest.raises(ValueError, match="increasing"):
        NumericSketch().count_bins_on((1.0, 0.0))


def test_binned_metrics_on_exact_bins_equal_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(7)
    reference_values = rng.normal(size=20_000)
    edges = tuple(float(e) for e in np.quantile(reference_values, np.linspace(0.1, 0.9, 9)))
    ref_counts = numpy_bins(reference_values, edges)
    reference = NumericProfile(
        count=reference_values.size,
        nulls=0,
        nans=0,
        min=float(reference_values.min()),
        max=float(reference_values.max()),
        mean=float(reference_values.mean()),
        std=float(reference_values.std()),
        edges=edges,
        proportions=tuple(float(c) for c in ref_counts / ref_counts.sum()),
    )
    current_values = rng.normal(0.3, 1.2, size=50_000)  # k = 200 ≪ 50,000: KLL compacts
    current = NumericSketch(k=200)
    current.count_bins_on(edges)
    for chunk in np.array_split(current_values, 7):
        current.update(chunk)
    counts = numpy_bins(current_values, edges)
    assert np.array_equal(current.histogram(edges), counts)  # the counts: equal, exactly
    p = np.asarray(reference.proportions)
    q = counts / counts.sum()
    assert np.all(p > 0) and np.all(q > 0)  # no smoothing in play: the plain formulas
    psi = PSI().score(reference, current)
    # the metrics: the same formulas summed by numpy / scipy in their own order
    assert psi.value == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    assert psi.details["error_bound"] == 0.0
    kl = KLDivergence().score(reference, current).value
    assert kl == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-12)
    js = JSDistance().score(reference, current).value
    assert js == pytest.approx(float(distance.jensenshannon(p, q, base=2)), rel=1e-12)
    chi2 = ChiSquare().score(reference, current).value
    want = stats.chisquare(counts, f_exp=counts.sum() * p / p.sum()).statistic
    assert chi2 == pytest.approx(float(want), rel=1e-12)


def _write(path: Path, values: np.ndarray) -> Path:
    path.write_text("x,y\n" + "\n".join(f"{float(a)!r},{float(b)!r}" for a, b in values))
    return path


def test_the_offline_drift_of_a_file_is_the_same_bit_for_bit_run_after_run(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    ref_file = _write(tmp_path / "ref.csv", rng.normal(size=(30_000, 2)))
    batch = _write(tmp_path / "batch.csv", rng.normal(0.2, 1.3, size=(60_000, 2)))
    reference = build_reference(ref_file, model="m")
    metrics = (PSI.name, KLDivergence.name, JSDistance.name, ChiSquare.name)
    runs = [drift_findings(reference, summarize_file(batch, reference), metrics) for _ in range(5)]
    values = [[(f.feature, f.metric, f.value) for f, _ in run] for run in runs]
    assert values[0] and all(v == values[0] for v in values[1:])
    window = summarize_file(batch, reference)
    data = np.loadtxt(batch, delimiter=",", skiprows=1)
    for column, name in enumerate(("x", "y")):
        profile = reference.features[name]
        assert isinstance(profile, NumericProfile)
        sketch = window.features[name]
        assert isinstance(sketch, NumericSketch)
        assert sketch.counts_exactly(profile.edges)
        got = sketch.histogram(profile.edges)
        assert np.array_equal(got, numpy_bins(data[:, column], profile.edges))


def test_a_window_counts_the_bins_in_force_for_its_model_from_its_first_event() -> None:
    from watchkeeper.detectors.column_batch import Column, ColumnBatch
    from watchkeeper.detectors.window import SketchSettings, WindowSummary

    in_force = {("fraud", "amount"): EDGES, ("fraud", window_prediction()): (0.5,)}
    settings = SketchSettings(k=8, bins=lambda model, column: in_force.get((model, column)))
    values = np.linspace(-2, 3, 400)

    def numeric(v: np.ndarray) -> Column:
        flags = np.zeros(v.size, dtype=bool)
        return Column("numeric", v, flags, flags.copy())

    def batch(model: str) -> ColumnBatch:
        return ColumnBatch(
            model,
            "predictions",
            np.arange(400, dtype=np.int64),
            np.full(400, "1", dtype=object),
            np.arange(400, dtype=np.uint64),
            features={"amount": numeric(values), "other": numeric(values)},
            prediction=numeric(values / 3),
        )

    for model, exact in (("fraud", True), ("spam", False)):
        w = WindowSummary(model, "1", 0, 1000, settings)
        w.update(batch(model), np.arange(400))
        amount, other = w.features["amount"], w.features["other"]
        assert isinstance(amount, NumericSketch) and isinstance(other, NumericSketch)
        assert amount.counts_exactly(EDGES) is exact
        assert not other.counts_exactly(EDGES)
        if exact:
            assert np.array_equal(amount.histogram(EDGES), numpy_bins(values, EDGES))
            assert isinstance(w.prediction, NumericSketch)
            got = w.prediction.histogram((0.5,))
            assert np.array_equal(got, numpy_bins(values / 3, (0.5,)))
        again = WindowSummary.from_dict(w.to_dict())
        assert again.features["amount"].to_dict() == amount.to_dict()


def window_prediction() -> str:
    from watchkeeper.detectors.reserved_names import PREDICTION

    return PREDICTION


def numpy_out_of_range(values: np.ndarray, profile: NumericProfile, margin: float = 0.1) -> float:
    """The share of finite values outside [min − m·w, max + m·w], counted by numpy."""
    finite = values[np.isfinite(values)]
    width = profile.max - profile.min
    lo, hi = profile.min - margin * width, profile.max + margin * width
    return int(np.count_nonzero(finite < lo) + np.count_nonzero(finite > hi)) / finite.size


def test_every_metric_of_the_offline_drift_is_exact_on_the_current_side(
    tmp_path: Path,
) -> None:
    from watchkeeper.daemon.offline.held_column import HeldSketch
    from watchkeeper.detectors.ks import KS
    from watchkeeper.detectors.out_of_range import OutOfRange
    from watchkeeper.detectors.registry import DEFAULT_DRIFT_METRICS
    from watchkeeper.detectors.wasserstein import Wasserstein

    rng = np.random.default_rng(7)
    ref_data = rng.normal(size=(30_000, 2))
    cur_data = rng.normal(0.3, 1.6, size=(60_000, 2))  # well past k: KLL would compact
    cur_data[::997, 0] = 40.0  # far out of range, and values on the reference's extremes
    reference = build_reference(_write(tmp_path / "ref.csv", ref_data), model="m")
    batch = _write(tmp_path / "batch.csv", cur_data)
    cur_data = np.loadtxt(batch, delimiter=",", skiprows=1)  # the values as the file holds them
    runs = [
        drift_findings(reference, summarize_file(batch, reference), DEFAULT_DRIFT_METRICS)
        for _ in range(3)
    ]
    seen = [[(f.feature, f.metric, f.value, f.details) for f, _ in run] for run in runs]
    assert seen[0] and all(s == seen[0] for s in seen[1:])  # values and details, bit for bit
    window = summarize_file(batch, reference)
    for column, name in enumerate(("x", "y")):
        profile, sketch = reference.features[name], window.features[name]
        assert isinstance(profile, NumericProfile) and isinstance(sketch, HeldSketch)
        values = cur_data[:, column]
        # out-of-range rate: exact, equal to numpy's count
        oor = OutOfRange().score(profile, sketch)
        assert oor.details["exact"] and oor.value > 0
        assert oor.value == numpy_out_of_range(values, profile)
        # a rule's own margin is not pinned, but the held values count it exactly too
        wide = OutOfRange(margin=0.5).score(profile, sketch)
        assert wide.details["exact"] and wide.value == numpy_out_of_range(values, profile, 0.5)
        # the current side's quantiles and CDF are the file's own
        ranks = np.linspace(0, 1, 101)
        assert np.array_equal(
            sketch.quantiles(ranks), np.quantile(values, ranks, method="inverted_cdf")
        )
        points = np.linspace(-3, 3, 61)
        want_cdf = np.searchsorted(np.sort(values), points, side="right") / values.size
        assert np.array_equal(sketch.cdf(points), want_cdf)
        # Wasserstein: the reference's KLL quantiles against numpy's of the file, exactly
        grid = (np.arange(1000) + 0.5) / 1000
        q_ref = np.asarray(profile.kll().get_quantiles(grid.tolist(), True))
        raw = float(np.mean(np.abs(q_ref - np.quantile(values, grid, method="inverted_cdf"))))
        w = Wasserstein().score(profile, sketch)
        assert w.details["raw"] == raw
        exact_w = stats.wasserstein_distance(ref_data[:, column], values) / profile.std
        assert w.value == pytest.approx(exact_w, abs=0.02)  # the reference's KLL, its grid
        # KS: only the reference's rank error (and the 512-point grid) stand between it
        # and scipy's exact two-sample statistic
        ks = KS().score(profile, sketch)
        assert ks.details["error_bound"] == float(profile.kll().normalized_rank_error(False))
        exact_ks = stats.ks_2samp(ref_data[:, column], values).statistic
        assert abs(ks.value - exact_ks) <= ks.details["error_bound"] + 1 / 512


def test_a_window_begun_with_its_reference_in_force_counts_out_of_range_exactly() -> None:
    from watchkeeper.daemon.ingest.references_in_force import ReferencesInForce
    from watchkeeper.detectors.column_batch import Column, ColumnBatch
    from watchkeeper.detectors.out_of_range import OutOfRange, pinned_edges
    from watchkeeper.detectors.profile import ReferenceProfile, numeric_profile, quantile_edges
    from watchkeeper.detectors.window import SketchSettings, WindowSummary
    from watchkeeper.detectors.window_rows import PackedBatch

    rng = np.random.default_rng(11)
    ref_sketch = NumericSketch(k=2000)
    ref_sketch.update(rng.normal(size=20_000))
    profile = numeric_profile(ref_sketch, quantile_edges(ref_sketch, 10))
    in_force = ReferencesInForce()
    in_force.adopt([ReferenceProfile("fraud", {"amount": profile}, 20_000)])
    assert in_force.edges("fraud", "amount") == pinned_edges(profile)
    settings = SketchSettings(k=32, bins=in_force.edges)  # k small: KLL compacts early
    values = rng.normal(0.5, 2.0, size=5_000)
    values[:5] = [profile.max + 0.1 * (profile.max - profile.min), np.nan, np.inf, 1e9, -1e9]
    values[5] = profile.min - 0.1 * (profile.max - profile.min)  # on the limit: inside

    def batch(sl: slice) -> ColumnBatch:
        v = values[sl]
        flags = np.zeros(v.size, dtype=bool)
        return ColumnBatch(
            "fraud",
            "predictions",
            np.arange(v.size, dtype=np.int64),
            np.full(v.size, "1", dtype=object),
            np.arange(v.size, dtype=np.uint64),
            features={"amount": Column("numeric", v, flags, flags.copy())},
        )

    parts, forms = [], []
    # parts (flushes, replicas), one small enough to be stored as compact rows, merged
    for sl in (slice(0, 1_000), slice(1_000, 1_100), slice(1_100, None)):
        w = WindowSummary("fraud", "1", 0, 1000, settings, compact=True)
        b = batch(sl)
        n = b.ts_ms.size
        packed = PackedBatch(b, np.arange(n), {"amount": pinned_edges(profile)})
        if not w.add_rows(packed, 0, n, 0, n - 1):  # past COMPACT_ROWS: sketches
            w.update(b, np.arange(n))
        stored = w.to_dict()
        forms.append("rows" in stored)
        parts.append(WindowSummary.from_dict(stored))  # through the stored form
    assert forms == [False, True, False]
    for part in parts[1:]:
        parts[0].merge(part)
    sketch = parts[0].features["amount"]
    assert isinstance(sketch, NumericSketch)
    runs = [OutOfRange().score(profile, sketch) for _ in range(2)]
    assert runs[0].details["exact"] and runs[0] == runs[1]
    assert runs[0].value == numpy_out_of_range(values, profile)
    assert np.array_equal(sketch.histogram(profile.edges), numpy_bins(values, profile.edges))
    # a window stored before the limits were pinned (only the reference's bins): KLL
    old = NumericSketch(k=32)
    old.count_bins_on(profile.edges)
    old.update(values)
    legacy = OutOfRange().score(profile, NumericSketch.from_dict(old.to_dict()))
    assert not legacy.details["exact"] and legacy.details["error_bound"] > 0
    assert legacy.value == pytest.approx(runs[0].value, abs=legacy.details["error_bound"])


def test_a_segments_grid_is_cut_at_the_reference_bins_alone() -> None:
    """Cut at the far-out range limits too, a segment's fine grid was coarse where the
    values are (rank_error 0.7 % → 9.6 % on a lognormal column)."""
    from watchkeeper.detectors.grid_sketch import GridSketch
    from watchkeeper.detectors.out_of_range import pinned_edges
    from watchkeeper.detectors.profile import numeric_profile, quantile_edges
    from watchkeeper.detectors.window import SketchSettings
    from watchkeeper.detectors.window_feed import new_sketch

    rng = np.random.default_rng(2)
    ref = NumericSketch(k=2000)
    ref.update(rng.lognormal(size=50_000))
    profile = numeric_profile(ref, quantile_edges(ref, 10))
    child = new_sketch("numeric", SketchSettings(k=100, grid=True), pinned_edges(profile))
    assert isinstance(child, GridSketch)
    assert np.array_equal(child.grid, GridSketch(100, profile.edges).grid)
    whole = new_sketch("numeric", SketchSettings(k=100), pinned_edges(profile))
    assert isinstance(whole, NumericSketch) and not isinstance(whole, GridSketch)
    assert whole.pinned_edges is not None and whole.pinned_edges.size == len(profile.edges) + 2
