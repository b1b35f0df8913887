"""Performance of a batch file for ``watchkeeper drift``: realised and estimated.

A batch with the reference's label column gets the realised metrics (``accuracy``,
``roc_auc``, … or ``mae``, ``rmse``), graded as the daemon grades joined pairs; a batch
with its prediction column, against a reference that carries an estimation, gets the
``estimated_*`` metrics, computed from the same window state the daemon keeps; with
both, ``estimate_mismatch`` says whether the two agree. Without a policy they are judged
by their declared relative defaults (``MetricInfo.relative_thresholds``: −0.01 warn and
−0.02 critical for accuracy-like metrics, +0.01 / +0.02 for errors) against the
reference's realised value, so they gate the exit code like every other finding.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from watchkeeper.daemon.offline.frame_columns import numeric_values
from watchkeeper.daemon.offline.reference import grade_pairs
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.estimate_findings import estimation_bases
from watchkeeper.detectors.estimate_sketch import binary_decisions, class_index
from watchkeeper.detectors.estimate_trust import TRUST_METRIC
from watchkeeper.detectors.performance import PerformanceSketch, class_names
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.defaults import severity
from watchkeeper.policies.schema import Verdict

GateVerdict = Verdict | Literal["n/a"]
"""A finding's verdict in ``watchkeeper drift``: ``n/a`` when it was not judged (too few
rows, or a value no threshold applies to), the reason in its ``details["reason"]``."""


def add_batch(
    window: WindowSummary,
    chunk: pd.DataFrame,
    reference: ReferenceProfile,
    prediction: str | None,
    label: str | None,
    prediction_class: str | None = None,
) -> None:
    """One chunk of the batch into ``window``'s performance and estimate state
    (``prediction_class``: the class column, default the reference's)."""
    names = reference.column_names
    klass = prediction_class or names.get("prediction_class")
    klass = klass if klass in chunk.columns else None
    if prediction and label and label in chunk.columns and prediction in chunk.columns:
        if window.performance is None:
            window.performance = PerformanceSketch(reference.task or "classification")
        grade_pairs(window.performance, chunk, prediction, label, klass)
    est = reference.estimation
    if est is None or not prediction or prediction not in chunk.columns:
        return
    if est.problem == "multiclass":
        columns = [names.get(f"score:{c}") for c in est.calibrator.classes]  # type: ignore[union-attr]
        if not all(c in chunk.columns for c in columns):
            return
        scores = np.column_stack([numeric_values(chunk[c]) for c in columns])
        predicted = None
        if klass is not None and chunk[klass].notna().all():
            predicted = class_index(
                est.calibrator.classes,  # type: ignore[union-attr]
                class_names(chunk[klass].to_numpy()),
            )
        window.estimates.update(est, scores, predicted)
        return
    values = numeric_values(chunk[prediction])
    if est.problem == "binary":
        classes = absent = None
        if klass is not None:
            present = chunk[klass].notna().to_numpy()
            classes = np.empty(len(chunk), dtype=object)
            classes[present] = class_names(chunk[klass][present].to_numpy())
            absent = ~present
        threshold = est.calibrator.threshold  # type: ignore[union-attr]
        window.estimates.update(est, values, binary_decisions(classes, absent, values, threshold))
        return
    features: dict[str, Any] = {}
    for name in reference.features:
        if name in chunk.columns:
            series = chunk[name]
            if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                features[name] = numeric_values(series)
            else:
                out = np.empty(len(series), dtype=object)
                present = series.notna().to_numpy()
                out[present] = [str(v) for v in series[present].tolist()]
                features[name] = out
    window.estimates.update(est, values, None, features)


def judge(finding: Finding, reference: ReferenceProfile) -> tuple[Finding, GateVerdict]:
    """A finding's severity by the metric's defaults: relative ones from the reference's
    realised value, absolute ones as declared; ``n/a`` (with the reason) when it has no
    value or no threshold applies, as the daemon records ``insufficient_data`` then."""
    valueless = unvalued(finding)
    if valueless is not None:
        return valueless
    info = METRICS[finding.metric]
    if info.relative_thresholds is None:
        if info.thresholds is None:
            return not_judged(
                finding, f"{finding.metric} has no default threshold: give it a --policy rule"
            )
        return finding, severity(finding.metric, finding.value)
    bases = {**reference.metrics, **estimation_bases(reference)}
    base = bases.get(finding.metric)
    if base is None:
        # the words of policies.rule_thresholds for a relative rule without a base
        return not_judged(finding, f"the reference has no {finding.metric} to compare with")
    warn, critical = (base + t for t in info.relative_thresholds)
    return finding, severity(finding.metric, finding.value, {finding.metric: (warn, critical)})


def not_judged(finding: Finding, reason: str) -> tuple[Finding, GateVerdict]:
    """``finding`` as not judged, ``reason`` in its details."""
    return replace(finding, details={**finding.details, "reason": reason}), "n/a"


def unvalued(finding: Finding) -> tuple[Finding, GateVerdict] | None:
    """``finding`` not judged, with its own reason, when it has no value (too few rows,
    a metric the batch does not allow); None when it has one to judge."""
    if finding.status != "ok" or finding.value is None:
        return not_judged(finding, str(finding.details.get("reason", finding.status)))
    return None


def judged(results: list[tuple[Finding, GateVerdict]]) -> bool:
    """Whether some finding got thresholds: the gate's pass needs one."""
    return any(v != "n/a" for _, v in results)


def performance_metrics(reference: ReferenceProfile, window: WindowSummary) -> list[str]:
    """The realised and estimated metrics the batch allows, in registry order."""
    realised = window.performance.metrics() if window.performance is not None else {}
    est = reference.estimation
    estimated = set(est.metrics) if est is not None and window.estimates.of(est) else set()
    out = [n for n in realised if n in METRICS and METRICS[n].scope == "performance"]
    out += [n for n in METRICS if n in estimated]
    if realised and estimated:
        out.append(TRUST_METRIC)
    return out


def is_performance(finding: Finding) -> bool:
    return METRICS[finding.metric].scope in ("performance", "estimate")


def render_performance(results: list[tuple[Finding, GateVerdict]]) -> Any:
    """Realised and estimated metrics as a table: value, reference value, band, rows."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="performance: realised (labels) and estimated (no labels)")
    for title in ("metric", "value", "reference", "band", "rows", "verdict"):
        table.add_column(title, justify="left" if title == "metric" else "right")
    style = {"ok": "", "warn": "yellow", "critical": "bold red", "n/a": "dim"}
    for f, verdict in results:
        d = f.details
        name = f.metric if f.feature is None else f"{f.metric} ({f.feature})"
        if f.value is None:
            table.add_row(escape(name), "[dim]n/a[/]", "", "", str(f.n_current), "n/a")
            continue
        band = d.get("band")
        shown = f"{f.value:.4f}"
        table.add_row(
            escape(name),
            f"[{style[verdict]}]{shown}[/]" if style[verdict] else shown,
            "" if d.get("reference") is None else f"{d['reference']:.4f}",
            "" if not band else f"{band['lower']:.4f} – {band['upper']:.4f}",
            str(f.n_current),
            verdict,
        )
    return table
