"""Event time per partition: the watermark of a model's stream, and when a partition is idle.

Kafka orders records only within a partition, and a consumer reads its partitions at
different speeds — during a backfill, a catch-up or a replay, one partition can be days of
event time ahead of another. So event time is tracked the way stream processors do it:
per partition (Kafka Streams' *stream time* per task), and a stream's watermark is the
**minimum** over its partitions (Flink's combined watermark of a multi-input operator).
A fast partition then never makes a slow one's events late.

Per (partition, model) a :class:`Mark` keeps the largest event time of the model's events
read from that partition, and the wall-clock time the last of them was read. The
watermark of (model, role) is the minimum of the marks over the partitions of the role's
topic, where each partition is one of:

* **carrying** the model (it has a mark): its mark counts;
* **quiet** for the model: it is caught up (everything up to its end has been read) and
  has not delivered the model's events for ``idle_timeout`` (or never did). It no longer
  holds the model's windows open (Flink's ``withIdleness``). A partition that is behind
  — a backlog not yet read, or paused while the store is away — is never quiet, however
  long it has been silent (the lesson of Flink's FLIP-471: idleness must not be inferred
  from a source that is merely blocked);
* **held**: behind, and it has shown none of the model's events yet. Its backlog may hold
  the model's oldest events, so the stream has no watermark until it does: nothing can be
  late and no window closes.

The watermark only decides what is *late* (:mod:`windows`) and when a policy's tick is
ready (:mod:`ticks`); nothing is emitted when a window closes, so holding windows open
costs no memory. These functions are pure: clocks come in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PartitionKey = tuple[str, int]
"""(topic, partition)."""
MarkKey = tuple[str, int, str]
"""(topic, partition, model)."""


@dataclass(frozen=True)
class Mark:
    """How far one partition got in one model's events."""

    event_ms: int
    """The largest event time of the model's events read from the partition."""
    seen_ms: int
    """Wall-clock time the last of them was read."""

    def merge(self, other: Mark) -> Mark:
        return Mark(max(self.event_ms, other.event_ms), max(self.seen_ms, other.seen_ms))


@dataclass(frozen=True)
class PartitionStatus:
    """Where the consumer of one partition stands, as committed with the offsets."""

    role: str
    position: int | None
    """The next offset to read, once committed (None: nothing read or known yet)."""
    end_offset: int | None
    """The partition's end (high watermark) at the last fetch; None before the first."""

    @property
    def lag(self) -> int | None:
        if self.position is None or self.end_offset is None:
            return None
        return max(0, self.end_offset - self.position)

    @property
    def caught_up(self) -> bool:
        return self.lag == 0


@dataclass(frozen=True)
class PartitionClock:
    """One partition as the watermark rules see it."""

    role: str
    caught_up: bool
    """Every record up to the partition's end has been read (and, in the store, committed)."""
    marks: Mapping[str, Mark] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamTime:
    """Event time of one model's stream of one role (predictions, features, labels)."""

    watermark_ms: int | None
    """The minimum mark over the partitions that count; None while held or before any."""
    held: bool
    """A partition that may still hold the model's oldest events has not shown any."""
    idle: bool
    """Every partition is quiet for the model: nothing more is coming now (vacuously true
    for a role without partitions)."""
    caught_up: bool
    """Every partition of the role is caught up."""
    newest_ms: int | None = None
    """The largest mark, quiet partitions included (the model's newest event time)."""
    partitions: int = 0
    """How many partitions of the role there are (0: none known yet)."""


def is_quiet(clock: PartitionClock, model: str, now_ms: int, idle_ms: int) -> bool:
    """Caught up, and the model's last event was read ``idle_ms`` ago or never."""
    if not clock.caught_up:
        return False
    mark = clock.marks.get(model)
    return mark is None or now_ms - mark.seen_ms >= idle_ms


def stream_time(
    partitions: Iterable[PartitionClock], model: str, role: str, now_ms: int, idle_ms: int
) -> StreamTime:
    """The watermark of (``model``, ``role``) over ``partitions``; see the module docstring.

    >>> a = PartitionClock("predictions", False, {"m": Mark(500, 0)})
    >>> b = PartitionClock("predictions", False, {"m": Mark(200, 0)})
    >>> stream_time([a, b], "m", "predictions", 0, 60_000).watermark_ms  # the slow one
    200
    >>> unread = PartitionClock("predictions", False)  # behind, nothing of m yet: held
    >>> stream_time([a, unread], "m", "predictions", 0, 60_000).held
    True
    >>> done = PartitionClock("predictions", True, {"m": Mark(200, 0)})  # quiet since 0
    >>> stream_time([a, done], "m", "predictions", 60_000, 60_000).watermark_ms
    500
    """
    counted: list[int] = []
    newest: int | None = None
    held = False
    idle = True
    caught_up = True
    count = 0
    for clock in partitions:
        if clock.role != role:
            continue
        count += 1
        caught_up = caught_up and clock.caught_up
        mark = clock.marks.get(model)
        if mark is not None:
            newest = mark.event_ms if newest is None else max(newest, mark.event_ms)
        if is_quiet(clock, model, now_ms, idle_ms):
            continue
        idle = False
        if mark is None:
            held = True
        else:
            counted.append(mark.event_ms)
    watermark = None if held or not counted else min(counted)
    return StreamTime(watermark, held, idle, caught_up, newest, count)


def expiry_watermark(partitions: Iterable[PartitionClock], model: str, role: str) -> int | None:
    """The event time every partition of the role has certainly passed for ``model``.

    For expiring pending label joins: the minimum mark over every partition that carries
    the model, quiet ones included (a conservative clock), and None while a partition
    that is behind has shown none of the model's events (it may still deliver the
    partner of a waiting row). A model the role's topic has never carried is measured
    by the topic's own progress: per partition its newest mark of any model.

    >>> labels = [PartitionClock("labels", True, {"m": Mark(900, 0), "n": Mark(5_000, 0)}),
    ...           PartitionClock("labels", True, {"n": Mark(4_000, 0)})]
    >>> expiry_watermark(labels, "m", "labels"), expiry_watermark(labels, "x", "labels")
    (900, 4000)
    """
    clocks = [c for c in partitions if c.role == role]
    if not any(model in c.marks for c in clocks):
        tops = []
        for clock in clocks:
            if clock.marks:
                tops.append(max(m.event_ms for m in clock.marks.values()))
            elif not clock.caught_up:
                return None
        return min(tops) if tops else None
    marks: list[int] = []
    for clock in clocks:
        mark = clock.marks.get(model)
        if mark is not None:
            marks.append(mark.event_ms)
        elif not clock.caught_up:
            return None
    return min(marks) if marks else None


@dataclass(frozen=True)
class ClockSettings:
    """What reading the stored partition clocks needs from the configuration."""

    roles: Mapping[str, str]
    """topic → role (predictions, features, labels)."""
    idle_ms: int = 60_000
    """``ingest.idle_timeout``."""
    stale_ms: int = 60_000
    """A partition whose status its owner has not refreshed for this long counts as
    behind: its owner may be gone, and its next owner resumes from the store."""


class LocalClocks:
    """This replica's partitions, live, and the other replicas' as last read from the store.

    The ingestion loop calls :meth:`watermark` before it summarises a batch (to find the
    late events) and :meth:`observe` after; :meth:`pending` hands the marks changed since
    the last commit to the store, committed in the same transaction as the offsets.
    """

    def __init__(self, roles: Mapping[str, str], idle_ms: int) -> None:
        self.roles = dict(roles)
        """topic → role"""
        self.idle_ms = idle_ms
        self._marks: dict[PartitionKey, dict[str, Mark]] = {}
        self._committed: dict[PartitionKey, dict[str, Mark]] = {}
        self._caught_up: dict[PartitionKey, bool] = {}
        self._dirty: set[MarkKey] = set()
        self._remote: dict[PartitionKey, PartitionClock] = {}

    # -- assignment -------------------------------------------------------------------
    def assign(self, key: PartitionKey, stored: Mapping[str, Mark]) -> None:
        """A partition is ours: resume from its stored marks (the previous owner's)."""
        self._marks[key] = dict(stored)
        self._committed[key] = dict(stored)
        self._caught_up.setdefault(key, False)
        self._remote.pop(key, None)

    def revoke(self, key: PartitionKey) -> None:
        self._marks.pop(key, None)
        self._committed.pop(key, None)
        self._caught_up.pop(key, None)
        self._dirty = {d for d in self._dirty if d[:2] != key}

    def assigned(self) -> list[PartitionKey]:
        return sorted(self._marks)

    def set_remote(self, clocks: Mapping[PartitionKey, PartitionClock]) -> None:
        """The partitions other replicas own, as the store last showed them."""
        self._remote = {k: c for k, c in clocks.items() if k not in self._marks}

    # -- progress ---------------------------------------------------------------------
    def observe(self, key: PartitionKey, model: str, event_ms: int, now_ms: int) -> None:
        """The model's events up to ``event_ms`` were read from the partition at ``now_ms``."""
        marks = self._marks.setdefault(key, {})
        mark = marks.get(model)
        fresh = Mark(event_ms, now_ms)
        marks[model] = fresh if mark is None else mark.merge(fresh)
        self._dirty.add((key[0], key[1], model))

    def set_caught_up(self, key: PartitionKey, caught_up: bool) -> None:
        if key in self._marks:
            self._caught_up[key] = caught_up

    def marks(self, key: PartitionKey) -> dict[str, Mark]:
        return dict(self._marks.get(key, {}))

    def clocks(self) -> list[PartitionClock]:
        local = [
            PartitionClock(self.roles.get(k[0], ""), self._caught_up.get(k, False), dict(m))
            for k, m in sorted(self._marks.items())
        ]
        return local + [c for _, c in sorted(self._remote.items())]

    def watermark(self, model: str, role: str, now_ms: int) -> int | None:
        """The (model, role) watermark for lateness: local marks live, remote ones stored."""
        return stream_time(self.clocks(), model, role, now_ms, self.idle_ms).watermark_ms

    def event_watermarks(
        self, key: PartitionKey, model: str, role: str, ts_ms: Any, now_ms: int
    ) -> np.ndarray[Any, Any] | None:
        """The stream's watermark just before each event of a batch read from ``key``.

        The minimum of the other partitions' marks and this partition's own progress up
        to the event — its mark before the batch, raised by the batch's earlier events —
        so an event is judged the same however the partition's records were cut into
        batches. None while another partition holds the stream (nothing can be late).
        """
        others = [
            PartitionClock(self.roles.get(k[0], ""), self._caught_up.get(k, False), dict(m))
            for k, m in self._marks.items()
            if k != key
        ] + [c for k, c in self._remote.items() if k != key]
        around = stream_time(others, model, role, now_ms, self.idle_ms)
        if around.held:
            return None
        ts = np.asarray(ts_ms, dtype=np.int64)
        floor = np.iinfo(np.int64).min
        own = self._marks.get(key, {}).get(model)
        before = np.empty_like(ts)
        before[0] = own.event_ms if own is not None else floor
        if ts.size > 1:
            before[1:] = np.maximum(np.maximum.accumulate(ts[:-1]), before[0])
        if around.watermark_ms is None:  # no other partition counts: this one alone
            return before
        return np.minimum(before, around.watermark_ms)

    # -- commits ----------------------------------------------------------------------
    def pending(self) -> dict[MarkKey, Mark]:
        """Marks changed since the last commit."""
        return {
            (t, p, m): self._marks[(t, p)][m]
            for t, p, m in sorted(self._dirty)
            if (t, p) in self._marks and m in self._marks[(t, p)]
        }

    def committed(self, marks: Mapping[MarkKey, Mark]) -> None:
        for (t, p, m), mark in marks.items():
            if (t, p) in self._committed:
                self._committed[(t, p)][m] = mark
            if self._marks.get((t, p), {}).get(m) == mark:
                self._dirty.discard((t, p, m))

    def discard(self) -> None:
        """Forget what was not committed (the consumer rewinds to the committed offsets)."""
        self._marks = {k: dict(v) for k, v in self._committed.items()}
        self._dirty.clear()
