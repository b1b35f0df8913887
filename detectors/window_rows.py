"""A small window's rows kept as arrays: the compact form of a window summary.

A window that has received few events since the last flush (a backfill: ten events in
each of thousands of one-hour windows) would otherwise build ~21 sketch objects, a row
sample and their serialised forms for a handful of values. While it holds at most
:data:`COMPACT_ROWS` rows, :class:`~watchkeeper.detectors.window.WindowSummary` keeps them
instead as :class:`RowSlice` objects: per update, the slice of its batch, copied out as a
few small arrays (one 2-D float array of the numeric columns, a code array for null /
missing, timestamps, keys, request ids, latency, the categories as object arrays). It is
stored as such (:meth:`RowSlice.to_dict`: raw little-endian arrays in base64), and the
sketches are built only when something reads them, by replaying the slices through the
same updates the window would have made (same values, same order, same batch
boundaries, the bin edges in force when each column first arrived): the numbers read are
those of the sketches, bit for bit.

:class:`PackedBatch` does the per-batch work once for every window of a batch: the
batch's columns stacked and reordered by window, so a window's slice is a few array
slices, not a Python pass per column.

>>> import numpy as np
>>> from watchkeeper.detectors.column_batch import Column, ColumnBatch
>>> col = Column("numeric", np.array([1.0, 2.0, 3.0]), np.zeros(3, bool), np.zeros(3, bool))
>>> batch = ColumnBatch("m", "predictions", np.array([5, 6, 7]), np.array(["1"] * 3),
...                     np.arange(3, dtype=np.uint64), features={"x": col})
>>> packed = PackedBatch(batch, np.array([2, 0]), {})
>>> part = packed.slice(0, 2)
>>> part.numeric.tolist(), part.ts_ms.tolist()
([[3.0], [1.0]], [7, 5])
>>> RowSlice.from_dict(part.to_dict()).batch("m").features["x"].values.tolist()
[3.0, 1.0]
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from watchkeeper.detectors.column_batch import Column, ColumnBatch, IndexArray, Kind
from watchkeeper.detectors.errors import CorruptStateError
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.reservoir import KeyArray

COMPACT_ROWS = 128
"""Rows a window holds as arrays at most; past them it builds its sketches. At 20
numeric features a row costs ~0.3 KB (22 float64 values, their codes, timestamp, key,
request id), so a compact window of ten rows is ~4 KB against ~30 KB of sketches, and
one of :data:`COMPACT_ROWS` rows stays near the size of its sketches."""

EdgesOf = Mapping[str, "tuple[float, ...]"]
"""Per column, the bin edges in force for it when the slice was taken (columns without
edges absent)."""

NULL, MISSING = 1, 2
"""Bits of a slice's code array: a present key whose value is null, an absent key."""

_NO_EDGES: EdgesOf = {}
_KIND_CODE: dict[str, Kind] = {"n": "numeric", "c": "categorical"}


def _b64(array: np.ndarray[Any, Any], dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()


def _unb64(text: object, dtype: str, size: int, field: str) -> np.ndarray[Any, Any]:
    """``size`` values of ``dtype`` from base64 ``text``, or :class:`CorruptStateError`:
    the length is checked before anything is decoded, so a hostile part allocates at most
    what a compact window holds."""
    item = np.dtype(dtype).itemsize
    if not isinstance(text, str) or len(text) != 4 * -(-size * item // 3):
        raise CorruptStateError("window rows", f"{field!r} does not hold {size} values")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise CorruptStateError("window rows", f"{field!r} is not base64") from exc
    if len(raw) != size * item:
        raise CorruptStateError("window rows", f"{field!r} does not hold {size} values")
    return np.frombuffer(raw, dtype=dtype)


def _objects(values: object, size: int, field: str) -> np.ndarray[Any, Any]:
    if not isinstance(values, list) or len(values) != size:
        raise CorruptStateError("window rows", f"{field!r} does not hold {size} values")
    if any(isinstance(v, list | dict) for v in values):  # what JSON gives besides scalars
        raise CorruptStateError("window rows", f"{field!r} holds a list or an object")
    return np.array([*values, None], dtype=object)[:-1]


@dataclass(frozen=True)
class RowSlice:
    """The rows of one update of a window: one batch's events of that window."""

    role: str
    names: tuple[str, ...]
    """Columns present in the batch: its features, then any of the prediction, its class
    and the label by their reserved names."""
    kinds: tuple[Kind, ...]
    features: int
    """How many of ``names`` are features."""
    ts_ms: np.ndarray[Any, np.dtype[np.int64]]
    keys: KeyArray
    numeric: np.ndarray[Any, np.dtype[np.float64]]
    """rows × numeric columns, in the order of ``names``."""
    codes: np.ndarray[Any, np.dtype[np.uint8]] | None
    """rows × columns of :data:`NULL` / :data:`MISSING` bits; None: all present."""
    text: tuple[np.ndarray[Any, Any], ...]
    """One object array per categorical column, in the order of ``names``."""
    request_ids: np.ndarray[Any, Any] | None
    latency_ms: np.ndarray[Any, np.dtype[np.float64]] | None
    edges: EdgesOf

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    def batch(self, model: str) -> ColumnBatch:
        """The slice as a batch (no versions: a window reads none)."""
        n = len(self)
        none = np.zeros(n, dtype=bool)
        columns: dict[str, Column] = {}
        numeric = text = 0
        for j, (name, kind) in enumerate(zip(self.names, self.kinds, strict=True)):
            if kind == "numeric":
                values = self.numeric[:, numeric]
                numeric += 1
            else:
                values = self.text[text]
                text += 1
            if self.codes is None:
                null = missing = none
            else:
                null = (self.codes[:, j] & NULL).astype(bool)
                missing = (self.codes[:, j] & MISSING).astype(bool)
            columns[name] = Column(kind, values, null, missing)
        features = dict(list(columns.items())[: self.features])
        return ColumnBatch(
            model,
            self.role,
            self.ts_ms,
            np.empty(0, dtype=object),
            self.keys,
            request_ids=self.request_ids,
            features=features,
            prediction=columns.get(PREDICTION),
            prediction_class=columns.get(PREDICTION_CLASS),
            label=columns.get(LABEL),
            latency_ms=self.latency_ms,
        )

    def to_dict(self, edges: EdgesOf = _NO_EDGES) -> dict[str, Any]:
        """A JSON-able form (arrays as little-endian bytes in base64); ``edges``: those to
        store (the caller leaves out the columns an earlier slice already created)."""
        return {
            "role": self.role,
            "names": list(self.names),
            "kinds": "".join(k[0] for k in self.kinds),
            "features": self.features,
            "ts": _b64(self.ts_ms, "<i8"),
            "keys": _b64(self.keys, "<u8"),
            "numeric": _b64(self.numeric, "<f8"),
            "codes": None if self.codes is None else _b64(self.codes, "u1"),
            "text": [t.tolist() for t in self.text],
            "request_ids": None if self.request_ids is None else self.request_ids.tolist(),
            "latency": None if self.latency_ms is None else _b64(self.latency_ms, "<f8"),
            "edges": {n: list(e) for n, e in edges.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RowSlice:
        """The slice :meth:`to_dict` stored, or :class:`CorruptStateError` for one that does
        not hold together: more than :data:`COMPACT_ROWS` rows (never stored), columns
        and kinds of different lengths, an array of the wrong size."""
        try:
            names = tuple(str(n) for n in data["names"])
            kinds = tuple(_KIND_CODE[c] for c in data["kinds"])
            features = int(data["features"])
            ts_text, text = data["ts"], data["text"]
            edges = {str(k): tuple(float(x) for x in v) for k, v in data["edges"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptStateError("window rows", f"{type(exc).__name__}: {exc}") from exc
        if len(kinds) != len(names) or not 0 <= features <= len(names):
            raise CorruptStateError("window rows", "names, kinds and features disagree")
        n = (len(ts_text) // 4 * 3) // 8 if isinstance(ts_text, str) else -1
        if not 0 <= n <= COMPACT_ROWS:
            raise CorruptStateError("window rows", f"more than {COMPACT_ROWS} rows")
        width = sum(1 for k in kinds if k == "numeric")
        if not isinstance(text, list) or len(text) != len(kinds) - width:
            raise CorruptStateError("window rows", "one category list per categorical column")
        codes = data.get("codes")
        latency = data.get("latency")
        request_ids = data.get("request_ids")
        return cls(
            role=str(data["role"]),
            names=names,
            kinds=kinds,
            features=features,
            ts_ms=_unb64(ts_text, "<i8", n, "ts").astype(np.int64),
            keys=_unb64(data.get("keys"), "<u8", n, "keys").astype(np.uint64),
            numeric=_unb64(data.get("numeric"), "<f8", n * width, "numeric")
            .astype(np.float64)
            .reshape(n, width),
            codes=None
            if codes is None
            else _unb64(codes, "u1", n * len(names), "codes").reshape(n, len(names)).copy(),
            text=tuple(_objects(t, n, "text") for t in text),
            request_ids=None if request_ids is None else _objects(request_ids, n, "request_ids"),
            latency_ms=None
            if latency is None
            else _unb64(latency, "<f8", n, "latency").astype(np.float64),
            edges=edges,
        )


def edges_to_store(slices: list[RowSlice]) -> list[EdgesOf]:
    """Per slice, the edges of the columns it is the first to carry: what a replay
    creates sketches from (later slices find their sketches made)."""
    seen: set[str] = set()
    out: list[EdgesOf] = []
    for part in slices:
        if not part.edges:
            seen.update(part.names)
            out.append(_NO_EDGES)
            continue
        out.append({n: part.edges[n] for n in part.names if n not in seen and n in part.edges})
        seen.update(part.names)
    return out


class PackedBatch:
    """A batch's on-time rows reordered by window (``positions``), its columns stacked
    once, so that :meth:`slice` gives one window's rows as a few array slices."""

    def __init__(self, batch: ColumnBatch, positions: IndexArray, edges: EdgesOf) -> None:
        self.batch = batch
        self.positions = positions
        self.edges = edges
        columns = list(batch.features.items())
        self.features = len(columns)
        for name, column in (
            (PREDICTION, batch.prediction),
            (PREDICTION_CLASS, batch.prediction_class),
            (LABEL, batch.label),
        ):
            if column is not None:
                columns.append((name, column))
        self.names = tuple(n for n, _ in columns)
        self.kinds: tuple[Kind, ...] = tuple(c.kind for _, c in columns)
        self.layout = tuple(zip(self.names, self.kinds, strict=True))
        numeric = [c.values for _, c in columns if c.kind == "numeric"]
        n = positions.size
        self.numeric = (
            np.column_stack(numeric).astype(np.float64, copy=False)[positions]
            if numeric
            else np.empty((n, 0), dtype=np.float64)
        )
        self.text = tuple(c.values[positions] for _, c in columns if c.kind != "numeric")
        flagged = [(j, c) for j, (_, c) in enumerate(columns) if c.null.any() or c.missing.any()]
        self.codes: np.ndarray[Any, np.dtype[np.uint8]] | None = None
        if flagged:
            codes = np.zeros((n, len(columns)), dtype=np.uint8)
            for j, c in flagged:
                codes[:, j] = c.null[positions] * NULL | c.missing[positions] * MISSING
            self.codes = codes
        self.ts_ms = batch.ts_ms[positions]
        self.keys = batch.keys[positions]
        self.request_ids = None if batch.request_ids is None else batch.request_ids[positions]
        self.latency = None if batch.latency_ms is None else batch.latency_ms[positions]

    def slice(self, lo: int, hi: int) -> RowSlice:
        """Rows ``lo:hi`` (of ``positions``), copied: a window never keeps its batch alive."""
        return RowSlice(
            role=self.batch.role,
            names=self.names,
            kinds=self.kinds,
            features=self.features,
            ts_ms=self.ts_ms[lo:hi].copy(),
            keys=self.keys[lo:hi].copy(),
            numeric=self.numeric[lo:hi].copy(),
            codes=None if self.codes is None else self.codes[lo:hi].copy(),
            text=tuple(t[lo:hi].copy() for t in self.text),
            request_ids=None if self.request_ids is None else self.request_ids[lo:hi].copy(),
            latency_ms=None if self.latency is None else self.latency[lo:hi].copy(),
            edges=self.edges,
        )


def _values(column: Column, idx: IndexArray) -> list[Any]:
    """The column's values at ``idx`` as a sample holds them: None where null or missing;
    a number as a Python float, and NaN and ±inf null too (JSON has neither: orjson
    writes null), so the row in memory is the row read back."""
    null = column.null[idx] | column.missing[idx]
    if column.kind == "numeric":
        numbers = np.asarray(column.values[idx], dtype=np.float64)
        null |= ~np.isfinite(numbers)
        out: list[Any] = numbers.tolist()
    else:
        out = column.values[idx].tolist()
    for j in np.flatnonzero(null).tolist():
        out[j] = None
    return out


def sample_rows(batch: ColumnBatch, idx: IndexArray) -> list[dict[str, Any]]:
    """Rows for a window's sample, built only for the few events it may keep.

    Column by column (a ``tolist`` per column, then one ``zip`` per row), not a numpy
    scalar read per row and feature: ~0.3 µs an event of the ingest path at 20 features.
    A feature missing from a row is left out of its ``features`` (in the batch's order)."""
    n = int(idx.size)
    names = list(batch.features)
    values = [_values(c, idx) for c in batch.features.values()]
    absent = [c.missing[idx] for c in batch.features.values()]
    if any(a.any() for a in absent):
        flags = [a.tolist() for a in absent]
        features = [
            {name: v[j] for name, v, gone in zip(names, values, flags, strict=True) if not gone[j]}
            for j in range(n)
        ]
    else:
        features = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
        if not names:
            features = [{} for _ in range(n)]
    ts = batch.ts_ms[idx].tolist()
    request_ids = None if batch.request_ids is None else batch.request_ids[idx].tolist()
    prediction = None if batch.prediction is None else _values(batch.prediction, idx)
    latency = None
    if batch.latency_ms is not None:
        numbers = np.asarray(batch.latency_ms[idx], dtype=np.float64)
        latency = numbers.tolist()
        for j in np.flatnonzero(np.isnan(numbers)).tolist():
            latency[j] = None
    rows: list[dict[str, Any]] = []
    for j in range(n):
        row: dict[str, Any] = {"ts_ms": ts[j], "features": features[j]}
        if request_ids is not None and request_ids[j] is not None:
            row["request_id"] = request_ids[j]
        if prediction is not None:
            row["prediction"] = prediction[j]
        if latency is not None and latency[j] is not None:
            row["latency_ms"] = latency[j]
        rows.append(row)
    return rows
