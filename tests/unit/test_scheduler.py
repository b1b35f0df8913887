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
    """Stands in for the store-backed stepper: records when each policy was polled."""

    def __init__(self) -> None:
        self.engines: dict[str, Any] = {}
        self.incidents = None
        self.checker = self
        self.runs: dict[str, list[float]] = {}
        self.running: dict[str, int] = {}
        self.overlap = False
        self.lock = threading.Lock()

    def forget(self, key: str) -> None:
        pass

    def step(self, loaded: Any) -> StepResult:
        key = loaded.policy.key
        with self.lock:
            self.runs.setdefault(key, []).append(time.monotonic())
            self.running[key] = self.running.get(key, 0) + 1
            self.overlap |= self.running[key] > 1
        if key == "slow":
            time.sleep(2.5)
        with self.lock:
            self.running[key] -= 1
        return StepResult([CheckResult(0, [], [], 0)])


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
        workers=2,
    )
    scheduler.start()
    try:
        time.sleep(4.2)
    finally:
        scheduler.close()
    assert len(checker.runs["fast"]) >= 4  # once at start, then every second
    assert len(checker.runs["slow"]) <= 2  # 2.5 s runs: coalesced, never concurrent
    assert not checker.overlap
    gaps = [b - a for a, b in zip(checker.runs["fast"], checker.runs["fast"][1:], strict=False)]
    assert max(gaps) < 1.6


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
        deadline = time.monotonic() + 10
        while len(checker.runs.get("p", [])) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        scheduler.close()
    runs = checker.runs["p"]
    assert len(runs) >= 3
    assert scheduler.status.last_runs["p"]["ticks"] == 1
