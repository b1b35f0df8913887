"""A sudden drop (or surge) in traffic: the window's event rate over its recent baseline.

The value is current rate / median rate of the baseline windows (the evaluator passes the
previous windows' rates), so 0.2 reads "traffic fell to a fifth of normal". The median
keeps one odd baseline window from moving the reference point.

>>> from watchkeeper.detectors.base import WindowView
>>> from watchkeeper.detectors.window import WindowSummary
>>> w = WindowSummary("m", "1", 0, 60_000); w.events = {"predictions": 60}
>>> TrafficRatio().score(WindowView(w, None, 60.0, (4.0, 5.0, 6.0))).value
0.2
"""

from __future__ import annotations

import statistics
from typing import Any, ClassVar

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.errors import InsufficientDataError

TRAFFIC_ROLE = "predictions"
"""The role whose events the rate counts, now and in the baseline windows (the daemon
reads the baseline's counts of this role: every role's would halve the ratio of steady
traffic with a features or labels stream)."""


def role_of(options: dict[str, Any] | None) -> str:
    """The role a ``traffic_ratio`` rule's rate counts, from its options."""
    return str((options or {}).get("role", TRAFFIC_ROLE))


class TrafficRatio:
    name: ClassVar[str] = "traffic_ratio"

    def __init__(self, role: str = TRAFFIC_ROLE) -> None:
        self.role = role

    def score(self, view: WindowView) -> Score:
        if not view.baseline_rates or view.duration_s <= 0:
            raise InsufficientDataError("no baseline windows to compare traffic with")
        baseline = statistics.median(view.baseline_rates)
        if baseline <= 0:
            raise InsufficientDataError("the baseline windows had no traffic")
        rate = view.summary.events.get(self.role, 0) / view.duration_s
        return Score(rate / baseline, {"rate": rate, "baseline_rate": baseline})
