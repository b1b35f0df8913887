"""In-memory window state between two commits to the store.

Events are assigned to tumbling event-time windows ``[k·size, (k+1)·size)`` per model and
version. Only the *delta* since the last commit lives here: at each flush the deltas are
merged into the stored summaries in the same transaction as the consumer offsets, and
this state starts empty again. Memory is therefore bounded by the windows touched
between two flushes × features × sketch size, not by the number of events.

Lateness follows the watermark model of stream processors (Akidau et al., "The Dataflow
Model", VLDB 2015): a window of a model's stream of one role (predictions, features,
labels) closes once the stream's watermark passes its end plus ``allowed_lateness``, and
an event for a closed window is counted as late (per window) rather than summarised. The
watermark is the minimum over the stream's partitions (:mod:`watermarks`), handed in by
the caller with each batch: a fast partition never makes a slow one's events late.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from watchkeeper.daemon.eventtime.watermarks import Mark, MarkKey, PartitionKey, PartitionStatus
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reserved_names import LABEL, PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.settle import settle_sketches
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.detectors.window_rows import COMPACT_ROWS, PackedBatch

StreamKey = tuple[str, str]
"""(model, role): one stream of events with its own watermark."""


class WindowKey(NamedTuple):
    model: str
    version: str
    start_ms: int


@dataclass
class Delta:
    """What one flush commits: summaries to merge, late counts, per-partition event time."""

    size_ms: int
    windows: dict[WindowKey, WindowSummary] = field(default_factory=dict)
    late: dict[WindowKey, int] = field(default_factory=dict)
    marks: dict[MarkKey, Mark] = field(default_factory=dict)
    """Per (topic, partition, model): how far its event time got (see :mod:`watermarks`)."""
    partitions: dict[PartitionKey, PartitionStatus] = field(default_factory=dict)
    """Where each assigned partition's consumer stands, committed with the offsets."""
    now_ms: int = 0
    """Wall-clock time of the flush."""

    @property
    def events(self) -> int:
        return sum(w.count for w in self.windows.values()) + sum(self.late.values())


class WindowState:
    """Per model × version × window deltas since the last flush; see the module docstring."""

    def __init__(
        self, size_s: float, allowed_lateness_s: float, settings: SketchSettings | None = None
    ) -> None:
        self.size_ms = int(size_s * 1000)
        self.lateness_ms = int(allowed_lateness_s * 1000)
        self.settings = settings or SketchSettings()
        self._delta = Delta(self.size_ms)
        self.pending_events = 0

    def add(self, batch: ColumnBatch, watermark: int | np.ndarray[Any, Any] | None = None) -> int:
        """Summarise a batch into its windows; return how many events were too late.

        ``watermark`` is the watermark of the batch's (model, role) stream: one value for
        the whole batch, or one per event (the stream's watermark just before each event,
        :meth:`~watchkeeper.daemon.eventtime.watermarks.LocalClocks.event_watermarks`); None: no
        window is closed yet.
        """
        return int(self.summarise(batch, watermark).sum())

    def summarise(
        self, batch: ColumnBatch, watermark: int | np.ndarray[Any, Any] | None = None
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """:meth:`add`, returning which events were late (they join and sample nothing)."""
        n = len(batch)
        if n == 0:
            return np.zeros(0, dtype=bool)
        self.pending_events += n
        ts = batch.ts_ms
        starts = ts - ts % self.size_ms
        late_mask = (
            np.zeros(n, dtype=bool)
            if watermark is None
            else starts + self.size_ms + self.lateness_ms <= watermark
        )
        # one group per (version, window start); np.unique sorts, so groups are stable.
        # The common batch (one version, one window) skips both sorts, the one over the
        # version strings most (Python comparisons): the same groups, found directly
        names, version_code = _codes(batch.versions)
        slot = (starts - starts.min()) // self.size_ms
        combined = version_code.astype(np.int64) * (int(slot.max()) + 1) + slot
        if combined.max() == combined.min():
            first, inverse = np.zeros(1, dtype=np.intp), np.zeros(n, dtype=np.intp)
        else:
            _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        groups = first.size
        if late_mask.any():
            late_counts = np.bincount(inverse[late_mask], minlength=groups).tolist()
            for group in np.flatnonzero(late_counts).tolist():
                pos = int(first[group])
                key = WindowKey(batch.model, str(names[version_code[pos]]), int(starts[pos]))
                self._delta.late[key] = self._delta.late.get(key, 0) + late_counts[group]
        # the on-time events grouped by window, in batch order within a group (a stable
        # sort): one pass for the batch, then each window takes its run
        order = np.argsort(inverse, kind="stable") if groups > 1 else np.arange(n)
        if late_mask.any():
            order = order[~late_mask[order]]
        owner = inverse[order]
        bounds = np.searchsorted(owner, np.arange(groups + 1)).tolist()
        packed: PackedBatch | None = None
        compact = self._compactable(batch)
        ts_lo: list[int] | None = None
        ts_hi: list[int] | None = None
        # each group's version and start as Python values once, not a numpy scalar each
        group_versions = [str(v) for v in names[version_code[first]].tolist()]
        group_starts = starts[first].tolist()
        for group in range(groups):
            lo, hi = bounds[group], bounds[group + 1]
            if lo == hi:
                continue
            key = WindowKey(batch.model, group_versions[group], group_starts[group])
            window = self._delta.windows.get(key)
            if window is None:
                window = WindowSummary(
                    key.model, key.version, key.start_ms, self.size_ms, self.settings, compact=True
                )
                self._delta.windows[key] = window
            if compact and hi - lo <= COMPACT_ROWS and window.compact:
                if packed is None:
                    packed = PackedBatch(batch, order, self._edges(batch))
                    ts_lo, ts_hi = _group_bounds(packed.ts_ms, bounds)
                assert ts_lo is not None and ts_hi is not None
                if window.add_rows(packed, lo, hi, ts_lo[group], ts_hi[group]):
                    continue
            window.update(batch, order[lo:hi])
        return late_mask

    def _compactable(self, batch: ColumnBatch) -> bool:
        """Whether the batch's windows may hold its rows as arrays: not while an estimation
        is in force for its predictions (its state is updated per batch, as it stands)."""
        estimation = self.settings.estimation
        if batch.prediction is None or estimation is None:
            return True
        found = estimation(batch.model)
        return found is None or (isinstance(found, Sequence) and not found)

    def _edges(self, batch: ColumnBatch) -> dict[str, tuple[float, ...]]:
        """The bin edges in force now for the batch's columns (those having some)."""
        bins = self.settings.bins
        if bins is None:
            return {}
        names = [*batch.features]
        names += [
            n
            for n, c in (
                (PREDICTION, batch.prediction),
                (PREDICTION_CLASS, batch.prediction_class),
                (LABEL, batch.label),
            )
            if c is not None
        ]
        return {n: e for n in names if (e := bins(batch.model, n)) is not None}

    @property
    def open_windows(self) -> int:
        return len(self._delta.windows)

    def drain(self) -> Delta:
        """Hand over the delta for a flush and start a new one."""
        delta = self._delta
        self._delta = Delta(self.size_ms)
        self.pending_events = 0
        settle_windows(delta.windows.values())
        return delta

    def restore(self, delta: Delta) -> None:
        """A flush failed: put its delta back so the next flush carries it."""
        for key, window in delta.windows.items():
            mine = self._delta.windows.get(key)
            if mine is not None:
                window.merge(mine)
            self._delta.windows[key] = window
        for key, count in delta.late.items():
            self._delta.late[key] = self._delta.late.get(key, 0) + count
        self.pending_events += delta.events

    def discard(self) -> None:
        """Forget everything since the last commit (the consumer rewinds to that point)."""
        self._delta = Delta(self.size_ms)
        self.pending_events = 0


def _codes(versions: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``np.unique(versions, return_inverse=True)``, without its sort of Python strings
    when every event has the first one's version (~0.4 µs an event at 2,000 a batch)."""
    first = versions[0]
    if isinstance(first, str) and bool((versions == first).all()):
        return np.array([first], dtype=object), np.zeros(versions.size, dtype=np.intp)
    names, codes = np.unique(versions, return_inverse=True)
    return names, codes


def _group_bounds(ts: np.ndarray[Any, Any], bounds: list[int]) -> tuple[list[int], list[int]]:
    """Each group's first and last timestamp (groups ``bounds[g]:bounds[g + 1]`` of
    ``ts``; 0 for an empty group)."""
    cuts = np.asarray(bounds, dtype=np.intp)
    full = np.flatnonzero(np.diff(cuts) > 0)
    lo = np.zeros(cuts.size - 1, dtype=np.int64)
    hi = np.zeros(cuts.size - 1, dtype=np.int64)
    lo[full] = np.minimum.reduceat(ts, cuts[full])
    hi[full] = np.maximum.reduceat(ts, cuts[full])
    return lo.tolist(), hi.tolist()


def settle_windows(windows: Iterable[WindowSummary]) -> None:
    """Summarise the values every numeric sketch of ``windows`` queued, in one pass
    (:func:`~watchkeeper.detectors.settle.settle_sketches`): a flush of thousands of small
    windows costs a few numpy calls, not a dozen per sketch."""
    sketches: list[NumericSketch] = []
    for window in windows:
        # a window's segment children queue their values like the window does
        # (WindowSummary.segments routes the rows still waiting for a run first)
        children = [c for split in window.segments.values() for c in split.children.values()]
        for summary in (window, *children):
            sketches.extend(summary.numeric_sketches())
    settle_sketches(sketches)


def window_bounds(now_ms: int, size_ms: int, policy_window_ms: int) -> tuple[int, int]:
    """[start, end) of the stored windows an evaluation at ``now_ms`` reads.

    The last ``policy_window`` of event time before ``now_ms``, rounded out to whole
    stored windows: a partly covered window at either end is included, so an evaluation
    always sees at least ``policy_window`` of data. At an instant on a window boundary
    (the usual tick: 10:05 with 5-minute windows) that is exactly the windows ending by
    it — never the window that only begins then, which a live evaluation would see all
    but empty and a backfill full.
    """
    end = -(-now_ms // size_ms) * size_ms  # rounded up to a window boundary
    since = now_ms - policy_window_ms
    return since - since % size_ms, end


def on_time(batch: ColumnBatch, late: np.ndarray[Any, np.dtype[np.bool_]]) -> ColumnBatch:
    """The batch without its late events (what the label join and shadow sampling see)."""
    if not late.any():
        return batch
    keep = np.flatnonzero(~late)

    def take(column: Column | None) -> Column | None:
        if column is None:
            return None
        return Column(column.kind, column.values[keep], column.null[keep], column.missing[keep])

    return replace(
        batch,
        ts_ms=batch.ts_ms[keep],
        versions=batch.versions[keep],
        keys=batch.keys[keep],
        request_ids=None if batch.request_ids is None else batch.request_ids[keep],
        features={n: c for n, c in ((n, take(c)) for n, c in batch.features.items()) if c},
        prediction=take(batch.prediction),
        prediction_class=take(batch.prediction_class),
        label=take(batch.label),
        latency_ms=None if batch.latency_ms is None else batch.latency_ms[keep],
        offsets=None if batch.offsets is None else batch.offsets[keep],
        class_scores=None if batch.class_scores is None else batch.class_scores[keep],
    )
