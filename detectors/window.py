"""A window's summary: what checks read instead of raw events.

One :class:`WindowSummary` covers one model (and version) over one tumbling event-time
window. It holds a sketch per feature, for the prediction, the label and the latency,
event counts per role, and a bounded sample of rows. Summaries merge: two summaries of
disjoint parts of the same window merge into the summary of the whole, which is how
small flushes accumulate into a window, how several replicas' partial windows combine,
and how small windows roll up into large ones.

The input is a :class:`~watchkeeper.detectors.column_batch.ColumnBatch`: events of one model
and one role decoded into arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from watchkeeper.detectors.column_batch import ColumnBatch, IndexArray, Kind
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.pending_rows import SETTLE_ROWS, PendingRows
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.reservoir import Reservoir
from watchkeeper.detectors.segments import (
    SEGMENT_SKETCH_K,
    PlanOf,
    SegmentSpec,
    SegmentSplit,
)
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window_estimate_feed import estimate_rows
from watchkeeper.detectors.window_estimates import WindowEstimates
from watchkeeper.detectors.window_feed import feed_sketches
from watchkeeper.detectors.window_merge import absorb_into, rollup_of
from watchkeeper.detectors.window_rows import (
    COMPACT_ROWS,
    EdgesOf,
    PackedBatch,
    RowSlice,
    sample_rows,
)
from watchkeeper.detectors.window_segments import feed_segments, route_pending
from watchkeeper.detectors.window_shape import BinEdges, EstimationOf
from watchkeeper.detectors.window_storage import (
    check_format,
    compact_form,
    load_counts,
    load_into,
    load_performance,
    stored_form,
    stored_rows,
)

if TYPE_CHECKING:
    pass

_LAZY = frozenset(("features", "prediction", "prediction_class", "label", "latency", "sample"))
_LAZY |= {"performance", "estimates"}
"""The attributes a compact window builds when first read (:meth:`WindowSummary.materialise`)."""


@dataclass(frozen=True)
class SketchSettings:
    """Sizes of the sketches a window keeps (see WindowConfig in the daemon config), and
    which bins its numeric sketches count exactly (``bins``; None: none)."""

    k: int = 200
    max_categories: int = 256
    reservoir_size: int = 512
    bins: BinEdges | None = field(default=None, compare=False)
    estimation: EstimationOf | None = field(default=None, compare=False)
    segments: PlanOf | None = field(default=None, compare=False)
    """``model ->`` the segment features its new windows split by (:mod:`segments`)."""
    segment_k: int = SEGMENT_SKETCH_K
    """KLL size of the segments' numeric sketches (:data:`segments.SEGMENT_SKETCH_K`)."""
    grid: bool = False
    """Numeric columns with bins summarised on the fine grid of those bins
    (:class:`~watchkeeper.detectors.grid_sketch.GridSketch`, no KLL): segment children."""


class WindowSummary:
    """Summary of one model (and version) over one window; see the module docstring."""

    def __init__(
        self,
        model: str,
        version: str,
        start_ms: int,
        size_ms: int,
        settings: SketchSettings | None = None,
        *,
        compact: bool = False,
    ) -> None:
        """``compact``: hold the rows as arrays until read (:mod:`window_rows`; never
        with segments), as ingestion's windows do between two flushes."""
        self.model = model
        self.version = version
        self.start_ms = start_ms
        self.size_ms = size_ms
        self.settings = settings or SketchSettings()
        self.events: dict[str, int] = {}
        self.first_ts_ms: int | None = None
        self.last_ts_ms: int | None = None
        plan = self.settings.segments(model) if self.settings.segments is not None else None
        self._pending = PendingRows()
        self._segments: dict[str, SegmentSplit[WindowSummary]] = {
            spec.feature: self._new_split(spec) for spec in plan or ()
        }
        self._compact: list[RowSlice] | None = [] if compact and not self._segments else None
        """The rows of a window kept as arrays (:mod:`window_rows`), until something reads
        its sketches or it passes :data:`COMPACT_ROWS`; None: sketches (``_LAZY``) built."""
        self._compact_rows = 0
        self._kinds: dict[str, Kind] = {}
        self._layout: tuple[tuple[str, Kind], ...] | None = None
        if self._compact is None:
            self._build()

    # the sketches, built at once (:meth:`_build`) or when first read of a compact window
    features: dict[str, ColumnSketch]
    prediction: ColumnSketch | None
    prediction_class: ColumnSketch | None
    label: ColumnSketch | None
    latency: NumericSketch
    sample: Reservoir
    performance: PerformanceSketch | None
    """Joined (prediction, label) pairs of this window's predictions, as labels arrive."""
    estimates: WindowEstimates
    """Label-free estimate state of the predictions (:mod:`window_estimates`)."""

    def _build(self) -> None:
        """The empty sketches of the attributes not set yet (``_LAZY``)."""
        have = self.__dict__
        fresh: dict[str, Callable[[], Any]] = {
            "features": dict,
            "prediction": lambda: None,
            "prediction_class": lambda: None,
            "label": lambda: None,
            "latency": lambda: NumericSketch(self.settings.k),
            "sample": lambda: Reservoir(self.settings.reservoir_size),
            "performance": lambda: None,
            "estimates": WindowEstimates,
        }
        for name, make in fresh.items():
            if name not in have:
                have[name] = make()

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any:
            # only reached for an attribute not set: a sketch of a compact window
            if name in _LAZY and "_compact" in self.__dict__:
                self.materialise()
                return self.__dict__[name]
            raise AttributeError(name)

    @property
    def compact(self) -> bool:
        """Whether the window holds its rows as arrays (no sketch built yet)."""
        return self._compact is not None

    def materialise(self) -> None:
        """Build the sketches of a compact window by replaying its rows: the updates it
        would have made (same slices, same order, the edges in force then, no estimates:
        a window is compact only while none is in force)."""
        rows = self._compact
        if rows is None:
            return
        self._compact = None
        self._build()
        for part in rows:
            self._feed(part.batch(self.model), np.arange(len(part)), part.edges, estimate=False)

    def add_rows(self, packed: PackedBatch, lo: int, hi: int, first: int, last: int) -> bool:
        """Keep rows ``lo:hi`` of ``packed`` (first and last timestamps given) as arrays if
        the window is compact and stays within :data:`COMPACT_ROWS`; False: the caller
        calls :meth:`update` instead."""
        rows = self._compact
        n = hi - lo
        if (
            rows is None
            or self._compact_rows + n > COMPACT_ROWS
            or not _LAZY.isdisjoint(self.__dict__)
        ):
            return False
        layout = packed.layout
        if layout is not self._layout:
            if self._layout is None:  # a new window: nothing to disagree with
                self._layout = layout
            else:
                kinds = self._kinds or dict(self._layout)
                if any(kinds.get(name, kind) != kind for name, kind in layout):
                    return False  # a column changed kind: the sketches' rules decide
                kinds.update(layout)
                self._kinds, self._layout = kinds, layout
        rows.append(packed.slice(lo, hi))
        self._compact_rows += n
        role = packed.batch.role
        self.events[role] = self.events.get(role, 0) + n
        self.first_ts_ms = first if self.first_ts_ms is None else min(self.first_ts_ms, first)
        self.last_ts_ms = last if self.last_ts_ms is None else max(self.last_ts_ms, last)
        return True

    @property
    def segments(self) -> dict[str, SegmentSplit[WindowSummary]]:
        """Per segment feature, a child summary per value (:mod:`segments`)."""
        if self._pending.rows:
            route_pending(self._pending, self._segments.values())
        return self._segments

    def segment_split(self, spec: SegmentSpec) -> SegmentSplit[WindowSummary]:
        """The split of ``spec``'s feature, made (empty, split by ``spec``) if absent: where
        the label join grades a pair into its prediction's segments."""
        self.materialise()
        split = self.segments.get(spec.feature)
        if split is None:
            split = self._segments[spec.feature] = self._new_split(spec)
        return split

    def _new_split(self, spec: SegmentSpec) -> SegmentSplit[WindowSummary]:
        return SegmentSplit(spec, self._segment_child, self._segment_copy, feed_segments)

    def _segment_child(self) -> WindowSummary:
        """An empty summary of one segment: same sketches and estimate state, no sample or
        segments; its ``performance`` holds the pairs of its predictions the label join
        grades."""
        s = self.settings
        child = SketchSettings(
            s.segment_k, s.max_categories, 0, bins=s.bins, estimation=s.estimation, grid=True
        )
        return WindowSummary(self.model, self.version, self.start_ms, self.size_ms, child)

    def column(self, name: str) -> ColumnSketch | None:
        """A feature's sketch, or the prediction's, its class's or the label's by their
        reserved names."""
        special = {
            PREDICTION: self.prediction,
            PREDICTION_CLASS: self.prediction_class,
            LABEL: self.label,
        }
        return special[name] if name in special else self.features.get(name)

    def numeric_sketches(self) -> list[NumericSketch]:
        """Its numeric sketches (features, prediction, class, label, latency): what a
        flush settles together (:func:`~watchkeeper.detectors.settle.settle_sketches`);
        none while compact (nothing queued)."""
        if self._compact is not None:
            return []
        columns = (
            *self.features.values(),
            self.prediction,
            self.prediction_class,
            self.label,
            self.latency,
        )
        return [c for c in columns if isinstance(c, NumericSketch)]

    def set_column(self, name: str, sketch: ColumnSketch) -> None:
        if name == PREDICTION:
            self.prediction = sketch
        elif name == PREDICTION_CLASS:
            self.prediction_class = sketch
        elif name == LABEL:
            self.label = sketch
        else:
            self.features[name] = sketch

    def _segment_copy(self, part: WindowSummary) -> WindowSummary:
        """A segment's summary from another part's (of a window inside this one)."""
        child = self._segment_child()
        child.absorb(part)
        return child

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.size_ms

    @property
    def count(self) -> int:
        """All events of every role in the window."""
        return sum(self.events.values())

    @property
    def traffic(self) -> int:
        """The model's traffic in the window, what a whole-window ``min_samples`` guard
        counts: its predictions, or its features rows where those are more (features on a
        stream of their own, or a model without predictions); never its labels.

        No check reads a window's label rows (realised metrics read the pairs joined into
        the predictions' windows); counted in, the labels of earlier predictions, which go
        on arriving after the predictions stop, would keep a stopped model from reading
        as "no data", and a request on both streams would count twice.

        >>> w = WindowSummary("m", "1", 0, 1000, SketchSettings())
        >>> w.events = {"predictions": 60, "features": 60, "labels": 60}
        >>> w.count, w.traffic
        (180, 60)
        """
        return max(self.events.get("predictions", 0), self.events.get("features", 0))

    def update(self, batch: ColumnBatch, idx: IndexArray) -> None:
        """Add the events of ``batch`` at positions ``idx`` (all inside this window)."""
        if idx.size == 0:
            return
        self.materialise()
        self.events[batch.role] = self.events.get(batch.role, 0) + int(idx.size)
        ts = batch.ts_ms[idx]
        lo, hi = int(ts.min()), int(ts.max())
        self.first_ts_ms = lo if self.first_ts_ms is None else min(self.first_ts_ms, lo)
        self.last_ts_ms = hi if self.last_ts_ms is None else max(self.last_ts_ms, hi)
        self._feed(batch, idx)

    def _feed(
        self,
        batch: ColumnBatch,
        idx: IndexArray,
        edges: EdgesOf | None = None,
        *,
        estimate: bool = True,
    ) -> None:
        """The events' values into the sketches, estimates, sample and segments; new
        numeric sketches count the bins of ``edges`` (None: those in force now)."""
        feed_sketches(self, batch, idx, edges)
        estimation = self.settings.estimation
        if estimate and batch.prediction is not None and estimation is not None:
            estimate_rows(self.estimates, estimation(self.model), batch, idx)
        if batch.features and self.sample.capacity:
            self.sample.update(batch.keys[idx], lambda sel: sample_rows(batch, idx[sel]))
        if self._segments:  # routed in runs (pending_rows.SETTLE_ROWS), not batch by batch
            self._pending.add(batch, idx)
            if self._pending.rows >= SETTLE_ROWS:
                _ = self.segments

    def merge(self, other: WindowSummary) -> None:
        """Fold the summary of another part of the same window into this one."""
        if (other.model, other.version, other.start_ms, other.size_ms) != (
            self.model,
            self.version,
            self.start_ms,
            self.size_ms,
        ):
            raise ValueError("only summaries of the same model, version and window merge")
        self.absorb(other)

    @classmethod
    def rollup(
        cls,
        parts: Iterable[WindowSummary],
        start_ms: int,
        size_ms: int,
        version: str | None = None,
    ) -> WindowSummary:
        """One summary of ``[start_ms, start_ms + size_ms)`` from the windows inside it.

        Small windows roll up into a large one (5-minute windows into an hour) and, with
        ``version=None``, the versions of a model into one summary (version ``"*"``, or the
        single version present). The result equals summarising all their events at once.
        """
        parts = list(parts)
        model, version = rollup_of(parts, start_ms, size_ms, version)
        out = cls(model, version, start_ms, size_ms, parts[0].settings)
        for p in sorted(parts, key=lambda p: (p.start_ms, p.version)):
            out.absorb(p)
        return out

    def absorb(self, other: WindowSummary) -> None:
        """Fold ``other`` in without checking it is the same window (roll-ups, segments)."""
        self.materialise()
        other.materialise()
        absorb_into(self, other)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; :meth:`from_dict` reads it back (:mod:`window_storage`)."""
        if self._compact is not None:
            if _LAZY.isdisjoint(self.__dict__):
                return compact_form(self, self._compact)
            self.materialise()  # something was set on it from outside: store it whole
        return stored_form(self)

    @classmethod
    def performance_view(cls, data: dict[str, Any]) -> WindowSummary:
        """Only the window's performance and estimate state, from its stored form: what
        realised-beside-estimated rows read, without building every feature's sketch."""
        check_format(data)
        out = cls(data["model"], data["version"], int(data["start_ms"]), int(data["size_ms"]))
        return load_performance(out, data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSummary:
        check_format(data)
        k, max_categories, reservoir = data["settings"]
        settings = SketchSettings(int(k), int(max_categories), int(reservoir))
        start_ms, size_ms = int(data["start_ms"]), int(data["size_ms"])
        out = cls(data["model"], data["version"], start_ms, size_ms, settings)
        if "rows" in data:
            # replayed, then read back from the whole form it would have been stored as:
            # exactly what loading the same window stored with its sketches gives
            load_counts(out, data)
            for piece in stored_rows(data):
                out._feed(
                    piece.batch(out.model), np.arange(len(piece)), piece.edges, estimate=False
                )
            return cls.from_dict(out.to_dict())
        load_into(out, data)
        out._segments = {
            d["spec"]["feature"]: SegmentSplit.from_dict(
                d, out._segment_child, out._segment_copy, cls.from_dict, feed_segments
            )
            for d in data.get("segments") or ()
        }
        return out
