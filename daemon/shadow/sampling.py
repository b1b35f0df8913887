"""What shadow evaluation takes from a decoded batch on the ingestion thread: the rows
sampled by record key (and not evaluated before), copied with production's outputs, or a
labels batch's labels for the rows waiting for theirs. A few array operations, never
inference (:meth:`~watchkeeper.daemon.shadow.evaluator.ShadowEvaluator.offer`)."""

from __future__ import annotations

import numpy as np
from watchkeeper.daemon.shadow.rows import Labels, Rows, production_outputs, take
from watchkeeper.daemon.shadow.setup import ModelSetup
from watchkeeper.detectors.column_batch import ColumnBatch
from watchkeeper.detectors.shadow import sample_mask


def labels_of(batch: ColumnBatch) -> Labels | None:
    """The labels of a labels batch with request ids, or None."""
    if batch.label is None or batch.request_ids is None:
        return None
    return Labels(batch.model, batch.request_ids, batch.label, int(batch.ts_ms.max()))


def sampled_rows(
    batch: ColumnBatch,
    setup: ModelSetup,
    topic: str,
    partition: int,
    done: int,
    threshold: float,
) -> Rows | None:
    """The rows of ``batch`` (from ``topic``/``partition``) that the model's largest
    sampling rate keeps, from offset ``done`` on (those before were evaluated before a
    restart), with production's scores and classes (``threshold`` decides a binary
    class); None: none kept, or a batch without features or offsets."""
    if not batch.features or batch.offsets is None:
        return None
    keep = sample_mask(batch.keys, setup.max_rate) & (batch.offsets >= done)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return None
    scores, classes = production_outputs(batch, idx, setup.spec.task, threshold)
    return Rows(
        batch.model,
        topic,
        partition,
        int(batch.offsets.max()) + 1,
        batch.ts_ms[idx],
        batch.keys[idx],
        {n: take(c, idx) for n, c in batch.features.items()},
        scores,
        classes,
        None if batch.request_ids is None else batch.request_ids[idx],
        None if batch.latency_ms is None else batch.latency_ms[idx],
    )
