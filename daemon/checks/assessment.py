"""One tick of one policy scored on the stored windows, before anything is recorded.

Which windows: the last ``window`` of event time before the tick, rounded out to whole
stored windows (see :func:`window_bounds`) — "the last hour". Stored windows are rolled
up; nothing reads raw events, so the cost does not grow with traffic. :func:`assess` is
the one evaluation path of the daemon (:class:`~watchkeeper.daemon.checks.checker.Checker`)
and of ``policy backtest``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from watchkeeper.daemon.checks.estimates import LabelledSpans, no_labelled_windows
from watchkeeper.daemon.checks.last_seen import LastSeen
from watchkeeper.daemon.checks.rule_findings import findings_for, reference_gaps
from watchkeeper.daemon.checks.segment_findings import (
    add_segment_findings,
    segment_trust_findings,
)
from watchkeeper.daemon.checks.segment_traffic import SegmentTraffic
from watchkeeper.daemon.checks.traffic_counts import RoleCounts
from watchkeeper.daemon.eventtime.windows import window_bounds
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.estimate_findings import estimation_bases
from watchkeeper.detectors.estimate_trust import TRUST_METRIC, EstimateTrust
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.traffic import TRAFFIC_ROLE, TrafficRatio, role_of
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.durations import parse_duration
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.feature_names import Problem
from watchkeeper.policies.incident_model import Evaluation, IncidentEvent
from watchkeeper.policies.loader import LoadedPolicy

BASELINE_WINDOWS = 6  # previous policy windows whose median rate is the traffic baseline


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
    last_seen: LastSeen | None = None,
) -> Assessment:
    """Evaluate ``loaded`` at tick ``at_ms`` on the stored windows, advancing ``engine``.

    The one evaluation path of the daemon and of ``policy backtest``: the same windows,
    baseline and rules give the same values and decisions. ``reference_of`` is asked
    only when there is data to score; ``extra`` adds findings for the window range
    (shadow comparisons); ``spans`` finds the labelled span the trust check reads
    (the checker keeps one across ticks; without it each tick searches afresh);
    ``traffic`` remembers each segment's counts for a per-segment ``traffic_ratio``
    (kept alike; without it each tick reads its baseline span); ``last_seen`` remembers
    each window's traffic for the "no data since" of a tick without enough (kept alike;
    without it a tick reads the windows back to the model's last traffic).
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
        last_seen = last_seen if last_seen is not None else LastSeen()
        events = engine.no_data(at_ms, last_seen(store, policy.model, end, size_ms), seen)
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
