"""The detector interface and the findings detectors produce.

A detector is a small object: configuration in the constructor, stored unchanged; a
``score`` method from a reference column profile and the current window's column sketch
to a number. No I/O, no clock, no logging set-up. Its ``name`` is the stable metric name
that policy files use (``psi``, ``kl_divergence``, …).

The evaluator (:mod:`watchkeeper.detectors.evaluate`) wraps scores into
:class:`Finding` objects with the model, feature, window and sample sizes, and applies the
sample-size guard, so a detector never sees a window too small to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.profile import ColumnProfile, ReferenceProfile
from watchkeeper.detectors.window import WindowSummary

Status = Literal["ok", "insufficient_data", "error"]
Direction = Literal["higher_is_worse", "lower_is_worse", "two_sided"]
"""Which way a metric's value is bad; ``two_sided``: a change either way (A/B score
means, whose findings carry the distance from "no change", so rules read it as above)."""


@dataclass(frozen=True)
class Score:
    """A detector's answer: the value, and anything worth showing beside it."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One metric for one model (and feature) over one window."""

    model: str
    metric: str
    feature: str | None
    value: float | None
    status: Status
    window_start_ms: int
    window_end_ms: int
    n_current: int
    n_reference: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "feature": self.feature,
            "value": self.value,
            "status": self.status,
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "n_current": self.n_current,
            "n_reference": self.n_reference,
            "details": self.details,
        }


class ColumnDetector(Protocol):
    """Compares one column of the current window with the reference's.

    ``name`` and ``kinds`` are read-only here, so a class constant (``PSI.name``) and an
    attribute set in the constructor (``LatencyQuantile``'s) both satisfy the protocol.
    """

    @property
    def name(self) -> str: ...

    @property
    def kinds(self) -> frozenset[str]:
        """Column kinds it applies to: ``numeric``, ``categorical`` or both."""
        ...

    def score(self, reference: ColumnProfile, current: ColumnSketch) -> Score: ...


@dataclass(frozen=True)
class WindowView:
    """What a window-level detector sees: the summary, the reference, and context."""

    summary: WindowSummary
    reference: ReferenceProfile | None
    duration_s: float
    """Seconds of event time the window covers so far (its size once it is closed)."""
    baseline_rates: tuple[float, ...] = ()
    """Events per second of comparable earlier windows, for traffic checks."""


class WindowDetector(Protocol):
    """Computes a model-level metric from a whole window (latency, schema, traffic …)."""

    @property
    def name(self) -> str: ...

    def score(self, view: WindowView) -> Score: ...


class PerformanceDetector(Protocol):
    """Reads one performance metric from a window's joined (prediction, label) pairs."""

    @property
    def name(self) -> str: ...

    def value(self, sketch: PerformanceSketch) -> float: ...


class EstimateDetector(Protocol):
    """A label-free estimate (or the trust check on it): the evaluation reads the window's
    estimate state itself (:mod:`watchkeeper.detectors.estimate_findings`); the detector
    carries the options, today the band's width in standard errors."""

    @property
    def name(self) -> str: ...

    @property
    def width(self) -> float: ...


Detector = ColumnDetector | WindowDetector | PerformanceDetector | EstimateDetector
"""What a registered metric's factory builds; its scope says which of the four."""

DetectorFactory = Callable[..., Detector]
"""A detector class or a function building one from a policy's per-metric options
(``{"psi": {"smoothing": "laplace"}}`` → ``PSI(smoothing="laplace")``)."""
