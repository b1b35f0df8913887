"""A prediction batch's rows into a window's label-free estimate state
(:class:`~watchkeeper.detectors.window_estimates.WindowEstimates`): the scores, decisions
and (for regression) features each reference's estimation reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from watchkeeper.detectors.calibrator import MulticlassCalibrator, StepCalibrator
from watchkeeper.detectors.estimate_sketch import (
    binary_decisions,
    class_index,
    vector_aliases,
    vector_scores,
)

if TYPE_CHECKING:
    from watchkeeper.detectors.column_batch import ColumnBatch, IndexArray
    from watchkeeper.detectors.estimation_reference import Estimation
    from watchkeeper.detectors.window_estimates import WindowEstimates


def estimate_rows(
    estimates: WindowEstimates,
    found: Estimation | Sequence[Estimation] | None,
    batch: ColumnBatch,
    idx: IndexArray,
) -> None:
    """The rows ``idx`` of ``batch`` into ``estimates``, for each estimation ``found`` in
    force for the model (None: none)."""
    assert batch.prediction is not None
    if found is None or batch.prediction.kind != "numeric":
        return  # a class without a score carries nothing to estimate from
    for estimation in (found,) if not isinstance(found, Sequence) else found:
        _estimate_one(estimates, estimation, batch, idx)


def _estimate_one(
    estimates: WindowEstimates, estimation: Estimation, batch: ColumnBatch, idx: IndexArray
) -> None:
    assert batch.prediction is not None
    klass = batch.prediction_class
    if isinstance(estimation.model, MulticlassCalibrator):
        if batch.class_scores is None:
            return  # a score without its probability vector: nothing per class
        scores = vector_scores(estimation.model.classes, batch.class_scores[idx])
        if scores is None:
            return  # a vector of another width than the reference's classes
        predicted = None
        if klass is not None:
            predicted = class_index(
                estimation.model.classes,
                klass.values[idx],
                vector_aliases(estimation.model.classes),
            )
            # a row without its own class is decided by the arg-max of its scores
            argmax = np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)
            absent = klass.null[idx] | klass.missing[idx]
            predicted = np.where(absent, argmax, predicted)
        estimates.update(estimation, scores, predicted)
        return
    column = batch.prediction
    values = column.values[idx].astype(np.float64, copy=False)
    decided = None
    if isinstance(estimation.model, StepCalibrator):
        decided = binary_decisions(
            None if klass is None else klass.values[idx],
            None if klass is None else klass.null[idx] | klass.missing[idx],
            values,
            estimation.model.threshold,
        )
    features = None
    if estimation.problem == "regression":
        features = {n: c.values[idx] for n, c in batch.features.items()}
    estimates.update(estimation, values, decided, features)
