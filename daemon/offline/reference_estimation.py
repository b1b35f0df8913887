"""The label-free estimation fitted while a reference is built from a file.

The reference build collects, beside its sketches, the raw columns the estimation needs
(:class:`EstimationRows`): the prediction, the label, the model's own class when it logs
one, per-class score columns for a multiclass model, and the features for a regression
loss model. After the pass it fits, by the kind of model:

* binary (labels 0 / 1, a numeric score P(1)) — a step calibrator
  (:func:`~watchkeeper.detectors.estimation_reference.fit_binary_estimation`) at the
  daemon's decision threshold;
* multiclass (``class_scores``: a score column per class) — one calibrator per class;
* regression — the loss model on the features and the prediction.

It keeps at most ``MAX_ROWS`` labelled rows (the first ones of the file): calibration
and a loss model gain nothing measurable past a few hundred thousand rows, and the
build's memory stays bounded. A reference that cannot be estimated from (no label or
prediction, a class without a score, too few rows) gets no estimation, and the reason is
returned for the build's output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from watchkeeper.daemon.offline.frame_columns import is_numeric, numeric_values
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimation_reference import (
    Estimation,
    fit_binary_estimation,
    fit_multiclass_estimation,
    fit_regression_estimation,
)
from watchkeeper.detectors.performance import class_names

MAX_ROWS = 1_000_000


def _texts(series: pd.Series) -> np.ndarray[Any, Any]:
    out = np.empty(len(series), dtype=object)
    present = series.notna().to_numpy()
    out[present] = [str(v) for v in series[present].tolist()]
    return out


class EstimationRows:
    """The raw columns an estimation is fitted on, gathered chunk by chunk."""

    def __init__(
        self,
        prediction: str,
        label: str,
        prediction_class: str | None = None,
        features: Sequence[str] = (),
        class_scores: Mapping[str, str] | None = None,
        limit: int = MAX_ROWS,
    ) -> None:
        self.prediction = prediction
        self.label = label
        self.prediction_class = prediction_class
        self.features = list(features)
        self.class_scores = dict(class_scores or {})
        self.limit = limit
        self.rows = 0
        self.numeric_prediction = True
        self._parts: list[pd.DataFrame] = []

    def add(self, chunk: pd.DataFrame) -> None:
        if self.rows >= self.limit:
            return
        labelled = chunk[chunk[self.label].notna()]
        if labelled.empty:
            return
        labelled = labelled.iloc[: self.limit - self.rows]
        self.numeric_prediction &= is_numeric(labelled[self.prediction])
        columns = [self.prediction, self.label, *self.class_scores.values(), *self.features]
        if self.prediction_class:
            columns.append(self.prediction_class)
        self._parts.append(labelled[list(dict.fromkeys(columns))])
        self.rows += len(labelled)

    def frame(self) -> pd.DataFrame:
        """The rows gathered, as one frame (empty without any)."""
        if not self._parts:
            return pd.DataFrame()
        self._parts = [pd.concat(self._parts, ignore_index=True)]
        return self._parts[0]

    def fit(self, task: str | None, threshold: float = 0.5) -> tuple[Estimation | None, str]:
        """The estimation, and what was fitted (or why nothing was), in one line."""
        if not self._parts:
            return None, "no estimation: no labelled rows"
        frame = self.frame()
        try:
            return self._fit(frame, task, threshold)
        except (InsufficientDataError, ValueError) as exc:
            return None, f"no estimation: {' '.join(str(exc).split())[:200]}"

    def _fit(
        self, frame: pd.DataFrame, task: str | None, threshold: float
    ) -> tuple[Estimation | None, str]:
        n = len(frame)
        if task == "regression":
            if not self.numeric_prediction:
                return None, "no estimation: the prediction column is not numeric"
            columns: dict[str, Any] = {}
            categorical = set()
            for name in self.features:
                if is_numeric(frame[name]):
                    columns[name] = numeric_values(frame[name])
                else:
                    columns[name] = _texts(frame[name])
                    categorical.add(name)
            est = fit_regression_estimation(
                columns,
                numeric_values(frame[self.prediction]),
                numeric_values(frame[self.label]),
                categorical=frozenset(categorical),
            )
            return est, f"estimation: regression loss model on {n} labelled rows"
        labels = class_names(frame[self.label].to_numpy())
        if self.class_scores:
            classes = list(self.class_scores)
            scores = np.column_stack([numeric_values(frame[c]) for c in self.class_scores.values()])
            predicted = (
                class_names(frame[self.prediction_class].to_numpy())
                if self.prediction_class
                else None
            )
            est = fit_multiclass_estimation(scores, labels, classes, predicted=predicted)
            return est, f"estimation: {len(classes)}-class calibrators on {n} labelled rows"
        if not set(labels) <= {"0", "1"}:
            return None, (
                "no estimation: a multiclass model needs its per-class scores "
                "(--class-score CLASS=COLUMN for each class)"
            )
        if not self.numeric_prediction:
            return None, "no estimation: the prediction is a class, not a score P(1)"
        y = np.array([v == "1" for v in labels])
        predicted_bool = None
        if self.prediction_class:
            klass = frame[self.prediction_class]
            if klass.notna().all():
                predicted_bool = np.array(
                    [v == "1" for v in class_names(klass.to_numpy())], dtype=bool
                )
        est = fit_binary_estimation(
            numeric_values(frame[self.prediction]), y, threshold=threshold, predicted=predicted_bool
        )
        decision = est.calibrator.decision  # type: ignore[union-attr]
        how = "isotonic calibration" if decision.calibrate else "raw scores kept"
        return est, f"estimation: binary calibrator ({how}) on {n} labelled rows"
