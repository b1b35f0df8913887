"""Small sketches held exactly and settled in groups: the same numbers as numpy, as the
one-sketch path, through storage and merges."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.grouped_moments import group_bins, group_moments
from watchkeeper.detectors.settle import settle_sketches
from watchkeeper.detectors.sketches import PENDING_VALUES, NumericSketch

EDGES = (-1.0, 0.0, 0.5, 2.0)
values = st.floats(min_value=-1e6, max_value=1e6) | st.sampled_from(
    [np.nan, np.inf, -np.inf, 0.0, 0.5, 2.0]
)
chunks = st.lists(st.lists(values, min_size=0, max_size=40), min_size=1, max_size=8)


def numpy_view(data: list[float], edges: tuple[float, ...] = EDGES) -> dict[str, Any]:
    x = np.asarray(data, dtype=np.float64)
    f = x[np.isfinite(x)]
    bins = np.bincount(np.searchsorted(np.asarray(edges), f, side="left"), minlength=len(edges) + 1)
    return {
        "count": int(f.size),
        "nans": int(np.isnan(x).sum()),
        "infs": int(np.isinf(x).sum()),
        "min": float(f.min()) if f.size else None,
        "max": float(f.max()) if f.size else None,
        "bins": bins.tolist(),
        "finite": f,
    }


def fed(parts: list[list[float]], k: int = 200) -> NumericSketch:
    s = NumericSketch(k)
    s.count_bins_on(EDGES)
    for p in parts:
        s.update(np.asarray(p, dtype=np.float64), nulls=1)
    return s


def stored(s: NumericSketch) -> dict[str, Any]:
    return {k: v for k, v in s.to_dict().items() if k != "kll"}


@settings(max_examples=150, deadline=None)
@given(chunks)
def test_queued_values_summarise_exactly_as_numpy(parts: list[list[float]]) -> None:
    s = fed(parts)
    want = numpy_view([v for p in parts for v in p])
    assert (s.count, s.nans, s.infs, s.nulls) == (
        want["count"],
        want["nans"],
        want["infs"],
        len(parts),
    )
    assert s.histogram(EDGES).tolist() == want["bins"]
    if want["count"]:
        assert (s.min, s.max) == (want["min"], want["max"])
        np.testing.assert_allclose(s.mean, want["finite"].mean(), rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(s.variance, want["finite"].var(), rtol=1e-7, atol=1e-3)


@settings(max_examples=150, deadline=None)
@given(chunks, st.lists(st.floats(-10, 10), min_size=1, max_size=5, unique=True))
def test_held_exactly_below_k_quantiles_cdf_and_any_bins_equal_numpy(
    parts: list[list[float]], cut: list[float]
) -> None:
    s = fed(parts, k=1000)
    f = numpy_view([v for p in parts for v in p])["finite"]
    if not f.size:
        return
    ranks = [0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert s.quantiles(ranks).tolist() == np.quantile(f, ranks, method="inverted_cdf").tolist()
    pts = sorted(cut)
    assert s.cdf(pts).tolist() == [float((f <= p).sum() / f.size) for p in pts]
    want = np.bincount(np.searchsorted(np.asarray(pts), f, side="left"), minlength=len(pts) + 1)
    assert s.histogram(pts).tolist() == want.astype(float).tolist()
    # and as KLL (exact below k) answers the same questions from its stored form
    back = NumericSketch.from_dict(orjson.loads(orjson.dumps(s.to_dict())))
    assert back.quantiles(ranks).tolist() == s.quantiles(ranks).tolist()
    assert back.cdf(pts).tolist() == s.cdf(pts).tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(chunks, min_size=1, max_size=12))
def test_settling_many_sketches_at_once_equals_settling_each_alone(
    sketches: list[list[list[float]]],
) -> None:
    together = [fed(parts, k=50) for parts in sketches]
    settle_sketches(together)
    for parts, got in zip(sketches, together, strict=True):
        alone = fed(parts, k=50)
        assert stored(got) == stored(alone)  # bit for bit: moments and exact bins too
        ranks = np.linspace(0, 1, 7)
        if alone.count <= alone.k:  # past k, KLL's compactions draw random bits
            np.testing.assert_array_equal(got.quantiles(ranks), alone.quantiles(ranks))


@settings(max_examples=100, deadline=None)
@given(chunks, chunks)
def test_merges_of_held_and_kll_sketches_count_exactly(
    a: list[list[float]], b: list[list[float]]
) -> None:
    k = 20  # small: the inputs cross it, so exact + exact, exact + KLL and KLL + KLL all occur
    left, right = fed(a, k), fed(b, k)
    left.merge(right)
    whole = numpy_view([v for p in a + b for v in p])
    assert (left.count, left.nans, left.infs) == (whole["count"], whole["nans"], whole["infs"])
    assert left.histogram(EDGES).tolist() == whole["bins"]
    back = NumericSketch.from_dict(orjson.loads(orjson.dumps(left.to_dict())))
    assert stored(back) == stored(left)
    if whole["count"]:
        assert (left.min, left.max) == (whole["min"], whole["max"])
        q = left.quantiles([0.5])[0]
        f = np.sort(whole["finite"])
        # q's ranks span [left, right] when values tie (all zeros: every rank is q's)
        low = np.searchsorted(f, q, side="left") / f.size
        high = np.searchsorted(f, q, side="right") / f.size
        off = max(low - 0.5, 0.5 - high, 0.0)
        assert off <= 2 * left.rank_error + 1 / f.size


def test_past_k_it_is_the_kll_sketch_it_would_have_been_fed_at_once() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=150)
    queued = NumericSketch(100)
    for lo in range(0, 150, 7):
        queued.update(x[lo : lo + 7])
    assert queued.count == 150 and queued.kll_bytes()
    # KLL keeps its first 100 items exactly; past them, both answer within the bound
    ranks = np.linspace(0.05, 0.95, 19)
    got = np.searchsorted(np.sort(x), queued.quantiles(ranks), side="right") / x.size
    assert np.all(np.abs(got - ranks) <= queued.rank_error + 1 / x.size)


def test_large_updates_are_summarised_at_once_so_the_queue_stays_bounded() -> None:
    s = NumericSketch()
    s.update(np.arange(PENDING_VALUES, dtype=np.float64))
    assert s._pending == []
    for _ in range(40):
        s.update(np.ones(1))
    assert len(s._pending) < 40


def test_a_queued_update_keeps_a_copy_not_the_callers_array() -> None:
    x = np.array([1.0, 2.0, 3.0])
    s = NumericSketch()
    s.update(x)
    x[:] = 100.0
    assert (s.count, s.max) == (3, 3.0)


def test_sketches_stored_before_buffering_read_back_and_keep_counting() -> None:
    # the stored form is unchanged: a KLL sketch, whatever the size
    from datasketches import kll_doubles_sketch

    kll = kll_doubles_sketch(200)
    kll.update(np.array([1.0, 2.0, 3.0]))
    import base64

    old = {
        "kind": "numeric",
        "k": 200,
        "count": 3,
        "nulls": 0,
        "missing": 0,
        "nans": 0,
        "infs": 0,
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
        "m2": 2.0,
        "kll": base64.b64encode(kll.serialize()).decode(),
    }
    s = NumericSketch.from_dict(old)
    s.update(np.array([4.0]))
    assert (s.count, s.max, s.quantiles([1.0]).tolist()) == (4, 4.0, [4.0])


def test_group_helpers_equal_numpy_per_group() -> None:
    rng = np.random.default_rng(5)
    groups = [rng.normal(size=n) for n in (1, 3, 17, 2)]
    groups[2][4] = np.nan
    g = group_moments(groups)
    for i, x in enumerate(groups):
        f = x[np.isfinite(x)]
        assert g.values[i].tolist() == f.tolist()
        assert (g.lo[i], g.hi[i]) == (f.min(), f.max())
        np.testing.assert_allclose(g.mean[i], f.mean(), rtol=1e-12)
    edges = np.array([-0.5, 0.0, 0.5])
    rows = group_bins(g.values, edges)
    for i, f in enumerate(g.values):
        assert rows[i].tolist() == np.bincount(np.searchsorted(edges, f), minlength=4).tolist()


def test_a_drained_window_state_equals_each_window_summarised_alone() -> None:
    from watchkeeper.daemon.eventtime.windows import WindowState
    from watchkeeper.detectors.column_batch import Column, ColumnBatch
    from watchkeeper.detectors.reservoir import record_keys
    from watchkeeper.detectors.window import SketchSettings, WindowSummary

    rng = np.random.default_rng(9)
    n, size_ms = 3_000, 3_600_000
    ts = (np.arange(n) // 7 * size_ms + 1).astype(np.int64)  # 7 events per window
    x = rng.normal(size=n)
    x[::50] = np.nan
    null = np.zeros(n, bool)
    null[::31] = True
    batch = ColumnBatch(
        model="m",
        role="predictions",
        ts_ms=ts,
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(1, 0, np.arange(n)),
        features={
            "x": Column("numeric", np.where(null, np.nan, x), null, np.zeros(n, bool)),
            "y": Column("numeric", rng.random(n), np.zeros(n, bool), np.zeros(n, bool)),
        },
        prediction=Column("numeric", rng.random(n), np.zeros(n, bool), np.zeros(n, bool)),
        latency_ms=rng.random(n) * 10,
    )
    settings = SketchSettings(bins=lambda model, column: EDGES)
    state = WindowState(3600, 10**9, settings)
    state.add(batch)
    drained = state.drain()
    assert len(drained.windows) == -(-n // 7)
    for key, got in drained.windows.items():
        alone = WindowSummary("m", "1", key.start_ms, size_ms, settings)
        alone.update(batch, np.flatnonzero(ts - ts % size_ms == key.start_ms))
        # small windows are held as rows (window_rows): stored and read back, they are the
        # window summarised alone, bit for bit, KLL bytes included (< k); built in memory too
        assert got.compact
        stored = WindowSummary.from_dict(got.to_dict()).to_dict()
        assert stored == WindowSummary.from_dict(alone.to_dict()).to_dict()
        got.materialise()
        assert got.to_dict() == alone.to_dict()
