"""An empty labels stream is "not yet", never "no constraint" (trial findings F3/F4), on a
real (SQLite) store with an injected clock: the ticks of a policy with a performance rule
and the A/B fold wait for the labels stream's first label, or until it has been caught up
and empty for ``idle_timeout``; then idle, as any idle stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.checks.stepping import (
    HELD_MS,
    PolicyStepper,
    StepSettings,
    labels_watermark,
    read_policy_clock,
)
from watchkeeper.daemon.eventtime.empty_streams import EmptyStreams
from watchkeeper.daemon.eventtime.watermarks import (
    ClockSettings,
    Mark,
    PartitionStatus,
    StreamTime,
)
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey, WindowState
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.router import notification
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.schema import Policy

from tests.support import drained, role_rows

MIN = 60_000
HOUR = 60 * MIN
SIZE = 5 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (24 * HOUR)
NOW = T0 + 3 * HOUR  # a two-hour predictions backlog, read at once
IDLE = MIN
SETTINGS = StepSettings(
    size_ms=SIZE,
    lateness_ms=10 * MIN,
    label_ttl_ms=HOUR,
    clocks=ClockSettings({"preds": "predictions", "labs": "labels"}, idle_ms=IDLE, stale_ms=HOUR),
    group_id="g",
    max_ticks=1000,
    budget_s=60,
)
POLICY = """\
model: m
window: 1h
schedule: {every: 1h}
min_samples: 10
rules:
  - {name: acc, metric: accuracy, critical: 0.5, actions: {critical: [console]}}
"""


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.ms = now_ms

    def __call__(self) -> float:
        return self.ms / 1000


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


def predictions(store: Store, now_ms: int, hours: int = 2) -> None:
    """A predictions backlog from T0, read to its end; the labels topic empty, read to
    its end (position 0 of 0): what the ingestor commits in the trial's first seconds."""
    ts = T0 + np.arange(hours * 60, dtype=np.int64) * MIN
    delta = drained(now_ms, role_rows("predictions", ts))
    delta.marks = {("preds", 0, "m"): Mark(int(ts.max()), now_ms)}
    delta.partitions = {
        ("preds", 0): PartitionStatus("predictions", int(ts.size), int(ts.size)),
        ("labs", 0): PartitionStatus("labels", 0, 0),
    }
    store.commit("g", delta, {("preds", 0): int(ts.size)})


def refresh(store: Store, now_ms: int, labels_ms: int | None = None, labels: int = 0) -> None:
    """The owners' status refresh; ``labels_ms``: labels up to then were read meanwhile."""
    delta = WindowState(300, 600).drain()
    delta.now_ms = now_ms
    statuses = {k: v[0] for k, v in store.partition_statuses("g").items()}
    if labels_ms is not None:
        delta.marks = {("labs", 0, "m"): Mark(labels_ms, now_ms)}
        statuses[("labs", 0)] = PartitionStatus("labels", labels, labels)
    delta.partitions = statuses
    store.commit("g", delta, {})


def test_a_stream_with_none_of_the_models_events_is_held_until_empty_for_the_idle_timeout() -> None:
    empty = EmptyStreams()
    nothing = StreamTime(None, False, True, True, None, partitions=2)
    assert empty.settle("m", "labels", nothing, 0, IDLE).held
    assert not empty.settle("m", "labels", nothing, IDLE - 1, IDLE).idle
    assert empty.settle("m", "labels", nothing, IDLE, IDLE).idle  # idle, as today
    # behind again (records arrived, not read yet): the timeout starts over when caught up
    behind = StreamTime(None, True, False, False, None, partitions=2)
    assert empty.settle("m", "labels", behind, 2 * IDLE, IDLE).held
    assert empty.settle("m", "labels", nothing, 2 * IDLE, IDLE).held
    assert empty.settle("m", "labels", nothing, 3 * IDLE, IDLE).idle
    # no partition known yet (just started, or the topic missing): timed the same way,
    # the clock restarting when the partitions appear — delayed, never stopped
    unknown = StreamTime(None, False, True, True, None, partitions=0)
    assert empty.settle("n", "labels", unknown, 10 * IDLE, IDLE).held
    assert empty.empty_since("n", "labels") == 10 * IDLE
    assert empty.settle("n", "labels", nothing, 10 * IDLE + 1, IDLE).held
    assert empty.settle("n", "labels", nothing, 11 * IDLE, IDLE).held  # restarted at +1
    assert empty.settle("n", "labels", nothing, 11 * IDLE + 1, IDLE).idle
    assert empty.settle("o", "labels", unknown, 0, IDLE).held
    assert empty.settle("o", "labels", unknown, IDLE, IDLE).idle
    # a stream that carried the model is left to the watermark rules
    carried = StreamTime(None, False, True, True, 5_000, partitions=2)
    assert empty.settle("m", "labels", carried, 0, IDLE) == carried
    assert empty.empty_since("m", "labels") is None


def test_an_empty_labels_topic_holds_the_ticks_of_a_performance_policy(
    store: Store, tmp_path: Path
) -> None:
    predictions(store, NOW)
    (tmp_path / "p.yaml").write_text(POLICY)
    policy = load_policy(tmp_path / "p.yaml").policy
    empty = EmptyStreams()
    clock = read_policy_clock(store, SETTINGS, policy, NOW, empty)
    # before the fix the empty labels partition was quiet at once: "idle", every tick ready
    assert (clock.mode, clock.closed_ms, clock.ready_until(SIZE, NOW)) == ("event time", None, None)
    assert "no labels yet" in clock.reason
    later = NOW + IDLE - 1
    refresh(store, later)
    assert read_policy_clock(store, SETTINGS, policy, later, empty).ready_until(SIZE, later) is None
    # caught up and empty for idle_timeout: idle, as any idle stream (what is stored is
    # all there is)
    idle_at = NOW + IDLE
    refresh(store, idle_at)
    assert read_policy_clock(store, SETTINGS, policy, idle_at, empty).mode == "idle"


def test_labels_that_come_before_the_idle_timeout_gate_the_ticks_by_their_watermark(
    store: Store, tmp_path: Path
) -> None:
    predictions(store, NOW)
    (tmp_path / "p.yaml").write_text(POLICY)
    loaded = load_policy(tmp_path / "p.yaml")
    clock = Clock(NOW)
    checker = Checker(
        store,
        IncidentStore(store.engine),
        300,
        lambda event, policy: [("console", notification(event, policy, None))],
        clock=clock,
        max_age_s=86_400,
    )
    stepper = PolicyStepper(checker, store, SETTINGS, CollectorRegistry(), clock)
    assert stepper.step(loaded).results == []  # before the fix: ticks 1h, 2h at once
    assert stepper.progress["m"].due == 0
    # 20 s later the labels arrive, up to 2h15 of event time (labels come after)
    clock.ms = NOW + 20_000
    refresh(store, clock.ms, labels_ms=T0 + 2 * HOUR + 15 * MIN, labels=100)
    # a tick is final for labels past E + lateness + label_ttl: 1h (needs 2h10), not 2h (3h10)
    assert [r.at_ms for r in stepper.step(loaded).results] == [T0 + HOUR]
    assert stepper.progress["m"].mode == "event time"


def test_labels_watermark_is_held_while_the_labels_stream_is_empty_then_no_cap_once_idle(
    store: Store,
) -> None:
    predictions(store, NOW)
    empty = EmptyStreams()
    assert labels_watermark(store, SETTINGS, "m", NOW, empty) == HELD_MS
    assert labels_watermark(store, SETTINGS, "m", NOW + IDLE - 1, empty) == HELD_MS
    refresh(store, NOW + IDLE)
    assert labels_watermark(store, SETTINGS, "m", NOW + IDLE, empty) is None  # idle
    refresh(store, NOW + IDLE + 1, labels_ms=T0 + HOUR, labels=5)
    assert labels_watermark(store, SETTINGS, "m", NOW + IDLE + 1, empty) == T0 + HOUR


def classified(version: str, start: int, n: int) -> WindowSummary:
    rng = np.random.default_rng(abs(hash((version, start))) % 2**32)
    w = WindowSummary("m", version, start, SIZE)
    w.events = {"predictions": n}
    w.first_ts_ms, w.last_ts_ms = start, start + SIZE - 1
    w.performance = PerformanceSketch("classification")
    labels = rng.integers(0, 2, n).astype(str)
    w.performance.update_classification(labels.tolist(), labels.tolist())
    return w


def ab_policy() -> Policy:
    return Policy.model_validate(
        {
            "model": "m",
            "window": "1h",
            "compare": {"baseline": "1", "candidate": "2"},
            "rules": [{"metric": "ab_accuracy_delta", "critical": -0.01}],
        }
    )


def test_the_ab_fold_folds_nothing_before_the_labels_stream_has_a_watermark(
    store: Store,
) -> None:
    predictions(store, NOW)
    windows = [classified(v, T0 + i * SIZE, 50) for i in range(24) for v in ("1", "2")]
    store.commit(
        "g", Delta(SIZE, {WindowKey(w.model, w.version, w.start_ms): w for w in windows}), {}
    )
    clock = Clock(NOW)
    empty = EmptyStreams()
    checks = ABChecks(
        store,
        SIZE,
        settle_s=0,
        clock=clock,
        labels_until=lambda model, now_ms: labels_watermark(store, SETTINGS, model, now_ms, empty),
    )
    policy = ab_policy()
    tick = T0 + 2 * HOUR
    checks.findings(policy, tick - HOUR, tick)
    state = ABStore(store.engine).load(policy.key, "1", "2")
    assert state is not None
    # before the fix: folded to tick − settle (1h55) with no label read
    assert state.folded_until_ms == state.since_ms == T0
    # the labels stream caught up and empty for idle_timeout: idle, fold at tick − settle
    clock.ms = NOW + IDLE
    refresh(store, clock.ms)
    checks.findings(policy, tick - HOUR, tick)
    state = ABStore(store.engine).load(policy.key, "1", "2")
    assert state is not None
    assert state.folded_until_ms == tick - SIZE  # settle: 0 wait + 0 lateness + a window


def test_the_ab_fold_stops_at_the_labels_watermark_once_labels_come(store: Store) -> None:
    predictions(store, NOW)
    windows = [classified(v, T0 + i * SIZE, 50) for i in range(24) for v in ("1", "2")]
    store.commit(
        "g", Delta(SIZE, {WindowKey(w.model, w.version, w.start_ms): w for w in windows}), {}
    )
    clock = Clock(NOW + 20_000)
    refresh(store, clock.ms, labels_ms=T0 + HOUR + 2 * MIN, labels=10)
    empty = EmptyStreams()
    checks = ABChecks(
        store,
        SIZE,
        settle_s=0,
        clock=clock,
        labels_until=lambda model, now_ms: labels_watermark(store, SETTINGS, model, now_ms, empty),
    )
    policy = ab_policy()
    checks.findings(policy, T0 + HOUR, T0 + 2 * HOUR)
    state = ABStore(store.engine).load(policy.key, "1", "2")
    assert state is not None
    # labels read to 1h02: minus a window's settle, rounded down to the window grid
    assert state.folded_until_ms == T0 + 55 * MIN


def test_labels_are_not_a_model_version(store: Store) -> None:
    """F11: the labels' windows (version "") are no version in ``ab_versions``."""
    w = WindowSummary("m", "", T0, SIZE)
    w.events = {"labels": 30}
    v = classified("1", T0, 40)
    store.commit("g", Delta(SIZE, {WindowKey("m", x.version, T0): x for x in (w, v)}), {})
    seen = ABStore(store.engine).first_seen("m")
    assert set(seen) == {"1"}
    with store.engine.connect() as conn:
        from sqlalchemy import select
        from watchkeeper.daemon.store import tables as t

        rows = conn.execute(select(t.ab_versions.c.version)).scalars().all()
    assert rows == ["1"]


def test_labels_later_than_the_idle_timeout_leave_the_ticks_run_meanwhile_as_stored(
    store: Store, tmp_path: Path
) -> None:
    """What README "Event time" says: once idle, the ticks run on what had arrived (no
    label: insufficient_data) and are never re-evaluated; the labels that come then gate
    the following ticks by their watermark again."""
    predictions(store, NOW, hours=3)
    (tmp_path / "p.yaml").write_text(POLICY)
    loaded = load_policy(tmp_path / "p.yaml")
    clock = Clock(NOW)
    checker = Checker(
        store,
        IncidentStore(store.engine),
        300,
        lambda event, policy: [("console", notification(event, policy, None))],
        clock=clock,
        max_age_s=86_400,
    )
    stepper = PolicyStepper(checker, store, SETTINGS, CollectorRegistry(), clock)
    assert stepper.step(loaded).results == []
    clock.ms = NOW + IDLE
    refresh(store, clock.ms)  # caught up and empty for idle_timeout: idle
    ran = stepper.step(loaded).results
    assert [r.at_ms for r in ran][:3] == [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]
    assert {e.reason for r in ran for e in r.evaluations} == {
        "0 labelled predictions < min_samples 10"
    }
    # the labels come later; the ticks already run stay as stored, nothing re-runs them
    clock.ms += 2 * HOUR
    refresh(store, clock.ms, labels_ms=T0 + 3 * HOUR, labels=50)
    stored = IncidentStore(store.engine).evaluations("m", "acc", None, 100)
    assert stepper.step(loaded).results == []  # the next tick waits for the labels
    assert IncidentStore(store.engine).evaluations("m", "acc", None, 100) == stored
    assert stepper.progress["m"].mode == "event time"
