"""Offline uses of the detectors: scoring a batch file against a reference (``watchkeeper
drift``), and HTML drift reports with Evidently (``watchkeeper report`` and the daemon's
``/reports/`` links)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from watchkeeper.daemon.reference import REFERENCE_K, _sketch, read_chunks
from watchkeeper.detectors.base import PREDICTION, Finding
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import DEFAULT_DRIFT_METRICS
from watchkeeper.detectors.reservoir import Reservoir, mix64
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.defaults import Severity, severity
from watchkeeper.policies.schema import Policy


def summarize_file(
    path: str | Path,
    reference: ReferenceProfile,
    prediction: str | None = None,
    sample_size: int = 2000,
) -> WindowSummary:
    """The batch in ``path`` summarised as one window, on the reference's columns."""
    window = WindowSummary(reference.model, "batch", 0, 0, SketchSettings(k=REFERENCE_K))
    window.sample = Reservoir(sample_size)
    rows = 0
    for chunk in read_chunks(path):
        for name in reference.features:
            if name in chunk.columns:
                window.features[name] = _sketch(chunk[name], window.features.get(name))
        if prediction and prediction in chunk.columns:
            window.prediction = _sketch(chunk[prediction], window.prediction)
        keys = mix64(np.arange(rows, rows + len(chunk), dtype=np.uint64))
        names = [n for n in reference.features if n in chunk.columns]

        def make_rows(
            idx: np.ndarray[Any, Any], c: pd.DataFrame = chunk, n: list[str] = names
        ) -> list[dict[str, Any]]:
            records = c.iloc[idx][n].to_dict(orient="records")
            return [{"features": {k: _plain(v) for k, v in r.items()}} for r in records]

        window.sample.update(keys, make_rows)
        rows += len(chunk)
    window.events = {"features": rows}
    return window


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def drift_findings(
    reference: ReferenceProfile,
    window: WindowSummary,
    metrics: Sequence[str] = DEFAULT_DRIFT_METRICS,
    min_samples: int = 100,
) -> list[tuple[Finding, Severity]]:
    # every input feature, and the prediction when the batch has one
    features = sorted(reference.features) + ([PREDICTION] if window.prediction is not None else [])
    findings = evaluate(reference, window, metrics, min_samples=min_samples, features=features)
    return [(f, severity(f.metric, f.value)) for f in findings]


def policy_findings(
    policy: Policy, reference: ReferenceProfile, window: WindowSummary
) -> list[tuple[Finding, Severity]]:
    """A batch judged by a policy file's column rules, with the thresholds the daemon uses
    (fixed, relative or derived from the false-alarm budget)."""
    from watchkeeper.daemon.checks import findings_for
    from watchkeeper.detectors.registry import METRICS
    from watchkeeper.policies.engine import rule_thresholds

    column_rules = [r for r in policy.rules if METRICS[r.metric].scope == "column"]
    scoped = policy.model_copy(update={"rules": column_rules})
    found = findings_for(scoped, reference, window, 1.0, ())
    out: list[tuple[Finding, Severity]] = []
    for rule in column_rules:
        for f in found.get(rule.key, []):
            sev: Severity = "ok"
            if f.status == "ok" and f.value is not None:
                t = rule_thresholds(
                    rule, f, reference.metrics, policy.schedule.period_s(), len(found[rule.key])
                )
                if not isinstance(t, str):
                    sev = t.severity(f.value) or "ok"
            out.append((f, sev))
    return out


_SHORT = {
    "kl_divergence": "kl",
    "js_distance": "js",
    "wasserstein": "wass",
    "unseen_mass": "unseen",
    "nan_rate": "nan",
    "null_rate": "null",
    "missing_rate": "missing",
    "out_of_range_rate": "range",
}


def render_table(results: list[tuple[Finding, Severity]]) -> Any:
    from rich.table import Table

    metrics = list(dict.fromkeys(f.metric for f, _ in results))
    features = list(dict.fromkeys(f.feature or "" for f, _ in results))
    cells = {(f.feature or "", f.metric): (f, s) for f, s in results}
    table = Table(title="drift against the reference (yellow: warn, red: critical)")
    table.add_column("feature")
    for m in metrics:
        table.add_column(_SHORT.get(m, m), justify="right")
    style = {"ok": "", "warn": "yellow", "critical": "bold red"}
    for feature in features:
        row = [("prediction" if feature == PREDICTION else feature)]
        for m in metrics:
            f, s = cells.get((feature, m), (None, "ok"))
            if f is None:
                row.append("")
            elif f.value is None:
                row.append("[dim]n/a[/]")
            else:
                row.append(f"[{style[s]}]{f.value:.3f}[/]" if style[s] else f"{f.value:.3f}")
        table.add_row(*row)
    return table


def _frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    flat = []
    for row in rows:
        record = dict(row.get("features", {}))
        if "prediction" in row and not isinstance(row["prediction"], list):
            record["prediction"] = row["prediction"]
        flat.append(record)
    return pd.DataFrame(flat)


def drift_report(reference: ReferenceProfile, window: WindowSummary, path: Path) -> Path:
    """An Evidently data-drift report (HTML) of the window's sample against the reference's.

    Both sides are bounded samples (the window's reservoir, the profile's sample), so the
    report costs the same for any window size.
    """
    with warnings.catch_warnings():  # Evidently's imports warn about numpy and pydantic
        warnings.simplefilter("ignore")
        from evidently import Report
        from evidently.presets import DataDriftPreset

        if not reference.sample:
            raise ValueError("the reference profile holds no sample rows to report against")
        if not window.sample.rows:
            raise ValueError("the window holds no sample rows")
        ref, cur = _frame(reference.sample), _frame(window.sample.rows)
        columns = [c for c in ref.columns if c in cur.columns]
        snapshot = Report([DataDriftPreset()]).run(
            current_data=cur[columns], reference_data=ref[columns]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(path))
    return path
