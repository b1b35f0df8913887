"""Sampled shadow rows waiting for their label, so both models are graded on them.

Per model, a bounded insertion-ordered map request id → (window, production's output,
each candidate's output). When the oldest entries exceed ``limit``, or the labels
stream's event time has passed them by ``ttl_ms``, they are dropped: the wait is in
memory and best effort (a restart forgets it; the rows stay counted in agreement and
latency, only their grading is lost).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from watchkeeper.detectors.column_batch import Column
from watchkeeper.detectors.performance import class_names
from watchkeeper.detectors.shadow import ShadowStats

Output = tuple[float, str | None]


@dataclass
class _Pending:
    start_ms: int
    production: Output
    candidates: dict[str, Output] = field(default_factory=dict)


@dataclass
class Graded:
    """Labelled rows of one candidate in one window, both models' outputs side by side."""

    labels: np.ndarray[Any, Any]
    candidate: np.ndarray[Any, Any]
    production: np.ndarray[Any, Any]
    candidate_classes: list[str | None]
    production_classes: list[str | None]

    def fold_into(self, stats: ShadowStats, task: str) -> None:
        """Add these labelled rows to a window's summary."""
        if task == "regression":
            stats.update_labelled(self.labels, self.candidate, self.production)
        else:
            stats.update_labelled(
                self.labels,
                self.candidate,
                self.production,
                self.candidate_classes,
                self.production_classes,
            )


class PendingLabels:
    """See the module docstring."""

    def __init__(self, limit: int, ttl_ms: int) -> None:
        self.limit = limit
        self.ttl_ms = ttl_ms
        self._models: dict[str, OrderedDict[str, _Pending]] = {}

    def waiting(self, model: str) -> bool:
        return bool(self._models.get(model))

    def add(
        self,
        model: str,
        name: str,
        request_ids: list[Any],
        starts: list[int],
        candidate: tuple[list[float], list[str | None] | None],
        production: tuple[list[float], list[str | None] | None],
    ) -> None:
        """Rows of one candidate's batch: (scores, classes) of the candidate and production."""
        if self.limit == 0:
            return
        pending = self._models.setdefault(model, OrderedDict())
        c_scores, c_classes = candidate
        p_scores, p_classes = production
        for j, rid in enumerate(request_ids):
            if rid is None:
                continue
            entry = pending.get(rid)
            if entry is None:
                entry = _Pending(
                    starts[j], (p_scores[j], None if p_classes is None else p_classes[j])
                )
                pending[rid] = entry
            entry.candidates[name] = (c_scores[j], None if c_classes is None else c_classes[j])
        while len(pending) > self.limit:
            pending.popitem(last=False)

    def grade(
        self, model: str, request_ids: np.ndarray[Any, Any], labels: Column, task: str, now_ms: int
    ) -> dict[tuple[int, str], Graded]:
        """Take the rows these labels complete, grouped by (window start, candidate)."""
        pending = self._models.get(model)
        if not pending:
            return {}
        absent = (labels.null | labels.missing).tolist()
        hits: dict[tuple[int, str], list[tuple[Any, _Pending]]] = {}
        rows = zip(request_ids.tolist(), labels.values.tolist(), absent, strict=True)
        for rid, value, gone in rows:
            entry = pending.pop(rid, None) if rid is not None else None
            if entry is None or gone:
                continue
            for name in entry.candidates:
                hits.setdefault((entry.start_ms, name), []).append((value, entry))
        self._expire(pending, now_ms)
        out = {}
        for (start, name), pairs in hits.items():
            raw = [v for v, _ in pairs]
            out[(start, name)] = Graded(
                np.asarray(raw, dtype=np.float64)
                if task == "regression"
                else np.array(class_names(raw), dtype=object),
                np.array([e.candidates[name][0] for _, e in pairs], dtype=np.float64),
                np.array([e.production[0] for _, e in pairs], dtype=np.float64),
                [e.candidates[name][1] for _, e in pairs],
                [e.production[1] for _, e in pairs],
            )
        return out

    def _expire(self, pending: OrderedDict[str, _Pending], now_ms: int) -> None:
        horizon = now_ms - self.ttl_ms
        while pending:
            first = next(iter(pending.values()))
            if first.start_ms >= horizon:
                break
            pending.popitem(last=False)
