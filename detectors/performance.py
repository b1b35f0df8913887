"""Model performance on joined (prediction, label) pairs, as a mergeable sketch.

Classification keeps a confusion matrix (bounded at ``max_classes`` classes), and for
binary problems (labels "0"/"1") two histograms of the score P(class 1) by true label,
from which ROC AUC is computed (ties inside a bin count half, so with 1,000 bins the AUC
is within the mass sharing a bin of the exact value), and the log-loss sum. Regression
keeps sums of absolute, squared and absolute-percentage errors. Every part is a sum, so
sketches of disjoint pairs merge exactly, and a window's performance can grow for days as
delayed labels arrive.

Definitions follow scikit-learn's: precision / recall / F1 of the positive class "1" for
binary problems and macro averages otherwise; specificity TN / (TN + FP) of the same
class (the recall of the negatives; macro one-vs-rest for multiclass, as
``estimated_specificity`` counts it); log-loss with probabilities clipped to
[1e-15, 1 − 1e-15]; MAPE over pairs whose true value is not 0.

>>> s = PerformanceSketch("classification")
>>> s.update_classification(["1", "0", "1", "0"], ["1", "0", "0", "0"],
...                         np.array([0.9, 0.2, 0.4, 0.1]))
>>> m = s.metrics(); (m["accuracy"], m["recall"], m["specificity"], m["roc_auc"])
(0.75, 0.5, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError

Task = Literal["classification", "regression"]
_EPS = 1e-15
CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "f1",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS = ("mae", "rmse", "mape")


class PerformanceSketch:
    """See the module docstring."""

    def __init__(self, task: Task, bins: int = 1000, max_classes: int = 100) -> None:
        self.task = task
        self.bins = bins
        self.max_classes = max_classes
        self.confusion: Counter[tuple[str, str]] = Counter()
        self.pos = np.zeros(bins)
        self.neg = np.zeros(bins)
        self.logloss_sum = 0.0
        self.logloss_n = 0
        self.n = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.sum_ape = 0.0
        self.n_ape = 0

    # -- building ----------------------------------------------------------------------
    def update_classification(
        self, labels: list[str], predicted: list[str], scores: np.ndarray[Any, Any] | None = None
    ) -> None:
        """Add pairs; ``scores`` are P(class "1") for binary problems (NaN where unknown)."""
        self.n += len(labels)
        for pair, count in Counter(zip(labels, predicted, strict=True)).items():
            if pair in self.confusion or len(self.confusion) < self.max_classes**2:
                self.confusion[pair] += count
        if scores is None:
            return
        y = np.array([lab == "1" for lab in labels], dtype=bool)
        binary = np.array([lab in ("0", "1") for lab in labels], dtype=bool)
        self._scores(y, binary, scores)

    def update_coded(
        self,
        distinct: Sequence[tuple[str, str]],
        codes: np.ndarray[Any, Any],
        scores: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Add pairs given as ``codes`` into ``distinct`` (label, predicted class) pairs:
        what :meth:`update_classification` of the decoded pairs does, with one
        ``bincount`` instead of a Python step per pair — how the label join grades the
        same pairs into a window and into each of its segments."""
        self.n += int(codes.size)
        counts = np.bincount(codes, minlength=len(distinct))
        for j in np.flatnonzero(counts).tolist():
            pair = distinct[j]
            if pair in self.confusion or len(self.confusion) < self.max_classes**2:
                self.confusion[pair] += int(counts[j])
        if scores is None:
            return
        y = np.array([t == "1" for t, _ in distinct], dtype=bool)[codes]
        binary = np.array([t in ("0", "1") for t, _ in distinct], dtype=bool)[codes]
        self._scores(y, binary, scores)

    def _scores(
        self, y: np.ndarray[Any, Any], binary: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]
    ) -> None:
        ok = binary & np.isfinite(scores)
        s = np.clip(scores[ok], 0.0, 1.0)
        idx = np.minimum((s * self.bins).astype(np.int64), self.bins - 1)
        self.pos += np.bincount(idx[y[ok]], minlength=self.bins)
        self.neg += np.bincount(idx[~y[ok]], minlength=self.bins)
        p = np.clip(s, _EPS, 1 - _EPS)
        self.logloss_sum += float(-np.sum(np.where(y[ok], np.log(p), np.log(1 - p))))
        self.logloss_n += int(ok.sum())

    def update_regression(self, y: np.ndarray[Any, Any], yhat: np.ndarray[Any, Any]) -> None:
        ok = np.isfinite(y) & np.isfinite(yhat)
        y, yhat = y[ok], yhat[ok]
        err = yhat - y
        self.n += int(y.size)
        self.sum_abs += float(np.abs(err).sum())
        self.sum_sq += float((err**2).sum())
        nz = y != 0
        self.sum_ape += float(np.abs(err[nz] / y[nz]).sum())
        self.n_ape += int(nz.sum())

    def merge(self, other: PerformanceSketch) -> None:
        if other.task != self.task:
            raise ValueError("cannot merge classification and regression performance")
        self.n += other.n
        for pair, count in other.confusion.items():
            if pair in self.confusion or len(self.confusion) < self.max_classes**2:
                self.confusion[pair] += count
        self.pos += other.pos
        self.neg += other.neg
        self.logloss_sum += other.logloss_sum
        self.logloss_n += other.logloss_n
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq
        self.sum_ape += other.sum_ape
        self.n_ape += other.n_ape

    # -- reading -----------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        """Every metric the pairs allow (absent ones are left out, never NaN)."""
        if self.n == 0:
            return {}
        if self.task == "regression":
            out = {"mae": self.sum_abs / self.n, "rmse": math.sqrt(self.sum_sq / self.n)}
            if self.n_ape:
                out["mape"] = self.sum_ape / self.n_ape
            return out
        total = sum(self.confusion.values())
        out = {"accuracy": sum(c for (t, p), c in self.confusion.items() if t == p) / total}
        classes = sorted({t for t, _ in self.confusion} | {p for _, p in self.confusion})
        positive = ["1"] if set(classes) <= {"0", "1"} else classes
        precisions, recalls, specificities, f1s = [], [], [], []
        for cls in positive:
            tp = self.confusion.get((cls, cls), 0)
            fp = sum(c for (t, p), c in self.confusion.items() if p == cls and t != cls)
            fn = sum(c for (t, p), c in self.confusion.items() if t == cls and p != cls)
            prec = tp / (tp + fp) if tp + fp else 0.0
            rec = tp / (tp + fn) if tp + fn else 0.0
            tn = total - tp - fp - fn
            precisions.append(prec)
            recalls.append(rec)
            specificities.append(tn / (tn + fp) if tn + fp else 0.0)
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        out["precision"] = float(np.mean(precisions))
        out["recall"] = float(np.mean(recalls))
        out["specificity"] = float(np.mean(specificities))
        out["f1"] = float(np.mean(f1s))
        n_pos, n_neg = self.pos.sum(), self.neg.sum()
        if n_pos and n_neg:
            below = np.concatenate([[0.0], np.cumsum(self.neg)[:-1]])
            out["roc_auc"] = float(np.sum(self.pos * (below + 0.5 * self.neg)) / (n_pos * n_neg))
        if self.logloss_n:
            out["log_loss"] = self.logloss_sum / self.logloss_n
        return out

    # -- storage -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "bins": self.bins,
            "max_classes": self.max_classes,
            "confusion": [[t, p, c] for (t, p), c in sorted(self.confusion.items())],
            "pos": self.pos.tolist() if self.pos.any() else [],
            "neg": self.neg.tolist() if self.neg.any() else [],
            "logloss": [self.logloss_sum, self.logloss_n],
            "n": self.n,
            "errors": [self.sum_abs, self.sum_sq, self.sum_ape, self.n_ape],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceSketch:
        out = cls(d["task"], int(d["bins"]), int(d["max_classes"]))
        out.confusion = Counter({(str(t), str(p)): int(c) for t, p, c in d["confusion"]})
        if d["pos"]:
            out.pos = np.asarray(d["pos"], dtype=np.float64)
        if d["neg"]:
            out.neg = np.asarray(d["neg"], dtype=np.float64)
        out.logloss_sum, out.logloss_n = float(d["logloss"][0]), int(d["logloss"][1])
        out.n = int(d["n"])
        out.sum_abs, out.sum_sq, out.sum_ape = (float(x) for x in d["errors"][:3])
        out.n_ape = int(d["errors"][3])
        return out


class PerformanceMetric:
    """One performance metric of a window (``accuracy``, ``roc_auc``, ``mae``, …)."""

    kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str) -> None:
        if name not in CLASSIFICATION_METRICS + REGRESSION_METRICS:
            raise ValueError(f"unknown performance metric {name!r}")
        self.name = name

    def value(self, sketch: PerformanceSketch) -> float:
        metrics = sketch.metrics()
        if self.name not in metrics:
            raise InsufficientDataError(f"{self.name} needs more labelled pairs of its kind")
        return metrics[self.name]


def class_names(values: Any) -> list[str]:
    """Labels and predicted classes as text, one spelling per class: ``1``, ``1.0`` and
    ``True`` all read ``"1"``, so a label logged as a number joins a class logged as text.

    >>> class_names([1, 0.0, True, "spam", 2.5])
    ['1', '0', '1', 'spam', '2.5']
    """
    out: list[str] = []
    for v in values.tolist() if isinstance(values, np.ndarray) else values:
        if isinstance(v, bool):
            out.append("1" if v else "0")
        elif isinstance(v, int | float) and float(v).is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return out
