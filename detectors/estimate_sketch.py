"""What a window accumulates for performance estimates: mergeable counts, no raw rows.

* :class:`BinaryEstimateSketch` — rows counted per calibrated step × predicted class
  (integers). With a step calibrator (:mod:`watchkeeper.detectors.calibrator`) every row of
  a step has the same calibrated probability, so these counts determine the expected
  confusion matrix and the expected ROC curve exactly (see
  :mod:`watchkeeper.detectors.estimated_performance`).
* :class:`MulticlassEstimateSketch` — renormalised one-vs-rest probabilities depend on all
  the scores of a row, so they are summed instead: per predicted class × class, and per
  class × step of that class's calibrator (for one-vs-rest ROC AUC). The sums are fixed
  point, each row's probability rounded to a multiple of 2⁻³² (error ≤ 1.2e-10 per row)
  and added as int64: they merge exactly, in any order, bit for bit. A cell overflows
  only past 2³¹ rows in one window.

Both count rows whose score is NaN or infinite (``nan_scores``) instead of failing, and
rows whose predicted class is not one of the model's (``unknown_class``). Each sketch
names the calibrator it was counted under (its fingerprint) and refuses to merge with, or
be read by, another. Updates are vectorised: ``searchsorted`` + ``bincount``; Python loops
only over classes.

>>> from watchkeeper.detectors.calibrator import CalibrationDecision, StepCalibrator
>>> cal = StepCalibrator((0.3, 0.5, 0.8), (0.1, 0.4, 0.6, 0.9), 0.5,
...                      CalibrationDecision(True, "example"))
>>> a = BinaryEstimateSketch.for_calibrator(cal)
>>> a.update(cal, np.array([0.1, 0.35, 0.55, 0.9, np.nan]))
>>> b = BinaryEstimateSketch.for_calibrator(cal)
>>> b.update(cal, np.array([0.9, 0.2]))
>>> a.merge(b); (a.n, a.nan_scores, a.counts.tolist())
(6, 1, [[2, 1, 0, 0], [0, 0, 1, 2]])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from watchkeeper.detectors.calibrator import MulticlassCalibrator, StepCalibrator

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
SCALE_BITS = 32
SCALE = float(2**SCALE_BITS)


def _check(fingerprint: str, other: str, what: str) -> None:
    if fingerprint != other:
        raise ValueError(
            f"{what}: counted under calibrator {other}, not {fingerprint} "
            "(window state of another reference)"
        )


def _sparse(counts: IntArray) -> list[list[int]]:
    """Non-zero cells as [index..., value] (most steps are empty in a small window)."""
    return [[*map(int, ix), int(counts[ix])] for ix in zip(*np.nonzero(counts), strict=True)]


def _dense(cells: list[list[int]], shape: tuple[int, ...]) -> IntArray:
    out = np.zeros(shape, dtype=np.int64)
    for *ix, value in cells:
        out[tuple(ix)] = value
    return out


class BinaryEstimateSketch:
    """Counts per (predicted class, calibrated step); see the module docstring."""

    kind = "binary"

    def __init__(self, fingerprint: str, steps: int) -> None:
        self.fingerprint = fingerprint
        self.steps = steps
        self.counts: IntArray = np.zeros((2, steps), dtype=np.int64)
        """``counts[c, i]``: rows predicted class ``c`` (0 / 1) whose score is in step ``i``."""
        self.nan_scores = 0

    @classmethod
    def for_calibrator(cls, calibrator: StepCalibrator) -> BinaryEstimateSketch:
        return cls(calibrator.fingerprint, calibrator.steps)

    @property
    def n(self) -> int:
        """Rows counted (with a finite score)."""
        return int(self.counts.sum())

    def update(
        self,
        calibrator: StepCalibrator,
        scores: FloatArray,
        predicted: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    ) -> None:
        """Count rows by their raw ``scores`` (P(class 1) as the model gave it).

        ``predicted`` is the class the model predicted (True = 1) when the events carry
        it; without it a row is predicted 1 when its score is ≥ the calibrator's threshold.
        """
        _check(self.fingerprint, calibrator.fingerprint, "binary estimate update")
        s = np.asarray(scores, dtype=np.float64)
        ok = np.isfinite(s)
        if not ok.all():
            self.nan_scores += int(s.size - ok.sum())
            s = s[ok]
        step = calibrator.step_of(s)
        if predicted is None:
            positive = step >= calibrator.threshold_step
        else:
            positive = np.asarray(predicted, dtype=bool)[ok]
        cells = np.bincount(step + self.steps * positive, minlength=2 * self.steps)
        self.counts += cells.reshape(2, self.steps)

    def merge(self, other: BinaryEstimateSketch) -> None:
        _check(self.fingerprint, other.fingerprint, "binary estimate merge")
        self.counts += other.counts
        self.nan_scores += other.nan_scores

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "calibrator": self.fingerprint,
            "steps": self.steps,
            "counts": _sparse(self.counts),
            "nan_scores": self.nan_scores,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinaryEstimateSketch:
        out = cls(str(d["calibrator"]), int(d["steps"]))
        out.counts = _dense(d["counts"], (2, out.steps))
        out.nan_scores = int(d["nan_scores"])
        return out


class MulticlassEstimateSketch:
    """Fixed-point sums of calibrated probabilities; see the module docstring."""

    kind = "multiclass"

    def __init__(self, fingerprint: str, classes: int, steps: tuple[int, ...]) -> None:
        if len(steps) != classes:
            raise ValueError("one step count per class")
        self.fingerprint = fingerprint
        self.classes = classes
        self.steps = steps
        self.expected: IntArray = np.zeros((classes, classes), dtype=np.int64)
        """``expected[k, j]``: Σ calibrated P(class j) over rows predicted ``k``, × 2³²."""
        self.predicted: IntArray = np.zeros(classes, dtype=np.int64)
        """Rows predicted each class."""
        self.step_count: list[IntArray] = [np.zeros(m, dtype=np.int64) for m in steps]
        """Per class ``k``: rows per step of ``k``'s calibrator (on the raw score of ``k``)."""
        self.step_mass: list[IntArray] = [np.zeros(m, dtype=np.int64) for m in steps]
        """Per class ``k``: Σ calibrated P(class k) per step, × 2³²."""
        self.nan_scores = 0
        self.unknown_class = 0

    @classmethod
    def for_calibrator(cls, calibrator: MulticlassCalibrator) -> MulticlassEstimateSketch:
        steps = tuple(c.steps for c in calibrator.per_class)
        return cls(calibrator.fingerprint, len(calibrator.classes), steps)

    @property
    def n(self) -> int:
        return int(self.predicted.sum())

    def update(
        self,
        calibrator: MulticlassCalibrator,
        scores: FloatArray,
        predicted: np.ndarray[Any, np.dtype[np.int64]] | None = None,
    ) -> None:
        """Add rows of raw ``scores`` (n × classes, in the calibrator's class order).

        ``predicted`` holds each row's predicted class as an index into the classes (−1
        for a class the model does not have: counted in ``unknown_class``, left out);
        without it the arg-max of the raw scores is the prediction.
        """
        _check(self.fingerprint, calibrator.fingerprint, "multiclass estimate update")
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != self.classes:
            raise ValueError(f"scores must be n × {self.classes}")
        ok = np.isfinite(s).all(axis=1)
        self.nan_scores += int(s.shape[0] - ok.sum())
        if predicted is None:
            pred = np.argmax(np.where(np.isfinite(s), s, -np.inf), axis=1)
        else:
            pred = np.asarray(predicted, dtype=np.int64)
            unknown = ok & ((pred < 0) | (pred >= self.classes))
            self.unknown_class += int(unknown.sum())
            ok &= ~unknown
        s, pred = s[ok], pred[ok]
        steps = [c.step_of(s[:, k]) for k, c in enumerate(calibrator.per_class)]
        q = _renormalised(calibrator, steps)
        self.predicted += np.bincount(pred, minlength=self.classes)
        for k in range(self.classes):
            self.expected[k] += q[pred == k].sum(axis=0)
            self.step_count[k] += np.bincount(steps[k], minlength=self.steps[k])
            self.step_mass[k] += _exact_group_sum(steps[k], q[:, k], self.steps[k])

    def merge(self, other: MulticlassEstimateSketch) -> None:
        _check(self.fingerprint, other.fingerprint, "multiclass estimate merge")
        self.expected += other.expected
        self.predicted += other.predicted
        for k in range(self.classes):
            self.step_count[k] += other.step_count[k]
            self.step_mass[k] += other.step_mass[k]
        self.nan_scores += other.nan_scores
        self.unknown_class += other.unknown_class

    def expected_confusion(self) -> FloatArray:
        """E[rows] per (true class, predicted class), from the fixed-point sums."""
        return np.asarray(self.expected.T, dtype=np.float64) / SCALE

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "calibrator": self.fingerprint,
            "classes": self.classes,
            "steps": list(self.steps),
            "expected": self.expected.tolist(),
            "predicted": self.predicted.tolist(),
            "step_count": [_sparse(c) for c in self.step_count],
            "step_mass": [_sparse(m) for m in self.step_mass],
            "nan_scores": self.nan_scores,
            "unknown_class": self.unknown_class,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MulticlassEstimateSketch:
        steps = tuple(int(m) for m in d["steps"])
        out = cls(str(d["calibrator"]), int(d["classes"]), steps)
        out.expected = np.asarray(d["expected"], dtype=np.int64).reshape(out.classes, out.classes)
        out.predicted = np.asarray(d["predicted"], dtype=np.int64).reshape(out.classes)
        out.step_count = [_dense(c, (m,)) for c, m in zip(d["step_count"], steps, strict=True)]
        out.step_mass = [_dense(c, (m,)) for c, m in zip(d["step_mass"], steps, strict=True)]
        out.nan_scores = int(d["nan_scores"])
        out.unknown_class = int(d["unknown_class"])
        return out


def _renormalised(calibrator: MulticlassCalibrator, steps: list[IntArray]) -> IntArray:
    """Fixed-point renormalised calibrated probabilities from each class's step (the same
    numbers as ``calibrator.calibrate`` on finite rows, without searching twice)."""
    values = [np.asarray(c.values, dtype=np.float64) for c in calibrator.per_class]
    cal = np.column_stack([v[s] for v, s in zip(values, steps, strict=True)])
    total = cal.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(total > 0, cal / total, 1.0 / len(values))
    return np.rint(q * SCALE).astype(np.int64)


_EXACT_ROWS = 2**20  # 2²⁰ rows × 2³² < 2⁵³: float64 sums of these integers are exact


def _exact_group_sum(groups: IntArray, values: IntArray, size: int) -> IntArray:
    """Σ values per group, exact in int64: ``bincount`` adds in float64, which holds every
    integer below 2⁵³, so it is exact on chunks of up to 2²⁰ rows of values ≤ 2³²."""
    out = np.zeros(size, dtype=np.int64)
    for lo in range(0, groups.size, _EXACT_ROWS):
        part = np.bincount(
            groups[lo : lo + _EXACT_ROWS], weights=values[lo : lo + _EXACT_ROWS], minlength=size
        )
        out += part.astype(np.int64)
    return out


EstimateSketch = BinaryEstimateSketch | MulticlassEstimateSketch


def estimate_sketch_from_dict(d: dict[str, Any]) -> EstimateSketch:
    if d["kind"] == BinaryEstimateSketch.kind:
        return BinaryEstimateSketch.from_dict(d)
    if d["kind"] == MulticlassEstimateSketch.kind:
        return MulticlassEstimateSketch.from_dict(d)
    raise ValueError(f"unknown estimate sketch kind {d['kind']!r}")


def class_index(
    classes: tuple[str, ...], values: Any, aliases: Mapping[str, int] | None = None
) -> IntArray:
    """Predicted class names → indices into ``classes`` (−1 for any other name, and for
    None); ``aliases`` adds other names of a class (a probability vector's positions).
    One dict look-up per distinct name, not per row."""
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    absent = np.asarray([v is None for v in arr.tolist()], dtype=bool)
    text = np.where(absent, "", arr).astype(str)
    unique, inverse = np.unique(text, return_inverse=True)
    lookup = {**(aliases or {}), **{c: i for i, c in enumerate(classes)}}
    codes = np.array([lookup.get(str(u), -1) for u in unique], dtype=np.int64)
    out = codes[inverse.reshape(-1)]
    out[absent] = -1
    return out


def binary_decisions(
    classes: Any, absent: Any, scores: FloatArray, threshold: float | None
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Each row's predicted class (True = 1), decided as the label join decides it for the
    realised metrics (``daemon/store/label_join.py``): the model's own class when the row
    logs one — positive only when it reads ``"1"`` (the decoder spells JSON ``1``, ``1.0``
    and ``true`` so, :func:`~watchkeeper.detectors.performance.class_names`; the text
    ``"true"`` is another class to the confusion matrix, so negative here too) — else
    score ≥ the decision threshold. Row by row: a batch where some rows log a class and
    some do not decides each row its own way.

    >>> binary_decisions(np.array(["1", None, "0", "true"], dtype=object),
    ...                  np.array([False, True, False, False]),
    ...                  np.array([0.1, 0.7, 0.9, 0.9]), 0.5).tolist()
    [True, True, False, False]
    """
    s = np.asarray(scores, dtype=np.float64)
    cut = 0.5 if threshold is None else threshold
    by_score = s >= cut
    if classes is None:
        return by_score
    own = np.asarray(classes, dtype=object) == "1"
    gone = np.asarray(absent, dtype=bool) | (np.asarray(classes, dtype=object) == None)  # noqa: E711
    return np.where(gone, by_score, own)


def _index_names(classes: tuple[str, ...]) -> bool:
    return sorted(classes) == sorted(str(i) for i in range(len(classes)))


def vector_scores(classes: tuple[str, ...], vectors: FloatArray) -> FloatArray | None:
    """A probability-vector prediction (rows × positions) as scores in ``classes``' order,
    or None when its width is not the number of classes.

    Position ``i`` of a vector is class ``"i"`` everywhere else in watchkeeper (the
    decoder's arg-max class), so a reference whose classes are those names is matched by
    name; a reference with other class names is matched by position, in the order its
    ``--class-score`` options gave the classes.

    >>> vector_scores(("2", "0", "1"), np.array([[0.1, 0.2, 0.7]])).tolist()
    [[0.7, 0.1, 0.2]]
    >>> vector_scores(("cat", "dog"), np.array([[0.4, 0.6]])).tolist()
    [[0.4, 0.6]]
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(classes):
        return None
    if _index_names(classes):
        return v[:, [int(c) for c in classes]]
    return v


def vector_aliases(classes: tuple[str, ...]) -> dict[str, int]:
    """Other names of the classes in a probability vector's events: for a reference whose
    classes are not the positions' names, position ``"i"`` (the arg-max class the decoder
    gives) is its ``i``-th class; none otherwise."""
    return {} if _index_names(classes) else {str(i): i for i in range(len(classes))}
