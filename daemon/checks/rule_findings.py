"""A policy's rules scored on one window: each rule's findings, and the rule features and
segments the reference in force lacks (an ``insufficient_data`` evaluation naming each).

Shared by the checker's ticks (:func:`~watchkeeper.daemon.checks.assessment.assess`) and
the offline drift report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.traffic import role_of
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.feature_names import Problem, unknown_names
from watchkeeper.policies.schema import Policy


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
