"""Latency percentiles of a window, in milliseconds, from its KLL latency sketch.

The names are ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms`` (quantiles within
the sketch's rank error) and ``latency_max_ms`` (exact).

>>> import numpy as np
>>> from watchkeeper.detectors.base import WindowView
>>> from watchkeeper.detectors.window import WindowSummary
>>> w = WindowSummary("m", "1", 0, 60_000); w.latency.update(np.arange(1.0, 101.0))
>>> view = WindowView(w, None, 60.0)
>>> LatencyQuantile(0.99).score(view).value, LatencyQuantile(1.0).score(view).value
(99.0, 100.0)
"""

from __future__ import annotations

from watchkeeper.detectors.base import Score, WindowView
from watchkeeper.detectors.errors import InsufficientDataError

QUANTILES = {
    "latency_p50_ms": 0.5,
    "latency_p95_ms": 0.95,
    "latency_p99_ms": 0.99,
    "latency_max_ms": 1.0,
}


class LatencyQuantile:
    def __init__(self, quantile: float) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError("a latency quantile lies in (0, 1]")
        self.quantile = quantile
        self.name = "latency_max_ms" if quantile == 1.0 else f"latency_p{quantile * 100:g}_ms"

    def score(self, view: WindowView) -> Score:
        sketch = view.summary.latency
        if sketch.count == 0:
            raise InsufficientDataError("no latencies in the window")
        if self.quantile == 1.0:
            return Score(sketch.max)
        (value,) = sketch.quantiles([self.quantile])
        return Score(float(value), {"rank_error": sketch.rank_error})
