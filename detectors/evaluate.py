"""Scoring a window against a reference: metrics in, :class:`Finding` objects out.

The sample-size guard lives here: a column with fewer than ``min_samples`` values (or a
window with fewer events, or fewer labelled pairs for performance metrics) yields a
finding with status ``insufficient_data`` and no value — never a drift alarm. A detector
that fails yields status ``error`` with the reason, and the other metrics go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from watchkeeper.detectors.base import (
    ColumnDetector,
    Finding,
    PerformanceDetector,
    Score,
    WindowDetector,
    WindowView,
)
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimate_findings import estimate_finding, trust_findings
from watchkeeper.detectors.estimate_trust import TRUST_METRIC
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import MetricInfo, metric
from watchkeeper.detectors.reserved_names import PREDICTION, PREDICTION_CLASS
from watchkeeper.detectors.window import WindowSummary


def select_features(reference: ReferenceProfile, patterns: Sequence[str] | None) -> list[str]:
    """Reference features matching any of ``patterns`` (names or globs); every input
    feature when None — the prediction is not a feature: a rule selects it by name.

    ``__prediction__`` selects the prediction (and its class, when the model logs one or
    the prediction is a probability vector).
    """
    names = sorted(reference.features)
    specials = [n for n in (PREDICTION, PREDICTION_CLASS) if reference.column(n) is not None]
    if patterns is None:
        return names
    chosen = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
    if PREDICTION in patterns:
        chosen += specials
    return chosen


def _sketch_of(window: WindowSummary, name: str) -> ColumnSketch | None:
    if name == PREDICTION:
        return window.prediction
    if name == PREDICTION_CLASS:
        return window.prediction_class
    return window.features.get(name)


def evaluate(
    reference: ReferenceProfile | None,
    window: WindowSummary,
    metrics: Iterable[str],
    *,
    features: Sequence[str] | None = None,
    min_samples: int = 100,
    duration_s: float | None = None,
    baseline_rates: tuple[float, ...] = (),
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Finding]:
    """Every finding of ``metrics`` for ``window`` (see the module docstring).

    ``options`` passes constructor arguments per metric, e.g. ``{"psi": {"smoothing":
    "laplace"}}``.
    """
    options = options or {}
    infos = [metric(name) for name in metrics]
    findings: list[Finding] = []
    view = WindowView(
        window,
        reference,
        duration_s if duration_s is not None else window.size_ms / 1000,
        baseline_rates,
    )
    columns = select_features(reference, features) if reference is not None else []
    for info in infos:
        opts = options.get(info.name, {})
        if info.scope == "column":
            if reference is None:
                continue
            for name in columns:
                findings.append(
                    _column_finding(
                        info, info.column_detector(**opts), reference, window, name, min_samples
                    )
                )
        elif info.scope == "window":
            findings.append(_window_finding(info, info.window_detector(**opts), view, min_samples))
        elif info.scope in ("shadow", "ab"):
            continue  # candidates' / versions' comparisons: detectors.shadow_findings, .ab
        elif info.scope == "estimate":
            width = info.estimate_detector(**opts).width
            if info.name == TRUST_METRIC:
                findings += trust_findings(info.name, reference, window, min_samples, width)
            else:
                findings.append(estimate_finding(info.name, reference, window, min_samples, width))
        else:
            findings.append(
                _performance_finding(
                    info, info.performance_detector(**opts), reference, window, min_samples
                )
            )
    return findings


def _finding(
    window: WindowSummary,
    info: MetricInfo,
    feature: str | None,
    value: float | None,
    status: str,
    n_current: int,
    n_reference: int = 0,
    details: dict[str, Any] | None = None,
) -> Finding:
    return Finding(
        window.model,
        info.name,
        feature,
        value,
        status,  # type: ignore[arg-type]
        window.start_ms,
        window.end_ms,
        n_current,
        n_reference,
        details or {},
    )


def _insufficient(
    window: WindowSummary,
    info: MetricInfo,
    feature: str | None,
    n_current: int,
    n_reference: int,
    reason: str,
) -> Finding:
    return _finding(
        window, info, feature, None, "insufficient_data", n_current, n_reference, {"reason": reason}
    )


def _run(score: Any) -> tuple[Score | None, str, dict[str, Any]]:
    try:
        return score(), "ok", {}
    except InsufficientDataError as exc:
        return None, "insufficient_data", {"reason": str(exc)}
    except Exception as exc:  # a detector bug must not take the other metrics with it
        return None, "error", {"reason": f"{type(exc).__name__}: {exc}"}


def _column_finding(
    info: MetricInfo,
    detector: ColumnDetector,
    reference: ReferenceProfile,
    window: WindowSummary,
    name: str,
    min_samples: int,
) -> Finding:
    ref = reference.column(name)
    cur = _sketch_of(window, name)
    if ref is None or cur is None:
        return _insufficient(
            window,
            info,
            name,
            0,
            0 if ref is None else ref.count,
            "no values for this column in the window",
        )
    if ref.kind not in info.kinds:
        return _insufficient(
            window,
            info,
            name,
            cur.total,
            ref.count,
            f"{info.name} does not apply to {ref.kind} columns",
        )
    if cur.total < min_samples:
        return _insufficient(
            window,
            info,
            name,
            cur.total,
            ref.count,
            f"{cur.total} values < min_samples {min_samples}",
        )
    score, status, details = _run(lambda: detector.score(ref, cur))
    if score is not None:
        details = score.details
    return _finding(
        window,
        info,
        name,
        None if score is None else score.value,
        status,
        cur.total,
        ref.count,
        details,
    )


def _window_finding(
    info: MetricInfo, detector: WindowDetector, view: WindowView, min_samples: int
) -> Finding:
    window = view.summary
    needs_events = info.name not in ("throughput_eps", "traffic_ratio")
    # the window's traffic (predictions or features rows), never its labels: latency,
    # prediction and feature-presence metrics read no label row
    if needs_events and window.traffic < min_samples:
        return _insufficient(
            window,
            info,
            None,
            window.traffic,
            0,
            f"{window.traffic} events < min_samples {min_samples}",
        )
    score, status, details = _run(lambda: detector.score(view))
    if score is not None:
        details = score.details
    # n_current is what the guard above counted, whether it passed or not
    value = None if score is None else score.value
    return _finding(window, info, None, value, status, window.traffic, 0, details)


def _performance_finding(
    info: MetricInfo,
    detector: PerformanceDetector,
    reference: ReferenceProfile | None,
    window: WindowSummary,
    min_samples: int,
) -> Finding:
    perf = window.performance
    pairs = perf.n if perf is not None else 0
    if perf is None or pairs < min_samples:
        return _insufficient(
            window,
            info,
            None,
            pairs,
            0,
            f"{pairs} labelled predictions < min_samples {min_samples}",
        )
    score, status, details = _run(lambda: Score(detector.value(perf)))
    ref_value = reference.metrics.get(info.name) if reference is not None else None
    value = None if score is None else score.value
    if value is not None and ref_value is not None:
        details = {"reference": ref_value, "delta": value - ref_value}
    return _finding(
        window,
        info,
        None,
        value,
        status,
        pairs,
        reference.rows if reference is not None else 0,
        details,
    )
