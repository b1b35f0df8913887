"""What ``/api/shadow`` (its ``ab`` part), ``watchkeeper status`` and the console show of
each policy's A/B comparison: the pair in force, the experiment's start, every ``ab_*``
value with its interval and decision, and both versions' columns side by side over the
policy window and merged since the start.

Read from the stored latest look of each comparison (``ab_comparisons.last``): a request
never computes anything, and shows nothing for a pair no check has looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchkeeper.daemon.checks.ab_promotion import pair_label
from watchkeeper.daemon.checks.ab_report import SIDE_BY_SIDE
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.policies.schema import Policy

VALUE_FIELDS = (
    "value",
    "estimate",
    "low",
    "high",
    "confidence",
    "n_baseline",
    "n_candidate",
    "p_value",
    "decision",
    "margin",
    "noise_floor",
    "sketch_range",
    "baseline_ms",
    "candidate_ms",
    "disjoint_looks",
    "warning",
)
"""What each ``ab_*`` value shows of its details."""


def ab_table(db: ABStore, policies: Mapping[str, Policy]) -> dict[str, Any]:
    """Per policy with a ``compare`` section: its comparisons, the one in force first."""
    looks: dict[str, list[dict[str, Any]]] = {}
    for row in db.looks():
        looks.setdefault(row["policy"], []).append(row)
    out: dict[str, Any] = {}
    for key, policy in sorted(policies.items()):
        compare = policy.compare
        if compare is None:
            continue
        rows = sorted(looks.get(key, []), key=lambda r: not r["in_force"])  # stable
        if compare.versions != "latest":
            rows = [r for r in rows if (r["baseline"], r["candidate"]) == pair(compare)]
        out[key] = {
            "model": policy.model,
            "versions": compare.versions or "named",
            "alpha": compare.alpha,
            "comparisons": [_entry(r) for r in rows[:5]],
        }
    return out


def pair(compare: Any) -> tuple[str | None, str | None]:
    return compare.baseline, compare.candidate


def shown_columns(last: Mapping[str, Any]) -> list[str]:
    """The columns in the order they are shown: :data:`SIDE_BY_SIDE`, then the label-free
    estimates (``estimated_*``) any side of the look carries, by name (a page or the CLI
    iterating ``columns`` would otherwise never show them)."""
    sides = [
        last.get(part, {}).get(role, {})
        for part in ("merged", "window")
        for role in ("baseline", "candidate")
    ]
    extra = {k for side in sides for k in side if k not in SIDE_BY_SIDE}
    return [*SIDE_BY_SIDE, *sorted(k for k in extra if k.startswith("estimated_"))]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    last = row["last"]
    values = {
        metric: {k: d[k] for k in VALUE_FIELDS if k in d}
        | {"text": last.get("texts", {}).get(metric, "")}
        for metric, d in last.get("values", {}).items()
    }
    window = last.get("window", {})
    return {
        "pair": pair_label(row["baseline"], row["candidate"]),
        "baseline": row["baseline"],
        "candidate": row["candidate"],
        "since_ms": row["since_ms"],
        "at_ms": last.get("at_ms"),
        "values": values,
        "unavailable": last.get("unavailable", {}),
        "merged": last.get("merged", {}),
        "window": window,
        "columns": shown_columns(last),
        "decision": row["decision"],
    }
