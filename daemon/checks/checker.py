"""Running one policy at one tick: read the windows, score them, apply the rules, keep it.

Which windows and how they are scored: :func:`~watchkeeper.daemon.checks.assessment.assess`
(the last ``window`` of stored windows before the tick). Everything the
tick decides is stamped with the tick (event time); :mod:`stepping` decides which ticks
run. Notifications about a tick older than ``alerts.max_age`` by the wall clock are
recorded in the outbox as ``historical`` and not sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.assessment import BASELINE_WINDOWS, assess
from watchkeeper.daemon.checks.check_metrics import CheckMetrics
from watchkeeper.daemon.checks.estimates import (
    DEFAULT_LOOKBACK_S,
    EstimateFollowUp,
    LabelledSpans,
)
from watchkeeper.daemon.checks.last_seen import LastSeen
from watchkeeper.daemon.checks.performance_rows import PerformanceRowCache
from watchkeeper.daemon.checks.reference_cache import ReferenceCache
from watchkeeper.daemon.checks.segment_traffic import SegmentTraffic
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.shadow.checks import ShadowChecks
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.errors import WatchkeeperError
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.feature_names import Problem
from watchkeeper.policies.incident_model import Evaluation, IncidentEvent
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)
Plan = Callable[[IncidentEvent, Policy], list[tuple[str, Notification]]]


@dataclass
class CheckResult:
    at_ms: int
    evaluations: list[Evaluation]
    events: list[IncidentEvent]
    events_seen: int
    historical: bool = False


class Checker:
    """Evaluates policies against the store and records what it decided."""

    def __init__(
        self,
        store: Store,
        incidents: IncidentStore,
        window_size_s: float,
        plan: Plan | None = None,
        clock: Callable[[], float] = time.time,
        silenced: Callable[[Notification], bool] | None = None,
        enqueued: Callable[[], None] | None = None,
        metrics: CheckMetrics | None = None,
        shadow: ShadowChecks | None = None,
        max_age_s: float = 0.0,
        label_ttl_s: float = DEFAULT_LOOKBACK_S,
        ab: ABChecks | None = None,
    ) -> None:
        self.max_age_ms = int(max_age_s * 1000)
        self.spans = LabelledSpans(label_ttl_s)
        """The trust check's labelled spans, searched back to ``ingest.label_ttl``."""
        self.traffic = SegmentTraffic(BASELINE_WINDOWS)
        self.last_seen = LastSeen()
        """When each model last had traffic, for the ticks without enough (no data)."""
        self.row_cache = PerformanceRowCache()
        """Realised-beside-estimated views for ``GET /api/status`` (``status(rows_cache=)``)."""
        self.store = store
        self.shadow = shadow
        self.incidents = incidents
        self.size_ms = int(window_size_s * 1000)
        self.plan = plan
        self.silenced = silenced
        self.enqueued = enqueued
        self.metrics = metrics
        self.clock = clock
        self.references = ReferenceCache(store)
        self.engines: dict[str, PolicyEngine] = {}
        self.name_warnings: dict[str, list[str]] = {}
        """Per policy, the rule features and segments its stored reference lacks."""
        self.follow_up = EstimateFollowUp(store, self.size_ms)
        self.ab = (
            ab
            if ab is not None
            else ABChecks(store, self.size_ms, label_ttl_s, max_age_s=max_age_s, clock=clock)
        )
        """Policies' ``compare`` sections (live A/B between versions)."""

    def _warn_unknown_names(self, policy: Policy, problems: Sequence[Problem]) -> None:
        """Rule features and segments the reference in force lacks (the tick's
        :func:`reference_gaps`): logged when they change, kept for ``/api/policies``
        (``warnings``); each tick's evaluations name them too (:func:`findings_for`)."""
        found = [f"{'/'.join(map(str, where))}: {why}" for where, _name, why in problems]
        if found != self.name_warnings.get(policy.key, []):
            for line in found:
                log.warning("policy %s: %s (it selects nothing)", policy.key, line)
        if found:
            self.name_warnings[policy.key] = found
        else:
            self.name_warnings.pop(policy.key, None)

    def engine(
        self, loaded: LoadedPolicy, at_ms: int | None = None
    ) -> tuple[PolicyEngine, list[IncidentEvent]]:
        """The policy's engine, restored from the store; a new version reconciles (its
        events stamped ``at_ms``, the tick being evaluated)."""
        key = loaded.policy.key
        when = at_ms if at_ms is not None else int(self.clock() * 1000)
        engine = self.engines.get(key)
        events: list[IncidentEvent] = []
        if engine is None:
            engine = PolicyEngine(loaded.policy)
            state = self.incidents.state(key)
            if state is not None:
                engine.load_state(state)
                events = engine.reconcile(loaded.policy, when)
            self.engines[key] = engine
        elif engine.policy != loaded.policy:
            events = engine.reconcile(loaded.policy, when)
        return engine, events

    def run(self, loaded: LoadedPolicy, now_ms: int | None = None) -> CheckResult:
        """Evaluate ``loaded`` at tick ``now_ms`` (default: now) and record it with the tick."""
        policy = loaded.policy
        wall_ms = int(self.clock() * 1000)
        at_ms = now_ms if now_ms is not None else wall_ms
        engine, events = self.engine(loaded, at_ms)

        def reference() -> ReferenceProfile | None:
            try:
                return self.references.get(loaded)
            except (OSError, ValueError) as exc:
                log.error("policy %s: cannot read its reference: %s", policy.key, exc)
                return None

        shadow, ab = self.shadow, self.ab

        def extra(lo: int, hi: int) -> dict[str, list[Finding]]:
            found = shadow.findings(policy, lo, hi) if shadow else {}
            return found | ab.findings(policy, lo, hi, reference)

        found = assess(
            self.store,
            loaded,
            engine,
            reference,
            self.size_ms,
            at_ms,
            extra,
            self.spans,
            self.traffic,
            self.last_seen,
        )
        if found.evaluations:  # the reference was read: say what it lacks, once
            self._warn_unknown_names(policy, found.unknown or [])
        # A/B incidents say what their interval means; a pair's that is no longer in force end
        ab.describe(policy, engine, found.events, at_ms)
        events += found.events
        evaluations = found.evaluations
        if self.follow_up.watching(engine):  # realised beside the estimate, as labels come
            events += self.follow_up.events(loaded, engine, reference(), at_ms)
        if self.shadow is not None:
            events += self.shadow.failures(policy, engine, at_ms)
        notes = [n for e in events for n in self.plan(e, policy)] if self.plan else []
        historical = self.max_age_ms > 0 and wall_ms - at_ms > self.max_age_ms
        self.incidents.record(
            policy.key,
            at_ms,
            evaluations,
            events,
            engine.state_dict(),
            notes,
            self.silenced,
            wall_ms=wall_ms,
            historical=historical,
        )
        if self.metrics is not None:
            self.metrics.observe(evaluations, events)
            if historical:
                for channel, _ in notes:
                    self.metrics.historical.labels(channel).inc()
        for event in events:
            if historical:
                log.info(
                    "incident %s (historical: not sent): %s", event.kind, event.incident.summary
                )
            else:
                log.warning("incident %s: %s", event.kind, event.incident.summary)
        if notes and not historical and self.enqueued is not None:
            self.enqueued()
        if self.shadow is not None:
            try:
                self.shadow.decisions(policy, at_ms)
            except WatchkeeperError as exc:
                if not exc.retriable:
                    raise
                log.error("policy %s: shadow decisions postponed: %s", policy.key, exc)
        return CheckResult(at_ms, evaluations, events, found.seen, historical)
