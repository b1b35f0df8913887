"""A window's segment children: the settings of a child summary and the feed that puts a
run of rows into every child of a split at once (:class:`~.segments.SegmentSplit`).

A child is a :class:`~watchkeeper.detectors.window.WindowSummary` of one segment value:
same sketches (on the fine grid of the reference's bins, :mod:`grid_sketch`) and estimate
state, no sample, no segments of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.segment_update import RunBins, feed_groups, feed_numeric
from watchkeeper.detectors.settle import settle_full
from watchkeeper.detectors.window_estimate_feed import estimate_rows
from watchkeeper.detectors.window_feed import sketch_for

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from watchkeeper.detectors.column_batch import Column, ColumnBatch, IndexArray
    from watchkeeper.detectors.pending_rows import PendingRows
    from watchkeeper.detectors.segments import SegmentSplit
    from watchkeeper.detectors.window_shape import Summary


def route_pending(pending: PendingRows, splits: Iterable[SegmentSplit[Any]]) -> None:
    """The rows a window queued for its segments (in runs of :data:`pending_rows.SETTLE_ROWS`)
    into each split's children."""
    splits = list(splits)
    for batch in pending.take():
        every = np.arange(len(batch))
        bins = RunBins()  # each numeric column's grid bins, shared by the splits
        for split in splits:
            split.update(batch, every, bins)


def feed_segments(
    children: Sequence[Summary],
    batch: ColumnBatch,
    rows: IndexArray,
    sizes: np.ndarray[Any, np.dtype[np.intp]],
    bins: RunBins | None = None,
) -> None:
    """What ``child.update(batch, its rows)`` does for every segment child, one numpy pass
    per column (:mod:`segment_update`) and one vectorised estimate update per child (when
    a reference in force carries an estimation); children keep no sample."""
    bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
    ts = batch.ts_ms[rows]
    for i, child in enumerate(children):
        lo, hi = bounds[i], bounds[i + 1]
        child.events[batch.role] = child.events.get(batch.role, 0) + hi - lo
        first, last = int(ts[lo:hi].min()), int(ts[lo:hi].max())
        child.first_ts_ms = first if child.first_ts_ms is None else min(child.first_ts_ms, first)
        child.last_ts_ms = last if child.last_ts_ms is None else max(child.last_ts_ms, last)
    columns: list[tuple[str, Column | None]] = [*batch.features.items()]
    columns += [
        (PREDICTION, batch.prediction),
        (PREDICTION_CLASS, batch.prediction_class),
        (LABEL, batch.label),
    ]
    for name, column in columns:
        if column is None:
            continue
        sketches = [sketch_for(c, c.column(name), column, name) for c in children]
        feed_groups(sketches, column, rows, sizes, bins)
        for child, sketch in zip(children, sketches, strict=True):
            child.set_column(name, sketch)
    if batch.latency_ms is not None:
        latency = batch.latency_ms[rows]
        kept = ~np.isnan(latency)
        groups = np.repeat(np.arange(len(children)), sizes)[kept]
        feed_numeric([c.latency for c in children], latency[kept], groups)
    settle_full([s for c in children for s in c.numeric_sketches()])
    estimation = children[0].settings.estimation if children else None
    if batch.prediction is not None and estimation is not None:
        for i, child in enumerate(children):
            found = estimation(child.model)
            estimate_rows(child.estimates, found, batch, rows[bounds[i] : bounds[i + 1]])
