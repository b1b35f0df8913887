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
from watchkeeper.detectors.factorize import factorize
from watchkeeper.detectors.fine_grid import GridLookup
from watchkeeper.detectors.grid_sketch import GridSketch, feed_grid
from watchkeeper.detectors.sketches import NumericSketch

Sizes = np.ndarray[Any, np.dtype[np.intp]]


MAX_CATEGORY_CELLS = 1 << 22
"""Group × category cells counted in one ``bincount`` at most (an identifier-like
column with many distinct values is counted group by group instead)."""


class RunBins:
    """The grid bins of a run's numeric columns, computed once per column and shared by
    every segment feature the run is routed to (each routes the same rows its own way)."""

    def __init__(self) -> None:
        self._bins: dict[tuple[int, int], IndexArray] = {}
        self._categories: dict[tuple[int, int], tuple[IndexArray, list[Any]]] = {}
        self._complete: dict[tuple[int, int], bool] = {}
        self._held: list[Any] = []  # the keys' objects, held: their ids stay theirs

    def complete(self, column: Column) -> bool:
        """Whether every row of the run has ``column`` (no null, no missing key)."""
        key = (id(column), -3)
        found = self._complete.get(key)
        if found is None:
            found = self._complete[key] = not (column.null.any() or column.missing.any())
            self._held.append(column)
        return found

    def groups(self, sizes: Sizes) -> IndexArray:
        """Each row's group number for groups of ``sizes`` (one split's, for all columns)."""
        key = (id(sizes), -1)
        found = self._bins.get(key)
        if found is None:
            found = self._bins[key] = np.repeat(np.arange(sizes.size), sizes)
            self._held.append(sizes)
        return found

    def categories(self, column: Column) -> tuple[IndexArray, list[Any]]:
        """Each row's category code and the distinct values (a hash table:
        :func:`~watchkeeper.detectors.factorize.factorize`; rows without a value: -1,
        never read)."""
        key = (id(column), -2)
        found = self._categories.get(key)
        if found is None:
            codes, distinct = factorize(column.values)
            found = self._categories[key] = (codes, distinct)
            self._held.append(column)
        return found

    def of(self, column: Column, lookup: GridLookup) -> IndexArray:
        """Each row's grid bin (rows whose value is not finite: bin 0, never read)."""
        key = (id(column), id(lookup))
        found = self._bins.get(key)
        if found is None:
            values = column.values.astype(np.float64, copy=False)
            finite = np.isfinite(values)
            every = bool(finite.all())
            found = lookup.index(values if every else np.where(finite, values, 0.0))
            self._bins[key] = found
            self._complete[(id(column), -4)] = every
            self._held.append(column)
        return found

    def finite(self, column: Column) -> bool:
        """Whether every value of ``column`` in the run is finite (known once :meth:`of`
        has seen it; False until then: then the feed checks)."""
        return self._complete.get((id(column), -4), False)

    def scaled(self, sizes: Sizes, width: int) -> IndexArray:
        """Each row's group number times ``width``: the first half of its cell in a
        group × grid-bin count, the same for every column of a split."""
        key = (id(sizes), -5 - width)
        found = self._bins.get(key)
        if found is None:
            found = self._bins[key] = self.groups(sizes) * width
        return found


def feed_groups(
    sketches: Sequence[ColumnSketch],
    column: Column,
    rows: IndexArray,
    sizes: Sizes,
    bins: RunBins | None = None,
) -> None:
    """Rows ``rows`` of ``column`` (grouped: group ``g`` is the next ``sizes[g]`` rows) into
    ``sketches[g]``, as ``_feed`` in window.py does one group at a time; ``bins`` shares
    the grid bins of the run's rows between segment features."""
    g = len(sketches)
    group = np.repeat(np.arange(g), sizes) if bins is None else bins.groups(sizes)
    if bins is not None and bins.complete(column):  # the usual case: every row has it
        null = missing = absent = None
    else:
        null, missing = column.null[rows], column.missing[rows]
        absent = null | missing
    if null is not None and missing is not None and absent is not None and absent.any():
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
        first = numeric[0] if numeric else None
        if bins is not None and isinstance(first, GridSketch) and _one_grid(numeric):
            grids = [s for s in numeric if isinstance(s, GridSketch)]
            where = bins.of(column, first.lookup)
            if kept is rows and bins.finite(column):  # every row, every value finite
                width = first.lookup.grid.size + 1
                cell = bins.scaled(sizes, width) + where[rows]
                numbers = values.astype(np.float64, copy=False)  # values: column.values[rows]
                feed_grid(grids, numbers, group, cell=cell, sizes=sizes)
                return
            feed_grid(
                grids, values.astype(np.float64, copy=False), groups, nulls, missed, where[kept]
            )
            return
        feed_numeric(numeric, values.astype(np.float64, copy=False), groups, nulls, missed)
        return
    if bins is not None:
        codes, distinct = bins.categories(column)
        if g * len(distinct) <= MAX_CATEGORY_CELLS:
            _count_categories(sketches, codes[kept], distinct, groups, nulls, missed)
            return
    counts = np.bincount(groups, minlength=g)
    bounds = np.concatenate(([0], np.cumsum(counts))).tolist()
    for j, sketch in enumerate(sketches):
        assert isinstance(sketch, CategoryCounts)
        sketch.update(values[bounds[j] : bounds[j + 1]].tolist(), nulls[j], missed[j])


def _count_categories(
    sketches: Sequence[ColumnSketch],
    codes: IndexArray,
    distinct: list[Any],
    groups: np.ndarray[Any, Any],
    nulls: list[int],
    missed: list[int],
) -> None:
    """Every group's category counts from one ``bincount`` over group × category (what
    ``Counter`` of each group's values gives)."""
    g, width = len(sketches), len(distinct)
    table = np.bincount(groups * width + codes, minlength=g * width).reshape(g, width)
    names = np.asarray(distinct, dtype=object)
    for j, sketch in enumerate(sketches):
        assert isinstance(sketch, CategoryCounts)
        sketch.nulls += nulls[j]
        sketch.missing += missed[j]
        row = table[j]
        seen = np.flatnonzero(row)
        if seen.size:
            sketch._add(dict(zip(names[seen].tolist(), row[seen].tolist(), strict=True)))


def feed_numeric(
    sketches: Sequence[NumericSketch],
    values: np.ndarray[Any, np.dtype[np.float64]],
    groups: np.ndarray[Any, Any],
    nulls: list[int] | None = None,
    missing: list[int] | None = None,
    where: IndexArray | None = None,
) -> None:
    """Present ``values`` (grouped, ``groups`` their group numbers, ascending) into their
    groups' sketches; ``nulls`` / ``missing`` per group. Grid sketches on one grid (a
    column with the reference's bins: every segment's, as a rule) are counted together
    in one pass (:func:`~watchkeeper.detectors.grid_sketch.feed_grid`); KLL sketches'
    updates are deferred: the caller settles the run's full queues at once
    (:func:`settle.settle_full`); ``where``: the grid bins of ``values``, if known."""
    g = len(sketches)
    if _one_grid(sketches):
        grids = [s for s in sketches if isinstance(s, GridSketch)]
        feed_grid(grids, values, groups, nulls, missing, where)
        return
    n = np.bincount(groups, minlength=g)
    bounds = np.concatenate(([0], np.cumsum(n))).tolist()
    for j, sketch in enumerate(sketches):
        part = values[bounds[j] : bounds[j + 1]]
        null = nulls[j] if nulls else 0
        miss = missing[j] if missing else 0
        if isinstance(sketch, GridSketch):  # another grid than its neighbours': alone
            feed_grid([sketch], part, None, [null], [miss])
        else:
            sketch.update(part, null, miss, defer=True)


def _one_grid(sketches: Sequence[NumericSketch]) -> bool:
    """Whether ``sketches`` are all grid sketches on one grid (one pass counts them)."""
    first = sketches[0] if sketches else None
    return isinstance(first, GridSketch) and all(
        isinstance(s, GridSketch) and s.lookup is first.lookup for s in sketches
    )
