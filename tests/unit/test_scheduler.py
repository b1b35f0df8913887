"""Scheduling: a slow policy check delays neither the others nor itself piles up."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from watchkeeper.daemon.checks import CheckResult
from watchkeeper.daemon.scheduler import PolicyScheduler


class TimingChecker:
    """Stands in for the store-backed checker: records when each policy ran."""

    def __init__(self) -> None:
        self.engines: dict[str, Any] = {}
        self.incidents = None
        self.runs: dict[str, list[float]] = {}
        self.running: dict[str, int] = {}
        self.overlap = False
        self.lock = threading.Lock()

    def run(self, loaded: Any) -> CheckResult:
        key = loaded.policy.key
        with self.lock:
            self.runs.setdefault(key, []).append(time.monotonic())
            self.running[key] = self.running.get(key, 0) + 1
            self.overlap |= self.running[key] > 1
        if key == "slow":
            time.sleep(2.5)
        with self.lock:
            self.running[key] -= 1
        return CheckResult(0, [], [], 0)


def test_a_slow_check_blocks_neither_other_policies_nor_stacks_up(tmp_path: Path) -> None:
    for name in ("slow", "fast"):
        (tmp_path / f"{name}.yaml").write_text(
            f"model: {name}\nschedule: {{every: 1s}}\nrules: [{{metric: psi, critical: 1}}]\n"
        )
    checker = TimingChecker()
    scheduler = PolicyScheduler(
        checker,
        [str(tmp_path)],
        CollectorRegistry(),  # type: ignore[arg-type]
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


def test_runs_once_on_start_then_on_schedule(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "model: p\nschedule: {every: 1h}\nrules: [{metric: psi, critical: 1}]\n"
    )
    checker = TimingChecker()
    scheduler = PolicyScheduler(
        checker,
        [str(tmp_path)],
        CollectorRegistry(),  # type: ignore[arg-type]
        None,
        300.0,
        reload_interval_s=0.2,
    )
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while "p" not in checker.runs and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        scheduler.close()
    assert len(checker.runs["p"]) == 1  # the missed-run rule: once now, not a backlog
