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

Per window the predicted losses are summed in fixed point
(:class:`~watchkeeper.detectors.loss_sketch.LossSketch`, with the estimated metrics).

>>> rng = np.random.default_rng(1)
>>> x = rng.normal(size=2000); yhat = np.zeros(2000)
>>> y = yhat + rng.normal(size=2000) * (1 + (x > 0))     # errors twice as large for x > 0
>>> model = fit_loss_model({"x": x}, yhat, y, params={"max_iter": 20})
>>> absolute, _ = model.predict({"x": np.array([1.0, 2.0, 3.0])}, np.zeros(3))
>>> 1.2 < float(absolute.mean()) < 2.0
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
from watchkeeper.detectors.reserved_names import OTHER, PREDICTION
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
        rounded by at most 2⁻⁴¹ of a typical one (see
        :class:`~watchkeeper.detectors.loss_sketch.LossSketch`)."""

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
        categorical_encoding(name, rows_where(values, ok))
        if name in categorical
        else FeatureEncoding(name, "numeric")
        for name, values in sorted(columns.items())
    ]
    encodings.append(FeatureEncoding(PREDICTION, "numeric"))
    kept = {k: rows_where(v, ok) for k, v in columns.items()}
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


def rows_where(values: Any, keep: np.ndarray[Any, np.dtype[np.bool_]]) -> np.ndarray[Any, Any]:
    arr: np.ndarray[Any, Any] = np.asarray(values)
    if arr.dtype.kind in "US":  # strings stay objects: None and text side by side
        arr = arr.astype(object)
    out: np.ndarray[Any, Any] = arr[keep]
    return out


FIXED_BITS = 40
"""Fixed-point precision of the loss sums: 2⁻⁴⁰ of the reference's mean loss
(:class:`~watchkeeper.detectors.loss_sketch.LossSketch`)."""
