"""A rule's thresholds for one finding: as written, relative to the reference's value, or
derived from the false-alarm budget (``threshold: auto``); and which side of them is bad.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchkeeper.detectors.base import Finding
from watchkeeper.policies.auto import auto_threshold, estimate_auto_threshold
from watchkeeper.policies.schema import Rule, Severity


@dataclass(frozen=True)
class Thresholds:
    warn: float | None
    critical: float | None
    resolve: float | None
    above: bool

    def severity(self, value: float) -> Severity | None:
        def past(t: float | None) -> bool:
            return t is not None and (value >= t if self.above else value <= t)

        return "critical" if past(self.critical) else "warn" if past(self.warn) else None

    def cleared(self, value: float) -> bool:
        bound = self.resolve
        if bound is None:
            bound = self.warn if self.warn is not None else self.critical
        assert bound is not None
        return value < bound if self.above else value > bound


def rule_thresholds(
    rule: Rule,
    finding: Finding,
    reference_metrics: dict[str, float],
    period_s: float,
    features_checked: int,
) -> Thresholds | str:
    """The thresholds for this finding, or why there are none."""
    above = rule.bad_side() == "above"
    if rule.threshold == "auto":
        bins = int(finding.details.get("bins", 10))
        alpha = period_s / rule.false_alarm_every / max(features_checked, 1)
        if "band" in finding.details:  # an estimated metric: its band's sampling law
            bound = estimate_auto_threshold(finding.details, alpha, above)
            return bound if isinstance(bound, str) else Thresholds(None, bound, None, above)
        value = auto_threshold(rule.metric, finding.n_current, finding.n_reference, bins, alpha)
        # the sketch's own error comes on top of sampling noise (see detectors.binning)
        value += float(finding.details.get("error_bound", 0.0))
        return Thresholds(None, value, None, above)
    if rule.relative:
        segment = finding.details.get("segment")
        # a segment's base is the same segment of the reference (its value in the details)
        base = reference_metrics.get(rule.metric) if segment is None else None
        if segment is not None and isinstance(finding.details.get("reference"), int | float):
            base = float(finding.details["reference"])
        if base is None:
            where = (
                ""
                if segment is None
                else " for " + ", ".join(f"{k}={v}" for k, v in dict(segment).items())
            )
            return f"the reference has no {rule.metric}{where} to compare with"

        def shift(t: float | None) -> float | None:
            return None if t is None else base + t

        return Thresholds(shift(rule.warn), shift(rule.critical), shift(rule.resolve), above)
    return Thresholds(rule.warn, rule.critical, rule.resolve, above)
