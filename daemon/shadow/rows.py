"""What shadow evaluation passes from ingestion to its worker, and its metrics.

:class:`Rows` are the sampled rows of one decoded batch (copies: the batch is released
at once); :class:`Labels` are a labels batch for rows waiting to be graded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.performance import class_names
from watchkeeper.detectors.shadow import ShadowStats


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "watchkeeper_shadow_rows",
            "Rows run through a candidate.",
            ["model", "candidate"],
            registry=registry,
        )
        self.dropped = Counter(
            "watchkeeper_shadow_dropped_rows",
            "Sampled rows dropped because inference could not keep up.",
            ["model"],
            registry=registry,
        )
        self.up = Gauge(
            "watchkeeper_shadow_candidate_up",
            "1 while a candidate is evaluated, 0 once it was disabled.",
            ["model", "candidate"],
            registry=registry,
        )
        self.queue = Gauge(
            "watchkeeper_shadow_queue_batches",
            "Sampled batches waiting for inference.",
            registry=registry,
        )
        self.seconds = Counter(
            "watchkeeper_shadow_inference_seconds",
            "Time spent in inference, by model and side (candidate or baseline).",
            ["model", "candidate", "side"],
            registry=registry,
        )
        self.attributed = Counter(
            "watchkeeper_shadow_attributed_rows",
            "Shadow rows whose feature attributions were computed for both models.",
            ["model", "candidate"],
            registry=registry,
        )
        self.attribution_skipped = Counter(
            "watchkeeper_shadow_attribution_skipped_rows",
            "Rows chosen for attribution but skipped: over the attribution CPU budget, "
            "or the evaluation queue was backed up.",
            ["model", "candidate"],
            registry=registry,
        )
        self.attribution_seconds = Counter(
            "watchkeeper_shadow_attribution_seconds",
            "CPU time of the shadow worker thread spent computing feature attributions "
            "(what the attribution budget counts), by model and by the model explained "
            "(production, the reference's rows, or a candidate).",
            ["model", "explained"],
            registry=registry,
        )


@dataclass
class Rows:
    model: str
    topic: str
    partition: int
    next_offset: int
    ts_ms: np.ndarray[Any, Any]
    keys: np.ndarray[Any, Any]
    features: dict[str, Column]
    scores: np.ndarray[Any, Any]
    classes: list[str | None] | None
    request_ids: np.ndarray[Any, Any] | None
    latency_ms: np.ndarray[Any, Any] | None


@dataclass
class Labels:
    model: str
    request_ids: np.ndarray[Any, Any]
    labels: Column
    ts_ms: int = 0
    """The newest event time of the batch: the labels stream's clock for expiry."""


def take(column: Column, idx: np.ndarray[Any, Any]) -> Column:
    return Column(column.kind, column.values[idx], column.null[idx], column.missing[idx])


def production_outputs(
    batch: ColumnBatch, idx: np.ndarray[Any, Any], task: str, threshold: float
) -> tuple[np.ndarray[Any, Any], list[str | None] | None]:
    """Production's logged score and class for the rows at ``idx`` (NaN / None if absent)."""
    n = idx.size
    scores = np.full(n, np.nan)
    pred = batch.prediction
    if pred is not None and pred.kind == "numeric":
        scores = pred.values[idx].astype(np.float64)
        scores[pred.null[idx] | pred.missing[idx]] = np.nan
    if task != "classification":
        return scores, None
    if batch.prediction_class is not None:
        c = batch.prediction_class
        return scores, [None if v is None else str(v) for v in c.values[idx].tolist()]
    if pred is not None and pred.kind == "categorical":
        return scores, [None if v is None else str(v) for v in pred.values[idx].tolist()]
    if pred is None:
        return scores, None
    finite = np.isfinite(scores)
    integral = finite & (scores == np.round(scores))
    if integral[finite].all():  # class indices logged as numbers
        names = class_names(np.where(finite, scores, 0))
        return np.full(n, np.nan), [
            nm if ok else None for nm, ok in zip(names, finite, strict=True)
        ]
    decided = np.where(scores >= threshold, "1", "0")
    return scores, [str(d) if ok else None for d, ok in zip(decided, finite, strict=True)]


def by_window(starts: np.ndarray[Any, Any]) -> list[tuple[int, np.ndarray[Any, Any]]]:
    """(window start, row positions) for each window the rows' starts fall in."""
    return [(int(s), np.flatnonzero(starts == s)) for s in np.unique(starts).tolist()]


def fold_latency(
    stats: ShadowStats,
    candidate: tuple[float, float],
    baseline: tuple[float, float] | None,
    baseline_size_bytes: int,
    logged_ms: np.ndarray[Any, Any] | None,
) -> None:
    """A batch's latency, (per row ms, batch ms), into the window of its first row; the
    baseline's is production's ONNX file run on the same rows, or else its logged latency."""
    stats.update_latency("candidate", np.array([candidate[0]]), np.array([candidate[1]]))
    if baseline is not None:
        stats.baseline_basis = "onnx"
        stats.baseline_size_bytes = baseline_size_bytes
        stats.update_latency("baseline", np.array([baseline[0]]), np.array([baseline[1]]))
    elif logged_ms is not None:
        logged = logged_ms[np.isfinite(logged_ms)]
        if logged.size:
            stats.update_latency("baseline", logged, np.empty(0))
