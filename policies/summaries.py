"""How incidents describe themselves: the one-line summaries of opened, changed and
resolved incidents that every channel shows. A segment's incident names it: "psi 0.41
>= 0.25 on fraud.amount for country=DE (critical)". A digest's line is
:func:`watchkeeper.policies.digest.digest_summary`'s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from watchkeeper.detectors.estimate_trust import TRUST_METRIC
from watchkeeper.policies.schema import Policy, Rule, Severity
from watchkeeper.policies.segments import described, shown_name, split_slot


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
) -> str:
    """One member's incident line (a digest's: policies/digest.py)."""
    (feature,) = members
    member = firing[feature]
    if rule.metric == TRUST_METRIC:  # the finding's feature names the estimate compared
        value = "n/a" if member.value is None else f"{member.value:.3g}"
        estimate, part = split_slot(feature)  # per segment: the segment is named
        where = policy.model + (f" for {part[0]}={part[1]}" if part is not None else "")
        return (
            f"performance estimates no longer match realised labels on {where}: "
            f"concept drift suspected ({estimate} off by {value}× the gap sampling "
            f"explains; {severity})"
        )
    bare, segment = split_slot(feature)
    where = f"{policy.model}.{shown_name(bare)}" if bare else policy.model
    where += f" for {segment[0]}={segment[1]}" if segment is not None else ""
    side = ">=" if rule.bad_side() == "above" else "<="
    value = "n/a" if member.value is None else f"{member.value:.4g}"
    threshold = "n/a" if member.threshold is None else f"{member.threshold:.4g}"
    return f"{rule.metric} {value} {side} {threshold} on {where} ({severity})"


def resolved_summary(policy: Policy, rule: Rule, values: dict[str, float | None]) -> str:
    def show(feature: str) -> str:
        name = described(feature)
        value = values[feature]
        shown = "n/a" if value is None else f"{value:.4g}"
        return f"{name} {shown}" if name else shown

    listed = ", ".join(show(f) for f in sorted(values)[:5])
    more = f" and {len(values) - 5} more" if len(values) > 5 else ""
    return f"resolved: {rule.metric} on {policy.model} back within its thresholds ({listed}{more})"
