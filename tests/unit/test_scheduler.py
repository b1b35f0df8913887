"""Scheduling: a slow policy check delays neither the others nor itself piles up."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from watchkeeper.daemon.checks.checker import CheckResult
from watchkeeper.daemon.checks.scheduler import PolicyScheduler
from watchkeeper.daemon.checks.stepping import StepResult


class TimingChecker:
    """Stands in for the store-backed stepper: counts each policy's polls; the ``slow``
    policy's check holds until the test releases it (an event, not a sleep)."""

    def __init__(self) -> None:
        self.engines: dict[str, Any] = {}
        self.incidents = None
        self.checker = self
        self.runs: dict[str, list[float]] = {}
        self.running: dict[str, int] = {}
        self.overlap = False
        self.polled = threading.Condition()
        self.release_slow = threading.Event()

    def forget(self, key: str) -> None:
        pass

    def step(self, loaded: Any) -> StepResult:
        key = loaded.policy.key
        with self.polled:
            self.runs.setdefault(key, []).append(time.monotonic())
            self.running[key] = self.running.get(key, 0) + 1
            self.overlap |= self.running[key] > 1
            self.polled.notify_all()
        if key == "slow":
            self.release_slow.wait(60)
        with self.polled:
            self.running[key] -= 1
        return StepResult([CheckResult(0, [], [], 0)])

    def wait_for(self, key: str, polls: int, timeout: float = 30.0) -> None:
        """Until ``key`` was polled ``polls`` times (a counter, not a timer)."""
        with self.polled:
            done = self.polled.wait_for(lambda: len(self.runs.get(key, [])) >= polls, timeout)
        assert done, f"{key} polled {len(self.runs.get(key, []))} times, not {polls}"


def test_a_slow_check_blocks_neither_other_policies_nor_stacks_up(tmp_path: Path) -> None:
    for name in ("slow", "fast"):
        (tmp_path / f"{name}.yaml").write_text(
            f"model: {name}\nschedule: {{every: 1s}}\nrules: [{{metric: psi, critical: 1}}]\n"
        )
    checker = TimingChecker()
    scheduler = PolicyScheduler(
        checker,  # type: ignore[arg-type]
        [str(tmp_path)],
        CollectorRegistry(),
        None,
        300.0,
        reload_interval_s=0.2,
        poll_interval_s=0.2,
        workers=2,
    )
    scheduler.start()
    try:
        checker.wait_for("slow", 1)
        # while the slow check runs, the fast policy keeps being polled ...
        checker.wait_for("fast", 5)
        # ... and the slow one's due polls are coalesced, never run beside it
        assert len(checker.runs["slow"]) == 1
        checker.release_slow.set()
        checker.wait_for("slow", 2)  # once it returns, it is polled again
    finally:
        checker.release_slow.set()
        scheduler.close()
    assert not checker.overlap


def test_polls_at_once_on_start_then_every_poll_interval(tmp_path: Path) -> None:
    """Ticks missed while the daemon was down are the stepper's to find: the scheduler
    polls each policy at once on start, then every poll interval (never slower than its
    schedule), and the stepper decides which ticks are due."""
    (tmp_path / "p.yaml").write_text(
        "model: p\nschedule: {every: 1h}\nrules: [{metric: psi, critical: 1}]\n"
    )
    checker = TimingChecker()
    scheduler = PolicyScheduler(
        checker,  # type: ignore[arg-type]
        [str(tmp_path)],
        CollectorRegistry(),
        None,
        300.0,
        reload_interval_s=0.2,
        poll_interval_s=0.3,
    )
    scheduler.start()
    try:
        checker.wait_for("p", 3)
    finally:
        scheduler.close()
    runs = checker.runs["p"]
    assert len(runs) >= 3
    assert scheduler.status.last_runs["p"]["ticks"] == 1
