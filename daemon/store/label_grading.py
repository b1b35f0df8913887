"""Grading joined (prediction, label) pairs into performance sketches.

A matched pair is graded into the performance sketch of the *prediction's* window, and,
when the prediction kept its segment labels (``segments``, written by
:class:`~watchkeeper.daemon.store.label_join.JoinBuffer`), into the performance sketch of
each of those segments' children too, so per-segment performance merges to the whole
window's exactly. Rows stored before segments (no ``segments``) grade into the window
only. Pure: no database; :func:`~watchkeeper.daemon.store.label_join.join_in_transaction`
finds the pairs and hands them here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson
from watchkeeper.daemon.eventtime.windows import WindowKey
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.segments import SegmentPlan
from watchkeeper.detectors.window import WindowSummary

Pair = tuple[dict[str, Any], dict[str, Any]]
"""A prediction row and its label row, as the join stores and reads them."""


def _pairs_task(pred: dict[str, Any], label: dict[str, Any]) -> str:
    if pred["predicted"] is not None or label["value"] is None:
        return "classification"
    if label["label"] in ("0", "1"):
        return "classification"
    return "regression"


def grade_pairs(
    graded_windows: dict[WindowKey, WindowSummary],
    size_ms: int,
    pairs: Iterable[Pair],
    threshold: float,
    plans: Mapping[str, SegmentPlan] | None = None,
) -> Counter[str]:
    """Grade the pairs into their predictions' windows: one sketch update per window and
    kind of task (not per pair), groups in the order their first pair came. ``threshold``
    turns a binary score into a predicted class; returns the pairs graded per model."""
    # grouped on a plain tuple (a WindowKey per pair was a tenth of a labels commit's
    # grading), the key built once per group
    groups: dict[tuple[str, str, int, str], list[Pair]] = {}
    for pred, label in pairs:
        at = (pred["model"], pred["model_version"], int(pred["window_start_ms"]))
        groups.setdefault((*at, _pairs_task(pred, label)), []).append((pred, label))
    graded: Counter[str] = Counter()
    for (model, version, start_ms, task), group in groups.items():
        key = WindowKey(model, version, start_ms)
        window = graded_windows.get(key)
        if window is None:
            window = WindowSummary(key.model, key.version, key.start_ms, size_ms)
            graded_windows[key] = window
        if window.performance is None:  # the window's first pair decides its kind of task
            window.performance = PerformanceSketch(task)  # type: ignore[arg-type]
        if window.performance.task != task:
            continue  # a model's pairs of another kind than its window's: not comparable
        pairs_of = _Pairs(group, task, threshold)
        pairs_of.into(window.performance, None)
        _grade_segments(window, group, pairs_of, (plans or {}).get(key.model))
        graded[key.model] += len(group)
    return graded


class _Pairs:
    """A group's pairs as arrays, graded whole or by a selection of rows (a segment)."""

    def __init__(self, group: list[Pair], task: str, threshold: float) -> None:
        self.task = task
        if task == "regression":
            self.y = np.array([label["value"] for _, label in group], dtype=np.float64)
            self.yhat = np.array([pred["score"] for pred, _ in group], dtype=np.float64)
            return
        self.scores = np.array(
            [np.nan if p["score"] is None else p["score"] for p, _ in group], dtype=np.float64
        )
        # each pair coded once into its distinct (label, class) pair: the window and each
        # of its segments then count theirs with one bincount
        where: dict[tuple[str, str], int] = {}
        codes = [
            where.setdefault(
                (
                    label["label"],
                    p["predicted"]
                    if p["predicted"] is not None
                    else ("1" if p["score"] is not None and p["score"] >= threshold else "0"),
                ),
                len(where),
            )
            for p, label in group
        ]
        self.distinct = list(where)
        self.codes = np.array(codes, dtype=np.intp)

    def into(self, perf: PerformanceSketch, rows: np.ndarray[Any, Any] | None) -> None:
        """Grade the pairs (``rows`` of them; None: all) into ``perf``."""
        pick = slice(None) if rows is None else rows
        if self.task == "regression":
            perf.update_regression(self.y[pick], self.yhat[pick])
        else:
            perf.update_coded(self.distinct, self.codes[pick], self.scores[pick])


def _grade_segments(
    window: WindowSummary,
    group: list[Pair],
    pairs: _Pairs,
    plan: SegmentPlan | None,
) -> None:
    """The group's pairs into the performance of their predictions' segment children:
    per segment feature one numpy grouping (:meth:`SegmentSplit.group`) and one sketch
    update per segment. Pairs whose prediction kept no segment labels (stored before
    segments, or without a plan then) grade into the window only."""
    if not plan:
        return
    # parsed once per distinct combination of labels (a dict, not a sort of strings),
    # then spread to the pairs by index
    combos: dict[str, int] = {}
    inverse = np.array(
        [combos.setdefault(pred.get("segments") or "", len(combos)) for pred, _ in group],
        dtype=np.intp,
    )
    if len(combos) == 1 and "" in combos:
        return
    parsed = [_parsed(text) for text in combos]
    for spec in plan:
        of_combo = [p.get(spec.feature) for p in parsed]
        known = np.array([v is not None for v in of_combo], dtype=bool)
        where = np.flatnonzero(known[inverse])
        if where.size == 0:
            continue
        distinct = sorted({str(v) for v in of_combo if v is not None})
        position = {v: i for i, v in enumerate(distinct)}
        lut = np.array([position.get(str(v), -1) for v in of_combo], dtype=np.intp)
        split = window.segment_split(spec)
        children, order, sizes = split.group_coded(distinct, lut[inverse[where]])
        bounds = np.concatenate(([0], np.cumsum(sizes))).tolist()
        for i, child in enumerate(children):
            if child.performance is None:
                child.performance = PerformanceSketch(pairs.task)  # type: ignore[arg-type]
            if child.performance.task != pairs.task:
                continue
            pairs.into(child.performance, where[order[bounds[i] : bounds[i + 1]]])


def _parsed(text: str) -> dict[str, Any]:
    """A stored row's segment labels; a row that does not hold a JSON object (none: rows
    stored before segments) grades into its window only, never fails the commit."""
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
