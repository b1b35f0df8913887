"""The join buffer's rows, built column-wise (JoinBuffer.add), equal the rows built one
by one as before (the reference below is the previous code's per-row computation):
same keys in the same order, same values, same late marks, on hypothesis batches with
missing request ids, null and absent labels, NaN, ±inf, -0.0 and late rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.store.label_join import JoinBuffer
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.performance import class_names
from watchkeeper.detectors.reservoir import record_keys

SIZE = 300_000
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 0.5, float("nan"), float("inf"), -float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
)


def reference_rows(batch: ColumnBatch, late: np.ndarray[Any, Any] | None) -> list[dict[str, Any]]:
    """The previous JoinBuffer.add, row by row."""
    out: list[dict[str, Any]] = []
    assert batch.request_ids is not None
    for i, rid in enumerate(batch.request_ids.tolist()):
        if rid is None:
            continue
        ts = int(batch.ts_ms[i])
        if batch.role == "predictions":
            assert batch.prediction is not None
            v = float(batch.prediction.values[i])
            out.append(
                {
                    "model": batch.model,
                    "request_id": rid,
                    "model_version": batch.versions[i],
                    "window_start_ms": ts - ts % SIZE,
                    "ts_ms": ts,
                    "score": v if v == v else None,
                    "predicted": None,
                    "segments": None,
                }
            )
        else:
            assert batch.label is not None
            if batch.label.null[i] or batch.label.missing[i]:
                continue
            v = float(batch.label.values[i])
            row: dict[str, Any] = {
                "model": batch.model,
                "request_id": rid,
                "label": class_names([v])[0],
                "value": v if v == v else None,
                "ts_ms": ts,
            }
            if late is not None and late[i]:
                row["late"] = True
            out.append(row)
    return out


@st.composite
def batches(draw: st.DrawFn) -> tuple[ColumnBatch, np.ndarray[Any, Any] | None]:
    n = draw(st.integers(0, 40))
    role = draw(st.sampled_from(["predictions", "labels"]))
    ids = [draw(st.one_of(st.none(), st.text(max_size=6))) for _ in range(n)]
    values = np.array([draw(FLOATS) for _ in range(n)], dtype=np.float64)
    null = np.array([draw(st.booleans()) for _ in range(n)], dtype=bool)
    missing = np.array([draw(st.booleans()) for _ in range(n)], dtype=bool)
    column = Column("numeric", values, null, missing)
    ts = np.array([draw(st.integers(0, 10**13)) for _ in range(n)], dtype=np.int64)
    batch = ColumnBatch(
        model="m",
        role=role,
        ts_ms=ts,
        versions=np.array([draw(st.sampled_from(["1", "2"])) for _ in range(n)], dtype=object),
        keys=record_keys(0, 0, np.arange(n)),
        request_ids=np.array([*ids, None], dtype=object)[:n],
        prediction=column if role == "predictions" else None,
        label=column if role == "labels" else None,
    )
    late = (
        np.array([draw(st.booleans()) for _ in range(n)], dtype=bool)
        if role == "labels" and draw(st.booleans())
        else None
    )
    return batch, late


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal rows, NaN-free by construction, -0.0 told from 0.0 (orjson bytes and repr)."""
    return (
        [list(r) for r in a] == [list(r) for r in b]
        and [orjson.dumps(r) for r in a] == [orjson.dumps(r) for r in b]
        and repr(a) == repr(b)
    )


@settings(max_examples=300, deadline=None)
@given(batches())
def test_rows_equal_the_row_by_row_reference(drawn: tuple[ColumnBatch, Any]) -> None:
    batch, late = drawn
    buffer = JoinBuffer()
    buffer.add(batch, SIZE, late=late)
    rows = buffer.predictions if batch.role == "predictions" else buffer.labels
    assert same(rows, reference_rows(batch, late))
    assert not (buffer.labels if batch.role == "predictions" else buffer.predictions)


def test_rows_append_to_what_the_buffer_holds() -> None:
    """A second batch's rows follow the first's, and a late mark lands on its own row."""

    def labels(ids: list[str], values: list[float]) -> ColumnBatch:
        n = len(ids)
        return ColumnBatch(
            model="m",
            role="labels",
            ts_ms=np.arange(n, dtype=np.int64),
            versions=np.array([""] * n, dtype=object),
            keys=record_keys(0, 0, np.arange(n)),
            request_ids=np.array(ids, dtype=object),
            label=Column("numeric", np.array(values), np.zeros(n, bool), np.zeros(n, bool)),
        )

    buffer = JoinBuffer()
    buffer.add(labels(["a", "b"], [1.0, 0.0]), SIZE)
    buffer.add(labels(["c", "d", "e"], [1.0, 2.5, -0.0]), SIZE, late=np.array([0, 1, 0], bool))
    assert [(r["request_id"], r["label"], r.get("late", False)) for r in buffer.labels] == [
        ("a", "1", False),
        ("b", "0", False),
        ("c", "1", False),
        ("d", "2.5", True),
        ("e", "0", False),
    ]
