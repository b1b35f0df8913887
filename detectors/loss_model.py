"""Direct loss estimation (NannyML's DLE) for regression models: a model of the model's error.

At reference time two gradient-boosted regressors are fitted on the features and the
prediction: one predicts |y − ŷ|, the other (y − ŷ)² (NannyML's
``nannyml/performance_estimation/direct_loss_estimation/``: one loss model per metric,
fitted on the reference, where labels are known). A squared-error objective makes each
predict the *conditional mean* of its target, which is what a mean over a window needs:
estimated MAE = mean of predicted |e|, estimated RMSE = √(mean of predicted e²).

The library is scikit-learn's ``HistGradientBoostingRegressor`` (docs/estimation.md has
the measurements against LightGBM); its trees are exported to JSON
(:mod:`watchkeeper.detectors.tree_ensemble`) and evaluated with numpy at ingest, so the
daemon loads no pickle and imports no scikit-learn there.

Features are encoded into one float matrix the same way at fit and at ingest
(:class:`FeatureEncoding`): numeric values as they are (null → NaN, the trees' missing
side); categorical values as integer codes of the reference's most frequent categories
(at most 250, the rest folded into one "other" code), a category never seen → NaN.

Per window the predicted losses are summed (:class:`LossSketch`) in fixed point: each
row's predicted loss rounded to 2⁻⁴⁰ of the reference's mean loss, the sums integers,
so merging is exact and order-free, as with the classification counts.

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

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimated_performance import ESTIMATED_METRICS, Estimate
from watchkeeper.detectors.reserved_names import OTHER, PREDICTION
from watchkeeper.detectors.sampling_band import SAMPLING_ERROR_RANGE, MetricSpread, band_around
from watchkeeper.detectors.tree_ensemble import TreeEnsemble, export_hist_gradient_boosting

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
LOSS_MODEL_FORMAT = "watchkeeper.loss_model/v1"
MAX_CATEGORIES = 250  # HistGradientBoosting allows at most max_bins (255) categories
DEFAULT_PARAMS: dict[str, Any] = {
    # small on purpose: cost at ingest grows with trees × depth (docs/estimation.md)
    "max_iter": 50,
    "max_leaf_nodes": 15,
    "learning_rate": 0.1,
    "min_samples_leaf": 20,
    "early_stopping": "auto",
    "random_state": 0,
}


@dataclass(frozen=True)
class FeatureEncoding:
    """How one input column becomes one column of the loss model's float matrix."""

    name: str
    kind: Literal["numeric", "categorical"]
    categories: tuple[str, ...] = ()
    """Categorical codes: ``categories[i]`` is code i (``__other__`` may be one of them)."""

    def encode(self, values: Any) -> FloatArray:
        """Numeric: float64 (None → NaN). Categorical: codes, unseen / null → NaN; one dict
        look-up per distinct value of the batch, not per row."""
        if self.kind == "numeric":
            try:
                arr = np.asarray(values, dtype=object if _has_none(values) else np.float64)
                if arr.dtype == object:
                    arr = np.where(arr == None, np.nan, arr).astype(np.float64)  # noqa: E711
                return arr.astype(np.float64, copy=False)
            except (TypeError, ValueError):
                # a column the daemon reads with another kind than the reference (its first
                # value was text): what parses as a number counts, the rest is NaN, which
                # the trees route as missing; one parse per distinct value, not per row
                return _coerce_numeric(values)
        raw = np.asarray(values, dtype=object)
        if raw.size == 0:
            return np.empty(0)
        present = raw != None  # noqa: E711
        out = np.full(raw.size, np.nan)
        if present.any():
            unique, inverse = np.unique(raw[present].astype(str), return_inverse=True)
            lookup = {c: i for i, c in enumerate(self.categories)}
            other = lookup.get(OTHER, math.nan)
            codes = np.array([lookup.get(u, other) for u in unique.tolist()], dtype=np.float64)
            out[present] = codes[inverse.reshape(-1)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureEncoding:
        kind = d["kind"]
        if kind not in ("numeric", "categorical"):
            raise ValueError(f"unknown feature kind {kind!r}")
        return cls(str(d["name"]), kind, tuple(str(c) for c in d.get("categories", ())))


def _coerce_numeric(values: Any) -> FloatArray:
    """Numbers as float64, anything else (None, text that is no number) as NaN.

    >>> _coerce_numeric(np.array(["1.5", "n/a", None, 2], dtype=object)).tolist()
    [1.5, nan, nan, 2.0]
    """
    raw = np.asarray(values, dtype=object).reshape(-1)
    out = np.full(raw.size, np.nan)
    present = raw != None  # noqa: E711
    if present.any():
        unique, inverse = np.unique(raw[present].astype(str), return_inverse=True)
        out[present] = np.array([_number(u) for u in unique.tolist()])[inverse.reshape(-1)]
    return out


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _has_none(values: Any) -> bool:
    return (isinstance(values, np.ndarray) and values.dtype == object) or isinstance(values, list)


def categorical_encoding(name: str, values: Any) -> FeatureEncoding:
    """The reference's categories by frequency (ties by name), rare ones folded."""
    counts = Counter(str(v) for v in np.asarray(values, dtype=object).tolist() if v is not None)
    ranked = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if len(ranked) > MAX_CATEGORIES:
        ranked = [*ranked[: MAX_CATEGORIES - 1], OTHER]
    return FeatureEncoding(name, "categorical", tuple(ranked))


def encode_matrix(
    features: tuple[FeatureEncoding, ...], columns: Mapping[str, Any], prediction: Any
) -> FloatArray:
    """The float matrix the trees read; a column absent from ``columns`` is all NaN."""
    n = int(np.asarray(prediction).shape[0])
    out = np.full((n, len(features)), np.nan)
    for j, enc in enumerate(features):
        values = prediction if enc.name == PREDICTION else columns.get(enc.name)
        if values is not None:
            out[:, j] = enc.encode(values)
    return out


@dataclass(frozen=True)
class LossModel:
    """The two exported loss models and the encoding of their inputs."""

    features: tuple[FeatureEncoding, ...]
    absolute: TreeEnsemble
    squared: TreeEnsemble
    fit: dict[str, Any] = field(default_factory=dict, compare=False)
    """How it was fitted: library, version, parameters, rows, seconds, held-out check."""

    @cached_property
    def fingerprint(self) -> str:
        blob = json.dumps([self.absolute.to_dict(), self.squared.to_dict()]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def matrix(self, columns: Mapping[str, Any], prediction: Any) -> FloatArray:
        return encode_matrix(self.features, columns, prediction)

    def predict(self, columns: Mapping[str, Any], prediction: Any) -> tuple[FloatArray, FloatArray]:
        """Predicted |y − ŷ| and (y − ŷ)² per row, clipped at 0 (a loss is never negative)."""
        return self.predict_matrix(self.matrix(columns, prediction))

    def predict_matrix(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """:meth:`predict` on an encoded matrix (:meth:`matrix`)."""
        return np.maximum(self.absolute.predict(x), 0.0), np.maximum(self.squared.predict(x), 0.0)

    @cached_property
    def exponents(self) -> tuple[int, int]:
        """The fixed-point quantum of the window sums, as powers of two: 2⁻⁴⁰ of each loss
        model's baseline (its mean loss on the reference), so a row's predicted loss is
        rounded by at most 2⁻⁴¹ of a typical one (see :class:`LossSketch`)."""

        def exponent(baseline: float) -> int:
            scale = abs(baseline) if math.isfinite(baseline) and baseline != 0 else 1.0
            return math.floor(math.log2(scale)) - FIXED_BITS

        return exponent(self.absolute.baseline), exponent(self.squared.baseline)

    @cached_property
    def feature_columns(self) -> tuple[int, ...]:
        """The matrix columns of the input features (the prediction's left out)."""
        return tuple(j for j, f in enumerate(self.features) if f.name != PREDICTION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": LOSS_MODEL_FORMAT,
            "features": [f.to_dict() for f in self.features],
            "absolute": self.absolute.to_dict(),
            "squared": self.squared.to_dict(),
            "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LossModel:
        if d.get("format") != LOSS_MODEL_FORMAT:
            raise ValueError(f"not a {LOSS_MODEL_FORMAT} loss model (format {d.get('format')!r})")
        return cls(
            features=tuple(FeatureEncoding.from_dict(f) for f in d["features"]),
            absolute=TreeEnsemble.from_dict(d["absolute"]),
            squared=TreeEnsemble.from_dict(d["squared"]),
            fit=dict(d.get("fit", {})),
        )


def fit_regressor(
    x: FloatArray, target: FloatArray, categorical: list[int], params: dict[str, Any]
) -> Any:
    """The library's model, fitted (scikit-learn imported here only)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(
        loss="squared_error", categorical_features=categorical or None, **params
    )
    return model.fit(x, target)


def fit_loss_model(
    columns: Mapping[str, Any],
    prediction: Any,
    target: Any,
    categorical: frozenset[str] = frozenset(),
    params: dict[str, Any] | None = None,
    holdout: float = 0.2,
    seed: int = 0,
) -> LossModel:
    """Fit both loss models on reference rows (see the module docstring).

    ``columns`` maps feature names to arrays (numeric: floats with NaN / None for nulls;
    names in ``categorical``: strings or None). Rows whose prediction or target is not
    finite are left out. A ``holdout`` share of the rows is kept aside: the models are
    fitted on the rest and the held-out rows give the check recorded in ``fit``
    (estimated vs realised MAE / RMSE there) — of the very models that are returned.
    """
    import sklearn

    settings = {**DEFAULT_PARAMS, **(params or {})}
    pred = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    ok = np.isfinite(pred) & np.isfinite(y)
    if ok.sum() < 20:
        raise InsufficientDataError("a loss model needs at least 20 labelled reference rows")
    encodings = [
        categorical_encoding(name, _rows(values, ok))
        if name in categorical
        else FeatureEncoding(name, "numeric")
        for name, values in sorted(columns.items())
    ]
    encodings.append(FeatureEncoding(PREDICTION, "numeric"))
    kept = {k: _rows(v, ok) for k, v in columns.items()}
    x = encode_matrix(tuple(encodings), kept, pred[ok])
    err = y[ok] - pred[ok]
    rng = np.random.default_rng(seed)
    held = rng.random(err.size) < holdout if holdout > 0 else np.zeros(err.size, dtype=bool)
    train = ~held
    cat_idx = [j for j, e in enumerate(encodings) if e.kind == "categorical"]
    started = time.perf_counter()
    absolute = fit_regressor(x[train], np.abs(err[train]), cat_idx, settings)
    squared = fit_regressor(x[train], err[train] ** 2, cat_idx, settings)
    seconds = time.perf_counter() - started
    model = LossModel(
        tuple(encodings),
        export_hist_gradient_boosting(absolute),
        export_hist_gradient_boosting(squared),
    )
    check: dict[str, float] = {}
    if held.sum() > 0:
        abs_hat = np.maximum(model.absolute.predict(x[held]), 0.0)
        sq_hat = np.maximum(model.squared.predict(x[held]), 0.0)
        check = {
            "rows": int(held.sum()),
            "estimated_mae": float(abs_hat.mean()),
            "mae": float(np.abs(err[held]).mean()),
            "estimated_rmse": math.sqrt(float(sq_hat.mean())),
            "rmse": math.sqrt(float((err[held] ** 2).mean())),
        }
    fit = {
        "library": f"scikit-learn {sklearn.__version__} HistGradientBoostingRegressor",
        "params": dict(settings),
        "rows": int(train.sum()),
        "seconds": round(seconds, 3),
        "trees": [model.absolute.trees, model.squared.trees],
        "holdout": check,
    }
    return LossModel(model.features, model.absolute, model.squared, fit)


def _rows(values: Any, keep: np.ndarray[Any, np.dtype[np.bool_]]) -> np.ndarray[Any, Any]:
    arr: np.ndarray[Any, Any] = np.asarray(values)
    if arr.dtype.kind in "US":  # strings stay objects: None and text side by side
        arr = arr.astype(object)
    out: np.ndarray[Any, Any] = arr[keep]
    return out


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
        cols = columns if ok.all() else {k: _rows(v, ok) for k, v in columns.items()}
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


FIXED_BITS = 40
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
