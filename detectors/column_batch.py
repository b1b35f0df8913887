"""The input of window summaries: events of one model and one role, decoded into arrays.

A :class:`ColumnBatch` holds per event its timestamp, version, record key (and request
id, latency, offset), and per field a :class:`Column` of values with null and missing
masks; ingest builds them (columnar or per record) and
:class:`~watchkeeper.detectors.window.WindowSummary` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.reservoir import KeyArray

Kind = Literal["numeric", "categorical"]
IndexArray = np.ndarray[Any, np.dtype[np.intp]]


@dataclass
class Column:
    """One column of a batch: ``values`` (float64 or object of str), with null and missing masks.

    ``null`` marks a present key whose value is null; ``missing`` marks an absent key.
    Where either is set, ``values`` holds NaN (numeric) or None (categorical).
    """

    kind: Kind
    values: np.ndarray[Any, Any]
    null: np.ndarray[Any, np.dtype[np.bool_]]
    missing: np.ndarray[Any, np.dtype[np.bool_]]
    _complete: bool | None = field(default=None, init=False, repr=False, compare=False)
    """Whether no value is null or missing (found on the first :meth:`present`): a batch
    summarised into thousands of windows asks once, not once per window."""

    def present(self, idx: IndexArray) -> tuple[np.ndarray[Any, Any], int, int]:
        """Values at ``idx`` that are neither null nor missing, and the null / missing counts."""
        if self._complete is None:
            self._complete = not (self.null.any() or self.missing.any())
        if self._complete:
            return self.values[idx], 0, 0
        null = self.null[idx]
        missing = self.missing[idx]
        absent = null | missing
        values = self.values[idx]
        if absent.any():
            values = values[~absent]
        return values, int(null.sum()), int(missing.sum())


@dataclass
class ColumnBatch:
    """Events of one model and one role (``predictions``, ``features`` or ``labels``)."""

    model: str
    role: str
    ts_ms: np.ndarray[Any, np.dtype[np.int64]]
    versions: np.ndarray[Any, Any]
    keys: KeyArray
    request_ids: np.ndarray[Any, Any] | None = None
    features: dict[str, Column] = field(default_factory=dict)
    prediction: Column | None = None
    prediction_class: Column | None = None
    label: Column | None = None
    latency_ms: np.ndarray[Any, np.dtype[np.float64]] | None = None
    offsets: np.ndarray[Any, np.dtype[np.int64]] | None = None
    """Each event's Kafka offset in its partition (shadow evaluation's progress)."""
    class_scores: np.ndarray[Any, np.dtype[np.float64]] | None = None
    """A probability-vector prediction kept whole (events × classes, NaN rows where the
    vector is absent): what a multiclass model's estimates read. ``prediction`` and
    ``prediction_class`` reduce it to the top score and the arg-max class."""

    def __len__(self) -> int:
        return int(self.ts_ms.size)
