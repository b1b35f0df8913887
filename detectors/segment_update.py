"""One column into the sketches of many segments at once: one numpy pass per column.

The rows come grouped by segment (sorted, stable, with each group's size). Null and
missing counts per group come from one ``bincount``; each group's values go to its
sketch with :meth:`NumericSketch.update`, which only queues them: the summarising (counts,
moments, exact bins, the KLL or exact buffer) happens for all queued sketches of a flush
at once, in :func:`~watchkeeper.detectors.settle.settle_sketches` (the ingest loop's
``settle_windows`` includes the segment children). So a segment costs one queued array
per column and run of rows, never a Python call per value, and the result is exactly what
``sketch.update`` on each group's rows gives, which tests/unit/test_segments.py checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_batch import Column, IndexArray
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.sketches import NumericSketch

Sizes = np.ndarray[Any, np.dtype[np.intp]]


def feed_groups(
    sketches: Sequence[ColumnSketch],
    column: Column,
    rows: IndexArray,
    sizes: Sizes,
) -> None:
    """Rows ``rows`` of ``column`` (grouped: group ``g`` is the next ``sizes[g]`` rows) into
    ``sketches[g]``, as ``_feed`` in window.py does one group at a time."""
    g = len(sketches)
    group = np.repeat(np.arange(g), sizes)
    null, missing = column.null[rows], column.missing[rows]
    absent = null | missing
    if absent.any():
        nulls = np.bincount(group[null], minlength=g).tolist()
        missed = np.bincount(group[missing], minlength=g).tolist()
        kept = rows[~absent]
        groups = group[~absent]
    else:  # the usual case: every row has the column
        nulls = missed = [0] * g
        kept = rows
        groups = group
    values = column.values[kept]
    if column.kind == "numeric":
        numeric = [s for s in sketches if isinstance(s, NumericSketch)]
        assert len(numeric) == g  # a window's sketch of a column has the column's kind
        feed_numeric(numeric, values.astype(np.float64, copy=False), groups, nulls, missed)
        return
    counts = np.bincount(groups, minlength=g)
    bounds = np.concatenate(([0], np.cumsum(counts))).tolist()
    for j, sketch in enumerate(sketches):
        assert isinstance(sketch, CategoryCounts)
        sketch.update(values[bounds[j] : bounds[j + 1]].tolist(), nulls[j], missed[j])


def feed_numeric(
    sketches: Sequence[NumericSketch],
    values: np.ndarray[Any, np.dtype[np.float64]],
    groups: np.ndarray[Any, Any],
    nulls: list[int] | None = None,
    missing: list[int] | None = None,
) -> None:
    """Present ``values`` (grouped, ``groups`` their group numbers, ascending) into their
    groups' sketches; ``nulls`` / ``missing`` per group. The updates are deferred: the
    caller settles the run's full queues at once (:func:`settle.settle_full`)."""
    g = len(sketches)
    n = np.bincount(groups, minlength=g)
    bounds = np.concatenate(([0], np.cumsum(n))).tolist()
    for j, sketch in enumerate(sketches):
        sketch.update(
            values[bounds[j] : bounds[j + 1]],
            nulls[j] if nulls else 0,
            missing[j] if missing else 0,
            defer=True,
        )
