"""When to stop trusting the estimates: realised and estimated disagree beyond their bands.

Performance estimates assume P(y | x) is what it was on the reference (no concept drift)
and that the inputs stay where the reference had data. Once a window's labels arrive,
its realised metric (from *raw* scores, :class:`watchkeeper.detectors.performance.
PerformanceSketch`) can be set beside its estimate. Both carry sampling error: the
realised value on the n_r labelled rows (SE_r) and the estimate on its n_e scored rows
(SE_e), both from the reference's chunk spread (:mod:`watchkeeper.detectors.
sampling_band`). They disagree when

    |realised − estimated| > width · √(SE_r² + SE_e²)          (width = 3 by default)

The combined error treats the two as independent, which overstates the error of the
difference when they are computed on the same rows — so the check is conservative: on
data whose P(y | x) did not change it fires far less often than the nominal 0.3 %
(tests measure it), and a policy's ``for: N`` over consecutive windows makes a false
incident rarer still. ``mismatch`` = |gap| / allowed is the number a policy compares
with its threshold (default 1: outside the band).

For accuracy SE_r is at least the binomial √(r(1 − r) / n_r) of the window's own
realised value r: the reference's chunk spread describes a model as accurate as on the
reference, and a window whose accuracy fell (covariate shift into where the model is
unsure) varies more than that, which would otherwise read as a mismatch.

>>> from watchkeeper.detectors.estimated_performance import Estimate
>>> from watchkeeper.detectors.sampling_band import MetricSpread
>>> spread = MetricSpread(std=0.02, chunk_size=1000, chunks=20)
>>> est = Estimate("estimated_accuracy", 0.91, None, n=4000)
>>> v = EstimateTrust().score(0.915, 4000, est, spread)
>>> (v.disagrees, round(v.mismatch, 2))
(False, 0.12)
>>> EstimateTrust().score(0.80, 4000, est, spread).disagrees
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimated_performance import Estimate
from watchkeeper.detectors.sampling_band import SAMPLING_ERROR_RANGE, MetricSpread

TRUST_METRIC = "estimate_mismatch"
TRUST_DEFAULT_THRESHOLD = 1.0  # mismatch > 1: outside the combined band
LABELLED_SHARE = 0.9
"""Default share of a window's predictions graded before the trust check reads it: most
labels in, a few lost or very late ones tolerated (a label never sent, a TTL expiry)."""


@dataclass(frozen=True)
class TrustVerdict:
    """Realised beside estimated for one metric of one window."""

    metric: str
    """The estimated metric compared (``estimated_accuracy`` …)."""
    realised: float
    estimated: float
    gap: float
    """realised − estimated."""
    allowed: float
    """width · √(SE_r² + SE_e²): the largest gap sampling explains."""
    mismatch: float
    """|gap| / allowed; > 1 means they disagree."""
    n_labelled: int
    n_estimated: int

    @property
    def disagrees(self) -> bool:
        return self.mismatch > 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "realised": self.realised,
            "estimated": self.estimated,
            "gap": self.gap,
            "allowed": self.allowed,
            "mismatch": self.mismatch,
            "disagrees": self.disagrees,
            "n_labelled": self.n_labelled,
            "n_estimated": self.n_estimated,
        }


class EstimateTrust:
    """Compares a window's realised metric with its estimate; see the module docstring."""

    name: ClassVar[str] = TRUST_METRIC

    def __init__(
        self,
        width: float = SAMPLING_ERROR_RANGE,
        labelled_share: float = LABELLED_SHARE,
        lookback: float | str | None = None,
    ) -> None:
        """``labelled_share``: the share of a stored window's predictions whose labels must
        have arrived before the check reads it (realised and estimated on the same
        predictions). ``lookback``: how far back (a duration; default the daemon's
        ``ingest.label_ttl``) the daemon searches for the most recent span of the policy's
        length with those labels in, when labels are later than the policy window (read
        by the daemon's checker, which parses the duration)."""
        if width <= 0:
            raise ValueError("the band width must be positive")
        if not 0.0 < labelled_share <= 1.0:
            raise ValueError(f"labelled_share must be in (0, 1], got {labelled_share}")
        self.width = width
        self.labelled_share = labelled_share
        self.lookback = lookback

    def score(
        self, realised: float, n_labelled: int, estimate: Estimate, spread: MetricSpread
    ) -> TrustVerdict:
        if n_labelled <= 0 or estimate.n <= 0:
            raise InsufficientDataError("the trust check needs labelled and scored rows")
        if not (math.isfinite(realised) and math.isfinite(estimate.value)):
            raise InsufficientDataError("the realised or estimated value is not a number")
        se_realised = spread.standard_error(n_labelled, realised)
        if estimate.metric == "estimated_accuracy" and 0.0 <= realised <= 1.0:
            se_realised = max(se_realised, math.sqrt(realised * (1 - realised) / n_labelled))
        se = math.hypot(se_realised, spread.standard_error(estimate.n, estimate.value))
        allowed = self.width * se
        gap = realised - estimate.value
        # a metric without spread on the reference (constant): any gap is a mismatch
        exact = 0.0 if gap == 0 else math.inf
        mismatch = abs(gap) / allowed if allowed > 0 else exact
        return TrustVerdict(
            estimate.metric,
            realised,
            estimate.value,
            gap,
            allowed,
            mismatch,
            n_labelled,
            estimate.n,
        )
