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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from watchkeeper.detectors.calibrator import MulticlassCalibrator, StepCalibrator
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_batch import Column, ColumnBatch, IndexArray, Kind
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.estimate_sketch import (
    binary_decisions,
    class_index,
    vector_aliases,
    vector_scores,
)
from watchkeeper.detectors.grid_sketch import GridSketch, load_sketch, merged_numeric
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.reservoir import Reservoir
from watchkeeper.detectors.segment_update import RunBins, feed_groups, feed_numeric
from watchkeeper.detectors.segments import (
    SEGMENT_SKETCH_K,
    SETTLE_ROWS,
    PendingRows,
    PlanOf,
    SegmentSpec,
    SegmentSplit,
)
from watchkeeper.detectors.settle import settle_full
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window_estimates import WindowEstimates
from watchkeeper.detectors.window_rows import (
    COMPACT_ROWS,
    EdgesOf,
    PackedBatch,
    RowSlice,
    edges_to_store,
    sample_rows,
)

if TYPE_CHECKING:
    from watchkeeper.detectors.estimation_reference import Estimation

FORMAT_VERSION = 2
COMPACT_FORMAT = 3
"""The format of a window stored as its rows (:mod:`window_rows`)."""
READABLE_FORMATS = (1, 2, 3)  # v1: before the estimate state (read back with none)
# "segments" is optional in v2: summaries stored before segments read back with none


_LAZY = frozenset(
    {
        "features",
        "prediction",
        "prediction_class",
        "label",
        "latency",
        "sample",
        "performance",
        "estimates",
    }
)
"""The attributes a compact window builds when first read (:meth:`WindowSummary.materialise`)."""


BinEdges = Callable[[str, str], "tuple[float, ...] | None"]
"""``(model, column) ->`` the bin edges a new window sketch of that column counts exactly
(those of the reference in force for the model), or None: KLL alone. Columns are named
as in a reference profile (``__prediction__`` for the prediction)."""

EstimationOf = Callable[[str], "Estimation | Sequence[Estimation] | None"]
"""``model ->`` the estimations of the references in force for the model (calibrator or
loss model; one per distinct reference of its policies), whose state a window's
prediction batches update; None: no estimates."""


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
    segment_k: int = SEGMENT_SKETCH_K
    """KLL size of the segments' numeric sketches (:data:`segments.SEGMENT_SKETCH_K`)."""
    """``model ->`` the segment features its new windows split by (:mod:`segments`)."""
    grid: bool = False
    """Numeric columns with bins summarised on the fine grid of those bins
    (:class:`~watchkeeper.detectors.grid_sketch.GridSketch`, no KLL): segment children."""


def _new_sketch(
    kind: Kind, settings: SketchSettings, edges: tuple[float, ...] | None
) -> ColumnSketch:
    if kind == "numeric":
        if edges and settings.grid:  # a segment's grid: cut at the reference's bins alone
            return GridSketch(settings.k, getattr(edges, "reference", edges))
        sketch = NumericSketch(settings.k)
        if edges is not None:
            sketch.count_bins_on(edges)
        return sketch
    return CategoryCounts(settings.max_categories)


def _feed(sketch: ColumnSketch, column: Column, idx: IndexArray) -> None:
    values, nulls, missing = column.present(idx)
    if isinstance(sketch, NumericSketch):
        sketch.update(values.astype(np.float64, copy=False), nulls=nulls, missing=missing)
    else:
        sketch.update(values.tolist(), nulls=nulls, missing=missing)


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
            spec.feature: SegmentSplit(
                spec, self._segment_child, self._segment_copy, _feed_segments
            )
            for spec in plan or ()
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
            for batch in self._pending.take():
                every = np.arange(len(batch))
                bins = RunBins()  # each numeric column's grid bins, shared by the splits
                for split in self._segments.values():
                    split.update(batch, every, bins)
        return self._segments

    def segment_split(self, spec: SegmentSpec) -> SegmentSplit[WindowSummary]:
        """The split of ``spec``'s feature, made (empty, split by ``spec``) if absent: where
        the label join grades a pair into its prediction's segments."""
        self.materialise()
        split = self.segments.get(spec.feature)
        if split is None:
            split = self._segments[spec.feature] = SegmentSplit(
                spec, self._segment_child, self._segment_copy, _feed_segments
            )
        return split

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

    def _set_column(self, name: str, sketch: ColumnSketch) -> None:
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

    def _sketch(
        self,
        current: ColumnSketch | None,
        column: Column,
        name: str,
        edges: EdgesOf | None = None,
    ) -> ColumnSketch:
        if current is None or current.kind != column.kind:
            # a kind is fixed per model and feature upstream; a change starts a new sketch
            if edges is not None:
                cut = edges.get(name)
            else:
                bins = self.settings.bins
                cut = bins(self.model, name) if bins is not None else None
            return _new_sketch(column.kind, self.settings, cut)
        return current

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
        for name, column in batch.features.items():
            sketch = self._sketch(self.features.get(name), column, name, edges)
            _feed(sketch, column, idx)
            self.features[name] = sketch
        if batch.prediction is not None:
            self.prediction = self._sketch(self.prediction, batch.prediction, PREDICTION, edges)
            _feed(self.prediction, batch.prediction, idx)
        if batch.prediction_class is not None:
            self.prediction_class = self._sketch(
                self.prediction_class, batch.prediction_class, PREDICTION_CLASS, edges
            )
            _feed(self.prediction_class, batch.prediction_class, idx)
        if batch.label is not None:
            self.label = self._sketch(self.label, batch.label, LABEL, edges)
            _feed(self.label, batch.label, idx)
        if batch.latency_ms is not None:
            latency = batch.latency_ms[idx]
            self.latency.update(latency[~np.isnan(latency)])
        if estimate and batch.prediction is not None and self.settings.estimation is not None:
            self._estimate(batch, idx)
        if batch.features and self.sample.capacity:
            self.sample.update(batch.keys[idx], lambda sel: sample_rows(batch, idx[sel]))
        if self._segments:  # routed in runs (segments.SETTLE_ROWS), not batch by batch
            self._pending.add(batch, idx)
            if self._pending.rows >= SETTLE_ROWS:
                _ = self.segments

    def _estimate(self, batch: ColumnBatch, idx: IndexArray) -> None:
        """The batch's rows into the estimate state of the reference in force, if any."""
        assert self.settings.estimation is not None and batch.prediction is not None
        found = self.settings.estimation(self.model)
        if found is None or batch.prediction.kind != "numeric":
            return  # a class without a score carries nothing to estimate from
        for estimation in (found,) if not isinstance(found, Sequence) else found:
            self._estimate_one(estimation, batch, idx)

    def _estimate_one(self, estimation: Estimation, batch: ColumnBatch, idx: IndexArray) -> None:
        assert batch.prediction is not None
        klass = batch.prediction_class
        if isinstance(estimation.model, MulticlassCalibrator):
            if batch.class_scores is None:
                return  # a score without its probability vector: nothing per class
            scores = vector_scores(estimation.model.classes, batch.class_scores[idx])
            if scores is None:
                return  # a vector of another width than the reference's classes
            predicted = None
            if klass is not None:
                predicted = class_index(
                    estimation.model.classes,
                    klass.values[idx],
                    vector_aliases(estimation.model.classes),
                )
                # a row without its own class is decided by the arg-max of its scores
                argmax = np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)
                absent = klass.null[idx] | klass.missing[idx]
                predicted = np.where(absent, argmax, predicted)
            self.estimates.update(estimation, scores, predicted)
            return
        column = batch.prediction
        values = column.values[idx].astype(np.float64, copy=False)
        decided = None
        if isinstance(estimation.model, StepCalibrator):
            decided = binary_decisions(
                None if klass is None else klass.values[idx],
                None if klass is None else klass.null[idx] | klass.missing[idx],
                values,
                estimation.model.threshold,
            )
        features = None
        if estimation.problem == "regression":
            features = {n: c.values[idx] for n, c in batch.features.items()}
        self.estimates.update(estimation, values, decided, features)

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
        if not parts:
            raise ValueError("nothing to roll up")
        models = {p.model for p in parts}
        if len(models) != 1:
            raise ValueError(f"windows of several models: {sorted(models)}")
        end_ms = start_ms + size_ms
        for p in parts:
            if p.start_ms < start_ms or p.end_ms > end_ms:
                raise ValueError(
                    f"window [{p.start_ms}, {p.end_ms}) is not inside [{start_ms}, {end_ms})"
                )
        versions = {p.version for p in parts}
        if version is None:
            version = versions.pop() if len(versions) == 1 else "*"
        elif versions != {version}:
            raise ValueError(f"windows of versions {sorted(versions)}, not only {version!r}")
        out = cls(models.pop(), version, start_ms, size_ms, parts[0].settings)
        for p in sorted(parts, key=lambda p: (p.start_ms, p.version)):
            out.absorb(p)
        return out

    def absorb(self, other: WindowSummary) -> None:
        """Fold ``other`` in without checking it is the same window (roll-ups, segments)."""
        self.materialise()
        other.materialise()
        for role, n in other.events.items():
            self.events[role] = self.events.get(role, 0) + n
        for bound in ("first_ts_ms", "last_ts_ms"):
            mine, theirs = getattr(self, bound), getattr(other, bound)
            pick = min if bound == "first_ts_ms" else max
            setattr(
                self,
                bound,
                theirs if mine is None else mine if theirs is None else pick(mine, theirs),
            )
        for name, sketch in other.features.items():
            self.features[name] = _merged(self.features.get(name), sketch)
        self.prediction = _merged_opt(self.prediction, other.prediction)
        self.prediction_class = _merged_opt(self.prediction_class, other.prediction_class)
        self.label = _merged_opt(self.label, other.label)
        self.latency.merge(other.latency)
        self.sample.merge(other.sample)
        if other.performance is not None:
            if self.performance is None:
                self.performance = PerformanceSketch.from_dict(other.performance.to_dict())
            else:
                self.performance.merge(other.performance)
        self.estimates.merge(other.estimates)
        for name, split in other.segments.items():
            mine = self.segments.get(name)
            if mine is None:
                mine = self._segments[name] = SegmentSplit(
                    split.spec, self._segment_child, self._segment_copy, _feed_segments
                )
            mine.absorb(split)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; :meth:`from_dict` reads it back (format version 2; 1 too)."""

        def opt(s: ColumnSketch | None) -> dict[str, Any] | None:
            return None if s is None else s.to_dict()

        if self._compact is not None:
            if _LAZY.isdisjoint(self.__dict__):
                return self._compact_dict(self._compact)
            self.materialise()  # something was set on it from outside: store it whole
        return {
            "format": FORMAT_VERSION,
            "model": self.model,
            "version": self.version,
            "start_ms": self.start_ms,
            "size_ms": self.size_ms,
            "settings": [
                self.settings.k,
                self.settings.max_categories,
                self.settings.reservoir_size,
            ],
            "events": self.events,
            "first_ts_ms": self.first_ts_ms,
            "last_ts_ms": self.last_ts_ms,
            "features": {n: s.to_dict() for n, s in self.features.items()},
            "prediction": opt(self.prediction),
            "prediction_class": opt(self.prediction_class),
            "label": opt(self.label),
            "latency": self.latency.to_dict(),
            "sample": self.sample.to_dict(),
            "performance": None if self.performance is None else self.performance.to_dict(),
            "estimates": self.estimates.to_dict(),
            "segments": [s.to_dict() for s in self.segments.values()],
        }

    def _compact_dict(self, rows: list[RowSlice]) -> dict[str, Any]:
        """The stored form of a compact window: its rows (format 3)."""
        return {
            "format": COMPACT_FORMAT,
            "model": self.model,
            "version": self.version,
            "start_ms": self.start_ms,
            "size_ms": self.size_ms,
            "settings": [
                self.settings.k,
                self.settings.max_categories,
                self.settings.reservoir_size,
            ],
            "events": self.events,
            "first_ts_ms": self.first_ts_ms,
            "last_ts_ms": self.last_ts_ms,
            "rows": [
                part.to_dict(edges) for part, edges in zip(rows, edges_to_store(rows), strict=True)
            ],
        }

    @classmethod
    def performance_view(cls, data: dict[str, Any]) -> WindowSummary:
        """Only the window's performance and estimate state, from its stored form: what
        realised-beside-estimated rows read, without building every feature's sketch."""
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"window summary format {data.get('format')!r} is not supported")
        out = cls(data["model"], data["version"], int(data["start_ms"]), int(data["size_ms"]))
        if data.get("performance") is not None:  # absent from a window stored as rows
            out.performance = PerformanceSketch.from_dict(data["performance"])
        out.estimates = WindowEstimates.from_dict(data.get("estimates"))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSummary:
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(f"window summary format {data.get('format')!r} is not supported")
        k, max_categories, reservoir = data["settings"]
        out = cls(
            data["model"],
            data["version"],
            int(data["start_ms"]),
            int(data["size_ms"]),
            SketchSettings(int(k), int(max_categories), int(reservoir)),
        )
        out.events = {str(r): int(n) for r, n in data["events"].items()}
        out.first_ts_ms, out.last_ts_ms = data["first_ts_ms"], data["last_ts_ms"]
        if "rows" in data:
            # replayed, then read back from the whole form it would have been stored as:
            # exactly what loading the same window stored with its sketches gives
            for part in data["rows"]:
                piece = RowSlice.from_dict(part)
                out._feed(
                    piece.batch(out.model), np.arange(len(piece)), piece.edges, estimate=False
                )
            return cls.from_dict(out.to_dict())
        out.features = {n: load_sketch(s) for n, s in data["features"].items()}
        for name in ("prediction", "prediction_class", "label"):
            if data[name] is not None:
                setattr(out, name, load_sketch(data[name]))
        latency = load_sketch(data["latency"])
        assert isinstance(latency, NumericSketch)
        out.latency = latency
        out.sample = Reservoir.from_dict(data["sample"])
        if data.get("performance") is not None:
            out.performance = PerformanceSketch.from_dict(data["performance"])
        out.estimates = WindowEstimates.from_dict(data.get("estimates"))
        out._segments = {
            d["spec"]["feature"]: SegmentSplit.from_dict(
                d, out._segment_child, out._segment_copy, WindowSummary.from_dict, _feed_segments
            )
            for d in data.get("segments") or ()
        }
        return out


def _feed_segments(
    children: list[WindowSummary],
    batch: ColumnBatch,
    rows: IndexArray,
    sizes: np.ndarray[Any, np.dtype[np.intp]],
    bins: RunBins | None = None,
) -> None:
    """What ``child.update(batch, its rows)`` does for every segment child, one numpy pass
    per column (:mod:`segment_update`) and one vectorised estimate update per child (when
    a reference in force carries an estimation); children keep no sample."""
    bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
    ts = batch.ts_ms[rows]
    for i, child in enumerate(children):
        lo, hi = bounds[i], bounds[i + 1]
        child.events[batch.role] = child.events.get(batch.role, 0) + hi - lo
        first, last = int(ts[lo:hi].min()), int(ts[lo:hi].max())
        child.first_ts_ms = first if child.first_ts_ms is None else min(child.first_ts_ms, first)
        child.last_ts_ms = last if child.last_ts_ms is None else max(child.last_ts_ms, last)
    columns: list[tuple[str, Column | None]] = [*batch.features.items()]
    columns += [
        (PREDICTION, batch.prediction),
        (PREDICTION_CLASS, batch.prediction_class),
        (LABEL, batch.label),
    ]
    for name, column in columns:
        if column is None:
            continue
        sketches = [c._sketch(c.column(name), column, name) for c in children]
        feed_groups(sketches, column, rows, sizes, bins)
        for child, sketch in zip(children, sketches, strict=True):
            child._set_column(name, sketch)
    if batch.latency_ms is not None:
        latency = batch.latency_ms[rows]
        kept = ~np.isnan(latency)
        groups = np.repeat(np.arange(len(children)), sizes)[kept]
        feed_numeric([c.latency for c in children], latency[kept], groups)
    settle_full([s for c in children for s in c.numeric_sketches()])
    if batch.prediction is not None and children and children[0].settings.estimation is not None:
        for i, child in enumerate(children):
            child._estimate(batch, rows[bounds[i] : bounds[i + 1]])


def _merged(mine: ColumnSketch | None, theirs: ColumnSketch) -> ColumnSketch:
    if mine is None or mine.kind != theirs.kind:
        return load_sketch(theirs.to_dict())  # a copy: never alias another summary
    if isinstance(mine, NumericSketch) and isinstance(theirs, NumericSketch):
        return merged_numeric(mine, theirs)  # a grid and a KLL sketch merge as KLL
    if isinstance(mine, CategoryCounts) and isinstance(theirs, CategoryCounts):
        mine.merge(theirs)
    return mine


def _merged_opt(mine: ColumnSketch | None, theirs: ColumnSketch | None) -> ColumnSketch | None:
    return mine if theirs is None else _merged(mine, theirs)
