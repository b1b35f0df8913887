"""Stepping each policy through the ticks of its schedule as they become ready.

The scheduler calls :meth:`PolicyStepper.step` for a policy every ``policies.poll_interval``;
a step evaluates the ticks that are ready (:mod:`ticks`) in order, each once, and stores
each with its evaluations, so a restart continues after the last one. A step runs at most
``policies.max_catchup_ticks`` ticks and about half a poll interval: a ten-month backfill
advances in slices, and other policies run in between.

Where a policy starts: after its last stored tick; a policy with none (new, or renamed)
starts at the first tick that reads a full ``window`` of its model's stored history, so
a backfill is evaluated from its beginning — and adding a policy to a running daemon
first evaluates the stored past (notifications older than ``alerts.max_age`` are
recorded, not sent). When that history is younger than one ``window`` (a stream that
has just begun), it starts at the latest tick instead, as a live evaluation would.

Stretches without data are crossed at once: after a tick that read no window, with the
"no data" incident open, the ticks up to the next stored window would each read nothing
and change nothing — the cursor moves to it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from watchkeeper.daemon.checks.checker import Checker, CheckResult
from watchkeeper.daemon.checks.ticks import PolicyClock, Ticks, policy_clock, read_end
from watchkeeper.daemon.config import Config
from watchkeeper.daemon.eventtime.empty_streams import EmptyStreams
from watchkeeper.daemon.eventtime.watermarks import ClockSettings, stream_time
from watchkeeper.daemon.ingest.event_time import clock_settings
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.registry import METRICS
from watchkeeper.policies.incident_model import NO_DATA, fingerprint
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepSettings:
    size_ms: int
    lateness_ms: int
    label_ttl_ms: int
    clocks: ClockSettings
    group_id: str
    max_ticks: int = 200
    budget_s: float = 0.5
    live_lag: int = 20_000
    """A partition at most this many records from its end counts as within a poll."""


@dataclass
class Progress:
    """Where a policy stands: shown on ``/api/status`` and by ``watchkeeper status``."""

    tick_ms: int | None = None
    mode: str = "waiting"
    reason: str = "not run yet"
    due: int = 0
    """Ticks ready but not evaluated yet (the catch-up backlog)."""
    ready_until_ms: int | None = None


@dataclass
class StepResult:
    results: list[CheckResult] = field(default_factory=list)
    skipped_to_ms: int | None = None


def roles_read(policy: Policy, configured: set[str]) -> set[str]:
    """The roles whose streams a policy's evaluations read."""
    roles = {"predictions", "features"}
    # an A/B comparison folds windows once their labels are in: it reads the labels too
    if policy.compare is not None or any(
        METRICS[r.metric].scope == "performance" for r in policy.rules
    ):
        roles.add("labels")
    return roles & configured


HELD_MS = -(2**62)
""":func:`labels_watermark` while a labels partition has shown none of the model's labels
yet (catching up): nothing is known to have arrived."""


def labels_watermark(
    store: Store,
    settings: StepSettings,
    model: str,
    now_ms: int,
    empty: EmptyStreams | None = None,
) -> int | None:
    """Event time up to which the model's labels have been read (the slowest labels
    partition that is not quiet; all quiet: the newest label read), :data:`HELD_MS` while
    held — a partition behind that has shown none of the model's labels, or a labels
    stream that has shown none yet and has not been caught up and empty for
    ``idle_timeout`` (:class:`~watchkeeper.daemon.eventtime.empty_streams.EmptyStreams`;
    without one, never idle: "not yet" until a label comes). None without a labels stream
    or once it is idle without ever having carried a label (nothing to wait for: the fold
    goes on at tick − settle). The A/B fold stops there, so labels still to come during a
    catch-up, an outage of the labels stream or before its producer started are not lost
    to it."""
    s = settings
    if "labels" not in set(s.clocks.roles.values()):
        return None
    clocks = store.partition_clocks(s.group_id, s.clocks, now_ms)
    st = stream_time(clocks.values(), model, "labels", now_ms, s.clocks.idle_ms)
    st = (empty or EmptyStreams()).settle(model, "labels", st, now_ms, s.clocks.idle_ms)
    if st.held:
        return HELD_MS
    return st.watermark_ms if st.watermark_ms is not None else st.newest_ms


class StepMetrics:
    """Progress of each policy through its ticks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tick = Gauge(
            "watchkeeper_policy_tick_timestamp_seconds",
            "The last tick of the policy's schedule evaluated (event time).",
            ["policy"],
            registry=registry,
        )
        self.due = Gauge(
            "watchkeeper_policy_ticks_due",
            "Ticks ready for evaluation but not evaluated yet (catch-up backlog).",
            ["policy"],
            registry=registry,
        )


class PolicyStepper:
    """Evaluates each policy's ready ticks; see the module docstring."""

    def __init__(
        self,
        checker: Checker,
        store: Store,
        settings: StepSettings,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        empty: EmptyStreams | None = None,
    ) -> None:
        self.checker = checker
        self.store = store
        self.settings = settings
        self.clock = clock
        self.empty = EmptyStreams() if empty is None else empty
        """When each stream without any of a model's events was first seen caught up
        (shared with the A/B looks' :func:`labels_watermark`)."""
        self.metrics = StepMetrics(registry)
        self.progress: dict[str, Progress] = {}
        self._cursors: dict[str, int] = {}

    def forget(self, key: str) -> None:
        """A policy left: its cursor is re-read if it comes back."""
        self._cursors.pop(key, None)
        self.progress.pop(key, None)

    def reset(self) -> None:
        """Leadership changed: re-read every cursor from the store."""
        self._cursors.clear()

    # -- stepping -------------------------------------------------------------------------
    def step(self, loaded: LoadedPolicy) -> StepResult:
        """Evaluate the policy's ready ticks (the scheduler runs one step per policy at a
        time)."""
        return self._step(loaded)

    def _cursor(self, policy: Policy) -> int | None:
        """The last evaluated tick; for a new policy, just before its first tick."""
        key = policy.key
        if key not in self._cursors:
            stored = self.checker.incidents.cursor(key)
            if stored is not None:
                self._cursors[key] = stored
        if key in self._cursors:
            return self._cursors[key]
        first = self.store.first_window(policy.model)
        if first is None:
            return None
        window_ms = int(policy.window * 1000)
        ticks = Ticks.of(policy.schedule)
        period_ms = int(policy.schedule.period_s() * 1000)
        latest = ticks.at_or_before(int(self.clock() * 1000), period_ms)
        return min(ticks.at_or_after(first + window_ms), latest) - 1

    def _step(self, loaded: LoadedPolicy) -> StepResult:
        policy = loaded.policy
        key = policy.key
        s = self.settings
        out = StepResult()
        progress = self.progress.setdefault(key, Progress())
        now = int(self.clock() * 1000)
        cursor = self._cursor(policy)
        if cursor is None:
            progress.mode, progress.reason = "waiting", "no stored data for the model yet"
            return out
        ticks = Ticks.of(policy.schedule)
        if ticks.after(cursor) > now:  # the next tick is still in the future: no I/O
            progress.due = 0
            return out
        clock = self.policy_clock(policy, now)
        progress.mode = clock.mode
        progress.reason = clock.reason
        started = time.perf_counter()
        while len(out.results) < s.max_ticks:
            tick = ticks.after(cursor)
            if not clock.ready(tick, s.size_ms, now):
                break
            if out.results and time.perf_counter() - started > s.budget_s:
                break
            result = self.checker.run(loaded, tick)
            out.results.append(result)
            cursor = self._cursors[key] = tick
            if result.events_seen == 0 and self._no_data_open(policy):
                cursor = self._skip_empty(policy, tick, clock, now) or cursor
                if cursor != tick:
                    out.skipped_to_ms = cursor
        until = clock.ready_until(s.size_ms, now)
        progress.ready_until_ms = until
        progress.tick_ms = self._cursors.get(key)
        period_ms = int(policy.schedule.period_s() * 1000)
        progress.due = 0 if until is None else ticks.count_between(cursor, until, period_ms)
        if progress.due:
            progress.reason = "catching up"
        if progress.tick_ms is not None:
            self.metrics.tick.labels(key).set(progress.tick_ms / 1000)
        self.metrics.due.labels(key).set(progress.due)
        return out

    def _no_data_open(self, policy: Policy) -> bool:
        engine = self.checker.engines.get(policy.key)
        return engine is not None and fingerprint(policy.key, "", NO_DATA) in engine.incidents

    def _skip_empty(self, policy: Policy, tick: int, clock: PolicyClock, now: int) -> int | None:
        """After an empty tick: move to just before the next tick that reads data, within
        the ready ticks; every tick between reads nothing and changes nothing."""
        s = self.settings
        limit = clock.ready_until(s.size_ms, now)
        if limit is None or limit <= tick:
            return None
        following = self.store.first_window(policy.model, since_ms=read_end(tick, s.size_ms))
        target = limit if following is None else min(limit, following)
        if target <= tick:
            return None
        self.checker.incidents.advance(policy.key, target)
        self._cursors[policy.key] = target
        return target

    def policy_clock(self, policy: Policy, now_ms: int) -> PolicyClock:
        return read_policy_clock(self.store, self.settings, policy, now_ms, self.empty)


def read_policy_clock(
    store: Store,
    settings: StepSettings,
    policy: Policy,
    now_ms: int,
    empty: EmptyStreams | None = None,
) -> PolicyClock:
    """The policy's clock from the partition clocks their owners committed. A role whose
    stream has shown none of the model's events is held until it has been caught up and
    empty for ``idle_timeout`` (``empty``; without one, until it shows an event), not
    idle at once: an empty labels topic is "not yet", never "no constraint"."""
    s = settings
    roles = roles_read(policy, set(s.clocks.roles.values()))
    statuses = store.partition_statuses(s.group_id)
    clocks = store.partition_clocks(s.group_id, s.clocks, now_ms)
    empty = EmptyStreams() if empty is None else empty
    times = {
        role: empty.settle(
            policy.model,
            role,
            stream_time(clocks.values(), policy.model, role, now_ms, s.clocks.idle_ms),
            now_ms,
            s.clocks.idle_ms,
        )
        for role in roles
    }
    margins = dict.fromkeys(roles, s.lateness_ms)
    if "labels" in roles:
        margins["labels"] = s.lateness_ms + s.label_ttl_ms

    def within_a_poll(status: Any) -> bool:
        if status is None:
            return False
        state, _owner, updated = status
        if now_ms - updated > s.clocks.stale_ms:
            return False
        return state.lag is not None and state.lag <= s.live_lag

    within = all(
        within_a_poll(statuses.get(k))
        for k in set(clocks) | set(statuses)
        if s.clocks.roles.get(k[0]) in roles
    )
    return policy_clock(times, margins, now_ms, s.lateness_ms, within)


def step_settings(config: Config) -> StepSettings:
    """The stepping settings of a daemon config."""
    return StepSettings(
        size_ms=int(config.windows.size * 1000),
        lateness_ms=int(config.windows.allowed_lateness * 1000),
        label_ttl_ms=int(config.ingest.label_ttl * 1000),
        clocks=clock_settings(config),
        group_id=config.kafka.group_id,
        max_ticks=config.policies.max_catchup_ticks,
        budget_s=config.policies.poll_interval / 2,
        live_lag=config.kafka.max_poll_records,
    )
