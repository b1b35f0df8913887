"""Per-window state of direct loss estimation: the summed predicted losses, exact.

Per window the loss model's (:mod:`watchkeeper.detectors.loss_model`) predicted losses
are summed (:class:`LossSketch`) in fixed point: each row's predicted loss rounded to
2⁻⁴⁰ of the reference's mean loss, the sums integers, so merging is exact and
order-free, as with the classification counts. :class:`EstimatedRegressionMetric`
turns a sketch into ``estimated_mae`` / ``estimated_rmse`` with its sampling band.

>>> from watchkeeper.detectors.loss_model import fit_loss_model
>>> rng = np.random.default_rng(1)
>>> x = rng.normal(size=2000); yhat = np.zeros(2000)
>>> y = yhat + rng.normal(size=2000) * (1 + (x > 0))     # errors twice as large for x > 0
>>> model = fit_loss_model({"x": x}, yhat, y, params={"max_iter": 20})
>>> s = LossSketch(model.fingerprint)
>>> s.update(model, {"x": np.array([1.0, 2.0, 3.0])}, np.zeros(3))
>>> 1.2 < s.estimates()["mae"] < 2.0
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS, Estimate
from watchkeeper.detectors.loss_model import FloatArray, LossModel, rows_where
from watchkeeper.detectors.sampling_band import SAMPLING_ERROR_RANGE, MetricSpread, band_around


class LossSketch:
    """Running sums of predicted losses for one window; merges by addition, exactly.

    The sums are fixed point: each row's predicted |e| and e² is rounded to a multiple of
    the loss model's quantum (:attr:`LossModel.exponents`: 2⁻⁴⁰ of its mean loss on the
    reference) and added as an integer (Python's, unbounded), so flushes, windows and
    replicas merge bit for bit in any order. A batch is summed vectorised: the integers
    are split into 32-bit halves summed in int64 chunks that cannot overflow.

    Rows whose loss-model features are all absent (the events carry none of them) are
    estimated from nothing but the prediction: they are left out and counted in
    ``missing_features``; rows with some absent are estimated (the trees' missing side, as
    on the reference) and counted in ``partial_features``.
    """

    kind = "loss"

    def __init__(self, fingerprint: str, exponents: tuple[int, int] | None = None) -> None:
        self.fingerprint = fingerprint
        self.exponents = exponents
        """Quantum of the two sums as powers of two (None: a state stored before the
        sums were exact, read back as floats)."""
        self.n = 0
        self.fixed_abs = 0
        self.fixed_sq = 0
        self._float_sums: tuple[float, float] | None = None
        self.nan_predictions = 0
        """Rows left out because the model's prediction was NaN or infinite."""
        self.missing_features = 0
        """Rows left out because none of the loss model's features was present."""
        self.partial_features = 0
        """Rows estimated with some of the loss model's features absent."""

    @property
    def sum_abs(self) -> float:
        if self._float_sums is not None:
            return self._float_sums[0]
        assert self.exponents is not None
        return math.ldexp(self.fixed_abs, self.exponents[0]) if self.fixed_abs else 0.0

    @property
    def sum_sq(self) -> float:
        if self._float_sums is not None:
            return self._float_sums[1]
        assert self.exponents is not None
        return math.ldexp(self.fixed_sq, self.exponents[1]) if self.fixed_sq else 0.0

    def update(self, model: LossModel, columns: Mapping[str, Any], prediction: Any) -> None:
        """Add a batch: features by name (as :meth:`LossModel.matrix` reads them) and the
        model's predictions. Missing feature values are the trees' missing side."""
        if model.fingerprint != self.fingerprint:
            raise ValueError("loss sketch: counted under another loss model")
        if self.exponents is None:
            self.exponents = model.exponents  # a blank state read back: adopt the model's
        pred = np.asarray(prediction, dtype=np.float64)
        ok = np.isfinite(pred)
        self.nan_predictions += int(pred.size - ok.sum())
        if not ok.any():
            return
        cols = columns if ok.all() else {k: rows_where(v, ok) for k, v in columns.items()}
        x = model.matrix(cols, pred[ok])
        inputs = model.feature_columns
        if inputs:
            absent = np.isnan(x[:, list(inputs)])
            none = absent.all(axis=1)
            self.missing_features += int(none.sum())
            self.partial_features += int((absent.any(axis=1) & ~none).sum())
            if none.any():
                x = x[~none]
        if x.shape[0] == 0:
            return
        absolute, squared = model.predict_matrix(x)
        self.n += int(x.shape[0])
        if self._float_sums is not None:  # a state from before exact sums: stays float
            a, q = self._float_sums
            self._float_sums = (a + float(absolute.sum()), q + float(squared.sum()))
            return
        ea, es = model.exponents
        self.fixed_abs += exact_fixed_sum(absolute, ea)
        self.fixed_sq += exact_fixed_sum(squared, es)

    def merge(self, other: LossSketch) -> None:
        if other.fingerprint != self.fingerprint:
            raise ValueError("loss sketch: merging windows of different loss models")
        self.n += other.n
        self.nan_predictions += other.nan_predictions
        self.missing_features += other.missing_features
        self.partial_features += other.partial_features
        if self._float_sums is None and other._float_sums is None:
            if self.exponents is None or other.exponents is None:
                self.exponents = self.exponents or other.exponents
            elif self.exponents != other.exponents:
                raise ValueError("loss sketch: merging sums of different quanta")
            self.fixed_abs += other.fixed_abs
            self.fixed_sq += other.fixed_sq
            return
        # one side from before exact sums: the merge is a float addition, as it was
        self._float_sums = (self.sum_abs + other.sum_abs, self.sum_sq + other.sum_sq)

    def estimates(self) -> dict[str, float]:
        """``mae`` and ``rmse`` expected for the window (realised names)."""
        if self.n == 0:
            why = "no predictions with a finite value in this window"
            if self.missing_features:
                why = (
                    f"{self.missing_features} predictions carry none of the loss model's "
                    "features: nothing to estimate their loss from"
                )
            raise InsufficientDataError(why)
        return {"mae": self.sum_abs / self.n, "rmse": math.sqrt(self.sum_sq / self.n)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "loss_model": self.fingerprint,
            "n": self.n,
            "nan_predictions": self.nan_predictions,
            "missing_features": self.missing_features,
            "partial_features": self.partial_features,
        }
        if self._float_sums is not None:
            out["sums"] = list(self._float_sums)
        else:
            out["fixed"] = [str(self.fixed_abs), str(self.fixed_sq)]  # text: any size
            out["exponents"] = None if self.exponents is None else list(self.exponents)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossSketch:
        exponents = d.get("exponents")
        out = cls(str(d["loss_model"]), None if exponents is None else tuple(exponents))
        out.n = int(d["n"])
        if "fixed" in d:
            out._float_sums = None
            out.fixed_abs, out.fixed_sq = (int(v) for v in d["fixed"])
        else:  # window estimate state before exact sums
            a, q = (float(v) for v in d["sums"])
            out._float_sums = (a, q)
        out.nan_predictions = int(d["nan_predictions"])
        out.missing_features = int(d.get("missing_features", 0))
        out.partial_features = int(d.get("partial_features", 0))
        return out


_HALF = 2.0**32
_CHUNK = 2**19  # 2¹⁹ rows × 2³² < 2⁵¹: an int64 chunk sum of the halves never overflows


def exact_fixed_sum(values: FloatArray, exponent: int) -> int:
    """Σ round(v / 2^exponent) over ``values`` (finite, ≥ 0), exactly, as a Python int.

    Scaling by a power of two is exact in float64, and so is the split of each rounded
    value x into x = hi · 2³² + lo (hi, lo integers, |hi| < 2³¹ while x < 2⁶³); a value
    beyond that (a loss 2²³ times the reference's mean) is added on its own, as an int.

    >>> v = [0.1, 0.2, 0.3]
    >>> exact_fixed_sum(np.array(v), -40) == sum(round(x * 2**40) for x in v)
    True
    """
    x = np.rint(np.ldexp(np.asarray(values, dtype=np.float64), -exponent))
    big = np.abs(x) >= 2.0**62
    total = sum(int(v) for v in x[big].tolist()) if big.any() else 0
    x = x[~big]
    hi = np.floor(x / _HALF)
    lo = (x - hi * _HALF).astype(np.int64)
    hi_i = hi.astype(np.int64)
    for start in range(0, x.size, _CHUNK):
        total += int(hi_i[start : start + _CHUNK].sum()) * 2**32
        total += int(lo[start : start + _CHUNK].sum())
    return total


class EstimatedRegressionMetric:
    """``estimated_mae`` or ``estimated_rmse`` of a window, with its sampling band.

    >>> s = LossSketch("abc", exponents=(0, 0))
    >>> s.n, s.fixed_abs, s.fixed_sq = 400, 800, 2500
    >>> e = EstimatedRegressionMetric("estimated_rmse").score(
    ...     s, MetricSpread(std=0.1, chunk_size=100, chunks=20))
    >>> (e.value, round(e.band.lower, 2), round(e.band.upper, 2))
    (2.5, 2.35, 2.65)
    """

    def __init__(self, name: str, width: float = SAMPLING_ERROR_RANGE) -> None:
        spec = ESTIMATED_METRICS.get(name)
        if spec is None or "regression" not in spec.problems:
            raise ValueError(f"unknown estimated regression metric {name!r}")
        self.name = name
        self.width = width
        self._spec = spec

    def score(self, sketch: LossSketch, spread: MetricSpread | None) -> Estimate:
        value = sketch.estimates()[self._spec.realised]
        band = (
            None
            if spread is None
            else band_around(
                value, spread, sketch.n, self._spec.lower_limit, self._spec.upper_limit, self.width
            )
        )
        return Estimate(self.name, value, band, sketch.n, sketch.nan_predictions)
