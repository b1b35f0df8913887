"""Running each policy through its ticks, and reloading policy files while running.

APScheduler's background scheduler polls each policy every ``policies.poll_interval`` on
a pool of worker threads, apart from ingestion; each poll evaluates the policy's ticks
that are ready (:mod:`stepping`, :mod:`ticks`): live, a tick runs as soon as the wall
clock passes it; behind (catch-up, backfill, replay), ticks run in event time as the
watermark passes them, each once and in order. A slow check delays neither ingestion nor
another policy's check; per policy a lock lets one poll run at a time (a poll due while
one is still going returns at once; APScheduler's ``max_instances=2`` with ``coalesce``
lets it, instead of logging a skipped run every poll).

Missed ticks: the last evaluated tick is stored with its evaluations, so ticks missed
while the daemon was down are evaluated after a restart, in order, on the windows the
stream filled meanwhile — the same evaluations an uninterrupted run would have made.

Hot reload: files are re-read when their content changes (polled every
``reload_interval``), on SIGHUP and on ``POST /-/reload``. A file with errors is rejected
— its errors logged, shown on ``/api/policies`` and counted in
``watchkeeper_policy_last_reload_successful`` — and the last good version of that file
stays in force.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from watchkeeper.daemon.checks.stepping import PolicyStepper
from watchkeeper.policies.errors import SourceError
from watchkeeper.policies.loader import LoadedPolicy, load_all, policy_files

log = logging.getLogger(__name__)


@dataclass
class PolicyStatus:
    """What ``/api/policies`` shows."""

    loaded_at: float = 0.0
    ok: bool = True
    policies: dict[str, LoadedPolicy] = field(default_factory=dict)
    errors: dict[str, list[SourceError]] = field(default_factory=dict)
    last_runs: dict[str, dict[str, Any]] = field(default_factory=dict)


class PolicyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reload_ok = Gauge(
            "watchkeeper_policy_last_reload_successful",
            "1 when the last policy reload loaded every file.",
            registry=registry,
        )
        self.reload_time = Gauge(
            "watchkeeper_policy_last_reload_timestamp_seconds",
            "Unix time of the last policy reload.",
            registry=registry,
        )
        self.policies = Gauge(
            "watchkeeper_policies_loaded", "Policies in force.", registry=registry
        )
        self.checks = Counter(
            "watchkeeper_policy_checks",
            "Policy evaluations run (one per tick).",
            ["policy", "outcome"],
            registry=registry,
        )
        self.check_duration = Histogram(
            "watchkeeper_policy_check_duration_seconds",
            "Time of one policy evaluation.",
            ["policy"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )


class PolicyScheduler:
    """Schedules, runs and reloads the policies; see the module docstring."""

    def __init__(
        self,
        stepper: PolicyStepper,
        paths: list[str],
        registry: CollectorRegistry,
        channels: set[str] | None,
        window_size_s: float,
        reload_interval_s: float = 2.0,
        workers: int = 2,
        clock: Callable[[], float] = time.time,
        on_reload: Callable[[dict[str, LoadedPolicy]], None] | None = None,
        on_watch: Callable[[dict[str, LoadedPolicy]], None] | None = None,
        leading: Callable[[], bool] = lambda: True,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.stepper = stepper
        self.checker = stepper.checker
        self.poll_interval_s = poll_interval_s
        self.leading = leading
        self.on_reload = on_reload
        self.on_watch = on_watch
        """Called with the policies in force on each watch cycle (every
        ``reload_interval_s``): what else must follow files that change under the daemon."""
        self.paths = paths
        self.channels = channels
        self.window_size_s = window_size_s
        self.reload_interval_s = reload_interval_s
        self.clock = clock
        self.metrics = PolicyMetrics(registry)
        self.status = PolicyStatus()
        self._lock = threading.RLock()
        self._running: dict[str, threading.Lock] = {}
        self._fingerprint = ""
        self._stop = threading.Event()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None},
            timezone="UTC",
        )
        self._watcher = threading.Thread(target=self._watch, name="wk-policy-watch", daemon=False)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> PolicyScheduler:
        self.reload()
        self._scheduler.start()
        self._watcher.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=10)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    # -- reloading ------------------------------------------------------------------------
    def _files_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in policy_files(self.paths):
            try:
                digest.update(str(path).encode() + b"\0" + path.read_bytes())
            except OSError:
                digest.update(str(path).encode() + b"\0missing")
        return digest.hexdigest()

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_interval_s):
            try:
                if self._files_fingerprint() != self._fingerprint:
                    self.reload()
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("policy reload failed")
            if self.on_watch is not None:
                try:
                    self.on_watch(dict(self.status.policies))
                except Exception:  # nor any one failed refresh
                    log.exception("refreshing what follows the policies failed")

    def reload(self) -> PolicyStatus:
        """Re-read every policy file; keep the last good version of a file with errors."""
        with self._lock:
            self._fingerprint = self._files_fingerprint()
            result = load_all(self.paths, self.channels, self.window_size_s)
            fresh = {p.policy.key: p for p in result.policies}
            for path, errors in result.errors.items():
                for error in errors:
                    log.error("policy file rejected: %s", error)
                kept = [p for p in self.status.policies.values() if p.path == path]
                for old in kept:  # the last good version of this file stays in force
                    fresh.setdefault(old.policy.key, old)
                    log.warning(
                        "keeping the last good version of %s (policy %s)", path, old.policy.key
                    )
            removed = set(self.status.policies) - set(fresh)
            self.status.policies = fresh
            self.status.errors = result.errors
            self.status.ok = result.ok
            self.status.loaded_at = self.clock()
            self.metrics.reload_ok.set(1 if result.ok else 0)
            self.metrics.reload_time.set(self.status.loaded_at)
            self.metrics.policies.set(len(fresh))
            self._sync_jobs(removed)
            if self.on_reload is not None:
                try:
                    self.on_reload(dict(fresh))
                except Exception:  # e.g. shadow set-up: must not undo a good reload
                    log.exception("acting on the reloaded policies failed")
            return self.status

    def _sync_jobs(self, removed: set[str]) -> None:
        for key in removed:
            if self._scheduler.get_job(key) is not None:
                self._scheduler.remove_job(key)
            engine = self.checker.engines.pop(key, None)
            self.stepper.forget(key)
            self.checker.traffic.forget(key)
            # a removed policy's incidents resolve with a note (by the leader: its state)
            if engine is not None and self.leading():
                now = int(self.clock() * 1000)
                empty = engine.policy.model_copy(update={"rules": engine.policy.rules[:0]})
                events = engine.reconcile(empty, now, "the policy was removed")
                self.checker.incidents.record(key, now, [], events, engine.state_dict(), tick=False)
        for key, loaded in self.status.policies.items():
            period = loaded.policy.schedule.period_s()
            trigger: Any = IntervalTrigger(
                seconds=min(period, self.poll_interval_s), timezone="UTC"
            )
            job = self._scheduler.get_job(key)
            version = loaded.digest
            if job is not None and getattr(job, "name", "") == version:
                continue
            if job is not None:
                self._scheduler.remove_job(key)
            # poll at once (ticks missed meanwhile are due), then every poll interval
            self._scheduler.add_job(
                self.run_policy, trigger, args=[key], id=key, name=version, next_run_time=_utcnow()
            )

    # -- running --------------------------------------------------------------------------
    def run_policy(self, key: str) -> None:
        with self._lock:
            loaded = self.status.policies.get(key)
            running = self._running.setdefault(key, threading.Lock())
        if loaded is None:
            return
        if not running.acquire(blocking=False):  # this policy's previous poll still runs
            return
        try:
            self._run_policy(key, loaded)
        finally:
            running.release()

    def _run_policy(self, key: str, loaded: LoadedPolicy) -> None:
        if not self.leading():  # a standby replica: the leader runs the checks
            self.metrics.checks.labels(key, "standby").inc()
            return
        started = time.perf_counter()
        try:
            step = self.stepper.step(loaded)
        except Exception as exc:
            self.metrics.checks.labels(key, "failed").inc()
            self.status.last_runs[key] = {"at": self.clock(), "ok": False, "error": str(exc)}
            log.exception("policy %s failed to run", key)
            return
        if not step.results:
            return
        elapsed = time.perf_counter() - started
        for _ in step.results:
            self.metrics.check_duration.labels(key).observe(elapsed / len(step.results))
        self.metrics.checks.labels(key, "ok").inc(len(step.results))
        result = step.results[-1]
        self.status.last_runs[key] = {
            "at": result.at_ms / 1000,
            "ok": True,
            "events_seen": result.events_seen,
            "evaluations": len(result.evaluations),
            "incident_events": len(result.events),
            "ticks": len(step.results),
        }


def _utcnow() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def describe(
    status: PolicyStatus,
    progress: Callable[[str], dict[str, Any] | None] = lambda _: None,
    warnings: Callable[[str], list[str]] = lambda _: [],
) -> dict[str, Any]:
    """The JSON of ``/api/policies`` (``warnings``: what a loaded policy names that its
    reference in force lacks, found when a tick reads it)."""
    return {
        "last_reload_successful": status.ok,
        "loaded_at": status.loaded_at,
        "policies": [
            {
                "key": key,
                "model": p.policy.model,
                "path": p.path,
                "version": p.digest,
                "window": p.policy.window,
                "schedule": p.policy.schedule.model_dump(),
                "rules": [r.key for r in p.policy.rules],
                "last_run": status.last_runs.get(key),
                "progress": progress(key),
                "warnings": warnings(key),
            }
            for key, p in sorted(status.policies.items())
        ],
        "errors": {path: [str(e) for e in errors] for path, errors in status.errors.items()},
        "files": sorted(str(Path(p)) for p in {p.path for p in status.policies.values()}),
    }
