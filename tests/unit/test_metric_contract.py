"""Every registered metric through the same checks (river's ``check_estimator`` is the
model): what the registry declares about a metric holds together, and everything else
reads it from there."""

from __future__ import annotations

import inspect
import math

import pytest
from watchkeeper.detectors.registry import METRICS, MetricInfo
from watchkeeper.policies.defaults import DEFAULT_THRESHOLDS, severity
from watchkeeper.policies.schema import AUTO_METRICS

NAMES = sorted(METRICS)


@pytest.mark.parametrize("name", NAMES)
def test_a_metric_declares_itself_consistently(name: str) -> None:
    info: MetricInfo = METRICS[name]
    assert info.name == name
    assert info.scope in ("column", "window", "performance", "shadow", "estimate", "ab")
    assert info.direction in ("higher_is_worse", "lower_is_worse", "two_sided")
    if info.direction == "two_sided":
        assert info.scope == "ab", "two-sided: the A/B score mean, whose findings are distances"
    assert info.description.strip()
    assert info.kinds <= {"numeric", "categorical"}
    if info.scope == "column":
        assert info.kinds, "a column metric says which kinds of column it applies to"
    if info.scope in ("shadow", "ab"):
        assert info.factory is None, "computed by detectors.shadow / detectors.ab"
    else:
        _check_detector(info)
    if info.auto:
        assert info.scope in ("column", "estimate"), "auto thresholds: column metrics, estimates"
    if info.relative_thresholds is not None:
        warn, critical = info.relative_thresholds
        assert info.scope in ("performance", "estimate"), "relative to a reference value"
        worse = critical > warn if info.direction == "higher_is_worse" else critical < warn
        assert worse and (warn > 0) == (info.direction == "higher_is_worse")
    if info.thresholds is not None:
        warn, critical = info.thresholds
        assert math.isfinite(warn) and math.isfinite(critical)
        worse = critical > warn if info.direction == "higher_is_worse" else critical < warn
        assert worse, "critical lies beyond warn in the metric's bad direction"
        # the default thresholds judge the metric by its declaration
        assert severity(name, critical) == "critical"
        assert severity(name, warn) == "warn"
    if info.short is not None:
        assert info.short and info.short != name


def test_defaults_and_auto_are_read_from_the_registry() -> None:
    assert {
        n: m.thresholds for n, m in METRICS.items() if m.thresholds is not None
    } == DEFAULT_THRESHOLDS
    assert tuple(n for n, m in METRICS.items() if m.auto) == AUTO_METRICS
    assert AUTO_METRICS[:5] == ("psi", "kl_divergence", "js_distance", "ks", "chi2")
    assert all(METRICS[n].scope == "estimate" for n in AUTO_METRICS[5:])


def test_every_estimate_is_a_metric_policies_can_name() -> None:
    from watchkeeper.detectors.estimate_trust import TRUST_METRIC
    from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS

    estimates = {n for n, m in METRICS.items() if m.scope == "estimate"}
    assert estimates == {*ESTIMATED_METRICS, TRUST_METRIC}
    for name, spec in ESTIMATED_METRICS.items():
        info = METRICS[name]
        assert info.direction == spec.direction and info.auto
        assert info.relative_thresholds == (spec.warn_relative, spec.critical_relative)


def test_short_titles_are_distinct() -> None:
    titles = [m.short or m.name for m in METRICS.values()]
    assert len(titles) == len(set(titles))


# the method each scope's detector answers with, and its parameters (detectors/base.py)
_INTERFACE = {
    "column": ("score", ["reference", "current"]),
    "window": ("score", ["view"]),
    "performance": ("value", ["sketch"]),
}
# an estimate's evaluation reads the window's estimate state; its detector holds options
_ESTIMATE_OPTIONS = ("width",)


def _check_detector(info: MetricInfo) -> None:
    build = {
        "column": info.column_detector,
        "window": info.window_detector,
        "performance": info.performance_detector,
        "estimate": info.estimate_detector,
    }[info.scope]
    detector = build()
    assert detector.name == info.name
    if info.scope == "estimate":
        assert all(isinstance(getattr(detector, o), float) for o in _ESTIMATE_OPTIONS)
    else:
        method, params = _INTERFACE[info.scope]
        assert list(inspect.signature(getattr(detector, method)).parameters) == params
    if info.scope == "column":
        assert detector.kinds == info.kinds  # type: ignore[union-attr]
    # a metric of one scope is never built as another's detector
    for other, other_build in {
        "column": info.column_detector,
        "window": info.window_detector,
        "performance": info.performance_detector,
        "estimate": info.estimate_detector,
    }.items():
        if other != info.scope:
            with pytest.raises(TypeError, match="metric, not a"):
                other_build()
