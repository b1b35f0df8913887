"""Event time per partition: the min-over-partitions watermark, idleness, resumption.

The property tests replay random interleavings of partitions through the real window
state and partition clocks, and compare every late decision with an independent
computation of the rule: an event is late exactly when every partition of its stream has
shown events of its model before it, and the smallest of their largest event times so
far (its own partition's including the records just before it, in whatever batch) has
passed its window's end plus the allowed lateness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.eventtime.watermarks import (
    LocalClocks,
    Mark,
    PartitionClock,
    expiry_watermark,
    stream_time,
)
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.detectors.column_batch import ColumnBatch
from watchkeeper.detectors.reservoir import record_keys

MIN = 60_000
SIZE_S, LATENESS_S = 300, 600
SIZE, LATENESS = SIZE_S * 1000, LATENESS_S * 1000
TOPIC = "preds"


def batch(model: str, ts_min: list[int], role: str = "predictions") -> ColumnBatch:
    n = len(ts_min)
    return ColumnBatch(
        model=model,
        role=role,
        ts_ms=np.asarray(ts_min, dtype=np.int64) * MIN,
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(0, 0, np.arange(n)),
    )


@dataclass
class Run:
    late: list[int]
    """Per step, the events found late."""
    stored: int


def replay(
    partitions: int, steps: list[tuple[int, str, list[int]]], now_ms: int = 0
) -> tuple[Run, LocalClocks, WindowState]:
    """Feed (partition, model, event minutes) batches in order, as the ingestion loop does."""
    clocks = LocalClocks({TOPIC: "predictions"}, idle_ms=60_000)
    for p in range(partitions):
        clocks.assign((TOPIC, p), {})
    state = WindowState(SIZE_S, LATENESS_S)
    late = []
    for p, model, ts in steps:
        b = batch(model, ts)
        marks = clocks.event_watermarks((TOPIC, p), model, "predictions", b.ts_ms, now_ms)
        late.append(state.add(b, marks))
        clocks.observe((TOPIC, p), model, int(b.ts_ms.max()), now_ms)
    delta = state.drain()
    stored = sum(w.count for w in delta.windows.values())
    assert stored + sum(delta.late.values()) == sum(len(ts) for _, _, ts in steps)
    return Run(late, stored), clocks, state


def oracle(partitions: int, steps: list[tuple[int, str, list[int]]]) -> list[int]:
    """Late events per step by the rule itself, computed from scratch for every event."""
    out = []
    for k, (p, model, ts) in enumerate(steps):
        highest: dict[int, int] = {}
        for q, m, earlier in steps[:k]:
            if m == model:
                highest[q] = max(highest.get(q, -(10**9)), max(earlier))
        late = 0
        for j, t in enumerate(ts):
            seen = dict(highest)
            if j:  # the records just before it in its own batch count too
                seen[p] = max(seen.get(p, -(10**9)), max(ts[:j]))
            if len(seen) < partitions:  # a partition has shown none of the model yet
                continue
            watermark = min(seen.values()) * MIN
            late += (t * MIN - t * MIN % SIZE) + SIZE + LATENESS <= watermark
        out.append(late)
    return out


sequences = st.lists(
    st.lists(st.lists(st.integers(0, 240), min_size=1, max_size=5), min_size=1, max_size=6),
    min_size=1,
    max_size=4,
)


def interleave(data: st.DataObject, per_partition: list[list[list[int]]], models: bool) -> list:
    """A random interleaving of the partitions' batches, each partition in its own order."""
    cursors = [0] * len(per_partition)
    steps = []
    while any(c < len(b) for c, b in zip(cursors, per_partition, strict=True)):
        open_ = [p for p, b in enumerate(per_partition) if cursors[p] < len(b)]
        p = data.draw(st.sampled_from(open_))
        model = data.draw(st.sampled_from(["a", "b"])) if models else "a"
        steps.append((p, model, per_partition[p][cursors[p]]))
        cursors[p] += 1
    return steps


@settings(max_examples=200, deadline=None)
@given(per_partition=sequences, data=st.data(), models=st.booleans())
def test_every_interleaving_drops_exactly_what_the_min_over_partitions_rule_calls_late(
    per_partition: list[list[list[int]]], data: st.DataObject, models: bool
) -> None:
    steps = interleave(data, per_partition, models)
    run, _, _ = replay(len(per_partition), steps)
    assert run.late == oracle(len(per_partition), steps)


@settings(max_examples=200, deadline=None)
@given(per_partition=sequences, data=st.data(), models=st.booleans())
def test_partitions_in_order_within_the_lateness_lose_nothing_whatever_the_interleaving(
    per_partition: list[list[list[int]]], data: st.DataObject, models: bool
) -> None:
    """A backfill: each partition in event-time order (here: sorted), read at any speed
    relative to the others. Nothing is late, however far one partition runs ahead."""
    flat = sorted(t for batches in per_partition for b in batches for t in b)
    # each partition's events sorted, split into its batches as drawn
    ordered = []
    for batches in per_partition:
        times = sorted(t for b in batches for t in b)
        it = iter(times)
        ordered.append([[next(it) for _ in b] for b in batches])
    steps = interleave(data, ordered, models)
    run, _, _ = replay(len(per_partition), steps)
    assert sum(run.late) == 0 and run.stored == len(flat)


def test_a_fast_partition_does_not_make_a_slow_ones_events_late() -> None:
    # partition 0 backfilled to day 3 before partition 1 delivers its day 1
    steps = [(0, "a", [0, 60]), (0, "a", [4000]), (1, "a", [10, 70]), (1, "a", [4001])]
    run, _, _ = replay(2, steps)
    assert run.late == [0, 0, 0, 0]
    # once both are past, an event out of order by more than the lateness is late
    steps.append((1, "a", [100]))
    run, _, _ = replay(2, steps)
    assert run.late[-1] == 1


def test_several_models_in_one_partition_keep_their_own_event_time() -> None:
    # a team backfills model a's whole history, then b's, into the same partition
    steps = [(0, "a", list(range(0, 6000, 100))), (0, "b", [5, 50, 500])]
    run, clocks, _ = replay(1, steps)
    assert run.late == [0, 0]
    assert clocks.watermark("a", "predictions", 0) == 5900 * MIN
    assert clocks.watermark("b", "predictions", 0) == 500 * MIN


def test_a_partition_that_has_shown_nothing_holds_the_stream_until_it_is_caught_up() -> None:
    clocks = LocalClocks({TOPIC: "predictions"}, idle_ms=60_000)
    clocks.assign((TOPIC, 0), {})
    clocks.assign((TOPIC, 1), {})
    clocks.observe((TOPIC, 0), "a", 1000 * MIN, 0)
    assert clocks.watermark("a", "predictions", 0) is None  # partition 1 may hold older a
    clocks.set_caught_up((TOPIC, 1), True)  # read to its end: none of a there
    assert clocks.watermark("a", "predictions", 0) == 1000 * MIN


def test_an_idle_partition_stops_holding_windows_open_only_when_caught_up() -> None:
    """Idleness runs on the injected wall clock; a lagging (or paused) partition is never
    idle, however long it has been quiet (Flink's FLIP-471)."""
    clocks = LocalClocks({TOPIC: "predictions"}, idle_ms=60_000)
    for p in (0, 1):
        clocks.assign((TOPIC, p), {})
    clocks.observe((TOPIC, 0), "a", 500 * MIN, now_ms=0)
    clocks.observe((TOPIC, 1), "a", 100 * MIN, now_ms=0)
    assert clocks.watermark("a", "predictions", 10**9) == 100 * MIN  # behind: never idle
    clocks.set_caught_up((TOPIC, 1), True)
    assert clocks.watermark("a", "predictions", 59_999) == 100 * MIN  # not yet
    assert clocks.watermark("a", "predictions", 60_000) == 500 * MIN  # quiet for a minute
    clocks.observe((TOPIC, 1), "a", 101 * MIN, now_ms=70_000)  # active again
    assert clocks.watermark("a", "predictions", 70_000) == 101 * MIN
    t = stream_time(clocks.clocks(), "a", "predictions", 70_000, 60_000)
    assert not t.idle and t.newest_ms == 500 * MIN


def test_after_a_rebalance_a_partition_resumes_from_its_stored_watermark() -> None:
    clocks = LocalClocks({TOPIC: "predictions"}, idle_ms=60_000)
    clocks.assign((TOPIC, 0), {})
    clocks.observe((TOPIC, 0), "a", 100 * MIN, 0)
    stored = clocks.pending()
    clocks.committed(stored)
    assert clocks.pending() == {}
    clocks.observe((TOPIC, 0), "a", 300 * MIN, 0)  # read, not committed
    clocks.discard()  # revoked while the store was away: rewind
    assert clocks.marks((TOPIC, 0)) == {"a": Mark(100 * MIN, 0)}
    # another replica takes the partition over, from what was committed
    other = LocalClocks({TOPIC: "predictions"}, idle_ms=60_000)
    other.assign((TOPIC, 0), {"a": stored[(TOPIC, 0, "a")]})
    state = WindowState(SIZE_S, LATENESS_S)
    assert state.add(batch("a", [92]), other.watermark("a", "predictions", 0)) == 0
    assert state.add(batch("a", [80]), other.watermark("a", "predictions", 0)) == 1


def test_other_replicas_partitions_count_as_last_committed() -> None:
    clocks = LocalClocks({TOPIC: "predictions"}, idle_ms=60_000)
    clocks.assign((TOPIC, 0), {})
    clocks.observe((TOPIC, 0), "a", 900 * MIN, 0)
    remote = PartitionClock("predictions", False, {"a": Mark(200 * MIN, 0)})
    clocks.set_remote({(TOPIC, 1): remote, (TOPIC, 0): remote})  # ours stays ours
    assert clocks.watermark("a", "predictions", 0) == 200 * MIN


def test_labels_far_behind_predictions_keep_their_own_watermark() -> None:
    clocks = LocalClocks({TOPIC: "predictions", "labels": "labels"}, idle_ms=60_000)
    clocks.assign((TOPIC, 0), {})
    clocks.assign(("labels", 0), {})
    clocks.observe((TOPIC, 0), "a", 9000 * MIN, 0)
    clocks.observe(("labels", 0), "a", 10 * MIN, 0)
    assert clocks.watermark("a", "predictions", 0) == 9000 * MIN
    assert clocks.watermark("a", "labels", 0) == 10 * MIN
    state = WindowState(SIZE_S, LATENESS_S)
    labels = batch("a", [12], role="labels")
    assert state.add(labels, clocks.watermark("a", "labels", 0)) == 0


def test_expiry_runs_on_the_slowest_partition_of_the_partner_stream() -> None:
    behind = PartitionClock("labels", False)
    ahead = PartitionClock("labels", True, {"a": Mark(5000, 0)})
    assert expiry_watermark([ahead, behind], "a", "labels") is None  # labels still coming
    slow = PartitionClock("labels", False, {"a": Mark(700, 0)})
    assert expiry_watermark([ahead, slow], "a", "labels") == 700
    assert expiry_watermark([], "a", "labels") is None


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 600), min_size=1, max_size=40),
    cuts=st.lists(st.integers(1, 39), max_size=6),
)
def test_how_a_partitions_records_are_cut_into_batches_changes_nothing(
    times: list[int], cuts: list[int]
) -> None:
    """One partition's events, read in one batch or in several: the same events are late."""
    bounds = sorted({c for c in cuts if c < len(times)})
    pieces = [times[a:b] for a, b in zip([0, *bounds], [*bounds, len(times)], strict=True)]
    whole, _, _ = replay(1, [(0, "a", times)])
    split, _, _ = replay(1, [(0, "a", piece) for piece in pieces])
    assert sum(whole.late) == sum(split.late) == sum(oracle(1, [(0, "a", times)]))
