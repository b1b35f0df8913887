"""Findings of the label-free estimates and of their trust check for one window.

:func:`estimate_finding` scores one ``estimated_*`` metric from the window's estimate
state for the reference's estimation (:mod:`watchkeeper.detectors.window_estimates`):
the value, its sampling band, ``n`` (the rows estimated from — ``min_samples`` applies to
it), the reference's realised value (the base of ``relative: true``) and, once labels
arrived for the window, the realised value beside it.

:func:`trust_findings` is metric ``estimate_mismatch``: per headline metric (accuracy and
ROC AUC, or MAE and RMSE) whose realised value the window's joined labels give,
|realised − estimated| in units of the gap sampling explains
(:class:`~watchkeeper.detectors.estimate_trust.EstimateTrust`); above 1 they disagree,
which the estimate's assumption (P(y | x) unchanged) does not explain.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimate_trust import EstimateTrust
from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS
from watchkeeper.detectors.estimation_reference import Estimation
from watchkeeper.detectors.loss_sketch import LossSketch
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.sampling_band import SAMPLING_ERROR_RANGE
from watchkeeper.detectors.window import WindowSummary

TRUSTED = ("estimated_accuracy", "estimated_roc_auc", "estimated_mae", "estimated_rmse")
"""The estimates the trust check compares: one threshold metric and one ranking metric
per problem (precision, recall and F1 move with accuracy and would open the same
incident three more times)."""


def _finding(
    window: WindowSummary,
    metric: str,
    feature: str | None,
    value: float | None,
    status: str,
    n: int,
    n_reference: int,
    details: dict[str, Any],
) -> Finding:
    return Finding(
        window.model,
        metric,
        feature,
        value,
        status,  # type: ignore[arg-type]
        window.start_ms,
        window.end_ms,
        n,
        n_reference,
        details,
    )


def estimation_bases(reference: ReferenceProfile | None) -> dict[str, float]:
    """``estimated_*`` → the reference's realised value: what ``relative: true`` shifts."""
    est = reference.estimation if reference is not None else None
    if est is None:
        return {}
    return {
        name: est.reference[ESTIMATED_METRICS[name].realised]
        for name in est.metrics
        if ESTIMATED_METRICS[name].realised in est.reference
    }


def _why_not(reference: ReferenceProfile | None, metric: str) -> str | None:
    if reference is None:
        return "no reference profile for this model"
    est = reference.estimation
    if est is None:
        return (
            "the reference has no estimation (build it from a file with --label and "
            "--prediction; v1 profiles and references from stored windows have none)"
        )
    if metric not in est.metrics and metric in ESTIMATED_METRICS:
        return f"{metric} is not estimated for a {est.problem} model"
    return None


def _realised(window: WindowSummary) -> tuple[dict[str, float], int]:
    perf = window.performance
    if perf is None or perf.n == 0:
        return {}, 0
    return perf.metrics(), perf.n


def estimate_finding(
    metric: str,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    min_samples: int,
    width: float = SAMPLING_ERROR_RANGE,
) -> Finding:
    """One ``estimated_*`` metric of ``window``; see the module docstring."""
    rows = reference.rows if reference is not None else 0
    reason = _why_not(reference, metric)
    if reason is not None:
        return _finding(
            window, metric, None, None, "insufficient_data", 0, rows, {"reason": reason}
        )
    assert reference is not None and reference.estimation is not None
    est: Estimation = reference.estimation
    sketch = window.estimates.of(est)
    n = sketch.n if sketch is not None else 0
    if sketch is None or n < min_samples:
        why = (
            "no estimate state for this reference in the window (it began before the "
            "reference was in force, its predictions carry no score, or ingest refused the "
            "reference: the daemon's log says why — built for another decision threshold, "
            "or more references with estimations for this model than a window keeps)"
            if sketch is None
            else f"{n} scored predictions < min_samples {min_samples}"
        )
        if isinstance(sketch, LossSketch) and sketch.missing_features:
            why += (
                f"; {sketch.missing_features} predictions left out: they carry none of the "
                "loss model's features"
            )
        return _finding(window, metric, None, None, "insufficient_data", n, rows, {"reason": why})
    try:
        estimate = est.estimate(metric, sketch, width)
    except InsufficientDataError as exc:
        return _finding(
            window, metric, None, None, "insufficient_data", n, rows, {"reason": str(exc)}
        )
    spec = ESTIMATED_METRICS[metric]
    base = est.reference.get(spec.realised)
    details: dict[str, Any] = {
        "band": None if estimate.band is None else estimate.band.to_dict(),
        "n_estimated": estimate.n,
        "nan_scores": estimate.nan_scores,
        "reference": base,
        "estimation": est.fingerprint,
        "problem": est.problem,
    }
    if isinstance(sketch, LossSketch):  # what the loss model could not see, shown
        details["missing_features"] = sketch.missing_features
        details["partial_features"] = sketch.partial_features
    if base is not None:
        details["delta"] = estimate.value - base
    realised, pairs = _realised(window)
    if spec.realised in realised:
        details["realised"] = realised[spec.realised]
        details["n_labelled"] = pairs
    return _finding(window, metric, None, estimate.value, "ok", estimate.n, rows, details)


def trust_findings(
    metric: str,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    min_samples: int,
    width: float = SAMPLING_ERROR_RANGE,
) -> list[Finding]:
    """``estimate_mismatch`` per compared estimate (the finding's feature names it)."""
    rows = reference.rows if reference is not None else 0
    reason = _why_not(reference, metric)
    if reason is not None:
        return [
            _finding(window, metric, None, None, "insufficient_data", 0, rows, {"reason": reason})
        ]
    assert reference is not None and reference.estimation is not None
    est = reference.estimation
    sketch = window.estimates.of(est)
    realised, pairs = _realised(window)
    out = []
    trust = EstimateTrust(width)
    for name in (m for m in TRUSTED if m in est.metrics):
        spec = ESTIMATED_METRICS[name]
        spread = est.spreads.get(spec.realised)

        def insufficient(why: str, n: int, name: str = name) -> Finding:
            return _finding(
                window, metric, name, None, "insufficient_data", n, rows, {"reason": why}
            )

        if sketch is None or sketch.n < min_samples:
            out.append(insufficient("too few scored predictions to estimate from", 0))
            continue
        if pairs < min_samples:
            out.append(
                insufficient(f"{pairs} labelled predictions < min_samples {min_samples}", pairs)
            )
            continue
        if spec.realised not in realised or spread is None:
            out.append(insufficient(f"no realised {spec.realised} or no band to compare", pairs))
            continue
        try:
            verdict = trust.score(
                realised[spec.realised], pairs, est.estimate(name, sketch, width), spread
            )
        except InsufficientDataError as exc:
            out.append(insufficient(str(exc), pairs))
            continue
        out.append(
            _finding(window, metric, name, verdict.mismatch, "ok", pairs, rows, verdict.to_dict())
        )
    return out
