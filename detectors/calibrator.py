"""Score calibration fitted at reference time, as step functions that window state can count.

Performance estimation (NannyML's CBPE) needs P(y = 1 | score). A model's score is often
not that probability, so a calibrator is fitted on the reference's (score, label) pairs.
Ours is a *step function* of the raw score: the reference's scores are cut into fine
equal-mass bins (quantiles, ``bins`` of them, the decision threshold inserted as an
edge), isotonic regression (scikit-learn's ``IsotonicRegression``, pool-adjacent-
violators) maps each bin index to a probability, and adjacent bins of equal probability
on the same side of the threshold merge into one step. A window then only has to count
its rows per step × predicted class — integers, which merge exactly across flushes,
windows and replicas (:mod:`watchkeeper.detectors.estimate_sketch`).

Whether calibration helps is decided as NannyML does (``nannyml/calibration.py``,
``needs_calibration``): ten stratified shuffle splits holding out 10 % of the reference,
the calibrator fitted on the rest, and the expected calibration error (ECE, 10 equal-mass
bins) of the pooled held-out rows compared before and after; calibrate only if it drops.
That comparison alone is a coin toss for scores that are calibrated already: both ECEs
are then sampling noise (≈ 0.01 on 2,000-row bins), and isotonic regression "wins" about
half the time. So the raw scores must also fail a calibration test first: the
Hosmer–Lemeshow statistic Σ_b (O_b − E_b)² / Σ_{i∈b} p_i(1 − p_i) over the same ten
equal-mass bins, χ²(10) under calibration (Hosmer & Lemeshow, *Applied Logistic
Regression*, 2nd ed., §5.2.2, with the exact binomial variance per bin), rejected at
p < 0.01 (``calibrator_fit.CALIBRATION_TEST_LEVEL``). Unlike NannyML the numbers are kept
(:class:`CalibrationDecision`). When calibration does not help, the steps hold the mean
raw score of the reference rows in each fine bin — the identity, discretised so that it
stays countable. Scores outside [0, 1] are not
probabilities: those are always calibrated.

Multiclass models get one calibrator per class (one-vs-rest) and each row's calibrated
vector is renormalised to sum to 1 (NannyML's ``_calibrate_predicted_probabilities``).

This module holds the fitted calibrators, evaluated with numpy alone (the daemon's ingest
path); :mod:`watchkeeper.detectors.calibrator_fit` fits them at reference time, importing
scikit-learn inside its functions only. Calibrators round-trip through JSON.

>>> from watchkeeper.detectors.calibrator_fit import fit_binary_calibrator
>>> rng = np.random.default_rng(0)
>>> s = rng.random(5000)
>>> y = rng.random(5000) < s ** 2          # the score overstates P(y = 1)
>>> cal = fit_binary_calibrator(s, y, bins=50)
>>> cal.decision.calibrate, cal.decision.ece_calibrated < cal.decision.ece_raw
(True, True)
>>> float(cal.calibrate(np.array([0.5]))[0]) < 0.35
True
>>> StepCalibrator.from_dict(cal.to_dict()).to_dict() == cal.to_dict()
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
CALIBRATOR_FORMAT = "watchkeeper.calibrator/v1"


@dataclass(frozen=True)
class CalibrationDecision:
    """Whether the calibrated scores are used, and the held-out numbers behind it."""

    calibrate: bool
    reason: str
    ece_raw: float | None = None
    """ECE of the raw scores on the pooled held-out rows (None when not computed)."""
    ece_calibrated: float | None = None
    p_value: float | None = None
    """Hosmer–Lemeshow test of the raw scores on the whole reference: P(a χ² this large |
    the raw scores are calibrated)."""
    folds: int = 0
    rows: int = 0
    """Reference rows with a finite score used for the fit."""
    nan_scores: int = 0
    """Reference rows left out because their score was NaN or infinite."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibrate": self.calibrate,
            "reason": self.reason,
            "ece_raw": self.ece_raw,
            "ece_calibrated": self.ece_calibrated,
            "p_value": self.p_value,
            "folds": self.folds,
            "rows": self.rows,
            "nan_scores": self.nan_scores,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationDecision:
        def opt(x: Any) -> float | None:
            return None if x is None else float(x)

        return cls(
            calibrate=bool(d["calibrate"]),
            reason=str(d["reason"]),
            ece_raw=opt(d.get("ece_raw")),
            ece_calibrated=opt(d.get("ece_calibrated")),
            p_value=opt(d.get("p_value")),
            folds=int(d.get("folds", 0)),
            rows=int(d.get("rows", 0)),
            nan_scores=int(d.get("nan_scores", 0)),
        )


@dataclass(frozen=True)
class StepCalibrator:
    """P(y = 1 | raw score) as a step function; see the module docstring.

    Step ``i`` covers raw scores in ``[edges[i-1], edges[i])`` (step 0 is everything below
    ``edges[0]``, the last step everything from ``edges[-1]`` up), so ``len(values) ==
    len(edges) + 1``. Rows with a raw score ≥ ``threshold`` are predicted positive, and the
    threshold is an edge unless every reference score lies on one side of it.
    """

    edges: tuple[float, ...]
    values: tuple[float, ...]
    threshold: float | None
    """None for a one-vs-rest calibrator: its class is chosen by arg-max, not a cut-off."""
    decision: CalibrationDecision

    def __post_init__(self) -> None:
        if len(self.values) != len(self.edges) + 1:
            raise ValueError("a step calibrator needs one more value than edges")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("step edges must increase strictly")

    @property
    def steps(self) -> int:
        return len(self.values)

    @property
    def threshold_step(self) -> int:
        """The first step whose raw scores are predicted positive (``steps`` if none is)."""
        if self.threshold is None:
            return self.steps
        return int(np.searchsorted(np.asarray(self.edges), self.threshold, side="right"))

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the step function: window state counted under another one never mixes."""
        blob = json.dumps([self.edges, self.values, self.threshold]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def step_of(self, scores: FloatArray) -> IntArray:
        """Each score's step (NaN scores land in the last step: mask them first)."""
        edges = np.asarray(self.edges, dtype=np.float64)
        return np.searchsorted(edges, np.asarray(scores, dtype=np.float64), side="right")

    def calibrate(self, scores: FloatArray) -> FloatArray:
        """Calibrated P(y = 1) per score; NaN where the score is not finite."""
        s = np.asarray(scores, dtype=np.float64)
        out = np.asarray(self.values, dtype=np.float64)[self.step_of(s)]
        return np.where(np.isfinite(s), out, np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATOR_FORMAT,
            "kind": "binary",
            "edges": list(self.edges),
            "values": list(self.values),
            "threshold": self.threshold,
            "decision": self.decision.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepCalibrator:
        _check_format(d, "binary")
        return cls(
            edges=tuple(float(e) for e in d["edges"]),
            values=tuple(float(v) for v in d["values"]),
            threshold=None if d["threshold"] is None else float(d["threshold"]),
            decision=CalibrationDecision.from_dict(d["decision"]),
        )


@dataclass(frozen=True)
class MulticlassCalibrator:
    """One :class:`StepCalibrator` per class (one-vs-rest); rows renormalised to sum 1."""

    classes: tuple[str, ...]
    per_class: tuple[StepCalibrator, ...]

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.per_class) or len(self.classes) < 2:
            raise ValueError("a multiclass calibrator needs one calibrator per class (≥ 2)")

    @cached_property
    def fingerprint(self) -> str:
        blob = json.dumps([self.classes, [c.fingerprint for c in self.per_class]]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def calibrate(self, scores: FloatArray) -> FloatArray:
        """Renormalised calibrated probabilities, shape (n, classes); NaN rows stay NaN.

        A row whose calibrated values are all 0 becomes uniform (it carries no information
        about which class, and must still count as one row).
        """
        s = np.asarray(scores, dtype=np.float64)
        cal = np.column_stack([c.calibrate(s[:, k]) for k, c in enumerate(self.per_class)])
        total = cal.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(total > 0, cal / total, 1.0 / len(self.classes))
        return np.where(np.isfinite(total), out, np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATOR_FORMAT,
            "kind": "multiclass",
            "classes": list(self.classes),
            "per_class": [c.to_dict() for c in self.per_class],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MulticlassCalibrator:
        _check_format(d, "multiclass")
        return cls(
            classes=tuple(str(c) for c in d["classes"]),
            per_class=tuple(StepCalibrator.from_dict(c) for c in d["per_class"]),
        )


Calibrator = StepCalibrator | MulticlassCalibrator


def calibrator_from_dict(d: dict[str, Any]) -> Calibrator:
    """Either kind of calibrator from its JSON form (refuses other formats)."""
    if d.get("kind") == "multiclass":
        return MulticlassCalibrator.from_dict(d)
    return StepCalibrator.from_dict(d)


def _check_format(d: dict[str, Any], kind: str) -> None:
    if d.get("format") != CALIBRATOR_FORMAT or d.get("kind") != kind:
        raise ValueError(
            f"not a {CALIBRATOR_FORMAT} {kind} calibrator "
            f"(format {d.get('format')!r}, kind {d.get('kind')!r})"
        )
