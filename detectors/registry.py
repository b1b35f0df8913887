"""Every metric by its stable name: what it measures, where it applies, which way is bad.

Policy files name metrics from this table; the names never change meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.detectors.base import (
    ColumnDetector,
    DetectorFactory,
    Direction,
    EstimateDetector,
    PerformanceDetector,
    WindowDetector,
)
from watchkeeper.detectors.chi2 import ChiSquare
from watchkeeper.detectors.estimate_trust import TRUST_METRIC, EstimateTrust
from watchkeeper.detectors.estimated_performance import (
    ESTIMATED_METRICS,
    EstimatedClassificationMetric,
)
from watchkeeper.detectors.js import JSDistance
from watchkeeper.detectors.kl import KLDivergence
from watchkeeper.detectors.ks import KS
from watchkeeper.detectors.latency import QUANTILES, LatencyQuantile
from watchkeeper.detectors.loss_sketch import EstimatedRegressionMetric
from watchkeeper.detectors.missing_features import MissingFeatures
from watchkeeper.detectors.missing_rate import MissingRate
from watchkeeper.detectors.nan_rate import NanRate
from watchkeeper.detectors.null_rate import NullRate
from watchkeeper.detectors.out_of_range import OutOfRange
from watchkeeper.detectors.performance import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    PerformanceMetric,
)
from watchkeeper.detectors.prediction_std import PredictionStd
from watchkeeper.detectors.psi import PSI
from watchkeeper.detectors.shadow import SHADOW_METRICS
from watchkeeper.detectors.throughput import Throughput
from watchkeeper.detectors.top_class_share import TopClassShare
from watchkeeper.detectors.traffic import TrafficRatio
from watchkeeper.detectors.unexpected_features import UnexpectedFeatures
from watchkeeper.detectors.unseen import UnseenMass
from watchkeeper.detectors.wasserstein import Wasserstein

Scope = Literal["column", "window", "performance", "shadow", "estimate", "ab"]
"""``ab``: two versions' windows in (a policy's ``compare`` section, detectors/ab.py)."""


@dataclass(frozen=True)
class MetricInfo:
    """Everything about one metric; the policy schema, the default thresholds,
    ``threshold: auto`` and the offline table all read it from here, and
    ``tests/unit/test_metric_contract.py`` runs every entry through the same checks."""

    name: str
    scope: Scope
    description: str
    factory: DetectorFactory | None
    """Builds the detector from a policy's options; None for shadow metrics, which
    :mod:`watchkeeper.detectors.shadow` computes from a candidate's paired predictions,
    and for ``ab_*`` metrics, which :class:`~watchkeeper.detectors.ab.ABComparison`
    computes from two versions' windows."""
    kinds: frozenset[str] = frozenset()
    direction: Direction = "higher_is_worse"
    thresholds: tuple[float, float] | None = None
    """(warn, critical) applied when a policy names none (policies/defaults.py cites them)."""
    auto: bool = False
    """Whether ``threshold: auto`` derives its thresholds from the false-alarm budget."""
    short: str | None = None
    """Column title in the offline drift table (default: the name)."""
    relative_thresholds: tuple[float, float] | None = None
    """(warn, critical) as changes from the reference's value, applied by the offline
    check when no policy names thresholds (performance and estimated metrics)."""

    # The scope says which detector interface the factory builds; mypy checks each
    # factory against ``Detector`` at its registry line, and the contract test checks
    # that every built detector has its scope's interface.
    def column_detector(self, **options: Any) -> ColumnDetector:
        return cast(ColumnDetector, self._build("column", options))

    def window_detector(self, **options: Any) -> WindowDetector:
        return cast(WindowDetector, self._build("window", options))

    def performance_detector(self, **options: Any) -> PerformanceDetector:
        return cast(PerformanceDetector, self._build("performance", options))

    def estimate_detector(self, **options: Any) -> EstimateDetector:
        return cast(EstimateDetector, self._build("estimate", options))

    def _build(self, scope: Scope, options: dict[str, Any]) -> object:
        if self.scope != scope or self.factory is None:
            raise TypeError(f"{self.name} is a {self.scope} metric, not a {scope} metric")
        return self.factory(**options)


class ColumnDetectorClass(Protocol):
    """A column detector's class: its metric name and kinds are known before it is built."""

    name: str
    kinds: frozenset[str]

    def __call__(self, *args: Any, **options: Any) -> ColumnDetector: ...


def _column(
    cls: ColumnDetectorClass,
    description: str,
    thresholds: tuple[float, float] | None = None,
    *,
    auto: bool = False,
    short: str | None = None,
) -> MetricInfo:
    return MetricInfo(
        cls.name, "column", description, cls, cls.kinds, "higher_is_worse", thresholds, auto, short
    )


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        _column(PSI, "population stability index on the reference's bins", (0.1, 0.25), auto=True),
        _column(
            KLDivergence,
            "KL(reference ‖ current) in nats on the reference's bins",
            (0.1, 0.2),
            auto=True,
            short="kl",
        ),
        _column(
            JSDistance,
            "Jensen–Shannon distance (base 2, in [0, 1])",
            (0.1, 0.2),
            auto=True,
            short="js",
        ),
        _column(KS, "Kolmogorov–Smirnov statistic from the sketches' CDFs", (0.1, 0.2), auto=True),
        _column(
            Wasserstein,
            "Wasserstein-1 distance in reference standard deviations",
            (0.1, 0.25),
            short="wass",
        ),
        _column(
            ChiSquare,
            "Pearson χ² statistic (a significance test; p-value in details)",
            auto=True,
        ),
        _column(
            UnseenMass,
            "share of values in categories the reference never saw",
            (0.01, 0.05),
            short="unseen",
        ),
        _column(NanRate, "share of NaN / ±inf values", (0.01, 0.05), short="nan"),
        _column(NullRate, "share of null values", (0.05, 0.2), short="null"),
        _column(
            MissingRate, "share of events without the feature's key", (0.01, 0.05), short="missing"
        ),
        _column(
            OutOfRange,
            "share of values outside the reference range (+10 % margin)",
            (0.01, 0.05),
            short="range",
        ),
        *(
            MetricInfo(
                n,
                "window",
                f"latency {'maximum' if q == 1 else f'p{q * 100:g}'} (ms)",
                lambda q=q: LatencyQuantile(q),
            )
            for n, q in QUANTILES.items()
        ),
        MetricInfo(
            Throughput.name,
            "window",
            "prediction events per second",
            Throughput,
            direction="lower_is_worse",
        ),
        MetricInfo(
            TrafficRatio.name,
            "window",
            "event rate / median of recent windows",
            TrafficRatio,
            direction="lower_is_worse",
        ),
        MetricInfo(
            MissingFeatures.name,
            "window",
            "reference features absent from the window",
            MissingFeatures,
        ),
        MetricInfo(
            UnexpectedFeatures.name,
            "window",
            "window features the reference lacks",
            UnexpectedFeatures,
        ),
        MetricInfo(
            TopClassShare.name,
            "window",
            "share of the most frequent predicted class",
            TopClassShare,
        ),
        MetricInfo(
            PredictionStd.name,
            "window",
            "standard deviation of numeric predictions",
            PredictionStd,
            direction="lower_is_worse",
        ),
        *(
            MetricInfo(
                n,
                "performance",
                f"{n} on joined labels",
                lambda n=n: PerformanceMetric(n),
                direction="higher_is_worse" if n == "log_loss" else "lower_is_worse",
                relative_thresholds=(0.01, 0.02) if n == "log_loss" else (-0.01, -0.02),
            )
            for n in CLASSIFICATION_METRICS
        ),
        *(
            MetricInfo(
                n,
                "performance",
                f"{n} on joined labels",
                lambda n=n: PerformanceMetric(n),
                relative_thresholds=(0.01, 0.02),
            )
            for n in REGRESSION_METRICS
        ),
        *(
            MetricInfo(
                name,
                "estimate",
                spec.description,
                (
                    (lambda name=name: EstimatedRegressionMetric(name))
                    if "regression" in spec.problems
                    else (lambda name=name: EstimatedClassificationMetric(name))
                ),
                direction=spec.direction,
                auto=True,
                relative_thresholds=(spec.warn_relative, spec.critical_relative),
            )
            for name, spec in ESTIMATED_METRICS.items()
        ),
        MetricInfo(
            TRUST_METRIC,
            "estimate",
            "gap between realised and estimated performance, in units of the gap sampling "
            "explains (> 1: they disagree; concept drift suspected)",
            EstimateTrust,
            thresholds=(1.0, 2.0),
            short="mismatch",
        ),
        *(
            MetricInfo(n, "shadow", what, None, direction=direction)
            for n, (direction, what) in SHADOW_METRICS.items()
        ),
        *(
            MetricInfo(
                n,
                "ab",
                m.description,
                None,
                direction=m.direction,
                thresholds=None
                if m.threshold is None or m.critical is None
                else (m.threshold, m.critical),
            )
            for n, m in AB_METRICS.items()
        ),
    ]
}

# what a drift check computes when a policy (or `watchkeeper drift`) names no metrics
DEFAULT_DRIFT_METRICS = (
    "psi",
    "kl_divergence",
    "js_distance",
    "ks",
    "wasserstein",
    "unseen_mass",
    "nan_rate",
    "null_rate",
    "out_of_range_rate",
)


def metric(name: str) -> MetricInfo:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"metric {name!r} is not known") from None
