"""Stepping a policy through its ticks on a real (SQLite) store, with an injected clock:
each ready tick once and in order, capped per step, continued after a restart; the idle
rule; empty stretches crossed at once; historical notifications recorded, not sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.checks.stepping import PolicyStepper, StepSettings
from watchkeeper.daemon.eventtime.watermarks import ClockSettings, Mark, PartitionStatus
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.notify.router import notification
from watchkeeper.daemon.store.store import Store
from watchkeeper.policies.loader import load_policy

from tests.support import drained, role_rows

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY  # a midnight, weeks before NOW
NOW = T0 + 40 * DAY
POLICY = """\
model: m
window: 1h
schedule: {every: 1h}
min_samples: 10
rules:
  - {name: rate, metric: throughput_eps, critical: 1000, actions: {critical: [console]}}
  - {name: too-fast, metric: throughput_eps, critical: 0.001, actions: {critical: [console]}}
"""


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.ms = now_ms

    def __call__(self) -> float:
        return self.ms / 1000


def fill(store: Store, hours: int, caught_up: bool, now_ms: int) -> None:
    """60 events per hour for ``hours`` hours from T0, committed as the ingestor would."""
    ts = T0 + np.arange(hours * 60, dtype=np.int64) * MIN
    delta = drained(now_ms, role_rows("predictions", ts))
    delta.marks = {("preds", 0, "m"): Mark(int(ts.max()), now_ms)}
    end = int(ts.size)
    delta.partitions = {
        ("preds", 0): PartitionStatus("predictions", end if caught_up else end - 1, end)
    }
    store.commit("g", delta, {("preds", 0): end})


def heartbeat(store: Store, now_ms: int) -> None:
    """What the ingestor commits with nothing new: the partition status, refreshed."""
    delta = WindowState(300, 600).drain()
    delta.now_ms = now_ms
    ((status, _, _),) = store.partition_statuses("g").values()
    delta.partitions = {("preds", 0): status}
    store.commit("g", delta, {})


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    (tmp_path / "p.yaml").write_text(POLICY)
    loaded = load_policy(tmp_path / "p.yaml")
    clock = Clock(NOW)
    yield store, loaded, clock
    store.close()


def stepper(store: Store, clock: Clock, max_ticks: int = 4) -> PolicyStepper:
    incidents = IncidentStore(store.engine)

    def plan(event, policy):  # type: ignore[no-untyped-def]
        return [("console", notification(event, policy, None))]

    checker = Checker(store, incidents, 300, plan, clock=clock, max_age_s=86_400)
    settings = StepSettings(
        size_ms=5 * MIN,
        lateness_ms=10 * MIN,
        label_ttl_ms=DAY,
        clocks=ClockSettings({"preds": "predictions"}, idle_ms=MIN, stale_ms=10 * MIN),
        group_id="g",
        max_ticks=max_ticks,
        budget_s=60,
    )
    return PolicyStepper(checker, store, settings, CollectorRegistry(), clock)


def ticks_of(store: Store) -> list[int]:
    rows = IncidentStore(store.engine).evaluations(rule="rate", limit=10_000)
    return sorted(r["at_ms"] for r in rows)


def test_ready_ticks_run_once_in_order_capped_per_step_and_continue_after_a_restart(
    setup,  # type: ignore[no-untyped-def]
) -> None:
    store, loaded, clock = setup
    fill(store, hours=10, caught_up=False, now_ms=NOW)
    first = stepper(store, clock)
    # the watermark is 9h59 (the last event), so windows end ≤ 9h49 are final: ticks 1h…9h
    assert len(first.step(loaded).results) == 4  # the cap
    assert first.progress["m"].due == 5
    assert len(first.step(loaded).results) == 4
    restarted = stepper(store, clock)  # a new process: continues after the stored tick
    assert len(restarted.step(loaded).results) == 1
    assert restarted.step(loaded).results == []  # nothing more until the watermark moves
    assert ticks_of(store) == [T0 + h * HOUR for h in range(1, 10)]
    assert restarted.progress["m"].mode == "event time"


def test_the_idle_rule_ends_a_backfill_and_empty_stretches_are_crossed_at_once(
    setup,  # type: ignore[no-untyped-def]
) -> None:
    store, loaded, clock = setup
    fill(store, hours=10, caught_up=True, now_ms=NOW)
    s = stepper(store, clock, max_ticks=1000)
    assert len(s.step(loaded).results) == 9  # before the idle timeout: event time only
    clock.ms += MIN  # the partition has been caught up and quiet for idle_timeout
    heartbeat(store, clock.ms)  # the partition's owner refreshes its status
    result = s.step(loaded)
    # tick 10h reads the last hour, 11h reads nothing ("no data" opens), then the 39 days
    # of empty ticks up to now are crossed without an evaluation each
    assert [r.at_ms for r in result.results] == [T0 + 10 * HOUR, T0 + 11 * HOUR]
    assert result.skipped_to_ms == clock.ms
    assert s.progress["m"].mode == "idle"
    assert IncidentStore(store.engine).cursor("m") == clock.ms
    opened = IncidentStore(store.engine).incidents("open")
    assert {i["feature"] for i in opened} >= {"__no_data__"}
    assert all(i["opened_ms"] < NOW - DAY for i in opened)  # stamped in event time
    # every notification was about a window over alerts.max_age old: recorded, not sent
    states = {r["state"] for r in Outbox(store.engine).rows()}
    assert states == {"historical"}


def test_a_live_stream_runs_its_ticks_on_the_wall_clock(setup) -> None:  # type: ignore[no-untyped-def]
    store, loaded, clock = setup
    clock.ms = T0 + 10 * HOUR + 30_000  # half a minute after the last event: current
    fill(store, hours=10, caught_up=True, now_ms=clock.ms)
    s = stepper(store, clock, max_ticks=1000)
    result = s.step(loaded)
    # live: tick 10h runs now, without waiting 10 minutes of allowed lateness
    assert result.results[-1].at_ms == T0 + 10 * HOUR
    assert s.progress["m"].mode == "live"
    assert {r["state"] for r in Outbox(store.engine).rows()} <= {"pending"}
