"""Reading fields out of decoded JSON records by dotted path, a whole batch at a time.

The column helpers here take a list of per-record values and sort them by Python type
in one C-level pass (``set(map(type, values))``); the per-record slow path runs only for
batches that hold a value of an unexpected type, to find the records at fault.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

import numpy as np


class _Missing:
    """The value of a field whose key is absent (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
NUMBER_TYPES = frozenset({int, float, bool})
ABSENT_TYPES = frozenset({type(None), _Missing})
BadRows = dict[int, tuple[str, str]]
_MAX_EPOCH_MS = 9.2e15
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}"


def getter(path: str) -> Callable[[Any], Any]:
    """A function reading ``path`` (``a.b.c``) from a record; :data:`MISSING` when absent."""
    parts = path.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda obj: obj.get(key, MISSING)

    def get(obj: Any) -> Any:
        for part in parts:
            if not isinstance(obj, dict):
                return MISSING
            obj = obj.get(part, MISSING)
            if obj is MISSING:
                return MISSING
        return obj

    return get


def column_getter(path: str) -> Callable[[list[Any]], list[Any]]:
    """A function reading ``path`` from every record of a list, in one comprehension."""
    if "." not in path:
        key = path
        return lambda objs: [o.get(key, MISSING) for o in objs]
    get = getter(path)
    return lambda objs: [get(o) for o in objs]


def transpose(dicts: list[dict[str, Any]], names: list[str]) -> list[Any]:
    """Columns ``names`` of a list of feature dicts; absent keys read as :data:`MISSING`.

    The common case — every record carries every feature — runs in C: ``itemgetter``
    over the records, then numpy's transpose of the object matrix.
    """
    if not names:
        return []
    if all(len(d) == len(names) for d in dicts):
        try:
            rows = list(map(operator.itemgetter(*names), dicts))
        except KeyError:
            pass
        else:
            if len(names) == 1:
                return [rows]
            matrix = np.empty((len(rows), len(names)), dtype=object)
            matrix[:] = rows
            return list(matrix.T)  # 1-D object arrays, one per name
    return [[d.get(name, MISSING) for d in dicts] for name in names]


def numeric_block(dicts: list[dict[str, Any]], names: list[str]) -> Any:
    """A float64 matrix (records × names) when every record holds a number for every name.

    The fast path for numeric features: ``itemgetter`` and numpy's conversion both run in C,
    and one type check over all values keeps strings out (numpy would parse "1.5").
    Returns None when any value is absent, null or not a plain number: the column-by-column
    path then sorts out which records are at fault.
    """
    if not names or not dicts:
        return None
    try:
        rows = list(map(operator.itemgetter(*names), dicts))
    except KeyError:
        return None
    flat = itertools.chain.from_iterable(rows) if len(names) > 1 else rows
    if not set(map(type, flat)) <= {float, int}:
        return None
    try:
        return np.array(rows, dtype=np.float64).reshape(len(dicts), len(names))
    except OverflowError:  # an integer beyond float64: let the slow path report it
        return None


def columns_of(objs: list[dict[str, Any]], paths: dict[str, str]) -> dict[str, list[Any]]:
    """Each named field of every record; one C-level pass when all are present top-level."""
    simple = {name: path for name, path in paths.items() if "." not in path}
    out: dict[str, list[Any]] = {}
    if len(simple) > 1:
        try:
            rows = list(map(operator.itemgetter(*simple.values()), objs))
        except KeyError:
            pass
        else:
            out = dict(zip(simple, map(list, zip(*rows, strict=True)), strict=True))
    for name, path in paths.items():
        if name not in out:
            out[name] = column_getter(path)(objs)
    return out


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def object_array(values: Any) -> np.ndarray[Any, Any]:
    """A 1-D object array of ``values`` (never a 2-D one, even when values are lists)."""
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def absent_masks(values: list[Any], types: set[type]) -> tuple[Any, Any]:
    """Masks of null and missing entries; skipped entirely when ``types`` shows neither."""
    n = len(values)
    if not types & ABSENT_TYPES:
        empty = np.zeros(n, dtype=bool)
        return empty, empty
    null = np.fromiter((v is None for v in values), dtype=bool, count=n)
    missing = np.fromiter((v is MISSING for v in values), dtype=bool, count=n)
    return null, missing


def numeric_column(values: list[Any], types: set[type], field: str, bad: BadRows) -> Any:
    """float64 array of ``values`` (absent → NaN); non-numbers are reported in ``bad``."""
    if not types <= NUMBER_TYPES | ABSENT_TYPES:
        for i, v in enumerate(values):
            if v is not None and v is not MISSING and type(v) not in NUMBER_TYPES:
                bad.setdefault(i, ("wrong_type", f"{field}: expected a number, got {type_name(v)}"))
        values = [np.nan if i in bad else v for i, v in enumerate(values)]
    if types & ABSENT_TYPES:
        values = [np.nan if v is None or v is MISSING else v for v in values]
    return np.asarray(values, dtype=np.float64)


def category_column(values: list[Any], types: set[type], field: str, bad: BadRows) -> Any:
    """Object array of strings (absent → None); numbers and booleans become their text."""
    if not types <= {str} | ABSENT_TYPES:
        fixed: list[Any] = []
        for i, v in enumerate(values):
            if v is None or v is MISSING or type(v) is str:
                fixed.append(v)
            elif type(v) is bool:
                fixed.append("true" if v else "false")
            elif type(v) is int:
                fixed.append(str(v))
            else:
                bad.setdefault(
                    i, ("wrong_type", f"{field}: expected a string or integer, got {type_name(v)}")
                )
                fixed.append(None)
        values = fixed
    out = object_array(values)
    if types & ABSENT_TYPES:
        out[np.fromiter((v is MISSING for v in values), dtype=bool, count=len(values))] = None
    return out


def string_column(values: list[Any], field: str, bad: BadRows, required: bool) -> Any:
    """Identifiers (model, version, request id): strings, or integers taken as text."""
    types = set(map(type, values))
    if types <= {str}:
        return object_array(values)
    out: list[Any] = []
    for i, v in enumerate(values):
        if type(v) is str:
            out.append(v)
        elif type(v) is int:
            out.append(str(v))
        elif v is MISSING or v is None:
            if required:
                bad.setdefault(i, ("missing_field", f"{field} is required"))
            out.append(None)
        else:
            bad.setdefault(i, ("wrong_type", f"{field}: expected a string, got {type_name(v)}"))
            out.append(None)
    return object_array(out)


def epoch_ms(nums: Any, unit: str) -> tuple[Any, Any, Any]:
    """Epoch numbers (float64) in ``unit`` as int64 milliseconds, with the finite and
    in-range masks (out-of-range and non-finite entries read 0)."""
    finite = np.isfinite(nums)
    scale = (
        np.where(nums >= 1e11, 1.0, 1000.0) if unit == "auto" else (1.0 if unit == "ms" else 1000.0)
    )
    ms = np.where(finite, nums, 0.0) * scale
    # epoch milliseconds that numpy's datetime and int64 can hold (1970 to ~2262)
    in_range = (ms >= 0) & (ms < _MAX_EPOCH_MS)
    return np.where(in_range, ms, 0.0).astype(np.int64), finite, in_range


def timestamps_ms(values: list[Any], unit: str, field: str, bad: BadRows) -> Any:
    """Epoch milliseconds (int64) from ISO-8601 strings or epoch numbers in ``unit``."""
    n = len(values)
    out = np.zeros(n, dtype=np.int64)
    types = set(map(type, values))
    numeric = (
        np.zeros(n, dtype=bool)
        if types <= {str}
        else np.fromiter((type(v) in (int, float) for v in values), dtype=bool, count=n)
    )
    textual = (
        np.ones(n, dtype=bool)
        if types <= {str}
        else np.fromiter((type(v) is str for v in values), dtype=bool, count=n)
    )
    for i in np.flatnonzero(~(numeric | textual)).tolist():
        v = values[i]
        reason = "missing_field" if v is MISSING or v is None else "wrong_type"
        detail = (
            f"{field} is required"
            if reason == "missing_field"
            else (f"{field}: expected an ISO-8601 string or epoch number, got {type_name(v)}")
        )
        bad.setdefault(i, (reason, detail))
    if numeric.any():
        nums = np.asarray([values[i] for i in np.flatnonzero(numeric)], dtype=np.float64)
        out[numeric], finite, in_range = epoch_ms(nums, unit)
        positions = np.flatnonzero(numeric)
        for j in np.flatnonzero(~finite).tolist():
            bad.setdefault(int(positions[j]), ("not_finite", f"{field} is not finite"))
        for j in np.flatnonzero(finite & ~in_range).tolist():
            pos = int(positions[j])
            bad.setdefault(pos, ("bad_timestamp", f"{field}: {values[pos]} is out of range"))
    if textual.any():
        idx = np.flatnonzero(textual)
        texts = [values[i] for i in idx]
        import pandas as pd  # only for ISO-8601 text (~40 MB): epoch numbers never load it

        series = pd.Series(texts, dtype=object)
        parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
        # pandas also reads "now" and "today": a timestamp is a date, or it is not one
        dated = series.str.match(_ISO_DATE).fillna(False).to_numpy(dtype=bool)
        parsed[~dated] = pd.NaT
        ok = parsed.notna().to_numpy()
        naive = parsed.dt.tz_localize(None)
        ms = naive.to_numpy(dtype="datetime64[ms]").astype(np.int64)
        out[idx] = ms
        for j in np.flatnonzero(~ok).tolist():
            bad.setdefault(
                int(idx[j]),
                ("bad_timestamp", f"{field}: '{texts[j][:40]}' is not an ISO-8601 time"),
            )
    return out
