"""When a stream that has shown none of a model's events counts as idle for readiness.

:func:`~watchkeeper.daemon.eventtime.watermarks.stream_time` calls a caught-up partition
that never carried the model *quiet* at once: right for lateness (nothing of the model
there can be late) and for a partition of a shared topic that carries other models. For
*readiness* — may a policy's tick run, may an A/B look fold a window — a stream of which
**no** partition has shown the model's events yet is a different thing: its topic may be
empty only because its producer (a labels job, a backfill) has not started yet. Treating
it as "no constraint" ran every historical tick of a catch-up before the labels came and
stored them as "0 labelled predictions" for good (trial findings F3/F4). So such a stream
is **not yet** ready (held) until it shows an event of the model, or until every one of
its partitions has been caught up and empty of the model for ``idle_timeout`` — Flink's
idleness: a source without data becomes idle only after its idle timeout
(``WatermarkStrategy.withIdleness``), never at once.

The "caught up and empty since" instant is wall-clock state this replica observes (it is
not stored): after a restart or a change of leader the timeout runs again from the first
observation, which only delays an idle verdict, never advances it.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from watchkeeper.daemon.eventtime.watermarks import StreamTime


class EmptyStreams:
    """Per (model, role): since when the stream has been caught up with none of the
    model's events on any partition (wall ms), as observed through :meth:`settle`.

    >>> empty = EmptyStreams()
    >>> nothing = StreamTime(None, False, True, True, None, partitions=2)
    >>> empty.settle("m", "labels", nothing, 0, 60_000).held  # just seen empty: not yet
    True
    >>> empty.settle("m", "labels", nothing, 60_000, 60_000).idle  # empty for the timeout
    True
    """

    def __init__(self) -> None:
        self._since: dict[tuple[str, str], tuple[int, bool]] = {}
        """(model, role) → (first seen caught up and empty, whether partitions were known)."""
        self._lock = threading.Lock()  # the stepper's threads and the HTTP status read it

    def settle(
        self, model: str, role: str, time: StreamTime, now_ms: int, idle_ms: int
    ) -> StreamTime:
        """``time`` as readiness sees it: a stream that has shown none of the model's
        events is held (no watermark, not idle) until it has been caught up and empty for
        ``idle_ms``; a stream that has shown any is returned unchanged. A role none of
        whose partitions has reported yet (just started, or its topic missing) is timed
        the same way, the clock restarting when its partitions appear: a missing labels
        topic delays the policies that read it by ``idle_ms``, never stops them."""
        key = (model, role)
        known = time.partitions > 0
        with self._lock:
            if time.newest_ms is not None:  # the model's events came: watermarks rule
                self._since.pop(key, None)
                return time
            if time.caught_up:  # vacuously, with no partition known
                since, was_known = self._since.get(key, (now_ms, known))
                if was_known != known:
                    since = now_ms
                self._since[key] = (since, known)
                if now_ms - since >= idle_ms:
                    return time
            else:  # behind: the clock starts when caught up
                self._since.pop(key, None)
        return replace(time, watermark_ms=None, held=True, idle=False)

    def empty_since(self, model: str, role: str) -> int | None:
        """When the stream was first seen caught up and empty (None: it is not)."""
        with self._lock:
            entry = self._since.get((model, role))
        return None if entry is None else entry[0]
