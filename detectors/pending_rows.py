"""Rows a window holds back for its segments before routing them (in runs of
:data:`SETTLE_ROWS`), and how consecutive held batches join into one: routing the joined
batch gives what routing each would (detectors/window_segments.route_pending routes them
into each :class:`~watchkeeper.detectors.segments.SegmentSplit`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from watchkeeper.detectors.column_batch import Column, ColumnBatch, IndexArray

SETTLE_ROWS = 16_384
"""Rows a window holds back for its segments before routing them: a poll's batch per
partition is often a few thousand rows, and routing costs a numpy pass per column and
segment feature whatever the rows, so rows are routed in runs of at least this many (or
when the segments are read, merged or stored)."""


def _schema(batch: ColumnBatch) -> tuple[Any, ...]:
    def kind(c: Column | None) -> str | None:
        return None if c is None else c.kind

    return (
        batch.role,
        tuple((n, c.kind) for n, c in batch.features.items()),
        kind(batch.prediction),
        kind(batch.prediction_class),
        kind(batch.label),
        batch.latency_ms is not None,
        None if batch.class_scores is None else batch.class_scores.shape[1:],
    )


class PendingRows:
    """Rows a window's segments have not routed yet, copied (only the window's rows),
    bounded by :data:`SETTLE_ROWS` per run; :meth:`take` joins consecutive batches of the
    same columns into one, so routing them gives what routing each would."""

    def __init__(self) -> None:
        self._runs: list[tuple[tuple[Any, ...], list[ColumnBatch]]] = []
        self.rows = 0

    def add(self, batch: ColumnBatch, idx: IndexArray) -> None:
        # a window's rows of a batch are usually a run of consecutive rows (often all):
        # then a slice's copy (a memcpy), not a gather
        run = bool(idx.size) and int(idx[-1]) - int(idx[0]) + 1 == idx.size
        if run and idx.size > 1:
            run = bool(np.all(np.diff(idx) == 1))
        at: Any = slice(int(idx[0]), int(idx[-1]) + 1) if run else idx

        def copy(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            out: np.ndarray[Any, Any] = a[at].copy() if run else a[at]
            return out

        def take(c: Column | None) -> Column | None:
            return (
                None if c is None else Column(c.kind, copy(c.values), copy(c.null), copy(c.missing))
            )

        part = ColumnBatch(
            batch.model,
            batch.role,
            copy(batch.ts_ms),
            copy(batch.versions),
            copy(batch.keys),
            features={
                n: Column(c.kind, copy(c.values), copy(c.null), copy(c.missing))
                for n, c in batch.features.items()
            },
            prediction=take(batch.prediction),
            prediction_class=take(batch.prediction_class),
            label=take(batch.label),
            latency_ms=None if batch.latency_ms is None else copy(batch.latency_ms),
            class_scores=None if batch.class_scores is None else copy(batch.class_scores),
        )
        schema = _schema(part)
        if self._runs and self._runs[-1][0] == schema:
            self._runs[-1][1].append(part)
        else:
            self._runs.append((schema, [part]))
        self.rows += int(idx.size)

    def take(self) -> list[ColumnBatch]:
        """The rows held, joined per run of equal columns, and forget them."""
        out = [_joined(parts) for _, parts in self._runs]
        self._runs, self.rows = [], 0
        return out


def _joined(parts: list[ColumnBatch]) -> ColumnBatch:
    if len(parts) == 1:
        return parts[0]

    def cat(columns: list[Column | None]) -> Column | None:
        first = columns[0]
        if first is None:
            return None
        present = [c for c in columns if c is not None]
        return Column(
            first.kind,
            np.concatenate([c.values for c in present]),
            np.concatenate([c.null for c in present]),
            np.concatenate([c.missing for c in present]),
        )

    head = parts[0]
    latency = [p.latency_ms for p in parts if p.latency_ms is not None]
    features = {}
    for name in head.features:
        joined = cat([p.features[name] for p in parts])
        assert joined is not None
        features[name] = joined
    return ColumnBatch(
        head.model,
        head.role,
        np.concatenate([p.ts_ms for p in parts]),
        np.concatenate([p.versions for p in parts]),
        np.concatenate([p.keys for p in parts]),
        features=features,
        prediction=cat([p.prediction for p in parts]),
        prediction_class=cat([p.prediction_class for p in parts]),
        label=cat([p.label for p in parts]),
        latency_ms=np.concatenate(latency) if latency else None,
        class_scores=(
            np.concatenate([p.class_scores for p in parts if p.class_scores is not None])
            if head.class_scores is not None
            else None
        ),
    )
