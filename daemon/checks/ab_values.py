"""What one look of an A/B comparison holds, and how a rule and a decision read a value's
details (see :mod:`ab_checks`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.detectors.sequential import Interval, decide


def statistic(metric: str, details: dict[str, Any], stat: str) -> float | None:
    """What a rule (``options.value``) judges of a value's details; see policies/compare.py.

    ``bound``: the end of the interval nearest the good side (for a two-sided metric the
    interval's distance from 0); for a latency ratio, the low end of what the sketches
    allow; for a distance, the value itself.
    """
    info = AB_METRICS[metric]
    value = details.get("value")
    if not info.interval:
        if stat == "bound" and "sketch_range" in details:
            return float(details["sketch_range"][0])
        return None if value is None else float(value)
    low, high, estimate = details["low"], details["high"], details["estimate"]
    if stat == "low":
        return float(low)
    if stat == "high":
        return float(high)
    if stat == "estimate":
        return abs(estimate) if info.direction == "two_sided" else float(estimate)
    if info.direction == "lower_is_worse":
        return float(high)
    if info.direction == "higher_is_worse":
        return float(low)
    return max(0.0, float(low), -float(high))


def interval_decision(metric: str, iv: Interval, margin: float) -> str:
    info = AB_METRICS[metric]
    if info.direction == "two_sided":
        return "changed" if iv.low > margin or iv.high < -margin else "no_evidence"
    return decide(iv, higher_is_better=info.direction == "lower_is_worse", margin=margin)


@dataclass
class Look:
    """One check's view of a comparison."""

    baseline: str | None
    candidate: str | None
    since_ms: int = 0
    end_ms: int = 0
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Metric → details (value, interval, decision, sample sizes, versions)."""
    unavailable: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    """Why there is no comparison at all (no pair yet, no data since the start)."""


def plain(x: Any) -> Any:
    """Details as JSON-able plain values (numpy scalars and infinities made plain)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    if hasattr(x, "item"):
        return plain(x.item())
    return x
