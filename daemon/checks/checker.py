"""Running one policy at one tick: read the windows, score them, apply the rules, keep it.

Which windows: the last ``window`` of event time before the tick, rounded out to whole
stored windows (see :func:`window_bounds`) — "the last hour". Stored windows are rolled
up; nothing reads raw events, so the cost does not grow with traffic. Everything the
tick decides is stamped with the tick (event time); :mod:`stepping` decides which ticks
run. Notifications about a tick older than ``alerts.max_age`` by the wall clock are
recorded in the outbox as ``historical`` and not sent.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.estimates import (
    DEFAULT_LOOKBACK_S,
    EstimateFollowUp,
    LabelledSpans,
    no_labelled_windows,
)
from watchkeeper.daemon.checks.performance_rows import PerformanceRowCache
from watchkeeper.daemon.checks.reference_cache import ReferenceCache
from watchkeeper.daemon.checks.segment_findings import (
    add_segment_findings,
    segment_trust_findings,
)
from watchkeeper.daemon.checks.segment_traffic import SegmentTraffic
from watchkeeper.daemon.checks.traffic_counts import RoleCounts
from watchkeeper.daemon.eventtime.windows import window_bounds
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.shadow.checks import ShadowChecks
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.estimate_findings import estimation_bases
from watchkeeper.detectors.estimate_trust import TRUST_METRIC, EstimateTrust
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.traffic import TRAFFIC_ROLE, TrafficRatio, role_of
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.errors import WatchkeeperError
from watchkeeper.policies.durations import parse_duration
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.feature_names import Problem, unknown_names
from watchkeeper.policies.incident_model import Evaluation, IncidentEvent
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.schema import Policy

log = logging.getLogger(__name__)
Plan = Callable[[IncidentEvent, Policy], list[tuple[str, Notification]]]
BASELINE_WINDOWS = 6  # previous policy windows whose median rate is the traffic baseline


@dataclass
class CheckResult:
    at_ms: int
    evaluations: list[Evaluation]
    events: list[IncidentEvent]
    events_seen: int
    historical: bool = False


def findings_for(
    policy: Policy,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    duration_s: float,
    baseline: tuple[float, ...] | Mapping[str, tuple[float, ...]],
    unknown: Sequence[Problem] | None = None,
) -> dict[str, list[Finding]]:
    """Every rule's findings for one window; ``baseline``: the traffic baseline's rates,
    or per role (a ``traffic_ratio`` rule reads its role's); ``unknown``: the rule
    features and segments ``reference`` lacks, when the caller has them already
    (:func:`reference_gaps`; computed here when None)."""
    out: dict[str, list[Finding]] = {}
    for rule in policy.rules:
        info = METRICS[rule.metric]
        if info.scope == "column" and reference is None:
            out[rule.key] = [
                Finding(
                    policy.model,
                    rule.metric,
                    None,
                    None,
                    "error",
                    window.start_ms,
                    window.end_ms,
                    window.count,
                    0,
                    {"reason": "no reference profile for this model"},
                )
            ]
            continue
        out[rule.key] = evaluate(
            reference,
            window,
            [rule.metric],
            features=rule.feature_patterns(),
            min_samples=rule.min_samples or policy.min_samples,
            duration_s=duration_s,
            baseline_rates=(
                baseline.get(role_of(rule.options), ())
                if isinstance(baseline, Mapping)
                else baseline
            ),
            options={rule.metric: rule.options} if rule.options else None,
        )
    if reference is not None:
        problems = unknown if unknown is not None else reference_gaps(policy, reference)
        _add_unknown_names(out, policy, problems, window)
    return out


def reference_gaps(policy: Policy, reference: ReferenceProfile | None) -> list[Problem]:
    """The rule features and segments of ``policy`` that the reference in force lacks
    (none without a reference): computed once a tick, for the tick's evaluations
    (:func:`findings_for`) and the checker's warnings (``Checker.name_warnings``)."""
    if reference is None:
        return []
    return unknown_names(policy, reference.features, "the reference in force", reference.segments)


def _add_unknown_names(
    out: dict[str, list[Finding]],
    policy: Policy,
    problems: Sequence[Problem],
    window: WindowSummary,
) -> None:
    """An ``insufficient_data`` evaluation per rule feature or segment the reference does
    not have (a typo selects nothing): the loader catches these for a profile file, a
    stored reference is known only here. Segments are reported under the first rule."""
    for where, name, why in problems:
        rule = policy.rules[int(where[1])] if where[0] == "rules" else policy.rules[0]
        slot = name if where[0] == "rules" else f"[{name}]"
        out.setdefault(rule.key, []).append(
            Finding(
                policy.model,
                rule.metric,
                slot,
                None,
                "insufficient_data",
                window.start_ms,
                window.end_ms,
                0,
                0,
                {"reason": f"{'/'.join(map(str, where))}: {why}"},
            )
        )


@dataclass
class Assessment:
    """What one tick of a policy found, before it is recorded."""

    evaluations: list[Evaluation]
    events: list[IncidentEvent]
    seen: int
    start_ms: int
    end_ms: int
    unknown: list[Problem] | None = None
    """What the reference in force lacks (:func:`reference_gaps`); None when the tick
    read no reference (too little data)."""


def assess(
    store: Store,
    loaded: LoadedPolicy,
    engine: PolicyEngine,
    reference_of: Callable[[], ReferenceProfile | None],
    size_ms: int,
    at_ms: int,
    extra: Callable[[int, int], dict[str, list[Finding]]] | None = None,
    spans: LabelledSpans | None = None,
    traffic: SegmentTraffic | None = None,
) -> Assessment:
    """Evaluate ``loaded`` at tick ``at_ms`` on the stored windows, advancing ``engine``.

    The one evaluation path of the daemon and of ``policy backtest``: the same windows,
    baseline and rules give the same values and decisions. ``reference_of`` is asked
    only when there is data to score; ``extra`` adds findings for the window range
    (shadow comparisons); ``spans`` finds the labelled span the trust check reads
    (the checker keeps one across ticks; without it each tick searches afresh);
    ``traffic`` remembers each segment's counts for a per-segment ``traffic_ratio``
    (kept alike; without it each tick reads its baseline span).
    """
    policy = loaded.policy
    window_ms = int(policy.window * 1000)
    start, end = window_bounds(at_ms, size_ms, window_ms)
    # read once: the rules score their roll-up, the trust check the labelled ones
    parts = [w.summary for w in store.windows(policy.model, None, start, end)]
    window = WindowSummary.rollup(parts, start, end - start) if parts else None
    # the model's traffic, never its labels (WindowSummary.traffic)
    seen = window.traffic if window is not None else 0
    if window is None or seen < policy.min_samples:
        events = engine.no_data(at_ms, _last_seen(store, policy.model, end, size_ms), seen)
        return Assessment([], events, seen, start, end)
    duration_s = max(1.0, (min(at_ms, end) - start) / 1000)
    # each traffic rule's baseline counts the role its rate counts (option role)
    roles = {role_of(r.options) for r in policy.rules if r.metric == TrafficRatio.name}
    traffic = traffic if traffic is not None else SegmentTraffic(BASELINE_WINDOWS)
    baseline = {
        role: _baseline(store, policy.model, start, window_ms, role, traffic.whole)
        for role in roles
    }
    reference = reference_of()
    unknown = reference_gaps(policy, reference)
    found = findings_for(policy, reference, window, duration_s, baseline, unknown)
    rates = traffic.baselines(store, policy, parts, start, window_ms, end)
    add_segment_findings(found, policy, reference, window, duration_s, rates)
    trusting = [r for r in policy.rules if r.metric == TRUST_METRIC]
    spans = spans if spans is not None else LabelledSpans()
    for rule in trusting:
        # realised and estimated on the same predictions: only the windows whose labels
        # have (nearly) all arrived, else a window still waiting for its labels would
        # set the estimate of all its predictions against the realised value of others;
        # labels later than the policy window: the newest earlier span that has them
        trust = EstimateTrust(**rule.options)
        lookback = None if trust.lookback is None else int(parse_duration(trust.lookback) * 1000)
        min_samples = rule.min_samples or policy.min_samples
        span = spans.span(
            f"{policy.key}/{rule.key}",
            store,
            parts,
            policy.model,
            start,
            end,
            reference,
            at_ms,
            min_samples,
            trust.labelled_share,
            lookback,
        )
        found[rule.key] = (
            evaluate(
                reference,
                span.labelled,
                [rule.metric],
                min_samples=min_samples,
                options={rule.metric: rule.options} if rule.options else None,
            )
            if span is not None
            else [no_labelled_windows(policy.model, window)]
        ) + segment_trust_findings(policy, rule, reference, window, span)
    if extra is not None:
        found.update(extra(start, end))
    # relative: true shifts the reference's realised values; estimated_* shift the
    # realised value of the metric they estimate
    bases = {**reference.metrics, **estimation_bases(reference)} if reference is not None else {}
    evaluations, events = engine.step(found, at_ms, bases)
    return Assessment(evaluations, events, seen, start, end, unknown)


def _baseline(
    store: Store,
    model: str,
    start_ms: int,
    window_ms: int,
    role: str = TRAFFIC_ROLE,
    counts_of: RoleCounts | None = None,
) -> tuple[float, ...]:
    # the role traffic_ratio counts now (TrafficRatio's): every role's total would make
    # steady traffic with a features or labels stream read as half its baseline
    counts = (counts_of if counts_of is not None else RoleCounts()).counts(
        store, model, start_ms - BASELINE_WINDOWS * window_ms, start_ms, role
    )
    rates = []
    for i in range(BASELINE_WINDOWS):
        lo = start_ms - (i + 1) * window_ms
        total = sum(n for s, n in counts if lo <= s < lo + window_ms)
        if total:
            rates.append(total / (window_ms / 1000))
    return tuple(rates)


def _last_seen(store: Store, model: str, before_ms: int, size_ms: int, run: int = 12) -> int | None:
    """The end of the model's newest stored window before ``before_ms`` with traffic
    (:attr:`WindowSummary.traffic`: its predictions or features, never its labels, which
    go on arriving after the predictions stop); None if it never had any.

    The stored ``events`` column counts every role, so the traffic is read from the
    windows' counts (no sketches), from the newest window back, in doubling runs (the
    first of ``run`` windows, an hour of 5-minute ones): the cost grows with the windows
    since the traffic stopped, not with the history."""
    starts = [s for s, n in store.event_counts(model, 0, before_ms) if n]
    while starts:
        lo, hi = starts[-min(run, len(starts))], starts[-1] + 1
        seen = [s for s, n in store.traffic_counts(model, lo, hi) if n]
        if seen:
            return max(seen) + size_ms
        del starts[-min(run, len(starts)) :]
        run *= 2
    return None


class CheckMetrics:
    """Latest value of every evaluated metric, and open incidents, for Prometheus / Grafana.

    Cardinality is bounded by the policies: models × (features a rule selects) × metrics,
    and for incidents policies × rules × features × severities.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.value = Gauge(
            "watchkeeper_metric_value",
            "Latest value of a metric (NaN: not enough data).",
            ["model", "feature", "metric"],
            registry=registry,
        )
        self.threshold = Gauge(
            "watchkeeper_metric_threshold",
            "Threshold the latest value was compared with.",
            ["model", "feature", "metric", "severity"],
            registry=registry,
        )
        self.incident = Gauge(
            "watchkeeper_incident_open",
            "1 while an incident is open.",
            ["policy", "model", "rule", "feature", "severity"],
            registry=registry,
        )
        self.historical = Counter(
            "watchkeeper_notifications_historical",
            "Notifications about windows older than alerts.max_age: recorded, not sent.",
            ["channel"],
            registry=registry,
        )

    def observe(self, evaluations: list[Evaluation], events: list[IncidentEvent]) -> None:
        for e in evaluations:
            feature = e.feature or ""
            value = e.value if e.decision not in ("insufficient_data", "error") else None
            self.value.labels(e.model, feature, e.metric).set(math.nan if value is None else value)
            for severity, bound in (("warn", e.warn), ("critical", e.critical)):
                if bound is not None:
                    self.threshold.labels(e.model, feature, e.metric, severity).set(bound)
        for event in events:
            i = event.incident
            labels = (i.policy, i.model, i.rule, i.feature or "")
            for severity in ("warn", "critical"):
                with contextlib.suppress(KeyError):
                    self.incident.remove(*labels, severity)
            if event.kind != "resolved":
                self.incident.labels(*labels, i.severity).set(1)


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
        self.traffic = SegmentTraffic(BASELINE_WINDOWS)
        self.row_cache = PerformanceRowCache()
        """Realised-beside-estimated views for ``GET /api/status`` (``status(rows_cache=)``)."""
        """The trust check's labelled spans, searched back to ``ingest.label_ttl``."""
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
