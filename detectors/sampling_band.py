"""Sampling-error bands: how far a window's metric may sit from its value by chance alone.

NannyML's approach ("Estimation of Standard Error", ``docs/how_it_works/
estimation_of_standard_error.rst``; ``nannyml/sampling_error/``): the standard error of a
metric on n rows is estimated from the reference and scaled by 1/√n, and the band is the
value ± ``SAMPLING_ERROR_RANGE`` = 3 standard errors, clipped to the metric's range. We
measure the spread directly: the reference is cut into ``chunks`` chunks of ``chunk_size``
rows (a seeded random permutation, so the spread is sampling error rather than any
drift inside the reference period), the *realised* metric is computed on each chunk,
and its standard deviation σ_m at chunk size m gives SE(n) = σ_m · √(m / n) — the 1/√n
law every metric here (a proportion, a ratio of proportions, a Mann–Whitney U, a mean
loss) follows asymptotically. Error metrics (MAE, RMSE) have no upper limit and their
spread grows with their level — a window whose errors doubled has a noisier MAE — so
their spread is kept *relative* (σ_m divided by the reference's mean over the chunks, a
coefficient of variation) and scaled by the value at hand.

The band is a statement about the realised value: if the estimate is right, the
realised metric of a window of n labelled rows lies within it with high probability
(±3 SE ≈ 99.7 % under normality). It never leaves the metric's range: no negative
accuracy, no AUC above 1.

>>> spread = MetricSpread(std=0.02, chunk_size=1000, chunks=20)
>>> b = band_around(0.99, spread, n=250, lower_limit=0.0, upper_limit=1.0)
>>> (round(b.standard_error, 3), round(b.lower, 2), b.upper)
(0.04, 0.87, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

IntArray = np.ndarray[Any, np.dtype[np.int64]]
SAMPLING_ERROR_RANGE = 3.0  # nannyml.sampling_error.SAMPLING_ERROR_RANGE
MIN_CHUNKS = 6  # NannyML warns below six reference chunks (docs: "chunking data")
DEFAULT_CHUNKS = 20


@dataclass(frozen=True)
class MetricSpread:
    """Standard deviation of a realised metric over reference chunks of one size."""

    std: float
    chunk_size: int
    chunks: int
    relative: bool = False
    """``std`` is a coefficient of variation, to be multiplied by the metric's value."""

    def standard_error(self, n: int, value: float = 1.0) -> float:
        """SE at ``n`` rows (for a relative spread: around ``value``); infinite for an
        empty window (no claim can be made)."""
        if n <= 0:
            return math.inf
        scale = abs(value) if self.relative else 1.0
        return self.std * scale * math.sqrt(self.chunk_size / n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "std": self.std,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "relative": self.relative,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricSpread:
        return cls(
            float(d["std"]), int(d["chunk_size"]), int(d["chunks"]), bool(d.get("relative", False))
        )


@dataclass(frozen=True)
class Band:
    """value ± width · SE, clipped to the metric's range; ``n`` rows behind it."""

    lower: float
    upper: float
    standard_error: float
    n: int
    width: float = SAMPLING_ERROR_RANGE

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "standard_error": self.standard_error,
            "n": self.n,
            "width": self.width,
        }


def band_around(
    value: float,
    spread: MetricSpread,
    n: int,
    lower_limit: float = -math.inf,
    upper_limit: float = math.inf,
    width: float = SAMPLING_ERROR_RANGE,
) -> Band:
    """The band of ``value`` for a window of ``n`` rows (see the module docstring)."""
    se = spread.standard_error(n, value)
    return Band(
        lower=max(lower_limit, value - width * se),
        upper=min(upper_limit, value + width * se),
        standard_error=se,
        n=n,
        width=width,
    )


def chunk_spreads(
    metrics_of: Callable[[IntArray], dict[str, float]],
    rows: int,
    chunks: int = DEFAULT_CHUNKS,
    seed: int = 7,
    relative: frozenset[str] = frozenset(),
) -> dict[str, MetricSpread]:
    """σ of every metric ``metrics_of(row_indices)`` returns, over ``chunks`` equal chunks
    of a seeded permutation of ``rows`` reference rows. A metric some chunk cannot compute
    (say, AUC on a chunk of one class) is measured on the chunks that can, if at least
    :data:`MIN_CHUNKS` remain; otherwise it gets no spread (and so no band). Metrics
    named in ``relative`` get a relative spread (σ / mean)."""
    chunks = min(chunks, rows // 2)
    if chunks < MIN_CHUNKS:
        return {}
    size = rows // chunks
    order = np.random.default_rng(seed).permutation(rows)
    values: dict[str, list[float]] = {}
    for c in range(chunks):
        for name, value in metrics_of(order[c * size : (c + 1) * size]).items():
            if math.isfinite(value):
                values.setdefault(name, []).append(value)
    out = {}
    for name, v in values.items():
        if len(v) < MIN_CHUNKS:
            continue
        std, mean = float(np.std(v, ddof=1)), float(np.mean(v))
        if name in relative and mean > 0:
            out[name] = MetricSpread(std / mean, size, len(v), relative=True)
        elif name not in relative:
            out[name] = MetricSpread(std, size, len(v))
    return out
