"""Sketches and window summaries: exact counts, bounded quantile error, exact mergeability."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import Reservoir, record_keys
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary


def numeric_column(values: np.ndarray) -> Column:
    n = values.size
    return Column("numeric", values, np.zeros(n, bool), np.zeros(n, bool))


def batch_of(rng: np.random.Generator, n: int, offset0: int = 0) -> ColumnBatch:
    amount = rng.lognormal(3, 1, n)
    amount[rng.random(n) < 0.01] = np.nan
    null = rng.random(n) < 0.02
    amount[null] = np.nan
    country = np.empty(n, dtype=object)
    country[:] = rng.choice(["DE", "FR", "US"], n).tolist()
    missing = rng.random(n) < 0.05
    country[missing] = None
    return ColumnBatch(
        model="fraud",
        role="predictions",
        ts_ms=np.full(n, 1_000_000, dtype=np.int64),
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(1, 0, np.arange(offset0, offset0 + n)),
        features={
            "amount": Column("numeric", amount, null, np.zeros(n, bool)),
            "country": Column("categorical", country, np.zeros(n, bool), missing),
        },
        prediction=numeric_column(rng.random(n)),
        latency_ms=rng.gamma(3, 5, n),
    )


def test_numeric_sketch_counts_are_exact() -> None:
    s = NumericSketch()
    s.update(np.array([1.0, np.nan, np.inf, -np.inf, 3.0]), nulls=2, missing=1)
    assert (s.count, s.nans, s.infs, s.nulls, s.missing, s.total) == (2, 1, 2, 2, 1, 7)
    assert (s.min, s.max, s.mean, s.variance) == (1.0, 3.0, 2.0, 1.0)


def test_numeric_quantiles_within_the_stated_rank_error() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=200_000)
    s = NumericSketch(k=200)
    s.update(x)
    ranks = np.linspace(0.01, 0.99, 25)
    estimated = s.quantiles(ranks)
    true_ranks = np.searchsorted(np.sort(x), estimated) / x.size
    assert np.abs(true_ranks - ranks).max() <= s.rank_error
    assert 0.01 < s.rank_error < 0.02  # ≈1.33 % at k=200 (single query, 99 % confidence)
    cdf = s.cdf([-1.0, 0.0, 1.0])
    exact = np.array([(x <= p).mean() for p in (-1.0, 0.0, 1.0)])
    assert np.abs(cdf - exact).max() <= s.rank_error
    hist = s.histogram([-1.0, 0.0, 1.0])
    assert hist.sum() == pytest.approx(x.size)
    exact_hist = np.histogram(x, [-np.inf, -1, 0, 1, np.inf])[0]
    assert np.abs(hist - exact_hist).max() <= s.rank_error * x.size * 2


@settings(max_examples=60, deadline=None)
@given(
    # moments are exact up to float rounding for magnitudes a feature can have; near the
    # float64 limit they overflow to inf (checked not to crash by the next test)
    st.lists(
        st.floats(min_value=-1e100, max_value=1e100) | st.sampled_from([np.nan, np.inf, -np.inf]),
        max_size=300,
    ),
    st.integers(min_value=0, max_value=300),
)
def test_numeric_merge_equals_whole(values: list[float], cut: int) -> None:
    x = np.array(values, dtype=np.float64)
    cut = min(cut, x.size)
    whole, a, b = NumericSketch(), NumericSketch(), NumericSketch()
    whole.update(x)
    a.update(x[:cut])
    b.update(x[cut:])
    a.merge(b)
    assert (a.count, a.nans, a.infs) == (whole.count, whole.nans, whole.infs)
    if whole.count:
        assert (a.min, a.max) == (whole.min, whole.max)
        assert a.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-6 * max(1.0, abs(whole.max)))
        # below k items KLL keeps every value, so quantiles agree exactly
        assert np.array_equal(a.quantiles([0.0, 0.5, 1.0]), whole.quantiles([0.0, 0.5, 1.0]))


def test_extreme_values_do_not_crash_the_sketch() -> None:
    s = NumericSketch()
    s.update(np.array([0.0, 1.7976931348623157e308, 1.7976931348623157e308]))
    assert s.count == 3 and s.max == 1.7976931348623157e308


def test_category_counts_bounded_and_deterministic() -> None:
    c = CategoryCounts(max_categories=3)
    c.update(["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["e"], nulls=1)
    assert c.counts == {"a": 5, "b": 4, "c": 3}
    assert (c.overflow, c.count, c.total) == (3, 15, 16)
    d = CategoryCounts(max_categories=3)
    d.update(["e"] * 10)
    c.merge(d)
    # the single "e" seen first was already folded into overflow: counts past the bound
    # are approximate, and the overflow says by how much
    assert c.counts == {"e": 10, "a": 5, "b": 4} and c.overflow == 3 + 3
    assert c.count == 15 + 10


def test_reservoir_merge_is_the_bottom_k_of_the_union() -> None:
    keys = record_keys(42, 3, np.arange(10_000))

    def rows(idx: np.ndarray) -> list[dict[str, int]]:
        return [{"i": int(i)} for i in idx]

    whole = Reservoir(64)
    whole.update(keys, rows)
    parts = [Reservoir(64) for _ in range(4)]
    for j, part in enumerate(parts):
        sl = slice(j * 2500, (j + 1) * 2500)
        part.update(keys[sl], lambda idx, off=j * 2500: [{"i": int(i) + off} for i in idx])
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert merged.rows == whole.rows and merged.seen == whole.seen == 10_000
    assert np.array_equal(merged.keys, np.sort(keys)[:64])
    # re-offering the same records (a replay) keeps each once
    again = Reservoir(64)
    again.update(keys[:100], rows)
    again.update(keys[:100], rows)
    assert len({r["i"] for r in again.rows}) == len(again.rows) == 64


def test_window_summaries_merge_exactly_as_one() -> None:
    rng = np.random.default_rng(5)
    batch = batch_of(rng, 20_000)
    settings_ = SketchSettings(k=200, max_categories=16, reservoir_size=128)
    whole = WindowSummary("fraud", "1", 0, 300_000, settings_)
    whole.update(batch, np.arange(20_000))
    parts = []
    for idx in np.array_split(rng.permutation(20_000), 5):
        part = WindowSummary("fraud", "1", 0, 300_000, settings_)
        part.update(batch, np.sort(idx))
        parts.append(part)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    assert merged.events == whole.events == {"predictions": 20_000}
    for name in ("amount", "country"):
        m, w = merged.features[name], whole.features[name]
        assert (m.count, m.nulls, m.missing, m.total) == (w.count, w.nulls, w.missing, w.total)
    m, w = merged.features["amount"], whole.features["amount"]
    assert isinstance(m, NumericSketch) and isinstance(w, NumericSketch)
    assert m.nans == w.nans and m.min == w.min and m.max == w.max
    assert m.mean == pytest.approx(w.mean, rel=1e-12)
    x = batch.features["amount"].values
    finite = np.sort(x[np.isfinite(x)])
    for est in (m.quantiles([0.1, 0.5, 0.9]), w.quantiles([0.1, 0.5, 0.9])):
        true = np.searchsorted(finite, est) / finite.size
        assert np.abs(true - [0.1, 0.5, 0.9]).max() <= m.rank_error
    assert merged.features["country"].counts == whole.features["country"].counts  # type: ignore[union-attr]
    assert merged.sample.rows == whole.sample.rows
    assert merged.latency.count == whole.latency.count == 20_000


def test_window_summary_round_trips_through_storage() -> None:
    rng = np.random.default_rng(9)
    w = WindowSummary("fraud", "1", 0, 300_000, SketchSettings(reservoir_size=16))
    w.update(batch_of(rng, 1000), np.arange(1000))
    blob = orjson.dumps(w.to_dict())
    back = WindowSummary.from_dict(orjson.loads(blob))
    assert back.to_dict() == w.to_dict()
    assert back.features["amount"].quantiles([0.5]) == w.features["amount"].quantiles([0.5])  # type: ignore[union-attr]


def test_merging_different_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="same model"):
        WindowSummary("a", "1", 0, 10).merge(WindowSummary("a", "1", 10, 10))


def test_small_windows_roll_up_into_a_large_one_exactly() -> None:
    rng = np.random.default_rng(11)
    minute = 60_000
    n = 12_000
    batch = batch_of(rng, n)
    batch.ts_ms = np.sort(rng.integers(0, 60 * minute, n)).astype(np.int64)
    batch.versions = np.array(rng.choice(["1", "2"], n).tolist(), dtype=object)
    settings_ = SketchSettings(reservoir_size=64)
    hour = WindowSummary("fraud", "*", 0, 60 * minute, settings_)
    hour.update(batch, np.arange(n))
    parts = []
    for start in range(0, 60 * minute, 5 * minute):
        for version in ("1", "2"):
            idx = np.flatnonzero(
                (batch.ts_ms >= start)
                & (batch.ts_ms < start + 5 * minute)
                & (batch.versions == version)
            )
            part = WindowSummary("fraud", version, start, 5 * minute, settings_)
            part.update(batch, idx)
            parts.append(part)
    rolled = WindowSummary.rollup(parts, 0, 60 * minute)
    assert rolled.version == "*" and rolled.count == hour.count == n
    assert (rolled.first_ts_ms, rolled.last_ts_ms) == (hour.first_ts_ms, hour.last_ts_ms)
    assert rolled.features["country"].counts == hour.features["country"].counts  # type: ignore[union-attr]
    assert rolled.features["amount"].count == hour.features["amount"].count
    assert rolled.sample.rows == hour.sample.rows
    only_1 = WindowSummary.rollup([p for p in parts if p.version == "1"], 0, 60 * minute, "1")
    assert only_1.count == int((batch.versions == "1").sum())
    with pytest.raises(ValueError, match="not inside"):
        WindowSummary.rollup(parts, 0, 30 * minute)
