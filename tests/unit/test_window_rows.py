"""Compact windows (rows held as arrays, detectors/window_rows.py) against full ones.

A window's rows kept as arrays and stored as such must read back as the same window
summarised with its sketches: the stored-then-loaded state equal bit for bit (to_dict,
KLL bytes included), the drift and sanity numbers equal, for any number of rows around
:data:`COMPACT_ROWS` (where a window turns into sketches), any slicing into batches, nulls,
missing keys, NaN and infinities, categories and pinned bin edges.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.errors import CorruptStateError
from watchkeeper.detectors.js import JSDistance
from watchkeeper.detectors.profile import NumericProfile
from watchkeeper.detectors.psi import PSI
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.detectors.window_rows import COMPACT_ROWS, PackedBatch, RowSlice

HOUR = 3_600_000
EDGES = (-1.0, 0.0, 0.5, 2.0)
REFERENCE = NumericProfile(
    count=50,
    nulls=0,
    nans=0,
    min=-3.0,
    max=3.0,
    mean=0.0,
    std=1.0,
    edges=EDGES,
    proportions=(0.1, 0.2, 0.4, 0.2, 0.1),
)


def make_batch(rng: np.random.Generator, n: int, offset: int, hours: int) -> ColumnBatch:
    """``n`` events over ``hours`` one-hour windows: two numeric features with nulls,
    missing keys, NaN and ±inf, a categorical one, a prediction, latency, request ids."""
    ts = rng.integers(0, hours * HOUR, n).astype(np.int64)
    x = rng.normal(size=n)
    null = rng.random(n) < 0.1
    missing = (rng.random(n) < 0.1) & ~null
    x[rng.random(n) < 0.05] = np.inf
    x[rng.random(n) < 0.05] = np.nan
    x[null | missing] = np.nan
    cats = np.array([str(c) for c in rng.choice(["DE", "FR", "US"], n)], dtype=object)
    cat_null = rng.random(n) < 0.1
    cats[cat_null] = None
    latency = rng.random(n) * 20
    latency[rng.random(n) < 0.1] = np.nan
    ids = np.array([f"r{offset + i}" if i % 5 else None for i in range(n)], dtype=object)
    return ColumnBatch(
        model="m",
        role="predictions",
        ts_ms=ts,
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(1, 0, np.arange(offset, offset + n)),
        request_ids=ids,
        features={
            "x": Column("numeric", x, null, missing),
            "y": Column("numeric", rng.random(n), np.zeros(n, bool), np.zeros(n, bool)),
            "c": Column("categorical", cats, cat_null, np.zeros(n, bool)),
        },
        prediction=Column("numeric", rng.random(n), np.zeros(n, bool), np.zeros(n, bool)),
        latency_ms=latency,
    )


def full_windows(
    batches: list[ColumnBatch], sketch_settings: SketchSettings
) -> dict[int, WindowSummary]:
    """Each window summarised with its sketches from the start (the path before rows)."""
    out: dict[int, WindowSummary] = {}
    for batch in batches:
        starts = batch.ts_ms - batch.ts_ms % HOUR
        for start in np.unique(starts).tolist():
            window = out.setdefault(start, WindowSummary("m", "1", start, HOUR, sketch_settings))
            window.update(batch, np.flatnonzero(starts == start))
    return out


def stored(summary: WindowSummary) -> WindowSummary:
    """Through the store's JSON: what a reader gets back."""
    return WindowSummary.from_dict(orjson.loads(orjson.dumps(summary.to_dict())))


def without_kll(data: dict[str, Any]) -> dict[str, Any]:
    """A stored summary without KLL bytes: past k values KLL compactions flip coins, so
    two sketches of the same values differ there (within KLL's bound) whatever the path."""

    def strip(sketch: Any) -> Any:
        return (
            {k: v for k, v in sketch.items() if k != "kll"} if isinstance(sketch, dict) else sketch
        )

    out = dict(data)
    out["features"] = {n: strip(s) for n, s in data["features"].items()}
    for name in ("prediction", "prediction_class", "label", "latency"):
        out[name] = strip(data[name])
    return out


def numbers(w: WindowSummary) -> dict[str, Any]:
    """What checks read: drift against the edges, quantiles, sanity counts, categories."""
    out: dict[str, Any] = {"events": w.count, "sample": w.sample.rows}
    for name in ("x", "y"):
        s = w.features[name]
        assert isinstance(s, NumericSketch)
        hist = s.histogram(EDGES)
        out[name] = (
            s.count,
            s.nulls,
            s.missing,
            s.nans,
            s.infs,
            s.mean,
            s.variance,
            hist.tolist(),
            s.quantiles([0.1, 0.5, 0.9]).tolist(),
            s.counts_exactly(EDGES),
            [m().score(REFERENCE, s).value for m in (PSI, JSDistance)] if s.count else None,
        )
    c = w.features["c"]
    assert isinstance(c, CategoryCounts)
    out["c"] = (c.counts, c.nulls, c.overflow)
    return out


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 2 * COMPACT_ROWS + 20),
    slices=st.integers(1, 6),
    hours=st.integers(1, 3),
)
def test_compact_and_full_windows_store_and_read_the_same(
    seed: int, rows: int, slices: int, hours: int
) -> None:
    rng = np.random.default_rng(seed)
    sizes = np.diff(np.sort(np.r_[0, rng.integers(0, rows + 1, slices - 1), rows])).tolist()
    batches, offset = [], 0
    for size in sizes:
        if size:
            batches.append(make_batch(rng, size, offset, hours))
            offset += size
    sketch_settings = SketchSettings(bins=lambda model, column: EDGES)
    state = WindowState(3600, 10**9, sketch_settings)
    for batch in batches:
        state.add(batch)
    delta = state.drain()
    want = full_windows(batches, sketch_settings)
    assert {k.start_ms for k in delta.windows} == set(want)
    for key, got in delta.windows.items():
        full = want[key.start_ms]
        assert got.compact == (full.count <= COMPACT_ROWS)
        assert (got.count, got.first_ts_ms, got.last_ts_ms) == (
            full.count,
            full.first_ts_ms,
            full.last_ts_ms,
        )
        loaded, loaded_full = stored(got), stored(full)
        exact = full.count <= sketch_settings.k  # below k, KLL holds every value: no coin
        if exact:
            assert orjson.dumps(loaded.to_dict()) == orjson.dumps(loaded_full.to_dict())
            # repr: NaN (the mean of no value) equals itself there
            assert repr(numbers(loaded)) == repr(numbers(loaded_full))
        else:
            assert orjson.dumps(without_kll(loaded.to_dict())) == orjson.dumps(
                without_kll(loaded_full.to_dict())
            )
        mine = numbers(got)  # built in memory, on first read
        assert not got.compact
        if exact:
            assert repr(mine) == repr(numbers(full))
            assert orjson.dumps(got.to_dict()) == orjson.dumps(full.to_dict())
        else:
            assert orjson.dumps(without_kll(got.to_dict())) == orjson.dumps(
                without_kll(full.to_dict())
            )


def test_a_compact_window_stays_small_and_turns_into_sketches_past_its_rows() -> None:
    rng = np.random.default_rng(1)
    state = WindowState(3600, 10**9)
    state.add(make_batch(rng, 10, 0, 1))
    (window,) = state.drain().windows.values()
    assert window.compact and "features" not in vars(window)
    blob = window.to_dict()
    assert blob["format"] == 3 and len(blob["rows"]) == 1
    assert window.compact  # storing it built nothing
    state.add(make_batch(rng, COMPACT_ROWS, 10, 1))
    state.add(make_batch(rng, 1, 10 + COMPACT_ROWS, 1))
    (grown,) = state.drain().windows.values()
    assert not grown.compact and grown.to_dict()["format"] == 2


def test_a_window_with_an_estimation_in_force_is_not_compact() -> None:
    rng = np.random.default_rng(2)
    marker = object()
    state = WindowState(3600, 10**9, SketchSettings(estimation=lambda model: marker))  # type: ignore[arg-type,return-value]
    assert not state._compactable(make_batch(rng, 3, 0, 1))
    assert WindowState(3600, 10**9)._compactable(make_batch(rng, 3, 0, 1))


def test_a_column_changing_kind_leaves_the_window_to_its_sketches() -> None:
    rng = np.random.default_rng(4)
    first = make_batch(rng, 5, 0, 1)
    second = make_batch(rng, 5, 5, 1)
    n = 5
    second.features["y"] = Column(
        "categorical", np.array(["a"] * n, dtype=object), np.zeros(n, bool), np.zeros(n, bool)
    )
    state = WindowState(3600, 10**9)
    state.add(first)
    state.add(second)
    (window,) = state.drain().windows.values()
    want = full_windows([first, second], SketchSettings())
    assert not window.compact
    assert window.to_dict() == next(iter(want.values())).to_dict()


def test_a_row_slice_round_trips_through_json() -> None:
    rng = np.random.default_rng(5)
    state = WindowState(3600, 10**9, SketchSettings(bins=lambda model, column: EDGES))
    state.add(make_batch(rng, 12, 0, 1))
    (window,) = state.drain().windows.values()
    (part,) = window._compact or []
    back = RowSlice.from_dict(orjson.loads(orjson.dumps(part.to_dict(part.edges))))
    for name in ("ts_ms", "keys", "numeric", "codes", "latency_ms", "request_ids"):
        assert np.array_equal(
            getattr(back, name), getattr(part, name), equal_nan=name != "request_ids"
        )
    assert [t.tolist() for t in back.text] == [t.tolist() for t in part.text]
    assert (back.names, back.kinds, back.features, back.role) == (
        part.names,
        part.kinds,
        part.features,
        part.role,
    )
    assert dict(back.edges) == dict.fromkeys(part.names, EDGES)


def test_a_restored_delta_merges_compact_windows_as_full_ones() -> None:
    """A failed flush puts its delta back: the windows merge as their sketches would."""
    rng = np.random.default_rng(6)
    a, b = make_batch(rng, 7, 0, 1), make_batch(rng, 9, 7, 1)
    state = WindowState(3600, 10**9)
    state.add(a)
    failed = state.drain()
    state.add(b)
    state.restore(failed)
    (window,) = state.drain().windows.values()
    first = full_windows([a], SketchSettings())[0]
    first.merge(full_windows([b], SketchSettings())[0])
    assert window.to_dict() == first.to_dict()


def test_a_part_stored_before_rows_loads_as_the_compact_one_of_the_same_events() -> None:
    """``window_format2.json``: the part the code before compact windows (commit b6e5872)
    stored for ``make_batch(default_rng(42), 12, 0, 1)`` with EDGES pinned. It still loads,
    and the same events held as rows today read back as that part, bit for bit."""
    old = orjson.loads((Path(__file__).parent / "window_format2.json").read_bytes())
    assert old["format"] == 2
    loaded = WindowSummary.from_dict(old)
    state = WindowState(3600, 10**9, SketchSettings(bins=lambda model, column: EDGES))
    state.add(make_batch(np.random.default_rng(42), 12, 0, 1))
    (window,) = state.drain().windows.values()
    assert window.compact
    assert orjson.dumps(stored(window).to_dict()) == orjson.dumps(loaded.to_dict())
    assert repr(numbers(stored(window))) == repr(numbers(loaded))


def _stored_slice() -> dict[str, Any]:
    x = Column("numeric", np.array([1.0, 2.0, 3.0]), np.zeros(3, bool), np.zeros(3, bool))
    c = Column(
        "categorical",
        np.array(["a", "b", "a"], dtype=object),
        np.zeros(3, bool),
        np.array([False, True, False]),
    )
    batch = ColumnBatch(
        "m",
        "predictions",
        np.array([5, 6, 7]),
        np.array(["1"] * 3),
        np.arange(3, dtype=np.uint64),
        request_ids=np.array(["r1", "r2", "r3"], dtype=object),
        features={"x": x, "c": c},
        latency_ms=np.array([1.0, 2.0, 3.0]),
    )
    return PackedBatch(batch, np.array([0, 1, 2]), {}).slice(0, 3).to_dict()


def _b64(values: list[float], dtype: str) -> str:
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"keys": _b64([1], "<u8")}, "'keys' does not hold 3 values"),
        ({"latency": _b64([1.0], "<f8")}, "'latency' does not hold 3 values"),
        ({"numeric": _b64([1.0] * 4, "<f8")}, "'numeric' does not hold 3 values"),
        ({"codes": _b64([0] * 5, "u1")}, "'codes' does not hold 6 values"),
        ({"names": ["x", "c", "y"]}, "names, kinds and features disagree"),
        ({"features": 3}, "names, kinds and features disagree"),
        ({"kinds": "nz"}, "KeyError"),
        ({"ts": "!!!!"}, "'ts'"),
        ({"ts": _b64(list(range(COMPACT_ROWS + 1)), "<i8")}, f"more than {COMPACT_ROWS} rows"),
        ({"text": []}, "one category list per categorical column"),
        ({"text": [["a"]]}, "'text' does not hold 3 values"),
        ({"text": [["a", {"b": 1}, "a"]]}, "'text' holds a list or an object"),
        ({"request_ids": ["r1"]}, "'request_ids' does not hold 3 values"),
    ],
)
def test_a_corrupt_stored_slice_is_refused_by_name(change: dict[str, Any], message: str) -> None:
    """A hand-edited or damaged part (arrays of the wrong size, a hostile row count) is a
    CorruptStateError naming the field, checked before it is decoded: never an
    IndexError in a later replay nor an allocation past a compact window's rows."""
    good = _stored_slice()
    assert len(RowSlice.from_dict(good)) == 3
    with pytest.raises(CorruptStateError, match=re.escape(message)):
        RowSlice.from_dict({**good, **change})
