"""A ``shadow_*`` metric of one candidate as a policy finding, with the sample-size guard
that fits the metric: labelled rows for label-based metrics, attributed rows for
attribution metrics, shadow rows for the rest; and ``attribution_shift``, production's
window attributions against its reference's, as a finding of the model itself."""

from __future__ import annotations

from typing import Any, Literal

from watchkeeper.detectors.attribution import AttributionComparison, AttributionSummary
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.errors import InsufficientDataError
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


def attribution_shift(
    window: AttributionSummary | None,
    reference: AttributionSummary | None,
    comparison: AttributionComparison,
    no_reference: str = "production's reference attributions not computed yet",
) -> tuple[float | None, dict[str, Any]]:
    """(``attribution_shift`` or None, details: rows each side, both top features, and
    the reason when there is no value; ``no_reference``: why ``reference`` is None)."""
    details: dict[str, Any] = {
        "rows": 0 if window is None else window.rows,
        "reference_rows": 0 if reference is None else reference.rows,
    }
    if reference is None:
        return None, details | {"reason": no_reference}
    if window is None or window.rows == 0:
        return None, details | {"reason": "no attributed rows of production in the window"}
    if window.features != reference.features:
        return None, details | {"reason": "the reference was attributed over other features"}
    try:
        result = comparison.shift(reference, window)
    except InsufficientDataError as exc:
        return None, details | {"reason": str(exc)}
    details |= result.details
    if "attribution_shift" not in result.values:
        return None, details | {"reason": result.unavailable.get("attribution_shift", "")}
    return result.values["attribution_shift"], details


def attribution_shift_finding(
    model: str,
    window: AttributionSummary | None,
    reference: AttributionSummary | None,
    bounds: tuple[int, int],
    comparison: AttributionComparison,
    no_reference: str = "production's reference attributions not computed yet",
) -> Finding:
    """``attribution_shift`` as a finding of the model (no feature, no candidate); fewer
    than ``comparison.min_rows`` attributed rows on either side: insufficient data."""
    value, details = attribution_shift(window, reference, comparison, no_reference)
    n = 0 if window is None else window.rows
    n_ref = 0 if reference is None else reference.rows
    status: Literal["ok", "insufficient_data"] = "ok" if value is not None else "insufficient_data"
    start, end = bounds
    return Finding(model, "attribution_shift", None, value, status, start, end, n, n_ref, details)
