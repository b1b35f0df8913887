"""Building reference profiles from training / validation files (CSV or Parquet).

Two passes over the file, in chunks so files larger than memory work, with a progress
bar: the first sketches every column and fixes the quantile bin edges, the second counts
the numeric columns into those bins exactly. Columns are numeric or categorical by dtype
(numbers and booleans numeric, anything else categorical).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from watchkeeper.daemon.errors import DataFileError
from watchkeeper.daemon.offline.frame_columns import is_numeric, numeric_values
from watchkeeper.daemon.offline.reference_estimation import EstimationRows
from watchkeeper.detectors.performance import PerformanceSketch, Task, class_names
from watchkeeper.detectors.profile import (
    ColumnProfile,
    ReferenceProfile,
    bin_counts,
    categorical_profile,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.reservoir import Reservoir, mix64
from watchkeeper.detectors.sketches import CategoryCounts, ColumnSketch, NumericSketch

Progress = Callable[[int], None]
REFERENCE_K = 2000  # ≈0.1 % rank error: a reference is built once and read on every check


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


MAX_COLUMNS = 2000
"""Columns a data file may have: past it the file is refused before it is read (a
profile of 10,000 columns took 12 s and ~1 GB to be useless)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "…") if len(text) > 200 else text or type(exc).__name__


def read_chunks(
    path: str | Path, columns: Sequence[str] | None = None, chunk_rows: int = 200_000
) -> Iterator[pd.DataFrame]:
    """The file as data frames of at most ``chunk_rows`` rows; :class:`DataFileError` for a
    file that is not a readable table (empty, ragged, not UTF-8, truncated, nested)."""
    path = Path(path)
    try:
        yield from _read_chunks(path, columns, chunk_rows)
    except DataFileError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, TypeError, KeyError, IndexError) as exc:
        raise DataFileError(f"{path}: cannot be read as a table: {_one_line(exc)}") from None
    except Exception as exc:  # pyarrow's ArrowInvalid / ArrowNotImplementedError and friends
        if type(exc).__module__.startswith(("pyarrow", "pandas")):
            raise DataFileError(f"{path}: cannot be read as a table: {_one_line(exc)}") from None
        raise


def _flat_types(schema: Any) -> None:
    import pyarrow as pa

    for field in schema:
        kind = field.type
        if pa.types.is_nested(kind):
            raise DataFileError(
                f"column {field.name!r} is nested ({kind}): only flat columns can be profiled"
            )


def _read_chunks(
    path: Path, columns: Sequence[str] | None, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as handle:
            schema = handle.schema_arrow
            if len(schema) > MAX_COLUMNS:
                raise DataFileError(f"{path}: {len(schema)} columns, more than {MAX_COLUMNS}")
            try:
                _flat_types(schema if not columns else [schema.field(c) for c in columns])
            except DataFileError as exc:
                raise DataFileError(f"{path}: {exc}") from None
            for batch in handle.iter_batches(
                batch_size=chunk_rows, columns=list(columns) if columns else None
            ):
                yield batch.to_pandas()
    elif suffix in (".csv", ".tsv", ".txt") or suffix == ".gz":
        sep = "\t" if ".tsv" in path.name.lower() else ","
        try:
            header = pd.read_csv(path, nrows=0, sep=sep, encoding="utf-8")
        except pd.errors.EmptyDataError:
            raise DataFileError(f"{path}: the file is empty (no header row)") from None
        if len(header.columns) > MAX_COLUMNS:
            raise DataFileError(f"{path}: {len(header.columns)} columns, more than {MAX_COLUMNS}")
        # round_trip: pandas' default float parser can be one ulp off, which moves a value
        # sitting on a bin edge into the next bin
        yield from pd.read_csv(
            path,
            chunksize=chunk_rows,
            usecols=columns,
            sep=sep,
            float_precision="round_trip",
            encoding="utf-8",
        )
    else:
        raise DataFileError(f"{path}: a reference is read from .csv, .tsv or .parquet files")


def count_rows(path: str | Path) -> int | None:
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(path) as handle:
                return int(handle.metadata.num_rows)
        except Exception:  # unreadable: read_chunks says why, in one line
            return None
    return None


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


def _as_classes(series: pd.Series) -> pd.Series:
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
) -> ReferenceProfile:
    """A reference profile of ``model`` from a file; see the module docstring.

    ``features`` defaults to every column but the prediction, its class, the label,
    ``class_scores``' columns and ``exclude``. ``progress`` is called with the number of
    rows done in each pass. With a label and a prediction the profile carries the
    label-free estimation (:mod:`reference_estimation`; ``threshold`` is the daemon's
    decision threshold, ``class_scores`` maps each class of a multiclass model to its
    score column); what was fitted, or why not, is appended to ``notes``.
    """
    sketches: dict[str, ColumnSketch] = {}
    sample = Reservoir(sample_size)
    perf: PerformanceSketch | None = None
    rows = 0
    chosen: list[str] | None = list(features) if features is not None else None
    special = [c for c in (prediction, label, prediction_class) if c]
    scores = [c for c in (class_scores or {}).values() if c not in special]
    rows_for_estimation: EstimationRows | None = None
    for chunk in read_chunks(path):  # pass 1: sketches, the sample, performance
        if prediction_class and prediction_class in chunk.columns:
            chunk[prediction_class] = _as_classes(chunk[prediction_class])
        if chosen is None:
            chosen = [
                c
                for c in chunk.columns
                if c not in special and c not in exclude and c not in scores
            ]
        _require_columns(path, chunk, [*chosen, *special, *scores])
        for name in (*chosen, *special):
            sketches[name] = column_sketch(chunk[name], sketches.get(name))
        if prediction and label:
            if perf is None:
                perf = PerformanceSketch(task or infer_task(chunk[label]))
            grade_pairs(perf, chunk, prediction, label, prediction_class)
            if rows_for_estimation is None:
                rows_for_estimation = EstimationRows(
                    prediction, label, prediction_class, chosen, class_scores
                )
            rows_for_estimation.add(chunk)
        keys = mix64(np.arange(rows, rows + len(chunk), dtype=np.uint64))
        columns = list(chosen)

        def make_rows(
            idx: np.ndarray[Any, Any], c: pd.DataFrame = chunk, cols: list[str] = columns
        ) -> list[dict[str, Any]]:
            return _rows(c, idx, cols, special)

        sample.update(keys, make_rows)
        rows += len(chunk)
        if progress:
            progress(len(chunk))
    if chosen is None or rows == 0:
        raise DataFileError(f"{path}: the file has no rows (a header alone is no reference)")
    if not chosen:
        raise DataFileError(f"{path}: no feature columns to profile")
    edges, counts = _exact_bins(path, sketches, bins, progress)
    estimation = None
    if rows_for_estimation is not None and perf is not None:
        estimation, note = rows_for_estimation.fit(perf.task, threshold)
    else:
        note = "no estimation: it needs --label and --prediction"
    if notes is not None:
        notes.append(note)

    def profile_of(name: str) -> ColumnProfile:
        s = sketches[name]
        if isinstance(s, NumericSketch):
            return numeric_profile(s, edges[name], counts[name])
        return categorical_profile(s)

    return ReferenceProfile(
        model=model,
        rows=rows,
        bins=bins,
        features={n: profile_of(n) for n in chosen},
        prediction=profile_of(prediction) if prediction else None,
        prediction_class=profile_of(prediction_class) if prediction_class else None,
        label=profile_of(label) if label else None,
        metrics=perf.metrics() if perf is not None else {},
        task=perf.task if perf is not None else task,
        source=str(path),
        created_at=utc_now_iso(),
        sample=tuple(sample.rows),
        estimation=estimation,
        column_names={
            **{k: v for k, v in (("prediction", prediction), ("label", label)) if v},
            **({"prediction_class": prediction_class} if prediction_class else {}),
            **{f"score:{k}": v for k, v in (class_scores or {}).items()},
        },
    )


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
