"""Joining delayed labels to the predictions they grade.

Labels arrive on their own topic, keyed by ``request_id``, minutes to days after the
prediction. Predictions waiting for their label are kept in the store
(``pending_predictions``), not in memory, so memory stays bounded and a restart loses no
join; labels that arrive before their prediction wait in ``pending_labels``. Both are
written, matched and deleted inside the same transaction that commits the window state
and the consumer offsets, so a crash can neither lose a pair nor count it twice.

A matched pair is graded into the performance sketch of the *prediction's* window: a
window's accuracy keeps improving in completeness as its labels arrive.
Pending rows expire after ``ingest.label_ttl`` of event time and are bounded per model at
``ingest.max_pending``, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, select, tuple_
from watchkeeper.daemon import tables as t
from watchkeeper.daemon.windows import Delta, WindowKey
from watchkeeper.detectors.performance import PerformanceSketch, class_names
from watchkeeper.detectors.window import ColumnBatch, WindowSummary

_CHUNK = 500  # request ids per IN (...) query


@dataclass(frozen=True)
class JoinSettings:
    ttl_ms: int = 7 * 86_400_000
    max_pending: int = 1_000_000
    threshold: float = 0.5
    """Decision threshold turning a binary score into a predicted class."""


@dataclass
class JoinBuffer:
    """Predictions and labels seen since the last commit (rows ready for the store)."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.predictions or self.labels)

    def add(self, batch: ColumnBatch, window_size_ms: int) -> None:
        if batch.request_ids is None:
            return
        has_id = np.asarray([r is not None for r in batch.request_ids.tolist()], dtype=bool)
        if not has_id.any():
            return
        idx = np.flatnonzero(has_id)
        ids = batch.request_ids[idx].tolist()
        ts = batch.ts_ms[idx]
        if batch.role == "predictions" and batch.prediction is not None:
            score = (
                _numbers(batch.prediction.values[idx])
                if batch.prediction.kind == "numeric"
                else [None] * idx.size
            )
            if batch.prediction_class is not None:
                predicted = _texts(batch.prediction_class.values[idx])
            elif batch.prediction.kind == "categorical":
                predicted = _texts(batch.prediction.values[idx])
            else:
                predicted = [None] * idx.size
            starts = (ts - ts % window_size_ms).tolist()
            versions = batch.versions[idx].tolist()
            for i, rid in enumerate(ids):
                self.predictions.append(
                    {
                        "model": batch.model,
                        "request_id": rid,
                        "model_version": versions[i],
                        "window_start_ms": starts[i],
                        "ts_ms": int(ts[i]),
                        "score": score[i],
                        "predicted": predicted[i],
                    }
                )
        elif batch.role == "labels" and batch.label is not None:
            values = batch.label.values[idx]
            absent = (batch.label.null | batch.label.missing)[idx]
            names = (
                class_names(values)
                if batch.label.kind == "categorical"
                else class_names([float(v) for v in values])
            )
            numbers = _numbers(values) if batch.label.kind == "numeric" else [None] * idx.size
            for i, rid in enumerate(ids):
                if not absent[i]:
                    self.labels.append(
                        {
                            "model": batch.model,
                            "request_id": rid,
                            "label": names[i],
                            "value": numbers[i],
                            "ts_ms": int(ts[i]),
                        }
                    )


def _numbers(values: Any) -> list[float | None]:
    return [float(v) if v == v else None for v in np.asarray(values, dtype=np.float64).tolist()]


def _texts(values: Any) -> list[str | None]:
    return [None if v is None else str(v) for v in values.tolist()]


def _pairs_task(pred: dict[str, Any], label: dict[str, Any]) -> str:
    if pred["predicted"] is not None or label["value"] is None:
        return "classification"
    if label["label"] in ("0", "1"):
        return "classification"
    return "regression"


def _grade(
    graded_windows: dict[WindowKey, WindowSummary],
    size_ms: int,
    pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    settings: JoinSettings,
) -> int:
    graded = 0
    for pred, label in pairs:
        key = WindowKey(pred["model"], pred["model_version"], int(pred["window_start_ms"]))
        window = graded_windows.get(key)
        if window is None:
            window = WindowSummary(key.model, key.version, key.start_ms, size_ms)
            graded_windows[key] = window
        task = _pairs_task(pred, label)
        if window.performance is None:
            window.performance = PerformanceSketch(task)  # type: ignore[arg-type]
        perf = window.performance
        if perf.task != task:
            continue  # a model's pairs of another kind than its window's: not comparable
        if task == "regression":
            perf.update_regression(np.array([label["value"]]), np.array([pred["score"]]))
        else:
            score = pred["score"]
            predicted = pred["predicted"]
            if predicted is None:
                predicted = "1" if score is not None and score >= settings.threshold else "0"
            scores = np.array([np.nan if score is None else score])
            perf.update_classification([label["label"]], [predicted], scores)
        graded += 1
    return graded


def join_in_transaction(
    conn: Connection,
    insert: Any,
    buffer: JoinBuffer,
    delta: Delta,
    settings: JoinSettings,
    expire: bool = True,
) -> dict[WindowKey, WindowSummary]:
    """Store, match and grade the buffer's rows on ``conn``.

    Returns window summaries holding only the performance of the pairs graded, keyed by
    their predictions' windows, for the caller to merge in the same transaction (new
    objects: a retried transaction grades afresh and counts nothing twice).

    ``insert`` is the dialect's ``insert`` (for ON CONFLICT DO NOTHING). New predictions
    are stored first, so a label in the same buffer finds its prediction; labels left
    unmatched wait for theirs.
    """
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if buffer.predictions:
        conn.execute(
            insert(t.pending_predictions).on_conflict_do_nothing(
                index_elements=["model", "request_id"]
            ),
            buffer.predictions,
        )
    if buffer.labels:
        labels = {(lab["model"], lab["request_id"]): lab for lab in buffer.labels}
        found = _take(conn, t.pending_predictions, list(labels))
        pairs += [(found[key], label) for key, label in labels.items() if key in found]
        waiting = [label for key, label in labels.items() if key not in found]
        if waiting:
            conn.execute(
                insert(t.pending_labels).on_conflict_do_nothing(
                    index_elements=["model", "request_id"]
                ),
                waiting,
            )
    if buffer.predictions:
        # labels that arrived before their prediction
        early = _take(
            conn, t.pending_labels, [(p["model"], p["request_id"]) for p in buffer.predictions]
        )
        if early:
            preds = _take(conn, t.pending_predictions, list(early))
            pairs += [(preds[key], label) for key, label in early.items() if key in preds]
    graded: dict[WindowKey, WindowSummary] = {}
    _grade(graded, delta.size_ms, pairs, settings)
    if expire:
        _expire(conn, delta, settings)
    return graded


def _take(
    conn: Connection, table: Any, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of ``table`` with these (model, request_id) keys, deleted as they are read."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for lo in range(0, len(keys), _CHUNK):
        chunk = keys[lo : lo + _CHUNK]
        where = tuple_(table.c.model, table.c.request_id).in_(chunk)
        rows = conn.execute(select(table).where(where)).all()
        if rows:
            out.update({(r.model, r.request_id): dict(r._mapping) for r in rows})
            conn.execute(delete(table).where(where))
    return out


def _expire(conn: Connection, delta: Delta, settings: JoinSettings) -> None:
    """Drop pending rows past the TTL (in event time) and beyond the per-model bound."""
    latest: dict[str, int] = {}
    for (model, _role), mark in delta.watermarks.items():
        latest[model] = max(mark, latest.get(model, mark))
    for model, watermark in latest.items():
        cutoff = watermark - settings.ttl_ms
        for table in (t.pending_predictions, t.pending_labels):
            conn.execute(delete(table).where((table.c.model == model) & (table.c.ts_ms < cutoff)))
            count = (
                conn.execute(
                    select(func.count()).select_from(table).where(table.c.model == model)
                ).scalar()
                or 0
            )
            if count > settings.max_pending:
                bound = conn.execute(
                    select(table.c.ts_ms)
                    .where(table.c.model == model)
                    .order_by(table.c.ts_ms)
                    .offset(count - settings.max_pending)
                    .limit(1)
                ).scalar()
                conn.execute(
                    delete(table).where((table.c.model == model) & (table.c.ts_ms < bound))
                )
