"""One column into the sketches of many segments at once: one numpy pass per column.

Feeding each segment's sketch on its own costs one ``NumericSketch.update`` (about ten
numpy reductions, ~40 µs) per segment and column, which for 2 segment features × 21
segments × 22 columns is most of a batch's time. Here the rows come grouped by segment
(sorted, stable, with each group's size) and every statistic is computed for all
groups together: counts with ``bincount``, sums and squared deviations with weighted
``bincount``, min / max with ``reduceat``, exact bins with one ``searchsorted`` and a 2-D
``bincount``; only the KLL update stays one C call per group. The result is what
``sketch.update`` on each group's rows gives (the same counts, bins, min, max and KLL
input; mean and variance up to float rounding of the summation order), which
tests/unit/test_segments.py checks.

It writes :class:`~watchkeeper.detectors.sketches.NumericSketch`'s own state (its KLL,
bins and moments), so it follows that class's update rule: keep the two in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from watchkeeper.detectors.column_batch import Column, IndexArray
from watchkeeper.detectors.sketches import CategoryCounts, ColumnSketch, NumericSketch

Sizes = np.ndarray[Any, np.dtype[np.intp]]


def feed_groups(
    sketches: Sequence[ColumnSketch],
    column: Column,
    rows: IndexArray,
    sizes: Sizes,
    shared: dict[str, Any] | None = None,
    name: str = "",
) -> None:
    """Rows ``rows`` of ``column`` (grouped: group ``g`` is the next ``sizes[g]`` rows) into
    ``sketches[g]``, as ``_feed`` in window.py does one group at a time. ``shared`` keeps
    the column's bin index under ``name`` for the other segment features of the batch."""
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
        where = _bin_index(numeric, column, shared, name)
        feed_numeric(
            numeric,
            values.astype(np.float64, copy=False),
            groups,
            nulls,
            missed,
            None if where is None else where[kept],
        )
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
    where: np.ndarray[Any, Any] | None = None,
) -> None:
    """Present ``values`` (grouped, ``groups`` their group numbers, ascending) into their
    groups' sketches; ``nulls`` / ``missing`` per group; ``where`` each value's bin on the
    sketches' shared edges, when already known."""
    g = len(sketches)
    finite = np.isfinite(values)
    if finite.all():
        nans = infs = [0] * g
        fv, fg = np.ascontiguousarray(values), groups
        fw = where
    else:
        nan = np.isnan(values)
        nans = np.bincount(groups[nan], minlength=g).tolist()
        infs = np.bincount(groups[~finite & ~nan], minlength=g).tolist()
        fv = np.ascontiguousarray(values[finite])
        fg = groups[finite]
        fw = None if where is None else where[finite]
    n = np.bincount(fg, minlength=g)
    starts = np.concatenate(([0], np.cumsum(n)))
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.bincount(fg, weights=fv, minlength=g) / np.maximum(n, 1)
        m2 = np.bincount(fg, weights=(fv - mean[fg]) ** 2, minlength=g)
    filled = np.flatnonzero(n)
    lows = np.minimum.reduceat(fv, starts[filled]) if filled.size else fv
    highs = np.maximum.reduceat(fv, starts[filled]) if filled.size else fv
    bins = _shared_bins(sketches, fv, fg, fw)
    at = {j: i for i, j in enumerate(filled.tolist())}
    for j, sketch in enumerate(sketches):
        sketch.nulls += nulls[j] if nulls else 0
        sketch.missing += missing[j] if missing else 0
        sketch.nans += nans[j]
        sketch.infs += infs[j]
        if j not in at:
            continue
        part = fv[starts[j] : starts[j + 1]]
        sketch._kll.update(part)
        if sketch._bins is not None and sketch._edges is not None:
            sketch._bins += (
                bins[j]
                if bins is not None
                else np.bincount(
                    np.searchsorted(sketch._edges, part, side="left"), minlength=sketch._bins.size
                )
            )
        i = at[j]
        sketch._combine(int(n[j]), float(mean[j]), float(m2[j]), float(lows[i]), float(highs[i]))


def _common_edges(sketches: Sequence[NumericSketch]) -> np.ndarray[Any, Any] | None:
    """The edges every sketch counts exactly, if they all count the same ones."""
    edges = sketches[0]._edges if sketches else None
    if edges is None or not all(
        s._bins is not None and s._edges is not None and np.array_equal(s._edges, edges)
        for s in sketches
    ):
        return None
    return edges


def _bin_index(
    sketches: Sequence[NumericSketch], column: Column, shared: dict[str, Any] | None, name: str
) -> np.ndarray[Any, Any] | None:
    """Every row's bin of ``column`` on the sketches' common edges, computed once per batch
    and column for all segment features (``shared``); None without common edges."""
    edges = _common_edges(sketches)
    if edges is None or shared is None:
        return None
    known = shared.get(name)
    if known is None or not np.array_equal(known[0], edges):
        # NaN and ±inf land past the last edge; they are not binned (feed_numeric drops them)
        known = shared[name] = (edges, np.searchsorted(edges, column.values, side="left"))
    where: np.ndarray[Any, Any] = known[1]
    return where


def _shared_bins(
    sketches: Sequence[NumericSketch],
    fv: np.ndarray[Any, Any],
    fg: np.ndarray[Any, Any],
    where: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any] | None:
    """Every group's exact bin counts in one pass when all sketches count the same edges
    (the usual case: the reference in force's); None otherwise."""
    edges = _common_edges(sketches)
    if edges is None:
        return None
    width = edges.size + 1
    if where is None:
        where = np.searchsorted(edges, fv, side="left")
    return np.bincount(fg * width + where, minlength=len(sketches) * width).reshape(-1, width)
