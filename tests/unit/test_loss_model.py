"""Direct loss estimation: the exported trees equal scikit-learn's predict bit for bit, the
window sums merge, the estimates track realised MAE / RMSE under covariate shift, and
ingest needs neither scikit-learn nor pickle."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.estimation_reference import (
    Estimation,
    fit_regression_estimation,
    window_estimate_from_dict,
)
from watchkeeper.detectors.loss_model import (
    FeatureEncoding,
    LossModel,
    categorical_encoding,
    fit_loss_model,
    fit_regressor,
)
from watchkeeper.detectors.loss_sketch import LossSketch
from watchkeeper.detectors.reserved_names import OTHER, PREDICTION
from watchkeeper.detectors.tree_ensemble import TreeEnsemble, export_hist_gradient_boosting


def matrix(rng: np.random.Generator, n: int, codes=(0, 2, 3, 5, 7, 11, 40)) -> np.ndarray:
    x = rng.normal(size=(n, 5))
    x[:, 1] = rng.choice(codes, n)  # a categorical column of integer codes, not 0..k-1
    x[:, 3] = rng.integers(0, 3, n)  # and another
    x[rng.random(n) < 0.07, 0] = np.nan
    x[rng.random(n) < 0.05, 1] = np.nan
    return x


def target(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cat = np.nan_to_num(x[:, 1], nan=1.0)
    return np.abs(x[:, 2]) + (cat % 3) + np.nan_to_num(x[:, 0]) * x[:, 4] + rng.normal(size=len(x))


def round_trip(t: TreeEnsemble) -> TreeEnsemble:
    return TreeEnsemble.from_dict(json.loads(json.dumps(t.to_dict(), allow_nan=False)))


def test_exported_trees_equal_the_library_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    x = matrix(rng, 3000)
    model = fit_regressor(x, target(x, rng), [1, 3], {"max_iter": 40, "random_state": 0})
    trees = round_trip(export_hist_gradient_boosting(model))
    new = matrix(rng, 8000, codes=(0, 2, 3, 5, 7, 11, 40, 1, 99, -4))  # unseen and negative
    new[:50, 2] = np.inf
    new[50:100, 2] = -np.inf
    new[100:150, 4] = np.nan
    new[150:200, 3] = 300.0  # beyond any bitset
    assert np.array_equal(trees.predict(new), model.predict(new))
    assert trees.trees == model.n_iter_ and trees.categorical


def test_numeric_only_models_equal_the_library() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 4))
    x[rng.random((3000, 4)) < 0.05] = np.nan
    y = np.nan_to_num(x[:, 0]) ** 2 + rng.normal(size=3000)
    model = fit_regressor(x, y, [], {"max_iter": 40, "max_leaf_nodes": 31, "random_state": 0})
    trees = round_trip(export_hist_gradient_boosting(model))
    probe = rng.normal(size=(5000, 4)) * 3
    probe[rng.random((5000, 4)) < 0.1] = np.nan
    assert np.array_equal(trees.predict(probe), model.predict(probe))


def test_a_split_on_nans_sends_nan_right_and_every_value_left() -> None:
    """scikit-learn's split between the last value bin and the missing one has threshold
    +inf and sends NaN right (grower.py, ``_fill_predictor_arrays``). Routing NaN as +inf
    sent it left: at seed 596 twenty rows were off by up to 0.26."""
    t = TreeEnsemble(
        baseline=0.0,
        roots=(0,),
        feature=(0, 0, 0),
        threshold=(math.inf, 0.0, 0.0),
        missing_left=(False, False, False),
        left=(1, 0, 0),
        right=(2, 0, 0),
        leaf=(False, True, True),
        value=(0.0, -1.0, 1.0),
        categorical=(),
        known={},
    )
    x = np.array([[np.nan], [np.inf], [-np.inf], [1e308], [0.0]])
    assert t.predict(x).tolist() == [1.0, -1.0, -1.0, -1.0, -1.0]
    assert round_trip(t).predict(x).tolist() == [1.0, -1.0, -1.0, -1.0, -1.0]


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 30), st.booleans())
@example(seed=596, trees=5, cat=False)  # a split on NaNs (the test above)
def test_predictor_equals_library_on_random_models(seed: int, trees: int, cat: bool) -> None:
    rng = np.random.default_rng(seed)
    x = matrix(rng, 600)
    y = target(x, rng)
    model = fit_regressor(x, y, [1] if cat else [], {"max_iter": trees, "random_state": 0})
    exported = round_trip(export_hist_gradient_boosting(model))
    probe = matrix(rng, 700, codes=(0, 2, 3, 5, 7, 11, 40, 13))
    assert np.array_equal(exported.predict(probe), model.predict(probe))


def heteroscedastic(rng: np.random.Generator, n: int, mu: float = 0.0):
    """The model ŷ = 2x ignores that its error grows with |x| and in segment "b"."""
    x = rng.normal(mu, 1.0, n)
    segment = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).astype(object)
    segment[rng.random(n) < 0.03] = None
    scale = 0.5 + np.abs(x) + 1.5 * (segment == "b")
    prediction = 2 * x
    y = prediction + rng.normal(size=n) * scale
    return {"x": x, "segment": segment}, prediction, y


@pytest.fixture(scope="module")
def estimation() -> Estimation:
    cols, pred, y = heteroscedastic(np.random.default_rng(3), 10_000)
    return fit_regression_estimation(cols, pred, y, categorical=frozenset({"segment"}))


def test_estimates_track_realised_mae_and_rmse_under_covariate_shift(estimation) -> None:
    rng = np.random.default_rng(4)
    inside = {"estimated_mae": 0, "estimated_rmse": 0}
    realised_mae = []
    windows = 60
    for w in range(windows):
        cols, pred, y = heteroscedastic(rng, 2000, mu=1.5 * w / windows)
        sketch = estimation.new_sketch()
        assert isinstance(sketch, LossSketch)
        sketch.update(estimation.model, cols, pred)  # type: ignore[arg-type]
        err = y - pred
        realised = {"mae": np.abs(err).mean(), "rmse": math.sqrt((err**2).mean())}
        realised_mae.append(realised["mae"])
        for metric in inside:
            e = estimation.estimate(metric, sketch)
            assert e.band is not None and e.band.lower >= 0.0
            inside[metric] += e.band.contains(realised[metric.removeprefix("estimated_")])
    assert max(realised_mae) - min(realised_mae) > 0.4  # the shift really costs accuracy
    for metric, count in inside.items():
        assert count / windows >= 0.95, (metric, count)
    check = estimation.model.fit["holdout"]  # type: ignore[union-attr]
    assert check["estimated_mae"] == pytest.approx(check["mae"], rel=0.05)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=5))
def test_loss_sums_merge_exactly_in_any_cut(cuts: list[int]) -> None:
    model = _model()
    cols, pred, _ = heteroscedastic(np.random.default_rng(5), 1000)
    pred[::97] = np.nan
    whole = LossSketch(model.fingerprint)
    whole.update(model, cols, pred)
    merged = LossSketch(model.fingerprint)
    bounds = [0, *sorted(set(cuts)), 1000]
    for lo, hi in itertools.pairwise(bounds):
        part = LossSketch(model.fingerprint)
        part.update(model, {k: v[lo:hi] for k, v in cols.items()}, pred[lo:hi])
        stored = window_estimate_from_dict(json.loads(json.dumps(part.to_dict())))
        assert isinstance(stored, LossSketch)
        merged.merge(stored)
    assert (merged.n, merged.nan_predictions) == (whole.n, whole.nan_predictions) == (989, 11)
    # fixed point: the merged integers are the whole's, bit for bit
    assert (merged.fixed_abs, merged.fixed_sq) == (whole.fixed_abs, whole.fixed_sq)
    assert merged.to_dict() == whole.to_dict()
    # and the direct row-by-row sum of the rounded predicted losses
    ok = np.isfinite(pred)
    absolute, squared = model.predict({k: v[ok] for k, v in cols.items()}, pred[ok])
    ea, es = model.exponents
    assert whole.fixed_abs == sum(round(v * 2.0**-ea) for v in absolute.tolist())
    assert whole.fixed_sq == sum(round(v * 2.0**-es) for v in squared.tolist())
    assert whole.sum_abs == pytest.approx(float(absolute.sum()), rel=1e-11)


def test_rows_without_the_loss_models_features_are_counted_not_estimated() -> None:
    model = _model()
    cols, pred, _ = heteroscedastic(np.random.default_rng(8), 300)
    sketch = LossSketch(model.fingerprint, model.exponents)
    sketch.update(model, {}, pred)  # events that carry no feature at all
    assert (sketch.n, sketch.missing_features) == (0, 300)
    with pytest.raises(InsufficientDataError, match="none of the loss model's features"):
        sketch.estimates()
    some = {"x": cols["x"]}  # one feature of several
    sketch.update(model, some, pred)
    assert (sketch.n, sketch.partial_features) == (300, 300)
    stored = LossSketch.from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert (stored.missing_features, stored.partial_features) == (300, 300)


def test_a_loss_state_stored_before_exact_sums_still_reads_and_merges() -> None:
    old = {"kind": "loss", "loss_model": "abc", "n": 4, "sums": [8.0, 25.0], "nan_predictions": 0}
    sketch = LossSketch.from_dict(old)
    assert sketch.estimates() == {"mae": 2.0, "rmse": 2.5}
    new = LossSketch("abc", (0, 0))
    new.n, new.fixed_abs, new.fixed_sq = 4, 8, 25
    sketch.merge(new)
    assert sketch.estimates() == {"mae": 2.0, "rmse": 2.5}


_MODELS: dict[str, LossModel] = {}


def _model() -> LossModel:
    if "m" not in _MODELS:
        cols, pred, y = heteroscedastic(np.random.default_rng(6), 3000)
        _MODELS["m"] = fit_loss_model(
            cols, pred, y, categorical=frozenset({"segment"}), params={"max_iter": 20}
        )
    return _MODELS["m"]


def test_missing_columns_unseen_categories_and_empty_windows() -> None:
    model = _model()
    n = 5
    cols = {"segment": np.array(["a", "zzz", None, "b", "c"], dtype=object)}
    absolute, squared = model.predict(cols, np.zeros(n))  # "x" absent: the missing side
    assert absolute.shape == squared.shape == (n,)
    assert np.all(absolute >= 0) and np.all(squared >= 0)
    x = model.matrix(cols, np.zeros(n))
    seg = [f.name for f in model.features].index("segment")
    assert np.isnan(x[1, seg]) and np.isnan(x[2, seg])  # unseen and null → missing
    assert np.all(np.isnan(x[:, [f.name for f in model.features].index("x")]))
    empty = LossSketch(model.fingerprint)
    empty.update(model, cols, np.full(n, np.nan))
    assert empty.nan_predictions == n
    with pytest.raises(InsufficientDataError):
        empty.estimates()
    with pytest.raises(ValueError, match="another loss model"):
        LossSketch("other").update(model, cols, np.zeros(n))


def test_a_numeric_feature_read_as_text_is_coerced_not_a_crash() -> None:
    """The daemon learns a column's kind from its first value: a numeric reference feature
    may arrive as text ("n/a" first). Its numbers still count, the rest reads as missing,
    and the batch's estimate is updated, never raised out of the ingest path."""
    model = _model()
    x = [f.name for f in model.features].index("x")
    text = np.array(["1.5", "n/a", None, "2", "-0.25"], dtype=object)
    matrix = model.matrix({"x": text, "segment": np.array(["a"] * 5, dtype=object)}, np.zeros(5))
    assert matrix[:, x].tolist()[0] == 1.5 and matrix[:, x].tolist()[3:] == [2.0, -0.25]
    assert np.isnan(matrix[1, x]) and np.isnan(matrix[2, x])
    numbers = np.array([1.5, 2.0], dtype=object)
    assert FeatureEncoding("x", "numeric").encode(numbers).tolist() == [1.5, 2.0]
    sketch = LossSketch(model.fingerprint)
    sketch.update(model, {"x": text, "segment": np.array(["a"] * 5, dtype=object)}, np.zeros(5))
    assert sketch.n == 5


def test_rare_categories_fold_into_other() -> None:
    values = [f"c{i}" for i in range(300) for _ in range(300 - i)]
    enc = categorical_encoding("big", values)
    assert len(enc.categories) == 250 and enc.categories[-1] == OTHER
    codes = enc.encode(np.array(["c0", "c299", "never"], dtype=object))
    assert codes[0] == 0 and codes[1] == codes[2] == 249  # rare and unseen alike: other
    assert FeatureEncoding.from_dict(enc.to_dict()) == enc


def test_loss_model_round_trips_through_json(estimation) -> None:
    model = estimation.model
    assert isinstance(model, LossModel)
    back = LossModel.from_dict(json.loads(json.dumps(model.to_dict(), allow_nan=False)))
    assert back.fingerprint == model.fingerprint and back.features == model.features
    cols, pred, _ = heteroscedastic(np.random.default_rng(7), 500)
    for a, b in zip(back.predict(cols, pred), model.predict(cols, pred), strict=True):
        assert np.array_equal(a, b)
    assert model.features[-1].name == PREDICTION
    assert Estimation.from_dict(json.loads(json.dumps(estimation.to_dict()))) == estimation


def test_ingest_needs_neither_scikit_learn_nor_pickle(tmp_path, estimation) -> None:
    """The daemon's side: load the JSON, count windows, read estimates — in a fresh
    interpreter that never imports sklearn or pickle-based loading."""
    path = tmp_path / "estimation.json"
    path.write_text(json.dumps(estimation.to_dict(), allow_nan=False))
    from watchkeeper.detectors.estimation_reference import fit_binary_estimation

    rng = np.random.default_rng(8)
    s = rng.random(3000)
    binary = fit_binary_estimation(s, rng.random(3000) < s)
    (tmp_path / "binary.json").write_text(json.dumps(binary.to_dict(), allow_nan=False))
    code = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from watchkeeper.detectors.estimation_reference import Estimation
        reg = Estimation.from_dict(json.loads(open({str(path)!r}).read()))
        w = reg.new_sketch()
        w.update(reg.model, {{"x": np.zeros(10), "segment": np.array(["a"] * 10, dtype=object)}},
                 np.zeros(10))
        print(reg.estimate("estimated_mae", w).value > 0)
        cls = Estimation.from_dict(json.loads(open({str(tmp_path / "binary.json")!r}).read()))
        b = cls.new_sketch()
        b.update(cls.calibrator, np.linspace(0, 1, 100))
        print(0 <= cls.estimate("estimated_roc_auc", b).value <= 1)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "pickle", "joblib")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    lines = out.stdout.split("\n")
    assert lines[:2] == ["True", "True"]
    assert "sklearn" not in lines[2] and "joblib" not in lines[2], lines[2]
