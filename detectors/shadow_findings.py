"""A ``shadow_*`` metric of one candidate as a policy finding, with the sample-size guard
that fits the metric: labelled rows for label-based metrics, attributed rows for
attribution metrics, shadow rows for the rest."""

from __future__ import annotations

from typing import Any, Literal

from watchkeeper.detectors.attribution import AttributionComparison
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.shadow import ShadowStats, attribution_based, label_based


def shadow_finding(
    model: str,
    candidate: str,
    stats: ShadowStats | None,
    metric: str,
    window: tuple[int, int],
    min_samples: int,
    attribution: AttributionComparison | None = None,
) -> Finding:
    """One ``shadow_*`` metric of one candidate as a finding (the feature is the candidate).

    Label-based metrics need ``min_samples`` labelled rows, the others as many rows.
    Attribution metrics count attributed rows and need ``attribution.min_rows`` of them
    (the policy's ``shadow.attributions.min_rows``): attribution samples far fewer rows.
    """
    start, end = window
    labelled = label_based(metric)
    attributed = attribution_based(metric)
    if stats is None:
        n = 0
    elif labelled:
        n = min(stats.performance["candidate"].n, stats.performance["production"].n)
    elif attributed:
        n = 0 if stats.attribution is None else min(a.rows for a in stats.attribution.values())
    else:
        n = stats.rows

    def without_value(status: Literal["insufficient_data", "error"], reason: str) -> Finding:
        return Finding(model, metric, candidate, None, status, start, end, n, 0, {"reason": reason})

    guarded = not attributed and metric not in ("shadow_rows", "shadow_drop_rate")
    if stats is None or (n < min_samples and guarded):
        what = "labelled shadow rows" if labelled else "shadow rows"
        return without_value("insufficient_data", f"{n} {what} < min_samples {min_samples}")
    try:
        values = stats.metrics(attribution)
    except Exception as exc:  # a bug here must not take the other metrics with it
        return without_value("error", f"{type(exc).__name__}: {exc}")
    if metric not in values:
        reason = {
            "shadow_agreement": "agreement needs predicted classes from both models",
            "shadow_size_ratio": "size ratio needs production's model file (shadow.baseline)",
        }.get(metric, f"{metric} is not available for these rows")
        if attributed:
            why = stats.attribution_result(attribution)[1].get("unavailable", {}).get(metric)
            reason = why or reason
        return without_value("insufficient_data", reason)
    details: dict[str, Any] = {"rows": stats.rows}
    if "latency" in metric:
        details["baseline"] = stats.baseline_basis
    if attributed:
        details = dict(stats.attribution_result(attribution)[1])
        details.pop("unavailable", None)
    return Finding(model, metric, candidate, values[metric], "ok", start, end, n, 0, details)
