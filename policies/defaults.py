"""The thresholds watchkeeper applies when a policy names none: the field's habits.

PSI 0.1 / 0.25 is the credit-scoring rule of thumb (Siddiqi 2006: < 0.1 stable,
0.1–0.25 a moderate shift, > 0.25 a significant one); KL above 0.2 is treated as
critical, as in the shipped example policies. The distance metrics (JS, KS, Wasserstein
in reference σ) use 0.1 / 0.2–0.25 by the same reading; the data-quality rates alarm at
1 % / 5 % of values (nulls at 5 % / 20 %, as many features are sparse by design).
"""

from __future__ import annotations

from watchkeeper.detectors.registry import METRICS, metric
from watchkeeper.policies.schema import Verdict

# declared with each metric (MetricInfo.thresholds in detectors/registry.py)
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    name: info.thresholds for name, info in METRICS.items() if info.thresholds is not None
}


def severity(
    name: str, value: float | None, thresholds: dict[str, tuple[float, float]] | None = None
) -> Verdict:
    """``warn`` / ``critical`` when ``value`` crosses the metric's thresholds, else ``ok``.

    >>> severity("psi", 0.3), severity("psi", 0.12), severity("psi", 0.01)
    ('critical', 'warn', 'ok')
    """
    table = thresholds if thresholds is not None else DEFAULT_THRESHOLDS
    if value is None or name not in table:
        return "ok"
    warn, critical = table[name]
    if metric(name).direction == "lower_is_worse":
        return "critical" if value <= critical else "warn" if value <= warn else "ok"
    return "critical" if value >= critical else "warn" if value >= warn else "ok"
