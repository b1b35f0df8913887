"""Reading data files (CSV, TSV, Parquet) in chunks, so files larger than memory work:
the one reader behind ``reference build`` and ``drift``, with every way a file can fail
to be a table reported as :class:`~watchkeeper.daemon.errors.DataFileError` in one line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from watchkeeper.daemon.errors import DataFileError

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
