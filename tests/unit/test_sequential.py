"""Always-valid A/B intervals: the closed form against an independent computation, merging,
and the promises under repeated looks, measured by simulation.

The simulations are vectorised over runs: each of 2,000 runs is looked at 200 times, and a
run "rejects" if any look's interval excludes 0 (or, for coverage, the true difference).
With a true error rate of at most α, the observed share over R runs exceeds
α + 3·√(α(1 − α)/R) (= 0.0646 at α = 0.05, R = 2,000) with probability ≈ 0.1 %: that is
the Monte-Carlo slack the assertions allow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.sequential import (
    Interval,
    MeanStats,
    SequentialDifference,
    decide,
    mixture_rho2,
)

RUNS, LOOKS = 2_000, 200
ALPHA = 0.05


def slack(alpha: float = ALPHA, runs: int = RUNS) -> float:
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def binary_runs(
    p_base: float,
    p_cand: float,
    per_look: tuple[int, int] = (250, 250),
    seed: int = 0,
    seq: SequentialDifference | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, low, high) at every look of every run: shape (RUNS, LOOKS)."""
    rng = np.random.default_rng(seed)
    kb = rng.binomial(per_look[0], p_base, size=(RUNS, LOOKS)).cumsum(axis=1)
    kc = rng.binomial(per_look[1], p_cand, size=(RUNS, LOOKS)).cumsum(axis=1)
    looks = np.arange(1, LOOKS + 1, dtype=np.float64)
    nb = np.broadcast_to(looks * per_look[0], kb.shape)
    nc = np.broadcast_to(looks * per_look[1], kc.shape)
    seq = seq or SequentialDifference(alpha=ALPHA)
    return seq.bounds((nb, kb, kb), (nc, kc, kc), binary=True)


# -- the sufficient statistics ----------------------------------------------------------
values = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=0, max_size=50)


@settings(max_examples=60, deadline=None)
@given(values, values)
def test_merged_stats_equal_the_stats_of_all_rows(a: list[float], b: list[float]) -> None:
    left, right = MeanStats.of(a), MeanStats.of(b)
    left.merge(right)
    whole = MeanStats.of(a + b)
    assert left.n == whole.n == len(a) + len(b)
    assert left.total == pytest.approx(whole.total, abs=1e-9)
    assert left.total_sq == pytest.approx(whole.total_sq, rel=1e-12, abs=1e-9)
    if len(a) + len(b) >= 2:
        assert left.variance == pytest.approx(np.var(a + b, ddof=1), rel=1e-6, abs=1e-6)
    again = MeanStats.from_dict(left.to_dict())
    assert (again.n, again.total, again.total_sq, again.binary) == (
        left.n,
        left.total,
        left.total_sq,
        left.binary,
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=80), st.lists(st.booleans(), max_size=80))
def test_rates_merge_exactly(a: list[bool], b: list[bool]) -> None:
    left, right = MeanStats(), MeanStats()
    left.update_binary(np.array(a, dtype=bool))
    right.update_binary(np.array(b, dtype=bool))
    left.merge(right)
    k = sum(a) + sum(b)
    assert (left.n, left.total, left.total_sq) == (len(a) + len(b), k, k)  # exact: counts
    assert left.binary == (len(a) + len(b) > 0)
    if left.n:
        p = (k + 0.5) / (left.n + 1)
        assert left.variance == p * (1 - p)


def test_moments_and_proportions_build_the_same_sums() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, 1_000)
    s = MeanStats.from_moments(x.size, float(x.mean()), float(((x - x.mean()) ** 2).sum()))
    direct = MeanStats.of(x)
    assert s.total == pytest.approx(direct.total, rel=1e-12)
    assert s.total_sq == pytest.approx(direct.total_sq, rel=1e-12)
    r = MeanStats.proportion(30, 100)
    assert (r.n, r.total, r.total_sq, r.binary) == (100, 30.0, 30.0, True)
    with pytest.raises(ValueError, match="successes"):
        MeanStats.proportion(101, 100)
    nan = MeanStats.of([1.0, np.nan, np.inf, 3.0])
    assert (nan.n, nan.total) == (2, 4.0)


# -- the closed form against an independent computation -----------------------------------
def mixture_likelihood_ratio(estimate: float, theta: float, v: float, tau2: float) -> float:
    """∫ N(Δ̂; θ + δ, V) / N(Δ̂; θ, V) dN(0, τ²)(δ), by quadrature (Johari et al.'s Λ)."""

    def integrand(delta: float) -> float:
        ratio = stats.norm.pdf(estimate, theta + delta, math.sqrt(v)) / stats.norm.pdf(
            estimate, theta, math.sqrt(v)
        )
        return float(ratio * stats.norm.pdf(delta, 0.0, math.sqrt(tau2)))

    width = 12 * math.sqrt(tau2)
    value, _ = integrate.quad(integrand, -width, width, limit=400, points=[0.0])
    return float(value)


@pytest.mark.parametrize(
    ("kb", "nb", "kc", "nc"), [(9_000, 10_000, 8_700, 10_000), (450, 500, 4_380, 5_000)]
)
def test_bounds_are_where_the_mixture_likelihood_ratio_reaches_one_over_alpha(
    kb: int, nb: int, kc: int, nc: int
) -> None:
    seq = SequentialDifference(alpha=ALPHA, tuned_rows=10_000)
    base, cand = MeanStats.proportion(kb, nb), MeanStats.proportion(kc, nc)
    iv = seq.interval(base, cand)
    v = base.variance / nb + cand.variance / nc
    tau2 = mixture_rho2(10_000, ALPHA) * (nb + nc) * v  # the mixture in effect units
    for bound in (iv.low, iv.high):
        ratio = mixture_likelihood_ratio(iv.estimate, bound, v, tau2)
        assert ratio == pytest.approx(1 / ALPHA, rel=1e-6)
    # and the always-valid p-value is 1/Λ at θ = 0
    assert iv.p_value == pytest.approx(
        min(1.0, 1 / mixture_likelihood_ratio(iv.estimate, 0.0, v, tau2)), rel=1e-6
    )
    assert iv.estimate == kc / nc - kb / nb
    assert (iv.n_baseline, iv.n_candidate) == (nb, nc)


def test_rho_is_the_width_minimiser_near_tuned_rows() -> None:
    # Waudby-Smith et al.'s approximation: the width at tuned_rows is within 1 % of the
    # best any ρ achieves there
    base, cand = MeanStats.proportion(4_500, 5_000), MeanStats.proportion(4_480, 5_000)
    tuned = SequentialDifference(tuned_rows=10_000).interval(base, cand)
    widths = [
        SequentialDifference(tuned_rows=t).interval(base, cand).high
        - SequentialDifference(tuned_rows=t).interval(base, cand).low
        for t in np.geomspace(500, 200_000, 200)
    ]
    assert tuned.high - tuned.low <= min(widths) * 1.01


def test_vectorised_bounds_equal_the_scalar_interval() -> None:
    seq = SequentialDifference()
    rng = np.random.default_rng(2)
    a, b = rng.exponential(1.0, 700), rng.exponential(1.1, 300)
    iv = seq.interval(MeanStats.of(a), MeanStats.of(b))
    est, lo, hi = seq.bounds((700, a.sum(), a @ a), (300, b.sum(), b @ b))
    assert (float(est), float(lo), float(hi)) == pytest.approx((iv.estimate, iv.low, iv.high))
    # and for rates, whose variance is the smoothed p̃(1 − p̃) on both paths
    rate = seq.interval(MeanStats.proportion(0, 400), MeanStats.proportion(7, 500))
    est, lo, hi = seq.bounds((400, 0, 0), (500, 7, 7), binary=True)
    assert (float(est), float(lo), float(hi)) == pytest.approx((rate.estimate, rate.low, rate.high))
    assert rate.high > rate.low  # a version with no failure yet still has uncertainty


def test_paired_interval_uses_the_differences() -> None:
    d = np.random.default_rng(3).normal(0.01, 0.3, 5_000)
    iv = SequentialDifference().paired(MeanStats.of(d))
    assert iv.paired and iv.n_baseline == iv.n_candidate == 5_000
    assert iv.estimate == pytest.approx(d.mean())
    two = SequentialDifference()._interval(d.mean(), d.var(ddof=1) / d.size, d.size, 0, 0)
    assert (iv.low, iv.high) == pytest.approx((two.low, two.high))


def test_too_few_rows_give_no_interval() -> None:
    seq = SequentialDifference(min_rows=100)
    with pytest.raises(InsufficientDataError, match="99 candidate rows < min_rows 100"):
        seq.interval(MeanStats.proportion(90, 100), MeanStats.proportion(90, 99))
    with pytest.raises(ValueError, match="alpha"):
        SequentialDifference(alpha=1.5)


def test_decisions_and_margins() -> None:
    worse = Interval(-0.012, -0.019, -0.005, 0.05, 41_200, 41_200, 0.001)
    assert decide(worse, higher_is_better=True) == "worse"
    assert decide(worse, higher_is_better=False) == "better"  # e.g. an MAE went down
    assert decide(worse, higher_is_better=True, margin=0.005) == "no_evidence"
    assert decide(worse, higher_is_better=True, margin=0.004) == "worse"
    unclear = Interval(0.001, -0.003, 0.005, 0.05, 10, 10, 0.9)
    assert decide(unclear, higher_is_better=True) == "no_evidence"
    with pytest.raises(ValueError, match="margin"):
        decide(unclear, higher_is_better=True, margin=-1)


def test_running_intersection_never_widens_and_survives_an_empty_overlap() -> None:
    first = Interval(0.0, -0.02, 0.02, 0.05, 100, 100, 0.5)
    second = Interval(0.01, -0.005, 0.025, 0.05, 200, 200, 0.3)
    kept = second.narrowed(first)
    assert (kept.low, kept.high, kept.p_value) == (-0.005, 0.02, 0.3)
    far = Interval(0.1, 0.05, 0.15, 0.05, 300, 300, 0.01)
    assert far.narrowed(kept) is kept  # disjoint: the earlier intersection is kept
    assert first.narrowed(None) is first


# -- the promises, by simulation ----------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "split"),
    [(0.90, (250, 250)), (0.50, (250, 250)), (0.90, (450, 50)), (0.01, (250, 250))],
    ids=["acc90-even", "acc50-even", "acc90-90/10", "rate1pct-even"],
)
def test_no_true_difference_rarely_ever_rejects_over_200_looks(
    p: float, split: tuple[int, int]
) -> None:
    _, lo, hi = binary_runs(p, p, split, seed=11)
    ever = ((lo > 0) | (hi < 0)).any(axis=1).mean()
    assert ever <= slack(), f"{ever:.4f} of runs rejected at some look"


def test_a_fixed_sample_interval_looked_at_200_times_does_not_hold() -> None:
    # the same simulation with the usual 1.96·SE interval: the peeking problem the
    # sequential interval exists for (and proof that the simulation can see it)
    rng = np.random.default_rng(11)
    kb = rng.binomial(250, 0.9, size=(RUNS, LOOKS)).cumsum(axis=1)
    kc = rng.binomial(250, 0.9, size=(RUNS, LOOKS)).cumsum(axis=1)
    n = np.arange(1, LOOKS + 1) * 250.0
    pb, pc = kb / n, kc / n
    se = np.sqrt(pb * (1 - pb) / n + pc * (1 - pc) / n)
    ever = (np.abs(pc - pb) > 1.96 * se).any(axis=1).mean()
    assert ever > 4 * ALPHA


def test_mean_differences_of_skewed_errors_rarely_ever_reject() -> None:
    # MAE-type values: |errors| from a lognormal (skewed, heavy right tail), 50 rows per
    # look and version, 200 looks; the sums are built look by look, vectorised over runs
    rng = np.random.default_rng(12)
    seq = SequentialDifference(alpha=ALPHA)
    sums = np.zeros((4, RUNS))  # Σx, Σx² of baseline then candidate
    rejected = np.zeros(RUNS, dtype=bool)
    for look in range(1, LOOKS + 1):
        for side in (0, 1):
            x = rng.lognormal(0.0, 1.0, size=(RUNS, 50))
            sums[2 * side] += x.sum(axis=1)
            sums[2 * side + 1] += (x * x).sum(axis=1)
        n = np.full(RUNS, 50.0 * look)
        _, lo, hi = seq.bounds((n, sums[0], sums[1]), (n, sums[2], sums[3]))
        if look * 50 >= seq.min_rows:
            rejected |= (lo > 0) | (hi < 0)
    assert rejected.mean() <= slack()


def test_a_true_two_point_accuracy_gap_is_found() -> None:
    _, lo, hi = binary_runs(0.90, 0.88, seed=13)
    found = hi < 0  # the candidate is worse, with the whole interval below 0
    assert found[:, -1].mean() >= 0.99  # by 50,000 rows per version nearly every run
    wrong_way = (lo > 0).any(axis=1).mean()
    assert wrong_way <= 0.001
    first = np.argmax(found, axis=1)[found.any(axis=1)]
    median_rows = float(np.median(first + 1) * 250)
    assert median_rows < 30_000  # per version; the figure docs/comparison.md quotes


@pytest.mark.parametrize("split", [(250, 250), (450, 50)], ids=["even", "90/10"])
def test_the_interval_covers_the_true_difference_at_every_look_at_once(
    split: tuple[int, int],
) -> None:
    _, lo, hi = binary_runs(0.90, 0.88, split, seed=14)
    ever_missed = ((lo > -0.02) | (hi < -0.02)).any(axis=1).mean()
    assert ever_missed <= slack()


def test_paired_differences_cover_at_every_look() -> None:
    # shadow: two models on the same rows; per-row differences of correctness in {-1,0,1}
    rng = np.random.default_rng(15)
    seq = SequentialDifference(alpha=ALPHA)
    probs = [0.03, 0.05]  # P(-1), P(+1): true mean difference +0.02
    s = np.zeros((2, RUNS))
    missed = np.zeros(RUNS, dtype=bool)
    for look in range(1, LOOKS + 1):
        u = rng.random((RUNS, 100))
        d = np.where(u < probs[0], -1.0, np.where(u < probs[0] + probs[1], 1.0, 0.0))
        s[0] += d.sum(axis=1)
        s[1] += (d * d).sum(axis=1)
        n = 100.0 * look
        var = np.maximum(0.0, s[1] - s[0] ** 2 / n) / (n - 1)
        iv_lo = s[0] / n - _radius(seq, var / n, n)
        iv_hi = s[0] / n + _radius(seq, var / n, n)
        missed |= (iv_lo > 0.02) | (iv_hi < 0.02)
    assert missed.mean() <= slack()
    # and the scalar path agrees with the arithmetic above on the last look
    stats_ = MeanStats(int(n), float(s[0, 0]), float(s[1, 0]))
    iv = seq.paired(stats_)
    assert iv.low == pytest.approx(float(iv_lo[0])) and iv.high == pytest.approx(float(iv_hi[0]))


def _radius(seq: SequentialDifference, variance: np.ndarray, rows: float) -> np.ndarray:
    from watchkeeper.detectors.sequential import radius

    return radius(variance, rows, seq.alpha, mixture_rho2(seq.tuned_rows, seq.alpha))
