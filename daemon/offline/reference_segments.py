"""The segments of a reference built from a file: a profile per segment of each feature.

Two more passes over the file, only when segments are asked for (``watchkeeper
reference --segments country,channel``): the first counts each segment feature's values
(labelled as ingest labels them, :func:`~watchkeeper.detectors.segments.segment_labels`)
and keeps the K most frequent; the second sketches every profiled column per segment,
numeric ones counted exactly on the whole reference's bin edges, so a window's segment
and the reference's share their bins, and — when the file has the prediction and the
label — grades each segment's pairs as the whole reference's are graded, so a segment's
realised performance is scored against the same segment's reference metrics.
Rows are grouped per chunk with one ``argsort``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from watchkeeper.daemon.errors import DataFileError
from watchkeeper.daemon.offline.data_files import read_chunks
from watchkeeper.daemon.offline.frame_columns import is_numeric, numeric_values
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_batch import Kind
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.profile import (
    ColumnProfile,
    ReferenceProfile,
    categorical_profile,
    numeric_profile,
)
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.segment_reference import SegmentReference
from watchkeeper.detectors.segments import MAX_TOP_K, OTHER, segment_labels, top_values
from watchkeeper.detectors.sketches import NumericSketch

SEGMENT_K = 200
"""KLL size of a segment's numeric sketch (the windows' default): a reference carries
(K + 1) × segment features × columns of them, so not the whole reference's 2,000."""
MAX_COUNTED = 100_000
"""Distinct values counted per segment feature before the rarest are dropped."""


def _row_labels(series: pd.Series) -> tuple[list[str], np.ndarray[Any, Any]]:
    """Distinct labels of a chunk's segment column and each row's index into them (-1:
    null)."""
    kind: Kind = "numeric" if is_numeric(series) else "categorical"
    absent = series.isna().to_numpy()
    values = (numeric_values(series) if kind == "numeric" else series.to_numpy(dtype=object))[
        ~absent
    ]
    labels, inverse = segment_labels(values, kind)
    rows = np.full(len(series), -1, dtype=np.intp)
    rows[~absent] = inverse
    return labels, rows


def _top_k(
    path: str | Path,
    features: Sequence[str],
    k: int,
    progress: Callable[[int], None] | None,
) -> dict[str, tuple[str, ...]]:
    counts: dict[str, Counter[str]] = {f: Counter() for f in features}
    for chunk in read_chunks(path, columns=list(features)):
        for f in features:
            labels, rows = _row_labels(chunk[f])
            n = np.bincount(rows[rows >= 0], minlength=len(labels))
            counts[f].update(dict(zip(labels, n.tolist(), strict=True)))
            if len(counts[f]) > MAX_COUNTED:
                counts[f] = Counter(dict(counts[f].most_common(MAX_COUNTED)))
        if progress:
            progress(len(chunk))
    return {f: top_values(dict(c), k) for f, c in counts.items()}


def _new_sketch(whole: ColumnProfile) -> ColumnSketch:
    if whole.kind == "numeric":
        sketch = NumericSketch(SEGMENT_K)
        sketch.count_bins_on(whole.edges)
        return sketch
    return CategoryCounts(10_000)


def _feed(sketch: ColumnSketch, series: pd.Series) -> None:
    nulls = int(series.isna().sum())
    if isinstance(sketch, NumericSketch):
        values = numeric_values(series)
        sketch.update(values[~series.isna().to_numpy()], nulls=nulls)
    else:
        sketch.update(series.dropna().astype(str).tolist(), nulls=nulls)


def segment_references(
    path: str | Path,
    reference: ReferenceProfile,
    features: Sequence[str],
    k: int,
    file_columns: dict[str, str],
    progress: Callable[[int], None] | None = None,
    grade: Callable[[PerformanceSketch, pd.DataFrame], None] | None = None,
) -> dict[str, SegmentReference[ReferenceProfile]]:
    """Each segment feature's reference (see the module docstring). ``file_columns`` maps
    the profile's columns (features, ``__prediction__`` …) to the file's column names;
    ``grade`` grades a frame's (prediction, label) pairs (the whole reference's way) into
    a segment's performance (None: no labels, no per-segment metrics)."""
    if not 1 <= k <= MAX_TOP_K:
        raise DataFileError(f"--segment-top-k {k}: give 1 … {MAX_TOP_K}")
    values = _top_k(path, features, k, progress)
    wholes = {
        name: profile for name in file_columns if (profile := reference.column(name)) is not None
    }
    sketches: dict[tuple[str, str], dict[str, ColumnSketch]] = {}
    rows: dict[tuple[str, str], int] = {}
    perfs: dict[tuple[str, str], PerformanceSketch] = {}
    wanted = sorted({*file_columns.values(), *features})
    for chunk in read_chunks(path, columns=wanted):
        for f in features:
            labels, codes = _row_labels(chunk[f])
            where = {v: i for i, v in enumerate(values[f])}
            lut = np.array([where.get(label, -1) for label in labels] + [-1], dtype=np.intp)
            seg = lut[codes]  # codes of -1 (null) read the trailing -1: other
            order = np.argsort(seg, kind="stable")
            counts = np.bincount(seg + 1, minlength=len(values[f]) + 1)
            bounds = np.concatenate(([0], np.cumsum(counts)))
            for code in np.flatnonzero(counts).tolist():
                label = OTHER if code == 0 else values[f][code - 1]
                part = chunk.iloc[order[bounds[code] : bounds[code + 1]]]
                mine = sketches.setdefault((f, label), {})
                rows[(f, label)] = rows.get((f, label), 0) + len(part)
                for name, whole in wholes.items():
                    sketch = mine.get(name)
                    if sketch is None:
                        sketch = mine[name] = _new_sketch(whole)
                    _feed(sketch, part[file_columns[name]])
                if grade is not None and reference.task is not None:
                    perf = perfs.get((f, label))
                    if perf is None:
                        perf = perfs[(f, label)] = PerformanceSketch(reference.task)
                    grade(perf, part)
        if progress:
            progress(len(chunk))
    out: dict[str, SegmentReference[ReferenceProfile]] = {}
    for f in features:
        profiles = {
            label: _profile(
                reference, sketches[(fe, label)], rows[(fe, label)], perfs.get((fe, label))
            )
            for (fe, label) in sketches
            if fe == f
        }
        out[f] = SegmentReference(f, k, values[f], profiles)
    return out


def _profile(
    reference: ReferenceProfile,
    sketches: dict[str, ColumnSketch],
    rows: int,
    perf: PerformanceSketch | None = None,
) -> ReferenceProfile:
    def profile_of(name: str) -> ColumnProfile | None:
        s = sketches.get(name)
        if s is None:
            return None
        whole = reference.column(name)
        if isinstance(s, NumericSketch) and whole is not None and whole.kind == "numeric":
            return numeric_profile(s, whole.edges)  # exact: the sketch counted these edges
        assert isinstance(s, CategoryCounts)
        return categorical_profile(s)

    special = (PREDICTION, PREDICTION_CLASS, LABEL)
    features = {n: p for n in sketches if n not in special if (p := profile_of(n)) is not None}
    return ReferenceProfile(
        model=reference.model,
        features=features,
        rows=rows,
        bins=reference.bins,
        prediction=profile_of(PREDICTION),
        prediction_class=profile_of(PREDICTION_CLASS),
        label=profile_of(LABEL),
        metrics=perf.metrics() if perf is not None else {},
        task=reference.task,
        source=reference.source,
        created_at=reference.created_at,
    )
