"""A batch's rows into a window summary's column sketches: which sketch a column gets (KLL,
exact bins of the reference in force, the fine grid of segment children, or category
counts) and how its present values go in. The estimate state, sample and segments are
fed by :meth:`~watchkeeper.detectors.window.WindowSummary.update` itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.grid_sketch import GridSketch
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.settle import settle_full
from watchkeeper.detectors.sketches import NumericSketch

if TYPE_CHECKING:
    from watchkeeper.detectors.column_batch import Column, ColumnBatch, IndexArray, Kind
    from watchkeeper.detectors.column_sketch import ColumnSketch
    from watchkeeper.detectors.window_rows import EdgesOf
    from watchkeeper.detectors.window_shape import Sizes, Summary


def new_sketch(kind: Kind, settings: Sizes, edges: tuple[float, ...] | None) -> ColumnSketch:
    """An empty sketch of a column of ``kind`` that counts the bins of ``edges``."""
    if kind == "numeric":
        if edges and settings.grid:  # a segment's grid: cut at the reference's bins alone
            return GridSketch(settings.k, getattr(edges, "reference", edges))
        sketch = NumericSketch(settings.k)
        if edges is not None:
            sketch.count_bins_on(edges)
        return sketch
    return CategoryCounts(settings.max_categories)


def feed_column(
    sketch: ColumnSketch, column: Column, idx: IndexArray, fed: list[NumericSketch] | None = None
) -> None:
    """The values of ``column`` at ``idx`` into ``sketch``, nulls and missing counted.

    ``fed``: a numeric sketch's update is deferred and the sketch listed there, for the
    caller to settle with the others at once (:func:`~watchkeeper.detectors.settle.settle_full`)."""
    values, nulls, missing = column.present(idx)
    if isinstance(sketch, NumericSketch):
        values = values.astype(np.float64, copy=False)
        sketch.update(values, nulls=nulls, missing=missing, defer=fed is not None)
        if fed is not None:
            fed.append(sketch)
    else:
        sketch.update(values.tolist(), nulls=nulls, missing=missing)


def sketch_for(
    w: Summary,
    current: ColumnSketch | None,
    column: Column,
    name: str,
    edges: EdgesOf | None = None,
) -> ColumnSketch:
    """``current``, or a new sketch of ``w`` for ``column`` if none or of another kind; it
    counts the bins of ``edges`` (None: those in force now)."""
    if current is None or current.kind != column.kind:
        # a kind is fixed per model and feature upstream; a change starts a new sketch
        if edges is not None:
            cut = edges.get(name)
        else:
            bins = w.settings.bins
            cut = bins(w.model, name) if bins is not None else None
        return new_sketch(column.kind, w.settings, cut)
    return current


def feed_sketches(w: Summary, batch: ColumnBatch, idx: IndexArray, edges: EdgesOf | None) -> None:
    """The rows ``idx`` of ``batch`` into the column and latency sketches of ``w``.

    The numeric sketches' updates are deferred and the full queues settled together at
    the end (one :func:`~watchkeeper.detectors.grouped_moments.group_moments` pass for the
    21 columns of a slice, not one each: ~70 µs of numpy calls per column and slice). Each
    sketch gets one update here, so each settles exactly what it would have settled alone
    (the same groups of values; :mod:`grouped_moments` reduces each group on its own)."""
    fed: list[NumericSketch] = []
    for name, column in batch.features.items():
        sketch = sketch_for(w, w.features.get(name), column, name, edges)
        feed_column(sketch, column, idx, fed)
        w.features[name] = sketch
    if batch.prediction is not None:
        w.prediction = sketch_for(w, w.prediction, batch.prediction, PREDICTION, edges)
        feed_column(w.prediction, batch.prediction, idx, fed)
    if batch.prediction_class is not None:
        w.prediction_class = sketch_for(
            w, w.prediction_class, batch.prediction_class, PREDICTION_CLASS, edges
        )
        feed_column(w.prediction_class, batch.prediction_class, idx, fed)
    if batch.label is not None:
        w.label = sketch_for(w, w.label, batch.label, LABEL, edges)
        feed_column(w.label, batch.label, idx, fed)
    if batch.latency_ms is not None:
        latency = batch.latency_ms[idx]
        w.latency.update(latency[~np.isnan(latency)], defer=True)
        fed.append(w.latency)
    settle_full(fed)
