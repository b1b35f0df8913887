"""In-memory window state between two commits to the store.

Events are assigned to tumbling event-time windows ``[k·size, (k+1)·size)`` per model and
version. Only the *delta* since the last commit lives here: at each flush the deltas are
merged into the stored summaries in the same transaction as the consumer offsets, and
this state starts empty again. Memory is therefore bounded by the windows touched
between two flushes × features × sketch size, not by the number of events.

Lateness follows the watermark model of stream processors (Akidau et al., "The Dataflow
Model", VLDB 2015): the watermark of a model's stream of one role (predictions, features,
labels) is the largest event time seen in it; a window closes for that stream once the
watermark passes its end plus ``allowed_lateness``, and an event for a closed
window is counted as dropped (per window) rather than summarised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from watchkeeper.detectors.window import ColumnBatch, SketchSettings, WindowSummary

StreamKey = tuple[str, str]
"""(model, role): one stream of events with its own watermark."""


class WindowKey(NamedTuple):
    model: str
    version: str
    start_ms: int


@dataclass
class Delta:
    """What one flush commits: summaries to merge, late counts, and watermarks."""

    size_ms: int
    windows: dict[WindowKey, WindowSummary] = field(default_factory=dict)
    late: dict[WindowKey, int] = field(default_factory=dict)
    watermarks: dict[StreamKey, int] = field(default_factory=dict)

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
        # per (model, role): labels carry their own, later, event times and must not
        # close the windows predictions are still arriving for
        self.watermarks: dict[StreamKey, int] = {}
        self._committed_watermarks: dict[StreamKey, int] = {}
        self._delta = Delta(self.size_ms)
        self.pending_events = 0

    def add(self, batch: ColumnBatch) -> int:
        """Summarise a batch into its windows; return how many events were too late."""
        n = len(batch)
        if n == 0:
            return 0
        self.pending_events += n
        ts = batch.ts_ms
        starts = ts - ts % self.size_ms
        stream = (batch.model, batch.role)
        watermark = self.watermarks.get(stream)
        late_mask = (
            np.zeros(n, dtype=bool)
            if watermark is None
            else starts + self.size_ms + self.lateness_ms <= watermark
        )
        # one group per (version, window start); np.unique sorts, so groups are stable
        names, version_code = np.unique(batch.versions, return_inverse=True)
        slot = (starts - starts.min()) // self.size_ms
        combined = version_code.astype(np.int64) * (int(slot.max()) + 1) + slot
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
        late_total = 0
        for group, pos in enumerate(first.tolist()):
            idx = np.flatnonzero(inverse == group)
            key = WindowKey(batch.model, str(names[version_code[pos]]), int(starts[pos]))
            late = late_mask[idx]
            if late.any():
                count = int(late.sum())
                self._delta.late[key] = self._delta.late.get(key, 0) + count
                late_total += count
                idx = idx[~late]
            if idx.size:
                window = self._delta.windows.get(key)
                if window is None:
                    window = WindowSummary(
                        key.model, key.version, key.start_ms, self.size_ms, self.settings
                    )
                    self._delta.windows[key] = window
                window.update(batch, idx)
        high = int(ts.max())
        if watermark is None or high > watermark:
            self.watermarks[stream] = high
        return late_total

    @property
    def open_windows(self) -> int:
        return len(self._delta.windows)

    def drain(self) -> Delta:
        """Hand over the delta for a flush and start a new one."""
        delta = self._delta
        delta.watermarks = dict(self.watermarks)
        self._delta = Delta(self.size_ms)
        self.pending_events = 0
        return delta

    def committed(self, delta: Delta) -> None:
        """The flush of ``delta`` is durable."""
        self._committed_watermarks = dict(delta.watermarks)

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
        self.watermarks = dict(self._committed_watermarks)

    def load_watermarks(self, watermarks: dict[StreamKey, int]) -> None:
        self.watermarks = dict(watermarks)
        self._committed_watermarks = dict(watermarks)


def window_bounds(now_ms: int, size_ms: int, policy_window_ms: int) -> tuple[int, int]:
    """[start, end) of the stored windows an evaluation at ``now_ms`` reads.

    The last ``policy_window`` of event time, rounded out to whole stored windows: the
    current (partial) window is included, and so is the oldest partly covered one, so an
    evaluation always sees at least ``policy_window`` of data — never just the few events
    of a window that has only begun.
    """
    end = now_ms - now_ms % size_ms + size_ms
    since = now_ms - policy_window_ms
    return since - since % size_ms, end
