"""How incidents describe themselves: the one-line summaries of opened, changed and
resolved incidents that every channel shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from watchkeeper.detectors.estimate_trust import TRUST_METRIC
from watchkeeper.detectors.reserved_names import PREDICTION
from watchkeeper.policies.schema import Policy, Rule, Severity


class MemberLike(Protocol):
    @property
    def value(self) -> float | None: ...
    @property
    def threshold(self) -> float | None: ...


def hhmm(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration_text(seconds: float) -> str:
    from watchkeeper.policies.durations import format_duration

    return format_duration(seconds)


def incident_summary(
    policy: Policy,
    rule: Rule,
    members: dict[str, float | None],
    firing: Mapping[str, MemberLike],
    severity: Severity,
    digest: bool,
) -> str:
    def show(feature: str) -> str:
        name = "prediction" if feature == PREDICTION else feature
        value = members[feature]
        return f"{name} {value:.4g}" if value is not None else name

    ordered = sorted(members, key=lambda f: -(members[f] or 0.0))
    if digest:
        noun = "feature" if len(members) == 1 else "features"
        shown = ", ".join(show(f) for f in ordered[:5])
        more = f" and {len(ordered) - 5} more" if len(ordered) > 5 else ""
        return (
            f"{len(members)} {noun} drifted on {policy.model} ({rule.metric} "
            f"{severity}): {shown}{more}"
        )
    (feature,) = ordered
    member = firing[feature]
    if rule.metric == TRUST_METRIC:  # the finding's feature names the estimate compared
        value = "n/a" if member.value is None else f"{member.value:.3g}"
        return (
            f"performance estimates no longer match realised labels on {policy.model}: "
            f"concept drift suspected ({feature} off by {value}× the gap sampling "
            f"explains; {severity})"
        )
    where = f"{policy.model}.{feature}" if feature else policy.model
    side = ">=" if rule.bad_side() == "above" else "<="
    value = "n/a" if member.value is None else f"{member.value:.4g}"
    threshold = "n/a" if member.threshold is None else f"{member.threshold:.4g}"
    return f"{rule.metric} {value} {side} {threshold} on {where} ({severity})"


def resolved_summary(policy: Policy, rule: Rule, values: dict[str, float | None]) -> str:
    def show(feature: str) -> str:
        name = "prediction" if feature == PREDICTION else feature
        value = values[feature]
        shown = "n/a" if value is None else f"{value:.4g}"
        return f"{name} {shown}" if name else shown

    listed = ", ".join(show(f) for f in sorted(values)[:5])
    more = f" and {len(values) - 5} more" if len(values) > 5 else ""
    return f"resolved: {rule.metric} on {policy.model} back within its thresholds ({listed}{more})"
