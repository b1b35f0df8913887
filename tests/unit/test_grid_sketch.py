"""Grid sketches, a segment's numeric summary: exact bins, CDF / quantiles / KS within the
stated bound (the largest grid bin's mass) against exact numpy and scipy, merges equal to
one pass, and window parts stored before grids (KLL children) still load and merge."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from watchkeeper.daemon.checks.segment_findings import add_segment_findings
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.fine_grid import fine_grid, grid_lookup
from watchkeeper.detectors.grid_sketch import GridSketch, feed_grid, load_sketch, merged_numeric
from watchkeeper.detectors.ks import KS
from watchkeeper.detectors.profile import ReferenceProfile, profile_from_window, quantile_edges
from watchkeeper.detectors.segments import OTHER, SegmentSpec
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.schema import Policy

OLD_PART = Path(__file__).parent / "data" / "segments_part_kll.json"
"""A window part with country segments as stored before grid sketches (KLL children),
written by the code of commit b6e5872."""


def _edges(values: np.ndarray[Any, Any], bins: int = 10) -> tuple[float, ...]:
    ref = NumericSketch(200)
    ref.update(values)
    return quantile_edges(ref, bins)


def _ecdf(values: np.ndarray[Any, Any], points: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    ordered = np.sort(values)
    return np.searchsorted(ordered, points, side="right") / ordered.size


def _exact_bins(values: np.ndarray[Any, Any], edges: tuple[float, ...]) -> list[float]:
    finite = values[np.isfinite(values)]
    where = np.searchsorted(np.asarray(edges), finite, side="left")
    return np.bincount(where, minlength=len(edges) + 1).astype(float).tolist()


SHAPES = {
    "normal": lambda rng, n: rng.normal(size=n),
    "lognormal": lambda rng, n: rng.lognormal(size=n),
    "exponential": lambda rng, n: rng.exponential(size=n),
    "uniform": lambda rng, n: rng.random(n),
    "rounded": lambda rng, n: np.round(rng.normal(size=n), 2),
    "bimodal": lambda rng, n: np.concatenate(
        [rng.normal(-3, 0.5, n // 2), rng.normal(3, 1, n - n // 2)]
    ),
}


# -- the grid and its lookup ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    edges=st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=12
    ),
    data=st.data(),
)
def test_lookup_is_the_binary_search(edges: list[float], data: st.DataObject) -> None:
    cut = tuple(sorted(set(edges)))
    grid, at = fine_grid(cut)
    assert grid[at].tolist() == list(cut)  # every reference edge is a grid edge
    assert np.all(np.diff(grid) > 0)
    lookup = grid_lookup(cut)
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    spread = max(abs(grid[0]), abs(grid[-1]), 1.0)
    values = np.concatenate(
        [
            rng.normal(0, spread, 500),
            grid,
            np.nextafter(grid, np.inf),
            np.nextafter(grid, -np.inf),
            [1e300, -1e300, 0.0],
        ]
    )
    assert np.array_equal(lookup.index(values), np.searchsorted(grid, values, side="left"))


# -- exact bins, and the bound of everything else -------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_bins_exact_and_cdf_quantiles_ks_within_the_bound(shape: str) -> None:
    rng = np.random.default_rng(sorted(SHAPES).index(shape))
    reference = SHAPES[shape](rng, 50_000)
    edges = _edges(reference)
    for current in (SHAPES[shape](rng, 20_000), SHAPES[shape](rng, 20_000) * 1.3 + 0.4):
        g = GridSketch(100, edges)
        g.update(current)
        assert g.counts_exactly(edges)
        assert g.histogram(edges).tolist() == _exact_bins(current, edges)
        bound = g.rank_error
        assert 0 < bound < 0.15  # a moved segment can pile up in wide tail bins
        points = np.concatenate([np.sort(current), np.linspace(-10, 10, 101), g.grid])
        assert np.abs(g.cdf(points) - _ecdf(current, points)).max() <= bound + 1e-12
        ranks = np.linspace(0, 1, 201)
        got = g.quantiles(ranks)
        # a rank query's answer has a true rank within the bound of the one asked
        below = _ecdf(current, got)
        strictly = np.searchsorted(np.sort(current), got, side="left") / current.size
        assert np.all(below >= ranks - bound - 1e-12)
        assert np.all(strictly <= ranks + bound + 1e-12)
        assert (got[0], got[-1]) == (current.min(), current.max())
        # KS of the segment against its reference: the exact statistic within the stated
        # error bound (the reference's KLL error plus the grid's)
        profile = profile_from_window(_window_of(reference, edges))
        score = KS().score(profile.features["x"], g)
        exact = stats.ks_2samp(reference, current).statistic
        assert abs(score.value - exact) <= score.details["error_bound"]
        assert score.details["error_bound"] == pytest.approx(
            float(profile.features["x"].kll().normalized_rank_error(False)) + bound
        )


def test_the_bound_on_data_like_the_reference() -> None:
    """The figures docs/segments.md states: the largest grid bin holds 0.5–0.9 % of a
    column distributed like its reference (KLL at k = 100: ≈ 2.6 %), ≈ 3 % when a
    bimodal column's gap falls inside one reference decile; actual CDF errors are far
    smaller (≤ 0.5 %). The reference's edges come from a KLL sketch (randomised),
    so the figures vary a little run to run."""
    found = {}
    for shape, make in SHAPES.items():
        rng = np.random.default_rng(1)
        edges = _edges(make(rng, 200_000))
        current = make(rng, 50_000)
        g = GridSketch(100, edges)
        g.update(current)
        found[shape] = g.rank_error
        points = np.sort(current)
        assert np.abs(g.cdf(points) - _ecdf(current, points)).max() <= 0.005
    assert max(v for s, v in found.items() if s != "bimodal") <= 0.01, found
    assert found["bimodal"] <= 0.035, found
    assert kll_doubles_sketch.get_normalized_rank_error(100, False) == pytest.approx(
        0.026, abs=0.001
    )


def test_small_segments_are_exact_and_nonfinite_values_counted_apart() -> None:
    g = GridSketch(100, (0.0, 1.0))
    values = np.array([3.0, -2.0, np.nan, 0.5, np.inf, -np.inf, 1.0])
    g.update(values, nulls=2, missing=1)
    assert (g.count, g.nans, g.infs, g.nulls, g.missing) == (4, 1, 2, 2, 1)
    assert g.rank_error == 0.0 and g.held_exactly
    finite = np.array([3.0, -2.0, 0.5, 1.0])
    assert g.quantiles([0.0, 0.5, 1.0]).tolist() == [-2.0, 0.5, 3.0]
    assert g.cdf([0.5, 2.0]).tolist() == _ecdf(finite, np.array([0.5, 2.0])).tolist()
    assert g.mean == pytest.approx(finite.mean()) and g.variance == pytest.approx(finite.var())
    assert (g.min, g.max) == (-2.0, 3.0)


# -- merges ---------------------------------------------------------------------------------


def _state(g: GridSketch) -> tuple[Any, ...]:
    held = None if g._exact is None else sorted(g._exact.tolist())
    return (
        g.grid_counts.tolist(),
        g.count,
        g.nulls,
        g.missing,
        g.nans,
        g.infs,
        g.min if g.count else None,
        g.max if g.count else None,
        held,
        g.histogram(g._edges).tolist(),
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    cuts=st.lists(st.integers(0, 400), max_size=5),
    k=st.sampled_from([1, 50, 150, 1000]),
    order=st.randoms(use_true_random=False),
)
def test_merged_parts_equal_one_pass(
    seed: int, n: int, cuts: list[int], k: int, order: Any
) -> None:
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=n) * 3, 1)
    values[rng.random(n) < 0.05] = np.nan
    edges = (-1.0, 0.0, 2.5)
    whole = GridSketch(k, edges)
    whole.update(values, nulls=3)
    bounds = [0, *sorted(c for c in cuts if c <= n), n]
    parts = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = GridSketch(k, edges)
        part.update(values[lo:hi], nulls=3 if i == 0 else 0)
        parts.append(load_sketch(json.loads(json.dumps(part.to_dict()))))
    order.shuffle(parts)
    merged = GridSketch(k, edges)
    for part in parts:
        out = merged_numeric(merged, part)
        assert out is merged  # one grid: in place, exact
    assert _state(merged) == _state(whole)
    if whole.count:
        assert merged.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-12)
        assert merged.variance == pytest.approx(whole.variance, rel=1e-9, abs=1e-12)
        ranks = np.linspace(0, 1, 11)
        assert merged.quantiles(ranks).tolist() == whole.quantiles(ranks).tolist()


def test_grouped_feed_equals_one_update_per_group() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=5000)
    values[::37] = np.nan
    values[::101] = -np.inf
    sizes = np.array([2000, 0, 2500, 500])
    groups = np.repeat(np.arange(sizes.size), sizes)
    edges = (-1.0, 0.0, 1.0)
    grouped = [GridSketch(100, edges) for _ in sizes]
    feed_grid(grouped, values, groups, [1, 2, 3, 4], [0, 0, 1, 0])
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    for j, sketch in enumerate(grouped):
        one = GridSketch(100, edges)
        one.update(values[bounds[j] : bounds[j + 1]], nulls=j + 1, missing=int(j == 2))
        assert _state(sketch) == _state(one)
        if one.count:
            assert sketch.mean == pytest.approx(one.mean, rel=1e-12)
            assert sketch.variance == pytest.approx(one.variance, rel=1e-9)


def test_parts_on_different_grids_merge_as_kll_within_the_bound() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=30_000), rng.normal(size=20_000)
    ga, gb = GridSketch(100, _edges(a)), GridSketch(100, _edges(b, 8))
    ga.update(a)
    gb.update(b)
    out = merged_numeric(ga, gb)
    assert type(out) is NumericSketch and out.count == 50_000
    both = np.concatenate([a, b])
    assert (out.min, out.max) == (both.min(), both.max())
    assert out.mean == pytest.approx(both.mean()) and out.variance == pytest.approx(both.var())
    points = np.linspace(-3, 3, 61)
    bound = out.rank_error + max(ga.rank_error, gb.rank_error)
    assert np.abs(out.cdf(points) - _ecdf(both, points)).max() <= bound
    # a KLL part (stored before grids) and a grid part: the same
    plain = NumericSketch(100)
    plain.update(b)
    mixed = merged_numeric(GridSketch.from_dict(ga.to_dict()), plain)
    assert type(mixed) is NumericSketch and mixed.count == 50_000


# -- segment children, and parts stored before grids -----------------------------------------


def _window_of(values: np.ndarray[Any, Any], edges: tuple[float, ...]) -> WindowSummary:
    n = values.size
    none = np.zeros(n, dtype=bool)
    batch = ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(n, dtype=np.uint64),
        features={"x": Column("numeric", values, none, none)},
    )
    w = WindowSummary("fraud", "1", 0, 10**9, SketchSettings(bins=lambda m, c: edges))
    w.update(batch, np.arange(n))
    return w


def _old_batch() -> tuple[ColumnBatch, dict[str, Any]]:
    data = json.loads(OLD_PART.read_text())
    rows = data["test_rows"]
    amount = np.asarray(rows["amount"], dtype=np.float64)
    n = amount.size
    none = np.zeros(n, dtype=bool)
    batch = ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(n, dtype=np.uint64),
        features={
            "amount": Column("numeric", amount, none, none.copy()),
            "country": Column(
                "categorical", np.asarray(rows["country"], dtype=object), none.copy(), none.copy()
            ),
        },
        prediction=Column("numeric", np.full(n, 0.5), none.copy(), none.copy()),
        latency_ms=np.full(n, 10.0),
    )
    return batch, data


OLD_EDGES = {"amount": (-1.0, -0.5, 0.0, 0.5, 1.0), "__prediction__": (0.25, 0.5, 0.75)}
OLD_PLAN = (SegmentSpec("country", 2, ("DE", "FR")),)


def test_segment_children_keep_grid_sketches_with_exact_bins() -> None:
    batch, _ = _old_batch()
    s = SketchSettings(
        reservoir_size=0, bins=lambda m, c: OLD_EDGES.get(c), segments=lambda m: OLD_PLAN
    )
    w = WindowSummary("fraud", "1", 0, 10**9, s)
    w.update(batch, np.arange(len(batch)))
    amount = batch.features["amount"].values
    country = batch.features["country"].values
    for label, child in w.segments["country"].children.items():
        sketch = child.features["amount"]
        assert isinstance(sketch, GridSketch)
        rows = amount[country == label] if label != OTHER else amount[country == "IT"]
        assert sketch.histogram(OLD_EDGES["amount"]).tolist() == _exact_bins(
            rows, OLD_EDGES["amount"]
        )
        assert (sketch.count, sketch.min, sketch.max) == (rows.size, rows.min(), rows.max())
    assert not isinstance(w.features["amount"], GridSketch)  # the whole window keeps KLL


def test_parts_stored_before_grids_load_and_merge_with_new_ones() -> None:
    batch, data = _old_batch()
    old = WindowSummary.from_dict({k: v for k, v in data.items() if k != "test_rows"})
    children = old.segments["country"].children
    assert set(children) == {"DE", "FR", OTHER}
    for child in children.values():  # KLL children, as stored then
        assert type(child.features["amount"]) is NumericSketch
    s = SketchSettings(
        reservoir_size=0, bins=lambda m, c: OLD_EDGES.get(c), segments=lambda m: OLD_PLAN
    )
    new = WindowSummary("fraud", "1", 0, 10**9, s)
    new.update(batch, np.arange(len(batch)))
    assert isinstance(new.segments["country"].children["DE"].features["amount"], GridSketch)
    stored = WindowSummary.from_dict(json.loads(json.dumps(new.to_dict())))
    assert isinstance(stored.segments["country"].children["DE"].features["amount"], GridSketch)
    old.merge(stored)
    amount = batch.features["amount"].values
    country = batch.features["country"].values
    de = old.segments["country"].children["DE"].features["amount"]
    assert type(de) is NumericSketch  # a KLL part and a grid part merge as KLL
    rows = amount[country == "DE"]
    assert de.count == 2 * rows.size
    assert de.histogram(OLD_EDGES["amount"]).tolist() == [
        2 * c for c in _exact_bins(rows, OLD_EDGES["amount"])
    ]  # the exact bins survive: both parts counted the same edges
    # and the rules run on the loaded old part as on any window
    reference = ReferenceProfile.from_dict(profile_from_window(old).to_dict())
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "min_samples": 10,
            "segments": ["country"],
            "rules": [{"name": "ks", "metric": "ks", "features": ["amount"], "critical": 0.5}],
        }
    )
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, old, 3600.0)
    assert found["ks"]


def _segmented(
    amount: np.ndarray[Any, Any], country: np.ndarray[Any, Any], edges: dict[str, Any]
) -> WindowSummary:
    n = amount.size
    none = np.zeros(n, dtype=bool)
    batch = ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(n, dtype=np.uint64),
        features={
            "amount": Column("numeric", amount, none, none.copy()),
            "country": Column("categorical", country, none.copy(), none.copy()),
        },
    )
    plan = (SegmentSpec("country", 3, ("DE", "FR", "US")),)
    s = SketchSettings(reservoir_size=0, bins=lambda m, c: edges.get(c), segments=lambda m: plan)
    w = WindowSummary("fraud", "1", 0, 10**9, s)
    for lo in range(0, n, 7_000):  # several runs of rows, as flushes route them
        w.update(batch, np.arange(lo, min(n, lo + 7_000)))
    return w


def test_per_segment_ks_quantiles_and_psi_against_numpy_and_scipy() -> None:
    """Each segment's KS (scipy's exact two-sample statistic on the segment's rows of
    the reference and the window) within the finding's error bound; its quantiles within
    its rank error of numpy's; its bins, and so its PSI, exactly numpy's."""
    rng = np.random.default_rng(11)
    names = np.array(["DE", "FR", "US", "IT"], dtype=object)
    p = [0.5, 0.25, 0.15, 0.1]
    ref_country = rng.choice(names, size=40_000, p=p)
    ref_amount = rng.lognormal(3, 1, size=40_000)
    first = profile_from_window(_segmented(ref_amount, ref_country, {}))
    edges = {"amount": first.features["amount"].edges}
    reference = profile_from_window(_segmented(ref_amount, ref_country, edges), edges=edges)
    cur_country = rng.choice(names, size=30_000, p=p)
    cur_amount = rng.lognormal(3, 1, size=30_000)
    cur_amount[cur_country == "FR"] *= 1.5  # a shift in one segment only
    window = _segmented(cur_amount, cur_country, edges)
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "min_samples": 100,
            "segments": ["country"],
            "rules": [
                {"name": "ks", "metric": "ks", "features": ["amount"], "critical": 0.1},
                {"name": "psi", "metric": "psi", "features": ["amount"], "critical": 0.2},
            ],
        }
    )
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, window, 3600.0)
    ks = {f.details["segment"]["country"]: f for f in found["ks"]}
    psi = {f.details["segment"]["country"]: f for f in found["psi"]}
    cut = np.asarray(edges["amount"])
    for label in ("DE", "FR", "US", OTHER):
        in_ref = ref_country == label if label != OTHER else ref_country == "IT"
        in_cur = cur_country == label if label != OTHER else cur_country == "IT"
        a, b = ref_amount[in_ref], cur_amount[in_cur]
        exact = stats.ks_2samp(a, b).statistic
        assert abs(ks[label].value - exact) <= ks[label].details["error_bound"], label
        child = window.segments["country"].children[label].features["amount"]
        assert isinstance(child, GridSketch)
        assert child.histogram(edges["amount"]).tolist() == _exact_bins(b, edges["amount"])
        ranks = np.linspace(0.01, 0.99, 99)
        got = child.quantiles(ranks)
        assert np.all(np.abs(_ecdf(b, got) - ranks) <= child.rank_error + 1.0 / b.size)
        # PSI from numpy's own counts on both sides (ε = 1e-4 for empty bins, as ours)
        pr = np.bincount(np.searchsorted(cut, a, side="left"), minlength=cut.size + 1) / a.size
        qc = np.bincount(np.searchsorted(cut, b, side="left"), minlength=cut.size + 1) / b.size
        pr, qc = np.where(pr == 0, 1e-4, pr), np.where(qc == 0, 1e-4, qc)
        assert psi[label].value == pytest.approx(float(np.sum((qc - pr) * np.log(qc / pr))))
    assert ks["FR"].value > 0.1 and all(ks[c].value < 0.05 for c in ("DE", "US", OTHER))


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 1999), max_size=5, unique=True),
    seed=st.integers(0, 10**6),
    order=st.randoms(use_true_random=False),
)
def test_segment_children_of_flush_parts_merge_into_one_pass(
    cuts: list[int], seed: int, order: Any
) -> None:
    """Any split of a window's rows into flushes, stored and merged in any order, gives
    the segments' grid sketches one pass over all rows gives, count for count."""
    rng = np.random.default_rng(seed)
    n = 2000
    names = np.array(["DE", "FR", "US", "IT"], dtype=object)
    amount = np.round(rng.normal(size=n), 2)
    amount[rng.random(n) < 0.03] = np.nan
    country = rng.choice(names, size=n)
    edges = {"amount": (-1.0, -0.3, 0.0, 0.4, 1.2)}
    whole = _segmented(amount, country, edges)
    bounds = [0, *sorted(cuts), n]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        part = _segmented(amount[lo:hi], country[lo:hi], edges)
        parts.append(WindowSummary.from_dict(json.loads(json.dumps(part.to_dict()))))
    order.shuffle(parts)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    mine, theirs = merged.segments["country"], whole.segments["country"]
    assert set(mine.children) == set(theirs.children)
    for label, child in theirs.children.items():
        a, b = mine.children[label].features["amount"], child.features["amount"]
        assert isinstance(a, GridSketch) and isinstance(b, GridSketch)
        assert _state(a) == _state(b), label
        assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-12)
