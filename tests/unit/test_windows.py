"""Tumbling event-time windows and allowed lateness against a given watermark."""

from __future__ import annotations

import numpy as np
from watchkeeper.daemon.eventtime.windows import WindowKey, WindowState
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys

MIN = 60_000


def batch(ts_min: list[float], versions: list[str] | None = None) -> ColumnBatch:
    n = len(ts_min)
    ts = (np.array(ts_min) * MIN).astype(np.int64)
    return ColumnBatch(
        model="m",
        role="predictions",
        ts_ms=ts,
        versions=np.array(versions or ["1"] * n, dtype=object),
        keys=record_keys(0, 0, np.arange(n)),
        features={
            "x": Column("numeric", np.arange(n, dtype=float), np.zeros(n, bool), np.zeros(n, bool))
        },
    )


def test_events_land_in_their_tumbling_window_per_version() -> None:
    state = WindowState(size_s=300, allowed_lateness_s=600)
    state.add(batch([0, 4.99, 5, 9, 12], ["1", "1", "1", "2", "1"]))
    delta = state.drain()
    counts = {k: w.count for k, w in delta.windows.items()}
    assert counts == {
        WindowKey("m", "1", 0): 2,
        WindowKey("m", "1", 5 * MIN): 1,
        WindowKey("m", "2", 5 * MIN): 1,
        WindowKey("m", "1", 10 * MIN): 1,
    }
    assert delta.events == 5
    assert state.pending_events == 0 and state.open_windows == 0


def test_late_events_within_allowed_lateness_are_kept_later_ones_dropped() -> None:
    state = WindowState(size_s=300, allowed_lateness_s=600)
    assert state.add(batch([29])) == 0  # no watermark yet: nothing is late
    late = state.add(batch([16, 14.9, 20]), 29 * MIN)  # [15,20) closes at 20+10=30: open
    assert late == 1  # 14.9 is in [10,15), closed at 15+10=25 ≤ 29
    delta = state.drain()
    assert delta.late == {WindowKey("m", "1", 10 * MIN): 1}
    assert delta.windows[WindowKey("m", "1", 15 * MIN)].count == 1
    assert delta.events == 4
    assert state.add(batch([19.9]), 30 * MIN) == 1  # at 30, [15,20) is closed


def test_failed_flush_is_restored_and_discard_forgets() -> None:
    state = WindowState(size_s=300, allowed_lateness_s=0)
    state.add(batch([1, 2]))
    state.drain()
    state.add(batch([3]))
    failed = state.drain()
    state.add(batch([4]))
    state.restore(failed)
    again = state.drain()
    assert again.windows[WindowKey("m", "1", 0)].count == 2 and again.events == 2
    state.add(batch([100]))
    state.discard()
    assert state.pending_events == 0 and state.drain().events == 0


def test_late_events_are_neither_joined_nor_sampled() -> None:
    """A late prediction is not in its window: grading its label there would make the
    window's accuracy describe other events than its drift does."""
    from watchkeeper.daemon.eventtime.windows import on_time
    from watchkeeper.daemon.store.label_join import JoinBuffer

    state = WindowState(size_s=300, allowed_lateness_s=0)
    b = batch([1, 20, 21])
    b.request_ids = np.array(["old", "a", "b"], dtype=object)
    b.prediction = Column(
        "numeric", np.array([0.1, 0.7, 0.9]), np.zeros(3, bool), np.zeros(3, bool)
    )
    late = state.summarise(b, 20 * MIN)
    assert late.tolist() == [True, False, False]
    joins = JoinBuffer()
    joins.add(on_time(b, late), 300_000)
    assert [p["request_id"] for p in joins.predictions] == ["a", "b"]
    assert [p["score"] for p in joins.predictions] == [0.7, 0.9]
