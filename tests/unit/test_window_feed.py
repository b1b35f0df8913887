"""A window's numeric sketches, fed with deferred updates settled together once per
update (window_feed.feed_sketches), end where sketches fed one update at a time, each
settling on its own, end: the same counts, exact bins, min / max, mean and m2 bit for
bit, and KLL fed the same values (the same bytes while below k, the same n beyond)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.eventtime.windows import _codes
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary

EDGES = (-1.0, 0.0, 0.5, 2.0)


def _batch(rng: np.random.Generator, n: int, start: int) -> ColumnBatch:
    none = np.zeros(n, dtype=bool)
    a = rng.normal(size=n) * 10.0 ** rng.integers(-2, 4)
    a[rng.random(n) < 0.05] = np.nan
    b = rng.normal(size=n)
    b[rng.random(n) < 0.02] = np.inf
    null = rng.random(n) < 0.1
    b[null] = np.nan
    offsets = np.arange(start, start + n, dtype=np.int64)
    return ColumnBatch(
        model="m",
        role="predictions",
        ts_ms=np.full(n, 1_000, dtype=np.int64),
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(1, 0, offsets),
        offsets=offsets,
        features={"a": Column("numeric", a, none, none), "b": Column("numeric", b, null, none)},
        prediction=Column("numeric", rng.random(n), none, none),
        latency_ms=np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 50),
    )


def _state(s: NumericSketch) -> dict[str, Any]:
    out = s.to_dict()
    kll = out.pop("kll")
    if s.count > s.k:  # KLL compacts with random coins past k: the same values, not bytes
        out["kll_n"] = NumericSketch.from_dict({**s.to_dict()}).count
    else:
        out["kll"] = kll
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 3_000), min_size=1, max_size=8), st.integers(0, 2**32 - 1))
def test_deferred_settling_ends_where_settling_each_update_ends(
    sizes: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    bins = lambda model, name: EDGES if name == "a" else None  # noqa: E731
    window = WindowSummary("m", "1", 0, 60_000, SketchSettings(k=64, bins=bins))
    alone = {name: NumericSketch(64) for name in ("a", "b", "prediction", "latency")}
    alone["a"].count_bins_on(EDGES)
    start = 0
    for n in sizes:
        batch = _batch(rng, n, start)
        start += n
        window.update(batch, np.arange(n))
        for name, column in (*batch.features.items(), ("prediction", batch.prediction)):
            assert column is not None
            values, nulls, missing = column.present(np.arange(n))
            alone[name].update(values, nulls=nulls, missing=missing)
        assert batch.latency_ms is not None
        alone["latency"].update(batch.latency_ms[~np.isnan(batch.latency_ms)])
    fed = {**window.features, "prediction": window.prediction, "latency": window.latency}
    for name, sketch in alone.items():
        assert isinstance(fed[name], NumericSketch)
        assert _state(fed[name]) == _state(sketch), name  # type: ignore[arg-type]
    assert "bins" in _state(fed["a"])  # type: ignore[arg-type]


@given(st.lists(st.sampled_from(["", "1", "2", "10"]), min_size=1, max_size=30))
def test_version_codes_are_np_uniques(versions: list[str]) -> None:
    """The one-version shortcut of WindowState.summarise gives np.unique's answer."""
    values = np.array(versions, dtype=object)
    names, codes = _codes(values)
    want_names, want_codes = np.unique(values, return_inverse=True)
    assert names.tolist() == want_names.tolist() and codes.tolist() == want_codes.tolist()
