"""A window sample's rows, built column by column, equal the rows built one event at a
time (the previous code, kept here as the reference): same keys, same order, same values
and Python types, nulls, NaN and missing features included."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.window_rows import sample_rows


def _value_each(column: Column, i: int) -> Any:
    if column.null[i] or column.missing[i]:
        return None
    value = column.values[i]
    if column.kind == "numeric":
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def sample_rows_each(batch: ColumnBatch, idx: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in idx.tolist():
        row: dict[str, Any] = {
            "ts_ms": int(batch.ts_ms[i]),
            "features": {
                n: _value_each(c, i) for n, c in batch.features.items() if not c.missing[i]
            },
        }
        if batch.request_ids is not None and batch.request_ids[i] is not None:
            row["request_id"] = batch.request_ids[i]
        if batch.prediction is not None:
            row["prediction"] = _value_each(batch.prediction, i)
        if batch.latency_ms is not None and batch.latency_ms[i] == batch.latency_ms[i]:
            row["latency_ms"] = float(batch.latency_ms[i])
        rows.append(row)
    return rows


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0), st.integers(-5, 5).map(float)
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[ColumnBatch, Any]:
    n = draw(st.integers(1, 12))
    features: dict[str, Column] = {}
    for name in draw(st.lists(st.sampled_from(["b", "a", "c", "d"]), unique=True, max_size=4)):
        null = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        missing = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))) & ~null
        if draw(st.booleans()):
            null[:] = missing[:] = False
        if draw(st.booleans()):
            values = np.array(draw(st.lists(NUMBERS, min_size=n, max_size=n)), dtype=np.float64)
            values[null | missing] = np.nan
            features[name] = Column("numeric", values, null, missing)
        else:
            texts = np.array(
                draw(st.lists(st.sampled_from(["x", "y", ""]), min_size=n, max_size=n)),
                dtype=object,
            )
            texts[null | missing] = None
            features[name] = Column("categorical", texts, null, missing)
    none = np.zeros(n, dtype=bool)
    prediction = None
    if draw(st.booleans()):
        pred = np.array(draw(st.lists(NUMBERS, min_size=n, max_size=n)), dtype=np.float64)
        prediction = Column("numeric", pred, none, none)
    request_ids = None
    if draw(st.booleans()):
        ids = draw(
            st.lists(st.one_of(st.none(), st.sampled_from(["r1", "r2"])), min_size=n, max_size=n)
        )
        request_ids = np.array(ids, dtype=object)
    latency = None
    if draw(st.booleans()):
        latency = np.array(draw(st.lists(NUMBERS, min_size=n, max_size=n)), dtype=np.float64)
    batch = ColumnBatch(
        model="m",
        role="predictions",
        ts_ms=np.array(
            draw(st.lists(st.integers(0, 2**50), min_size=n, max_size=n)), dtype=np.int64
        ),
        versions=np.array(["1"] * n, dtype=object),
        keys=np.arange(n, dtype=np.uint64),
        request_ids=request_ids,
        features=features,
        prediction=prediction,
        latency_ms=latency,
    )
    idx = np.array(draw(st.lists(st.integers(0, n - 1), max_size=n)), dtype=np.intp)
    return batch, idx


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_sample_rows_equal_the_rows_built_one_event_at_a_time(
    case: tuple[ColumnBatch, Any],
) -> None:
    batch, idx = case
    fast, slow = sample_rows(batch, idx), sample_rows_each(batch, idx)
    # the stored form, byte for byte (key order, -0.0, None), and the Python types
    assert orjson.dumps(fast, option=orjson.OPT_SERIALIZE_NUMPY) == orjson.dumps(
        slow, option=orjson.OPT_SERIALIZE_NUMPY
    )
    assert repr(fast) == repr(slow)
