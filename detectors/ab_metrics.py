"""The ``ab_*`` metrics: name, direction, whether an always-valid interval comes with the
value, what the comparison needs and the default thresholds — the table the registry,
the policy schema and the A/B checks read (:mod:`watchkeeper.detectors.ab` computes them).

>>> AB_METRICS["ab_accuracy_delta"].direction, AB_METRICS["ab_accuracy_delta"].interval
('lower_is_worse', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ABDirection = Literal["higher_is_worse", "lower_is_worse", "two_sided"]


@dataclass(frozen=True)
class ABMetric:
    """What a registry entry for an ``ab_*`` metric needs."""

    name: str
    direction: ABDirection
    """``two_sided``: a change either way matters (rules bound it from both sides)."""
    description: str
    threshold: float | None
    """A sensible default for a rule; None where it depends on the model's units."""
    interval: bool
    """Whether the value carries an always-valid interval (in ``details``)."""
    needs: Literal["labels", "predictions", "latency", "features"]
    critical: float | None = None
    """The default critical threshold beside ``threshold`` (the warn one)."""


AB_METRICS: dict[str, ABMetric] = {
    m.name: m
    for m in (
        ABMetric(
            "ab_accuracy_delta",
            "lower_is_worse",
            "candidate − baseline accuracy on joined labels, always-valid interval",
            -0.01,
            True,
            "labels",
            -0.02,
        ),
        ABMetric(
            "ab_mae_delta",
            "higher_is_worse",
            "candidate − baseline mean absolute error on joined labels, always-valid interval",
            None,
            True,
            "labels",
        ),
        ABMetric(
            "ab_score_mean_delta",
            "two_sided",
            "candidate − baseline mean prediction score, always-valid interval",
            None,
            True,
            "predictions",
        ),
        ABMetric(
            "ab_score_js_distance",
            "higher_is_worse",
            "JS distance of candidate vs baseline scores on the baseline's deciles",
            0.1,
            False,
            "predictions",
            0.2,
        ),
        ABMetric(
            "ab_class_js_distance",
            "higher_is_worse",
            "JS distance of candidate vs baseline predicted-class shares",
            0.1,
            False,
            "predictions",
            0.2,
        ),
        ABMetric(
            "ab_population_js_distance",
            "higher_is_worse",
            "largest JS distance of an input feature between the versions' traffic beyond "
            "3× its noise floor (0 when none), over the policy window",
            0.1,
            False,
            "features",
            0.2,
        ),
        ABMetric(
            "ab_latency_p50_ratio",
            "higher_is_worse",
            "candidate / baseline latency p50",
            1.2,
            False,
            "latency",
            1.5,
        ),
        ABMetric(
            "ab_latency_p99_ratio",
            "higher_is_worse",
            "candidate / baseline latency p99",
            1.2,
            False,
            "latency",
            1.5,
        ),
    )
}
