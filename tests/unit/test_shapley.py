"""Shapley attributions against exact values, a brute-force definition, shap, and ONNX Runtime."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.shapley import ShapleyExplainer


def mlp(d: int, hidden: int = 16, seed: int = 0):
    """A small non-linear model: one tanh layer, a linear read-out (all interactions)."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(0, 1 / math.sqrt(d), (d, hidden)), rng.normal(0, 0.5, hidden)
    w2 = rng.normal(0, 1 / math.sqrt(hidden), hidden)
    return lambda x: np.tanh(x @ w1 + b1) @ w2, (w1, b1, w2)


def pairwise_model(d: int, rng: np.random.Generator):
    """A model with main effects and every pairwise interaction, none of higher order."""
    w, v = rng.normal(size=d), np.triu(rng.normal(size=(d, d)), 1)
    return lambda z: z @ w + np.einsum("ni,ij,nj->n", z, v, z)


def brute_force(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The definition: the mean marginal contribution over all d! orderings."""
    d = x.size

    def v(s: list[int]) -> float:
        z = background.copy()
        z[:, s] = x[s]
        return float(f(z).mean())

    phi = np.zeros(d)
    for order in itertools.permutations(range(d)):
        s: list[int] = []
        before = v(s)
        for i in order:
            s.append(i)
            after = v(s)
            phi[i] += after - before
            before = after
    return phi / math.factorial(d)


class Counting:
    """A model wrapper that counts calls and rows, as a cost probe."""

    def __init__(self, f) -> None:
        self.f, self.calls, self.rows, self.largest = f, 0, 0, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.rows += len(x)
        self.largest = max(self.largest, len(x))
        return self.f(x)


# -- exactness -------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 50),
    st.integers(1, 40),
    st.sampled_from(["exact", "permutation"]),
    st.integers(0, 2**32 - 1),
)
def test_linear_model_attributions_are_weight_times_distance_from_the_background_mean(
    d: int, m: int, method: str, seed: int
) -> None:
    if method == "exact" and d > 10:
        method = "permutation"
    rng = np.random.default_rng(seed)
    w, c = rng.normal(size=d), float(rng.normal())
    background, x = rng.normal(size=(m, d)), rng.normal(2.0, 3.0, size=(3, d))
    explainer = ShapleyExplainer(lambda z: z @ w + c, background, method=method, permutations=2)  # type: ignore[arg-type]
    phi = explainer.explain(x)
    want = w * (x - background.mean(axis=0))
    np.testing.assert_allclose(phi, want, rtol=1e-9, atol=1e-9 * (1 + np.abs(want).max()))


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_exact_method_equals_the_definition_on_a_nonlinear_model(d: int) -> None:
    f, _ = mlp(d, seed=d)
    rng = np.random.default_rng(d)
    background, x = rng.normal(size=(25, d)), rng.normal(size=(3, d))
    phi = ShapleyExplainer(f, background, method="exact").explain(x)
    want = np.array([brute_force(f, row, background) for row in x])
    np.testing.assert_allclose(phi, want, rtol=0, atol=1e-12)


def test_one_antithetic_pair_is_exact_with_pairwise_interactions() -> None:
    # shap's PermutationExplainer states it; so do we: every pair of features is ordered
    # both ways by an ordering and its reverse
    rng = np.random.default_rng(1)
    d = 6
    f = pairwise_model(d, rng)
    background, x = rng.normal(size=(20, d)), rng.normal(size=(4, d))
    phi = ShapleyExplainer(f, background, method="permutation", permutations=2).explain(x)
    want = np.array([brute_force(f, row, background) for row in x])
    np.testing.assert_allclose(phi, want, atol=1e-11)


def test_permutation_estimates_are_unbiased_and_converge() -> None:
    d = 6
    f, _ = mlp(d, seed=3)
    rng = np.random.default_rng(3)
    background, x = rng.normal(size=(30, d)), rng.normal(size=(1, d))
    exact = brute_force(f, x[0], background)

    def estimate(seed: int, permutations: int = 4) -> np.ndarray:
        e = ShapleyExplainer(
            f, background, method="permutation", permutations=permutations, seed=seed
        )
        return e.explain(x)[0]

    runs = np.stack([estimate(s) for s in range(200)])
    se = runs.std(axis=0, ddof=1) / math.sqrt(len(runs))
    assert np.all(np.abs(runs.mean(axis=0) - exact) <= 4 * se + 1e-12)  # unbiased
    many = estimate(0, permutations=400)
    # 100 times the orderings: the error of one estimate shrinks like 1/√100
    assert np.all(np.abs(many - exact) <= 4 * runs.std(axis=0, ddof=1) / 10 + 1e-12)


@pytest.mark.parametrize("method", ["exact", "permutation"])
def test_attributions_add_up_to_the_prediction_minus_the_base_value(method: str) -> None:
    d = 8
    f, _ = mlp(d, seed=4)
    rng = np.random.default_rng(4)
    background, x = rng.normal(size=(40, d)), rng.normal(size=(10, d))
    explainer = ShapleyExplainer(f, background, method=method)  # type: ignore[arg-type]
    phi = explainer.explain(x)
    np.testing.assert_allclose(phi.sum(axis=1), f(x) - f(background).mean(), atol=1e-12)
    assert explainer.base_value() == pytest.approx(f(background).mean(), abs=1e-15)


# -- determinism, batching and cost -------------------------------------------------------------
def test_keys_fix_the_orderings_whatever_the_batch() -> None:
    d = 10
    f, _ = mlp(d, seed=5)
    rng = np.random.default_rng(5)
    background, x = rng.normal(size=(20, d)), rng.normal(size=(12, d))
    keys = rng.integers(0, 2**63, 12, dtype=np.uint64)
    e = ShapleyExplainer(f, background, method="permutation", seed=7)
    whole = e.explain(x, keys)
    order = rng.permutation(12)
    shuffled = e.explain(x[order], keys[order])
    np.testing.assert_array_equal(shuffled, whole[order])
    # another batch size: BLAS may round the model's matrix products differently, nothing more
    np.testing.assert_allclose(e.explain(x[:3], keys[:3]), whole[:3], rtol=0, atol=1e-12)
    twin = ShapleyExplainer(lambda z: f(z.copy()), background, method="permutation", seed=7)
    np.testing.assert_array_equal(twin.explain(x, keys), whole)  # same model: same values
    other = ShapleyExplainer(f, background, method="permutation", seed=8).explain(x, keys)
    assert not np.array_equal(other, whole)


@pytest.mark.parametrize(("d", "m", "method"), [(5, 50, "exact"), (20, 50, "permutation")])
def test_cost_is_as_stated_and_calls_are_few_and_bounded(d: int, m: int, method: str) -> None:
    f, _ = mlp(d, seed=6)
    rng = np.random.default_rng(6)
    model = Counting(f)
    e = ShapleyExplainer(model, rng.normal(size=(m, d)), method=method, max_batch_rows=20_000)  # type: ignore[arg-type]
    e.base_value()
    model.calls = model.rows = 0
    e.explain(rng.normal(size=(16, d)))
    assert model.rows == 16 * e.model_rows_per_row()
    assert model.largest <= 20_000
    assert model.calls <= math.ceil(16 * (e.model_rows_per_row() - 1) / (20_000 // m * m)) + 1
    want = (2**d - 2) * m + 1 if method == "exact" else 10 * (d - 1) * m + 1
    assert e.model_rows_per_row() == want


def test_auto_takes_the_cheaper_method() -> None:
    def f(z: np.ndarray) -> np.ndarray:
        return z.sum(axis=1)

    assert ShapleyExplainer(f, np.zeros((2, 5))).method == "exact"  # 30 ≤ 10·4 coalitions
    assert ShapleyExplainer(f, np.zeros((2, 6))).method == "permutation"  # 62 > 50
    assert ShapleyExplainer(f, np.zeros((2, 6)), permutations=20).method == "exact"
    with pytest.raises(ValueError, match="≤ 16 features"):
        ShapleyExplainer(f, np.zeros((2, 17)), method="exact")


def test_bad_inputs_are_refused() -> None:
    def f(z: np.ndarray) -> np.ndarray:
        return z.sum(axis=1)

    with pytest.raises(ValueError, match="background"):
        ShapleyExplainer(f, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="even"):
        ShapleyExplainer(f, np.zeros((2, 3)), permutations=3)
    e = ShapleyExplainer(f, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        e.explain(np.zeros((1, 4)))
    two = ShapleyExplainer(lambda z: np.zeros((len(z), 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one score each"):
        two.explain(np.zeros((1, 3)))
    assert e.explain(np.zeros((0, 3))).shape == (0, 3)
    single = ShapleyExplainer(f, np.array([[1.0], [3.0]]))
    assert single.explain(np.array([[5.0]])).tolist() == [[3.0]]


# -- against shap -----------------------------------------------------------------------------
def _shap():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba / tqdm import-time notices
        import shap
        import tqdm

    tqdm.tqdm.monitor_interval = 0  # no monitor thread left behind by shap's progress bars
    return shap


# shap's first explanation compiles its numba kernels (~15-20 s here): the slow tier
@pytest.mark.slow
def test_exact_values_equal_shaps_exact_explainer() -> None:
    shap = _shap()
    d = 5
    f, _ = mlp(d, seed=8)
    rng = np.random.default_rng(8)
    background, x = rng.normal(size=(50, d)), rng.normal(size=(6, d))
    ours = ShapleyExplainer(f, background, method="exact").explain(x)
    masker = shap.maskers.Independent(background, max_samples=50)
    theirs = shap.explainers.Exact(f, masker)(x, silent=True)
    np.testing.assert_allclose(ours, theirs.values, atol=1e-10)
    np.testing.assert_allclose(theirs.base_values, f(background).mean(), atol=1e-12)


@pytest.mark.slow
def test_permutation_values_agree_with_shaps_permutation_explainer() -> None:
    shap = _shap()
    d = 8
    f, _ = mlp(d, seed=9)
    rng = np.random.default_rng(9)
    background, x = rng.normal(size=(50, d)), rng.normal(size=(4, d))
    masker = shap.maskers.Independent(background, max_samples=50)
    # shap's own statement: one forward-and-back pass is exact with pairwise interactions
    pairwise = pairwise_model(d, rng)
    theirs = shap.explainers.Permutation(pairwise, masker, seed=1)(
        x, max_evals=2 * d + 1, silent=True
    )
    ours = ShapleyExplainer(pairwise, background, method="permutation", permutations=2)
    np.testing.assert_allclose(ours.explain(x), theirs.values, atol=1e-10)
    # on the MLP (interactions of every order) both are Monte-Carlo estimates: they agree
    # within 5 combined standard errors, shap's from its error_bounds, ours over seeds
    pairs = 100
    shap_run = shap.explainers.Permutation(f, masker, seed=2)(
        x, max_evals=pairs * (2 * d + 1), error_bounds=True, silent=True
    )
    shap_se = shap_run.error_std / math.sqrt(2 * pairs)
    seeds = np.stack(
        [
            ShapleyExplainer(f, background, method="permutation", permutations=20, seed=s).explain(
                x
            )
            for s in range(10)
        ]
    )
    ours_mean = seeds.mean(axis=0)
    ours_se = seeds.std(axis=0, ddof=1) / math.sqrt(len(seeds))
    tolerance = 5 * np.sqrt(shap_se**2 + ours_se**2) + 1e-9
    assert np.all(np.abs(ours_mean - shap_run.values) <= tolerance)
    exact = ShapleyExplainer(f, background, method="exact").explain(x)
    assert np.abs(ours_mean - exact).max() <= np.abs(shap_run.values - exact).max() * 3 + 1e-3


# -- on an ONNX Runtime session -------------------------------------------------------------
def test_runs_on_an_onnx_runtime_session() -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    d, hidden = 6, 8
    _, (w1, b1, w2) = mlp(d, hidden, seed=10)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Tanh", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["score"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, d])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [
            numpy_helper.from_array(w1.astype(np.float32), "w1"),
            numpy_helper.from_array(b1.astype(np.float32), "b1"),
            numpy_helper.from_array(w2.astype(np.float32).reshape(hidden, 1), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the package allows
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def predict(z: np.ndarray) -> np.ndarray:
        return session.run(["score"], {"x": z})[0]

    rng = np.random.default_rng(10)
    background = rng.normal(size=(30, d)).astype(np.float32)
    x = rng.normal(size=(5, d)).astype(np.float32)
    phi = ShapleyExplainer(predict, background, method="exact").explain(x)
    f64 = ShapleyExplainer(
        lambda z: np.tanh(z @ w1 + b1) @ w2, background.astype(np.float64), method="exact"
    )
    np.testing.assert_allclose(phi, f64.explain(x.astype(np.float64)), atol=1e-5)  # float32
