"""Building reference profiles from training / validation files (CSV or Parquet).

Two passes over the file, in chunks so files larger than memory work, with a progress
bar: the first sketches every column and fixes the quantile bin edges, the second counts
the numeric columns into those bins exactly. Columns are numeric or categorical by dtype
(numbers and booleans numeric, anything else categorical).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from watchkeeper.daemon.errors import DataFileError
from watchkeeper.daemon.offline.data_files import read_chunks
from watchkeeper.daemon.offline.frame_columns import is_numeric, numeric_values
from watchkeeper.daemon.offline.reference_estimation import EstimationRows
from watchkeeper.daemon.offline.reference_segments import segment_references
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.estimation_reference import Estimation
from watchkeeper.detectors.performance import PerformanceSketch, Task, class_names
from watchkeeper.detectors.profile import (
    ColumnProfile,
    ReferenceProfile,
    bin_counts,
    categorical_profile,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.reservoir import Reservoir, mix64
from watchkeeper.detectors.segments import DEFAULT_TOP_K
from watchkeeper.detectors.sketches import NumericSketch

Progress = Callable[[int], None]
REFERENCE_K = 2000  # ≈0.1 % rank error: a reference is built once and read on every check


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def column_sketch(
    series: pd.Series, current: ColumnSketch | None, edges: tuple[float, ...] | None = None
) -> ColumnSketch:
    """``series`` added to ``current`` (a new sketch when None); a new numeric sketch counts
    the bins cut at ``edges`` exactly (the reference's, when a batch is scored against it)."""
    if current is None:
        if is_numeric(series):
            numeric = NumericSketch(REFERENCE_K)
            if edges is not None:
                numeric.count_bins_on(edges)
            current = numeric
        else:
            current = CategoryCounts(10_000)
    nulls = int(series.isna().sum())
    if isinstance(current, NumericSketch):
        values = numeric_values(series)
        present = values[~series.isna().to_numpy()]
        current.update(present, nulls=nulls)
    else:
        current.update(series.dropna().astype(str).tolist(), nulls=nulls)
    return current


def infer_task(label: pd.Series) -> Task:
    """Classification for text, booleans or ≤ 20 integer-valued classes; else regression."""
    values = label.dropna()
    if not is_numeric(values) or pd.api.types.is_bool_dtype(values):
        return "classification"
    numbers = numeric_values(values)
    if np.all(np.mod(numbers, 1) == 0) and np.unique(numbers).size <= 20:
        return "classification"
    return "regression"


def grade_pairs(
    perf: PerformanceSketch,
    frame: pd.DataFrame,
    prediction: str,
    label: str,
    prediction_class: str | None = None,
) -> None:
    """Grade the chunk's pairs as the daemon does: the model's own class when it logs one
    (accuracy, precision, recall, F1), the score for the ranking metrics (AUC, log-loss),
    and a binary score at 0.5 when there is no class."""
    columns = [prediction, label] + ([prediction_class] if prediction_class else [])
    pairs = frame[columns].dropna()
    if pairs.empty:
        return
    if perf.task == "regression":
        perf.update_regression(numeric_values(pairs[label]), numeric_values(pairs[prediction]))
        return
    labels = class_names(pairs[label].to_numpy())
    binary = is_numeric(pairs[prediction]) and set(labels) <= {"0", "1"}
    scores = numeric_values(pairs[prediction]) if binary else None
    if prediction_class:
        predicted = class_names(pairs[prediction_class].to_numpy())
    elif scores is not None:
        predicted = ["1" if s >= 0.5 else "0" for s in scores]
    else:
        predicted = class_names(pairs[prediction].to_numpy())
    perf.update_classification(labels, predicted, scores)


def as_classes(series: pd.Series) -> pd.Series:
    """A class column spelled as the daemon spells classes (``1``, ``1.0``, ``True``: "1")."""
    return pd.Series(
        [None if pd.isna(v) else class_names([v])[0] for v in series],
        index=series.index,
        dtype=object,
    )


def _require_columns(path: str | Path, chunk: pd.DataFrame, names: list[str]) -> None:
    missing = [c for c in names if c not in chunk.columns]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise DataFileError(f"{path}: no column(s) {shown}")


def _exact_bins(
    path: str | Path,
    sketches: dict[str, ColumnSketch],
    bins: int,
    progress: Progress | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass 2: each numeric column's bin edges (quantiles of its sketch) and its exact
    counts in them, so drift against this reference is computed from exact counts."""
    edges = {
        n: quantile_edges(s, bins) for n, s in sketches.items() if isinstance(s, NumericSketch)
    }
    counts = {n: np.zeros(len(e) + 1) for n, e in edges.items()}
    for chunk in read_chunks(path, columns=list(edges)):
        for name, e in edges.items():
            counts[name] += bin_counts(numeric_values(chunk[name]), e)
        if progress:
            progress(len(chunk))
    return edges, counts


def build_reference(
    path: str | Path,
    model: str,
    *,
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    prediction: str | None = None,
    label: str | None = None,
    bins: int = 10,
    sample_size: int = 2000,
    task: Task | None = None,
    progress: Progress | None = None,
    prediction_class: str | None = None,
    threshold: float = 0.5,
    class_scores: dict[str, str] | None = None,
    notes: list[str] | None = None,
    segments: Sequence[str] = (),
    segment_top_k: int = DEFAULT_TOP_K,
    check: Callable[[ReferenceProfile, pd.DataFrame], str | None] | None = None,
    warnings: list[str] | None = None,
) -> ReferenceProfile:
    """A reference profile of ``model`` from a file; see the module docstring.

    ``features`` defaults to every column but the prediction, its class, the label,
    ``class_scores``' columns and ``exclude``. ``progress`` is called with the number of
    rows done in each pass. With a label and a prediction the profile carries the
    label-free estimation (:mod:`reference_estimation`; ``threshold`` is the daemon's
    decision threshold, ``class_scores`` maps each class of a multiclass model to its
    score column); what was fitted, or why not, is appended to ``notes``. ``segments``
    adds a profile per segment of those features (their ``segment_top_k`` most frequent
    values and the rest; :mod:`reference_segments`): two more passes. ``check`` is given
    the profile and the labelled rows the estimation was fitted on, and what it returns is
    appended to ``warnings`` (the CLI passes :func:`estimation_check.self_check` and prints
    them on stderr), else to ``notes``.
    """
    columns = _Columns(features, exclude, prediction, label, prediction_class, class_scores)
    first = _FirstPass(path, columns, sample_size, task)
    for chunk in read_chunks(path):  # pass 1: sketches, the sample, performance
        first.add(chunk)
        if progress:
            progress(len(chunk))
    chosen = first.features()
    edges, counts = _exact_bins(path, first.sketches, bins, progress)  # pass 2
    estimation, note = first.estimation(threshold)
    if notes is not None:
        notes.append(note)

    def profile_of(name: str) -> ColumnProfile:
        s = first.sketches[name]
        if isinstance(s, NumericSketch):
            return numeric_profile(s, edges[name], counts[name])
        return categorical_profile(s)

    perf = first.perf
    profile = ReferenceProfile(
        model=model,
        rows=first.rows,
        bins=bins,
        features={n: profile_of(n) for n in chosen},
        prediction=profile_of(prediction) if prediction else None,
        prediction_class=profile_of(prediction_class) if prediction_class else None,
        label=profile_of(label) if label else None,
        metrics=perf.metrics() if perf is not None else {},
        task=perf.task if perf is not None else task,
        source=str(path),
        created_at=utc_now_iso(),
        sample=tuple(first.sample.rows),
        estimation=estimation,
        column_names=columns.names(),
    )
    said = warnings if warnings is not None else notes
    if estimation is not None and said is not None and first.estimation_rows is not None:
        warning = check(profile, first.estimation_rows.frame()) if check else None
        if warning:
            said.append(warning)
    if not segments:
        return profile
    specials = ((PREDICTION, prediction), (PREDICTION_CLASS, prediction_class), (LABEL, label))
    file_columns = {n: n for n in chosen} | {k: v for k, v in specials if v}
    grade = None
    if prediction and label and profile.task is not None:

        def grade(perf: PerformanceSketch, frame: pd.DataFrame) -> None:
            assert prediction is not None and label is not None
            grade_pairs(perf, frame, prediction, label, prediction_class)

    return dataclasses.replace(
        profile,
        segments=segment_references(
            path, profile, segments, segment_top_k, file_columns, progress, grade
        ),
    )


@dataclass(frozen=True)
class _Columns:
    """Which columns of the file are what: the features asked for (None: every other
    column), those excluded, and the special ones."""

    features: Sequence[str] | None
    exclude: Sequence[str]
    prediction: str | None
    label: str | None
    prediction_class: str | None
    class_scores: dict[str, str] | None

    @property
    def special(self) -> list[str]:
        return [c for c in (self.prediction, self.label, self.prediction_class) if c]

    @property
    def scores(self) -> list[str]:
        return [c for c in (self.class_scores or {}).values() if c not in self.special]

    def features_of(self, chunk: pd.DataFrame) -> list[str]:
        if self.features is not None:
            return list(self.features)
        special, scores = self.special, self.scores
        return [
            c
            for c in chunk.columns
            if c not in special and c not in self.exclude and c not in scores
        ]

    def names(self) -> dict[str, str]:
        """The profile's record of which file column was which."""
        return {
            **{k: v for k, v in (("prediction", self.prediction), ("label", self.label)) if v},
            **({"prediction_class": self.prediction_class} if self.prediction_class else {}),
            **{f"score:{k}": v for k, v in (self.class_scores or {}).items()},
        }


class _FirstPass:
    """Pass 1 over the file, chunk by chunk: each column's sketch, the row sample, the
    performance sketch and the rows the estimation is fitted on."""

    def __init__(
        self, path: str | Path, columns: _Columns, sample_size: int, task: Task | None
    ) -> None:
        self.path = path
        self.columns = columns
        self.task = task
        self.sketches: dict[str, ColumnSketch] = {}
        self.sample = Reservoir(sample_size)
        self.perf: PerformanceSketch | None = None
        self.rows = 0
        self.chosen: list[str] | None = None
        self.estimation_rows: EstimationRows | None = None

    def add(self, chunk: pd.DataFrame) -> None:
        c = self.columns
        special = c.special
        if c.prediction_class and c.prediction_class in chunk.columns:
            chunk[c.prediction_class] = as_classes(chunk[c.prediction_class])
        if self.chosen is None:
            self.chosen = c.features_of(chunk)
        chosen = self.chosen
        _require_columns(self.path, chunk, [*chosen, *special, *c.scores])
        for name in (*chosen, *special):
            self.sketches[name] = column_sketch(chunk[name], self.sketches.get(name))
        if c.prediction and c.label:
            self._grade(chunk, c.prediction, c.label, chosen)
        keys = mix64(np.arange(self.rows, self.rows + len(chunk), dtype=np.uint64))
        names = list(chosen)

        def make_rows(
            idx: np.ndarray[Any, Any], frame: pd.DataFrame = chunk, cols: list[str] = names
        ) -> list[dict[str, Any]]:
            return _rows(frame, idx, cols, special)

        self.sample.update(keys, make_rows)
        self.rows += len(chunk)

    def _grade(self, chunk: pd.DataFrame, prediction: str, label: str, chosen: list[str]) -> None:
        c = self.columns
        if self.perf is None:
            self.perf = PerformanceSketch(self.task or infer_task(chunk[label]))
        grade_pairs(self.perf, chunk, prediction, label, c.prediction_class)
        if self.estimation_rows is None:
            self.estimation_rows = EstimationRows(
                prediction, label, c.prediction_class, chosen, c.class_scores
            )
        self.estimation_rows.add(chunk)

    def features(self) -> list[str]:
        """The feature columns profiled; raises ``DataFileError`` for a file without rows
        or without features."""
        if self.chosen is None or self.rows == 0:
            raise DataFileError(
                f"{self.path}: the file has no rows (a header alone is no reference)"
            )
        if not self.chosen:
            raise DataFileError(f"{self.path}: no feature columns to profile")
        return self.chosen

    def estimation(self, threshold: float) -> tuple[Estimation | None, str]:
        """The label-free estimation fitted on the rows, and what was fitted or why not."""
        if self.estimation_rows is not None and self.perf is not None:
            return self.estimation_rows.fit(self.perf.task, threshold)
        return None, "no estimation: it needs --label and --prediction"


def _rows(
    frame: pd.DataFrame, idx: np.ndarray[Any, Any], features: list[str], special: list[str]
) -> list[dict[str, Any]]:
    picked = frame.iloc[idx]
    out = []
    for record in picked.to_dict(orient="records"):
        row: dict[str, Any] = {"features": {f: _json_value(record[f]) for f in features}}
        for name in special:
            row[name] = _json_value(record[name])
        out.append(row)
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
