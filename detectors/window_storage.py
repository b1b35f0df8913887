"""A window summary's stored form: :func:`stored_form` writes it, :func:`load_into` reads
it back (format 2, the sketches; 1 too; 3, a compact window's rows, replayed).

The form itself is unchanged by where the code lives: summaries stored by any earlier
release still load (``tests/unit/window_format2.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from watchkeeper.detectors.grid_sketch import load_sketch
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.reservoir import Reservoir
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window_estimates import WindowEstimates
from watchkeeper.detectors.window_rows import RowSlice, edges_to_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from watchkeeper.detectors.column_sketch import ColumnSketch
    from watchkeeper.detectors.window_shape import Summary

S = TypeVar("S", bound="Summary")

FORMAT_VERSION = 2
COMPACT_FORMAT = 3
"""The format of a window stored as its rows (:mod:`window_rows`)."""
READABLE_FORMATS = (1, 2, 3)  # v1: before the estimate state (read back with none)
# "segments" is optional in v2: summaries stored before segments read back with none


def check_format(data: dict[str, Any]) -> None:
    """Raise ValueError unless ``data`` is a stored window of a format this release reads."""
    if data.get("format") not in READABLE_FORMATS:
        raise ValueError(f"window summary format {data.get('format')!r} is not supported")


def _head(w: Summary, form: int) -> dict[str, Any]:
    """What both forms store first: the window, its settings, counts and time bounds."""
    return {
        "format": form,
        "model": w.model,
        "version": w.version,
        "start_ms": w.start_ms,
        "size_ms": w.size_ms,
        "settings": [w.settings.k, w.settings.max_categories, w.settings.reservoir_size],
        "events": w.events,
        "first_ts_ms": w.first_ts_ms,
        "last_ts_ms": w.last_ts_ms,
    }


def stored_form(w: Summary) -> dict[str, Any]:
    """The JSON-able form of a summary with its sketches built (format 2)."""

    def opt(s: ColumnSketch | None) -> dict[str, Any] | None:
        return None if s is None else s.to_dict()

    return {
        **_head(w, FORMAT_VERSION),
        "features": {n: s.to_dict() for n, s in w.features.items()},
        "prediction": opt(w.prediction),
        "prediction_class": opt(w.prediction_class),
        "label": opt(w.label),
        "latency": w.latency.to_dict(),
        "sample": w.sample.to_dict(),
        "performance": None if w.performance is None else w.performance.to_dict(),
        "estimates": w.estimates.to_dict(),
        "segments": [s.to_dict() for s in w.segments.values()],
    }


def compact_form(w: Summary, rows: list[RowSlice]) -> dict[str, Any]:
    """The stored form of a compact window: its rows (format 3)."""
    return {
        **_head(w, COMPACT_FORMAT),
        "rows": [
            part.to_dict(edges) for part, edges in zip(rows, edges_to_store(rows), strict=True)
        ],
    }


def load_performance(out: S, data: dict[str, Any]) -> S:
    """``out`` given the performance and estimate state stored in ``data``."""
    if data.get("performance") is not None:  # absent from a window stored as rows
        out.performance = PerformanceSketch.from_dict(data["performance"])
    out.estimates = WindowEstimates.from_dict(data.get("estimates"))
    return out


def load_counts(out: Summary, data: dict[str, Any]) -> None:
    """``out`` given the event counts and time bounds stored in ``data``."""
    out.events = {str(r): int(n) for r, n in data["events"].items()}
    out.first_ts_ms, out.last_ts_ms = data["first_ts_ms"], data["last_ts_ms"]


def stored_rows(data: dict[str, Any]) -> Iterator[RowSlice]:
    """The row slices of a window stored as its rows (format 3), in the order kept."""
    for part in data["rows"]:
        yield RowSlice.from_dict(part)


def load_into(out: Summary, data: dict[str, Any]) -> None:
    """The stored sketches of ``data`` (format 1 or 2) read into ``out``, a new summary of
    the same window and settings (:meth:`WindowSummary.from_dict` makes it, and reads the
    segments)."""
    load_counts(out, data)
    out.features = {n: load_sketch(s) for n, s in data["features"].items()}
    for name in ("prediction", "prediction_class", "label"):
        if data[name] is not None:
            setattr(out, name, load_sketch(data[name]))
    latency = load_sketch(data["latency"])
    assert isinstance(latency, NumericSketch)
    out.latency = latency
    out.sample = Reservoir.from_dict(data["sample"])
    load_performance(out, data)
