"""A window's label-free estimate state: one sketch per reference estimation in force.

At ingest, each batch of predictions updates the sketch of the estimation
(:class:`~watchkeeper.detectors.estimation_reference.Estimation`) the model's policies
score against — vectorised, one ``searchsorted`` + ``bincount`` per batch for a
classifier, one pass of the exported trees per batch for a regressor. Sketches are kept
by the fingerprint of their calibrator or loss model, so windows counted under two
references (a reference replaced mid-window, or two replicas briefly disagreeing) merge
without ever mixing counts: each reference reads only its own.

>>> import numpy as np
>>> from watchkeeper.detectors.estimation_reference import fit_binary_estimation
>>> rng = np.random.default_rng(3)
>>> s = rng.random(3000); est = fit_binary_estimation(s, rng.random(3000) < s)
>>> a, b = WindowEstimates(), WindowEstimates()
>>> a.update(est, rng.random(400)); b.update(est, rng.random(600))
>>> a.merge(b); a.of(est).n
1000
>>> WindowEstimates.from_dict(a.to_dict()).of(est).to_dict() == a.of(est).to_dict()
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from watchkeeper.detectors.calibrator import MulticlassCalibrator
from watchkeeper.detectors.estimate_sketch import (
    BinaryEstimateSketch,
    EstimateSketch,
    MulticlassEstimateSketch,
)
from watchkeeper.detectors.estimation_reference import Estimation, window_estimate_from_dict
from watchkeeper.detectors.loss_model import LossModel
from watchkeeper.detectors.loss_sketch import LossSketch

Sketch = EstimateSketch | LossSketch
MAX_SKETCHES = 4
"""Estimations one window keeps state for (a reference replaced a few times in one
window); beyond it the oldest is dropped, so a flapping policy cannot grow a window."""


def _copy(sketch: Sketch) -> Sketch:
    return window_estimate_from_dict(sketch.to_dict())


class WindowEstimates:
    """Estimate sketches of one window by fingerprint; see the module docstring."""

    def __init__(self) -> None:
        self.sketches: dict[str, Sketch] = {}

    def __bool__(self) -> bool:
        return bool(self.sketches)

    def of(self, estimation: Estimation) -> Sketch | None:
        """The window's state for ``estimation`` (None: not counted under it)."""
        return self.sketches.get(estimation.fingerprint)

    def _sketch(self, estimation: Estimation) -> Sketch:
        sketch = self.sketches.get(estimation.fingerprint)
        if sketch is None:
            sketch = estimation.new_sketch()
            self.sketches[estimation.fingerprint] = sketch
            while len(self.sketches) > MAX_SKETCHES:
                del self.sketches[next(iter(self.sketches))]
        return sketch

    def update(
        self,
        estimation: Estimation,
        prediction: np.ndarray[Any, Any],
        predicted: np.ndarray[Any, Any] | None = None,
        features: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a batch's rows: ``prediction`` (the score P(1) of a binary classifier, the
        n × classes score matrix of a multiclass one, the predicted value of a regressor;
        NaN where absent), ``predicted`` (binary: the model's own class is 1, when every
        row logs one; multiclass: its class index) and ``features`` (regression: the
        loss model's inputs by name)."""
        sketch = self._sketch(estimation)
        model = estimation.model
        if isinstance(sketch, LossSketch) and isinstance(model, LossModel):
            sketch.update(model, features or {}, prediction)
        elif isinstance(sketch, BinaryEstimateSketch):
            sketch.update(estimation.calibrator, prediction, predicted)  # type: ignore[arg-type]
        elif isinstance(sketch, MulticlassEstimateSketch) and isinstance(
            model, MulticlassCalibrator
        ):
            sketch.update(model, prediction, predicted)
        else:
            raise ValueError(f"window state of a {estimation.problem} estimation does not fit")

    def merge(self, other: WindowEstimates) -> None:
        for fingerprint, sketch in other.sketches.items():
            mine = self.sketches.get(fingerprint)
            if mine is None:
                self.sketches[fingerprint] = _copy(sketch)  # never alias another window
                while len(self.sketches) > MAX_SKETCHES:
                    del self.sketches[next(iter(self.sketches))]
            else:
                mine.merge(sketch)  # type: ignore[arg-type]

    def to_dict(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.sketches.values()]

    @classmethod
    def from_dict(cls, data: list[dict[str, Any]] | None) -> WindowEstimates:
        out = cls()
        for d in data or ():
            sketch = window_estimate_from_dict(d)
            out.sketches[sketch.fingerprint] = sketch
        return out
