"""Expected calibration error (ECE) as a mergeable sketch.

Top-label ECE of Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
Networks" (ICML 2017), eq. 3: predictions are grouped by confidence into ``bins``
equal-width bins (15 in the paper), and ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b|.
The confidence of a prediction is its top probability (for a binary score p,
max(p, 1 − p)); correct means the predicted class equals the label. Every part is a sum,
so sketches of disjoint pairs merge exactly.

>>> c = CalibrationSketch()
>>> c.update(np.array([0.9, 0.9, 0.6, 0.6]), np.array([True, True, True, False]))
>>> round(c.ece(), 3)
0.1
"""

from __future__ import annotations

from typing import Any

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError

Array = np.ndarray[Any, Any]


class CalibrationSketch:
    """See the module docstring."""

    def __init__(self, bins: int = 15) -> None:
        self.bins = bins
        self.count = np.zeros(bins)
        self.confidence = np.zeros(bins)
        self.correct = np.zeros(bins)

    def update(self, confidence: Array, correct: Array) -> None:
        """Add pairs; NaN confidences are left out."""
        ok = np.isfinite(confidence)
        conf = np.clip(confidence[ok].astype(np.float64), 0.0, 1.0)
        hit = correct[ok].astype(np.float64)
        # bins are (i/B, (i+1)/B]; a confidence of exactly 0 joins the first
        idx = np.clip(np.ceil(conf * self.bins).astype(np.int64) - 1, 0, self.bins - 1)
        self.count += np.bincount(idx, minlength=self.bins)
        self.confidence += np.bincount(idx, weights=conf, minlength=self.bins)
        self.correct += np.bincount(idx, weights=hit, minlength=self.bins)

    def merge(self, other: CalibrationSketch) -> None:
        if other.bins != self.bins:
            raise ValueError("cannot merge calibration sketches with different bins")
        self.count += other.count
        self.confidence += other.confidence
        self.correct += other.correct

    @property
    def n(self) -> int:
        return int(self.count.sum())

    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            raise InsufficientDataError("calibration needs labelled predictions with scores")
        used = self.count > 0
        gap = np.abs(self.correct[used] - self.confidence[used])  # n_b·|acc_b − conf_b|
        return float(gap.sum() / n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "count": self.count.tolist(),
            "confidence": self.confidence.tolist(),
            "correct": self.correct.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationSketch:
        out = cls(int(d["bins"]))
        out.count = np.asarray(d["count"], dtype=np.float64)
        out.confidence = np.asarray(d["confidence"], dtype=np.float64)
        out.correct = np.asarray(d["correct"], dtype=np.float64)
        return out


def confidence_of(scores: Array, binary: bool) -> Array:
    """Top-label confidence: max(p, 1 − p) for a binary P(class 1), else the score itself."""
    s = np.asarray(scores, dtype=np.float64)
    return np.maximum(s, 1.0 - s) if binary else s
