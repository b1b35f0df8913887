"""A policy's rules per segment: each segment of the window against the same segment of
the reference.

For every rule that runs per segment (:meth:`~watchkeeper.policies.segments.
SegmentedPolicy.segmented_rules`), every segment feature and every segment — those the
window kept, those the reference has and, for ``traffic_ratio``, those with a baseline
(a segment whose traffic stopped) — the rule's metric is evaluated on the window's
segment child with the one evaluator of the daemon
(:func:`~watchkeeper.detectors.evaluate.evaluate`), so the sample-size guard applies per
segment (``segment_min_samples``, else the rule's or the policy's ``min_samples``: events,
labelled pairs for realised performance, scored predictions for an estimate);
``traffic_ratio`` reads the segment's own baseline (:mod:`segment_traffic`). Each
finding's feature slot names its segment (``amount[country=DE]``) and its details carry
``segment: {"country": "DE"}``, so the engine keeps one member, and one incident, per
segment.

The trust check (``estimate_mismatch``) per segment (:func:`segment_trust_findings`)
reads the span the whole check reads (:class:`~watchkeeper.daemon.checks.estimates.
LabelledSpans`), and of each of its windows the segment's child only when the segment's
own labels have (nearly) all arrived (``labelled_share`` of the segment's predictions
graded), so a segment whose labels lag is never set against its estimate on other rows;
its estimate and band are the whole reference's estimation's, as for ``estimated_*``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from watchkeeper.daemon.checks.estimates import Span, labelled_windows
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.estimate_findings import estimate_finding, trust_findings
from watchkeeper.detectors.estimate_trust import TRUST_METRIC, EstimateTrust
from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.segment_reference import SegmentReference
from watchkeeper.detectors.traffic import TrafficRatio, role_of
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.schema import Policy, Rule
from watchkeeper.policies.segments import slot


def _tagged(finding: Finding, feature: str, label: str, mixed: bool) -> Finding:
    details = {**finding.details, "segment": {feature: label}, "feature": finding.feature}
    if mixed:
        details["segment_plan_changed"] = (
            "parts of this window were split by different value sets (the reference "
            "changed mid-window): (other) holds values another part kept apart"
        )
    return dataclasses.replace(
        finding, feature=slot(finding.feature, feature, label), details=details
    )


def _no_reference(window: WindowSummary, rule: Rule, reason: str) -> Finding:
    return Finding(
        window.model,
        rule.metric,
        None,
        None,
        "insufficient_data",
        window.start_ms,
        window.end_ms,
        window.count,
        0,
        {"reason": reason},
    )


def _segment_estimate(
    rule: Rule,
    reference: ReferenceProfile | None,
    ref: ReferenceProfile | None,
    child: WindowSummary,
    min_samples: int,
) -> Finding:
    """An ``estimated_*`` metric of one segment: the segment's estimate state under the
    whole reference's estimation (the calibrator or loss model is the model's, fitted on
    every reference row), its base the *segment's* realised reference value (``ref``),
    so ``relative: true`` compares the segment with itself in the reference."""
    width = METRICS[rule.metric].estimate_detector(**(rule.options or {})).width
    found = estimate_finding(rule.metric, reference, child, min_samples, width)
    if found.value is None:
        return found
    realised = ESTIMATED_METRICS[rule.metric].realised
    base = ref.metrics.get(realised) if ref is not None else None
    details = {k: v for k, v in found.details.items() if k != "delta"}
    details["reference"] = base
    if base is not None:
        details["delta"] = found.value - base
    return dataclasses.replace(found, details=details)


def _rule_findings(
    policy: Policy,
    rule: Rule,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    duration_s: float,
    traffic: Mapping[tuple[str, str, str], tuple[float, ...]],
) -> list[Finding]:
    info = METRICS[rule.metric]
    min_samples = policy.segment_min_samples or rule.min_samples or policy.min_samples
    out: list[Finding] = []
    for feature in policy.segments:
        split = window.segments.get(feature)
        children = dict(split.children) if split is not None else {}
        mixed = split.mixed if split is not None else False
        segs: SegmentReference[ReferenceProfile] | None = None
        if reference is not None:
            segs = reference.segments.get(feature)
        labels = set(children) | (set(segs.profiles) if segs is not None else set())
        if rule.metric == TrafficRatio.name:
            # a segment whose traffic stopped has no child and maybe no reference
            # profile: its baseline names it (an empty child then scores 0 against it)
            role = role_of(rule.options)
            labels |= {label for (f, label, r) in traffic if f == feature and r == role}
        for label in sorted(labels):
            child = children.get(label)
            if child is None:  # a segment of the reference or baseline without rows in the window
                child = WindowSummary(window.model, window.version, window.start_ms, window.size_ms)
            ref = segs.profile(label) if segs is not None else None
            if info.scope == "column" and ref is None:
                why = (
                    f"the reference has no segments of {feature}: rebuild it with "
                    f"--segments {feature}"
                    if segs is None
                    else f"the reference has no rows of {feature}={label}"
                )
                found = [_no_reference(child, rule, why)]
            elif info.scope == "estimate":
                found = [_segment_estimate(rule, reference, ref, child, min_samples)]
            else:
                found = evaluate(
                    ref,
                    child,
                    [rule.metric],
                    features=rule.feature_patterns(),
                    min_samples=min_samples,
                    duration_s=duration_s,
                    baseline_rates=traffic.get((feature, label, role_of(rule.options)), ()),
                    options={rule.metric: rule.options} if rule.options else None,
                )
            out += [_tagged(f, feature, label, mixed) for f in found]
    return out


def add_segment_findings(
    found: dict[str, list[Finding]],
    policy: Policy,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    duration_s: float,
    traffic: Mapping[tuple[str, str, str], tuple[float, ...]] | None = None,
) -> None:
    """Append the per-segment findings of ``policy``'s rules to ``found`` (by rule key).
    ``traffic``: each segment's baseline rates for ``traffic_ratio``
    (:class:`~watchkeeper.daemon.checks.segment_traffic.SegmentTraffic`; none: the rule
    says it has no baseline windows)."""
    keys = set(policy.segmented_rules())
    for rule in policy.rules:
        if rule.key in keys and rule.metric != TRUST_METRIC:  # segment_trust_findings
            found[rule.key] = [
                *found.get(rule.key, []),
                *_rule_findings(policy, rule, reference, window, duration_s, traffic or {}),
            ]


def segment_trust_findings(
    policy: Policy,
    rule: Rule,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    span: Span | None,
) -> list[Finding]:
    """``estimate_mismatch`` per segment over the whole check's labelled ``span`` (see
    the module docstring); ``window`` is the policy window (its segments and bounds name
    the segments and the findings' window when no span has its labels)."""
    if rule.key not in set(policy.segmented_rules()):
        return []
    trust = EstimateTrust(**rule.options)
    min_samples = policy.segment_min_samples or rule.min_samples or policy.min_samples
    out: list[Finding] = []
    for feature in policy.segments:
        children: dict[str, list[WindowSummary]] = {}
        mixed = False
        # without a span the policy window's segments (and the reference's) are named
        for w in span.windows if span is not None else [window]:
            split = w.segments.get(feature)
            if split is not None:
                mixed = mixed or split.mixed
                for label, child in split.children.items():
                    children.setdefault(label, []).append(child)
        segs = reference.segments.get(feature) if reference is not None else None
        labels = set(children) | (set(segs.profiles) if segs is not None else set())
        for label in sorted(labels):
            if span is None:
                found = [_no_span(window, rule)]
            else:
                lo, hi = span.start, span.end
                labelled = labelled_windows(
                    children.get(label, []), window.model, lo, hi, reference, trust.labelled_share
                )
                if labelled is None:  # none of the span's windows has this segment's labels
                    labelled = WindowSummary(window.model, window.version, lo, hi - lo)
                found = trust_findings(TRUST_METRIC, reference, labelled, min_samples, trust.width)
            out += [_tagged(f, feature, label, mixed) for f in found]
    return out


def _no_span(window: WindowSummary, rule: Rule) -> Finding:
    return dataclasses.replace(
        _no_reference(window, rule, "no span of the policy window's length has its labels"),
        n_current=0,
    )
