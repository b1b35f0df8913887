"""Attribution summaries and comparison statistics, against independent computations, and
the promise: a candidate that stopped using an input is caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from watchkeeper.detectors.attribution import (
    ATTRIBUTION_METRICS,
    AttributionComparison,
    AttributionSummary,
    protected_change,
    rank_correlation,
    topk_overlap,
)
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.shapley import ShapleyExplainer

FEATURES = [f"f{i}" for i in range(8)]
attributions = hnp.arrays(
    np.float64,
    st.tuples(st.integers(0, 30), st.just(8)),
    elements=st.floats(-1e3, 1e3, allow_nan=False),
)


@settings(max_examples=50, deadline=None)
@given(attributions, attributions)
def test_merged_summaries_equal_the_summary_of_all_rows(a: np.ndarray, b: np.ndarray) -> None:
    left, right, whole = (AttributionSummary(FEATURES) for _ in range(3))
    left.update(a)
    right.update(b)
    whole.update(np.concatenate([a, b]))
    left.merge(right)
    assert left.rows == whole.rows == len(a) + len(b)
    if whole.rows:
        np.testing.assert_allclose(left.mean_abs(), whole.mean_abs(), rtol=1e-12, atol=1e-9)
        both = np.concatenate([a, b])
        np.testing.assert_allclose(whole.mean_abs(), np.abs(both).mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(whole.mean(), both.mean(axis=0), rtol=1e-9, atol=1e-9)
    again = AttributionSummary.from_dict(left.to_dict())
    assert again.to_dict() == left.to_dict()


def test_shares_standard_errors_and_skipped_rows() -> None:
    s = AttributionSummary(["a", "b"])
    s.update(np.array([[1.0, -3.0], [3.0, 1.0], [np.nan, 1.0]]))
    assert (s.rows, s.skipped) == (2, 1)
    assert s.mean_abs().tolist() == [2.0, 2.0]
    assert s.shares().tolist() == [0.5, 0.5]
    want = np.array([np.std([1.0, 3.0], ddof=1), np.std([3.0, 1.0], ddof=1)]) / np.sqrt(2)
    np.testing.assert_allclose(s.standard_errors(), want)
    empty = AttributionSummary(["a", "b"])
    with pytest.raises(InsufficientDataError, match="no attributed rows"):
        empty.mean_abs()
    zero = AttributionSummary(["a", "b"])
    zero.update(np.zeros((3, 2)))
    with pytest.raises(InsufficientDataError, match="no shares"):
        zero.shares()
    with pytest.raises(ValueError, match="same features"):
        s.merge(AttributionSummary(["b", "a"]))
    with pytest.raises(ValueError, match="distinct"):
        AttributionSummary(["a", "a"])


importance = hnp.arrays(np.float64, st.integers(2, 30), elements=st.sampled_from([0.0, 1, 2, 3.5]))


@settings(max_examples=100, deadline=None)
@given(importance, st.data())
def test_rank_correlation_is_scipys_spearman_with_ties(a: np.ndarray, data: st.DataObject) -> None:
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=st.floats(0, 10, allow_nan=False)))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        with pytest.raises(InsufficientDataError):
            rank_correlation(a, b)
        return
    want = stats.spearmanr(a, b).statistic
    assert rank_correlation(a, b) == pytest.approx(want, abs=1e-12)


def test_topk_overlap_and_its_tie_rule() -> None:
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = np.array([1.0, 4.0, 3.0, 5.0, 2.0])
    assert topk_overlap(a, b, 3) == len({0, 1, 2} & {3, 1, 2}) / 3
    assert topk_overlap(a, b, 10) == 1.0  # k capped at the number of features
    tied = np.array([1.0, 1.0, 1.0])
    assert topk_overlap(tied, np.array([0.0, 0.0, 1.0]), 1) == 0.0  # tie → first feature
    with pytest.raises(ValueError, match="k ≥ 1"):
        topk_overlap(a, b, 0)


def test_protected_change_picks_the_largest_move_and_keeps_its_sign() -> None:
    features = ["amount", "age", "gender", "zip"]
    base = np.array([0.4, 0.3, 0.2, 0.1])
    cand = np.array([0.3, 0.25, 0.05, 0.4])
    change = protected_change(features, base, cand, ["gender", "zip", "unknown"])
    assert change.feature == "zip"
    assert change.value == pytest.approx(0.3) and change.change == pytest.approx(0.3)
    loss = protected_change(features, base, cand, ["gender"])
    assert loss.change == pytest.approx(-0.15) and loss.value == pytest.approx(0.15)
    with pytest.raises(InsufficientDataError, match="none of the protected"):
        protected_change(features, base, cand, ["race"])


def test_metric_table() -> None:
    assert set(ATTRIBUTION_METRICS) == {
        "shadow_attribution_rank_corr",
        "shadow_attribution_topk_overlap",
        "shadow_protected_attribution_delta",
        "attribution_shift",
    }
    assert ATTRIBUTION_METRICS["shadow_protected_attribution_delta"].direction == (
        "higher_is_worse"
    )


# -- the promise: a candidate that stopped using an input -----------------------------------
D = 8
WEIGHTS = np.array([3.0, 2.5, 2.0, 1.6, 1.2, 0.9, 0.6, 0.3])


def network(zeroed: int | None = None):
    """A small MLP whose input i enters with weight WEIGHTS[i]; ``zeroed``: that input's
    first-layer weights set to 0, as a pruning or a bad compression would."""
    rng = np.random.default_rng(42)
    mix = rng.normal(0, 0.3, (D, 12))
    mix[np.arange(D), np.arange(D) % 12] += 1.0
    w1 = WEIGHTS[:, None] * mix
    if zeroed is not None:
        w1 = w1.copy()
        w1[zeroed] = 0.0
    w2 = rng.normal(0, 0.5, 12) + 1.0

    def predict(x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ w1 / 3) @ w2

    return predict


def summaries(models, rows: np.ndarray, background: np.ndarray, keys: np.ndarray):
    out = []
    for model in models:
        s = AttributionSummary(FEATURES)
        s.update(ShapleyExplainer(model, background, seed=3).explain(rows, keys))
        out.append(s)
    return out


@pytest.fixture(scope="module")
def traffic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    background = rng.normal(size=(50, D))
    rows = rng.normal(size=(100, D))
    keys = rng.integers(0, 2**63, 100, dtype=np.uint64)
    return background, rows, keys


def test_an_unchanged_candidate_is_not_flagged(traffic) -> None:
    background, rows, keys = traffic
    production = network()

    def copy(x: np.ndarray) -> np.ndarray:
        return production(x.copy())

    prod, cand = summaries([production, copy], rows, background, keys)
    result = AttributionComparison(top_k=3, protected=("f5",)).shadow_metrics(prod, cand)
    assert result.values["shadow_attribution_rank_corr"] == 1.0
    assert result.values["shadow_attribution_topk_overlap"] == 1.0
    assert result.values["shadow_protected_attribution_delta"] == 0.0  # same orderings


def test_a_candidate_that_dropped_an_input_is_caught(traffic) -> None:
    background, rows, keys = traffic
    prod, cand = summaries([network(), network(zeroed=0)], rows, background, keys)
    assert cand.mean_abs()[0] < 1e-12  # the dropped input gets no attribution (but rounding)
    defaults = {n: m.threshold for n, m in ATTRIBUTION_METRICS.items()}
    # the dropped input is the protected one: its share falls to 0
    result = AttributionComparison(top_k=3, protected=("f0",)).shadow_metrics(prod, cand)
    values = result.values
    assert values["shadow_attribution_rank_corr"] < defaults["shadow_attribution_rank_corr"]
    assert values["shadow_attribution_topk_overlap"] < 1.0
    assert (
        values["shadow_protected_attribution_delta"]
        > (defaults["shadow_protected_attribution_delta"])
    )
    assert result.details["protected"]["feature"] == "f0"
    assert result.details["protected"]["change"] == pytest.approx(-prod.shares()[0], abs=1e-12)
    assert result.details["candidate_top"][0] != "f0"
    # other inputs are protected: the one that gains most of the weight f0 lost is flagged
    gained = AttributionComparison(protected=("f2", "f6")).shadow_metrics(prod, cand)
    assert (
        gained.values["shadow_protected_attribution_delta"]
        > (defaults["shadow_protected_attribution_delta"])
    )
    assert gained.details["protected"]["change"] > 0
    assert gained.details["protected"]["feature"] == "f2"


def test_attribution_shift_of_the_production_model(traffic) -> None:
    background, rows, keys = traffic
    production = network()
    rng = np.random.default_rng(1)
    reference_rows = rng.normal(size=(100, D))
    ref_keys = rng.integers(0, 2**63, 100, dtype=np.uint64)
    (reference,) = summaries([production], reference_rows, background, ref_keys)
    (same,) = summaries([production], rows, background, keys)
    comparison = AttributionComparison()
    steady = comparison.shift(reference, same).values["attribution_shift"]
    # the window's traffic changes: the two strongest inputs go nearly constant at their
    # background mean, and a weak one spreads out — the model now leans on other inputs
    moved = rows.copy()
    moved[:, :2] *= 0.05
    moved[:, 7] *= 8.0
    (window,) = summaries([production], moved, background, keys)
    shifted = comparison.shift(reference, window)
    assert steady > ATTRIBUTION_METRICS["attribution_shift"].threshold
    assert shifted.values["attribution_shift"] < ATTRIBUTION_METRICS["attribution_shift"].threshold
    assert "f7" in shifted.details["window_top"][:3]


def test_too_few_rows_or_other_features_are_refused() -> None:
    a, b = AttributionSummary(["x", "y"]), AttributionSummary(["x", "y"])
    a.update(np.ones((5, 2)))
    b.update(np.ones((5, 2)))
    with pytest.raises(InsufficientDataError, match="5 attributed rows < min_rows 30"):
        AttributionComparison().shadow_metrics(a, b)
    with pytest.raises(ValueError, match="different features"):
        AttributionComparison(min_rows=1).shift(a, AttributionSummary(["y", "x"]))
    flat = AttributionComparison(min_rows=1).shadow_metrics(a, b)
    assert "shadow_attribution_rank_corr" in flat.unavailable  # all features tie
    assert flat.unavailable["shadow_protected_attribution_delta"] == (
        "no protected features are named"
    )
