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
from watchkeeper.daemon.checks.rule_findings import findings_for
from watchkeeper.daemon.errors import DataFileError
from watchkeeper.daemon.offline.batch_performance import (
    GateVerdict,
    add_batch,
    judge,
    not_judged,
    unvalued,
)
from watchkeeper.daemon.offline.data_files import read_chunks
from watchkeeper.daemon.offline.frame_columns import is_numeric
from watchkeeper.daemon.offline.held_column import HeldSketch, HoldBudget
from watchkeeper.daemon.offline.reference import REFERENCE_K, as_classes, column_sketch
from watchkeeper.detectors.base import Finding
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.estimate_findings import estimation_bases
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.out_of_range import pinned_edges
from watchkeeper.detectors.profile import ColumnProfile, NumericProfile, ReferenceProfile
from watchkeeper.detectors.registry import DEFAULT_DRIFT_METRICS, METRICS
from watchkeeper.detectors.reserved_names import PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.reservoir import Reservoir, mix64
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.rule_thresholds import rule_thresholds
from watchkeeper.policies.schema import Policy, Rule


def summarize_file(
    path: str | Path,
    reference: ReferenceProfile,
    prediction: str | None = None,
    sample_size: int = 2000,
    label: str | None = None,
    prediction_class: str | None = None,
) -> WindowSummary:
    """The batch in ``path`` summarised as one window, on the reference's columns.

    The prediction (``prediction``, else the reference's prediction column) gives the
    estimates when the reference has an estimation; the label (``label``, else the
    reference's) gives the realised metrics (:mod:`batch_performance`). The prediction's
    own drift is scored only when ``prediction`` is given, and so is the drift of its
    class (``prediction_class``, else the reference's class column, spelled as the
    reference spells classes) when the batch has it. Numeric columns count the
    reference's bins and out-of-range limits exactly and hold their values
    (:mod:`held_column`), so every number scored from the window is exact on the file's
    side and the same run after run."""
    scored = prediction or reference.column_names.get("prediction")
    labelled = label or reference.column_names.get("label")
    klass = prediction_class or reference.column_names.get("prediction_class")
    window = WindowSummary(reference.model, "batch", 0, 0, SketchSettings(k=REFERENCE_K))
    window.sample = Reservoir(sample_size)
    budget = HoldBudget()
    rows = 0
    shared: set[str] = set()
    for chunk in read_chunks(path):
        shared.update(n for n in reference.features if n in chunk.columns)
        for name in reference.features:
            if name in chunk.columns:
                window.features[name] = _add(
                    chunk[name], window.features.get(name), reference.features[name], budget
                )
        if prediction and prediction in chunk.columns:
            window.prediction = _add(
                chunk[prediction], window.prediction, reference.prediction, budget
            )
        if prediction and klass and klass in chunk.columns:
            window.prediction_class = _add(
                as_classes(chunk[klass]),
                window.prediction_class,
                reference.prediction_class,
                budget,
            )
        add_batch(window, chunk, reference, scored, labelled, klass)
        keys = mix64(np.arange(rows, rows + len(chunk), dtype=np.uint64))
        names = [n for n in reference.features if n in chunk.columns]
        if not names:  # nothing to sample: the check after the loop says so
            rows += len(chunk)
            continue

        def make_rows(
            idx: np.ndarray[Any, Any], c: pd.DataFrame = chunk, n: list[str] = names
        ) -> list[dict[str, Any]]:
            records = c.iloc[idx][n].to_dict(orient="records")
            return [{"features": {k: _plain(v) for k, v in r.items()}} for r in records]

        window.sample.update(keys, make_rows)
        rows += len(chunk)
    if rows == 0:
        raise DataFileError(f"{path}: the batch has no rows: there is nothing to judge")
    if not shared:
        raise DataFileError(
            f"{path}: the batch shares no column with the reference "
            f"(reference columns: {', '.join(sorted(reference.features)[:10])})"
        )
    window.events = {"features": rows}
    return window


def _add(
    series: pd.Series,
    current: ColumnSketch | None,
    profile: ColumnProfile | None,
    budget: HoldBudget,
) -> ColumnSketch:
    """``series`` into its column's summary: a numeric column starts as a
    :class:`HeldSketch` (its values held, within ``budget``) counting the pinned edges."""
    edges = _edges(profile)
    if current is None and is_numeric(series):
        held = HeldSketch(REFERENCE_K, budget)
        if edges is not None:
            held.count_bins_on(edges)
        current = held
    return column_sketch(series, current, edges)


def _edges(profile: ColumnProfile | None) -> tuple[float, ...] | None:
    """The edges the batch's column counts exactly: the reference's bins and its
    out-of-range limits (:func:`pinned_edges`), so PSI, KL, JS, χ² and
    ``out_of_range_rate`` come out exact and the same run after run."""
    return pinned_edges(profile) if isinstance(profile, NumericProfile) else None


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
) -> list[tuple[Finding, GateVerdict]]:
    # every input feature, and the prediction when the batch has one
    features = sorted(reference.features) + ([PREDICTION] if window.prediction is not None else [])
    findings = evaluate(reference, window, metrics, min_samples=min_samples, features=features)
    # the class is selected with the prediction; a batch without its column has no class
    absent = {PREDICTION_CLASS} if window.prediction_class is None else set()
    return [judge(f, reference) for f in findings if f.feature not in absent]


OFFLINE_SCOPES = ("column", "performance", "estimate")
"""The rule scopes a batch file can be judged on (latency, A/B and shadow rules need the
live streams)."""


def offline_rules(policy: Policy) -> list[Rule]:
    return [r for r in policy.rules if METRICS[r.metric].scope in OFFLINE_SCOPES]


def policy_findings(
    policy: Policy, reference: ReferenceProfile, window: WindowSummary
) -> list[tuple[Finding, GateVerdict]]:
    """A batch judged by a policy file's column, performance and estimate rules, with the
    thresholds the daemon uses (fixed, relative or derived from the false-alarm budget).
    A finding without a value, or one no threshold applies to, is ``n/a`` with the
    reason, as the daemon's engine records it ``insufficient_data``."""
    column_rules = offline_rules(policy)
    bases = {**reference.metrics, **estimation_bases(reference)}
    scoped = policy.model_copy(update={"rules": column_rules})
    found = findings_for(scoped, reference, window, 1.0, ())
    out: list[tuple[Finding, GateVerdict]] = []
    for rule in column_rules:
        for f in found.get(rule.key, []):
            valueless = unvalued(f)
            if valueless is not None:
                out.append(valueless)
                continue
            assert f.value is not None  # unvalued passed it
            t = rule_thresholds(rule, f, bases, policy.schedule.period_s(), len(found[rule.key]))
            if isinstance(t, str):
                out.append(not_judged(f, t))
            else:
                out.append((f, t.severity(f.value) or "ok"))
    return out


# each metric's column title is declared with it (MetricInfo.short)
_SHORT = {name: info.short for name, info in METRICS.items() if info.short}


MAX_NAME_WIDTH = 40
"""A feature name is shown whole up to this many characters (longer ones fold)."""


def render_table(results: list[tuple[Finding, GateVerdict]], width: int = 80) -> Any:
    """The findings as feature × metric tables that fit ``width`` columns: the metrics are
    split over as many tables as needed, each repeating the feature column, so a name is
    never cut to a few characters (rich shrinks columns of a table wider than the
    terminal)."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from watchkeeper.alerts.text import terminal

    metrics = list(dict.fromkeys(f.metric for f, _ in results))
    features = list(dict.fromkeys(f.feature or "" for f, _ in results))
    cells = {(f.feature or "", f.metric): (f, s) for f, s in results}
    # a feature name is data: no rich markup, no terminal escapes
    special = {PREDICTION: "prediction", PREDICTION_CLASS: "prediction class"}
    names = {f: special.get(f) or terminal(f) for f in features}
    name_width = min(MAX_NAME_WIDTH, max((len(n) for n in names.values()), default=7))
    name_width = max(name_width, len("feature"))

    def column_width(m: str) -> int:  # the cell's text and its padding and border
        return max(len(_SHORT.get(m, m)), 6) + 3

    groups: list[list[str]] = [[]]
    used = name_width + 4
    for m in metrics:
        if groups[-1] and used + column_width(m) > width:
            groups.append([])
            used = name_width + 4
        groups[-1].append(m)
        used += column_width(m)
    style = {"ok": "", "warn": "yellow", "critical": "bold red"}
    tables = []
    for i, group in enumerate(groups):
        title = "drift against the reference (yellow: warn, red: critical)"
        table = Table(title=title + (f" ({i + 1}/{len(groups)})" if len(groups) > 1 else ""))
        table.add_column("feature", min_width=name_width, overflow="fold")
        for m in group:
            table.add_column(_SHORT.get(m, m), justify="right", no_wrap=True)
        for feature in features:
            row = [escape(names[feature])]
            for m in group:
                f, s = cells.get((feature, m), (None, "ok"))
                if f is None:
                    row.append("")
                elif f.value is None or s == "n/a":  # the reasons are listed below
                    row.append("[dim]n/a[/]")
                else:
                    value = f"{f.value:.3f}"
                    row.append(f"[{style[s]}]{value}[/]" if style[s] else value)
            table.add_row(*row)
        tables.append(table)
    return Group(*tables)


_INERT = str.maketrans(
    {
        "<": "‹",
        ">": "›",
        "&": "＆",
        "\u2028": " ",
        "\u2029": " ",
        **{chr(c): " " for c in (*range(0x20), 0x7F)},
    }
)
MAX_SHOWN = 200


def inert_text(value: str) -> str:
    """``value`` as text that cannot end or open markup wherever a report embeds it.

    Evidently puts column names and category values into the page, some inside the JSON
    of a ``<script>`` element, where HTML escaping does not apply and ``</script>``,
    ``<!--`` or U+2028 would end or change the script. So every such string has ``<``,
    ``>`` and ``&`` replaced by look-alikes (‹ › ＆), line / paragraph separators and
    control characters by spaces, and is cut at 200 characters. The page reads the same
    to a person; nothing in it is markup.

    >>> inert_text("</script><script>alert(1)</script>")
    '‹/script›‹script›alert(1)‹/script›'
    """
    return value.translate(_INERT)[:MAX_SHOWN]


def _inert_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with inert column names and inert text values (numbers untouched)."""
    out = frame.copy()
    names = [inert_text(str(c)) for c in out.columns]
    # two names that differ only in what was replaced stay two columns
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name} ({count + 1})")
    out.columns = unique
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: inert_text(v) if isinstance(v, str) else v)
    return out


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
        if not columns:
            raise ValueError("the window and the reference share no column")
        ref, cur = _inert_frame(ref[columns]), _inert_frame(cur[columns])
        columns = list(ref.columns)
        snapshot = Report([DataDriftPreset()]).run(
            current_data=cur[columns], reference_data=ref[columns]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(path))
    return path
