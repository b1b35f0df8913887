"""NumericSketch._combine in Python floats against the numpy-scalar form it replaced.

The old form ran the Chan, Golub & LeVeque update under ``np.errstate(over="ignore",
invalid="ignore")``; the new one runs it in Python floats, whose IEEE operations are the
same double arithmetic without numpy's error state. Both are given the same moments
(Python floats, as settling passes, or numpy scalars) and must agree bit for bit, nan
where the other has nan (overflowing moments: inf, inf - inf)."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.sketches import NumericSketch

finite = st.floats(allow_nan=False, allow_infinity=False)
extreme = st.floats(allow_nan=True, allow_infinity=True)
counts = st.integers(min_value=1, max_value=10**12)


def _old_combine(
    state: tuple[int, float, float, float, float], n: int, mean: float, m2: float
) -> tuple[float, float]:
    """The moments as the numpy-scalar form computed them (the code before, verbatim)."""
    count, mean0, m20 = state[0], np.float64(state[1]), np.float64(state[2])
    total = count + n
    with np.errstate(over="ignore", invalid="ignore"):
        delta = mean - mean0
        mean0 += delta * n / total
        m20 += m2 + delta * delta * count * n / total
    return float(mean0), float(m20)


def _new_combine(
    state: tuple[int, float, float, float, float], n: int, mean: float, m2: float
) -> NumericSketch:
    s = NumericSketch(16)
    s._count, s._mean, s._m2, s._min, s._max = state
    s._combine(n, mean, m2, -1.0, 1.0)
    return s


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<d", a) == struct.pack("<d", b)


def _check(count: int, mean0: float, m20: float, n: int, mean: float, m2: float) -> None:
    state = (count, mean0, m20, -2.0, 2.0)
    want_mean, want_m2 = _old_combine(state, n, mean, m2)
    scalars = (count, np.float64(mean0), np.float64(m20), -2.0, 2.0)
    for start, given_mean, given_m2 in (
        (state, mean, m2),
        (scalars, np.float64(mean), np.float64(m2)),  # numpy scalars in: floats out
    ):
        got = _new_combine(start, n, given_mean, given_m2)
        assert _same(got._mean, want_mean), (got._mean, want_mean)
        assert _same(got._m2, want_m2), (got._m2, want_m2)
        assert got._count == count + n
        assert type(got._mean) is float and type(got._m2) is float


@settings(max_examples=500, deadline=None)
@given(counts, finite, st.floats(min_value=0.0, allow_infinity=False), counts, finite, finite)
def test_combine_matches_the_numpy_form_bit_for_bit(
    count: int, mean0: float, m20: float, n: int, mean: float, m2: float
) -> None:
    _check(count, mean0, m20, n, mean, m2)


@settings(max_examples=300, deadline=None)
@given(counts, extreme, extreme, counts, extreme, extreme)
def test_combine_treats_inf_and_nan_as_the_numpy_form(
    count: int, mean0: float, m20: float, n: int, mean: float, m2: float
) -> None:
    _check(count, mean0, m20, n, mean, m2)


def test_overflowing_moments_turn_inf_then_nan_without_a_warning() -> None:
    # filterwarnings = error: a numpy RuntimeWarning would fail here
    _check(3, 1e308, 1e308, 5, -1e308, 1e308)
    s = _new_combine((3, 1e308, 1e308, -2.0, 2.0), 5, -1e308, 1e308)
    assert math.isinf(s._m2)
    _check(1, math.inf, math.inf, 1, math.inf, 0.0)


def test_merge_of_sketches_uses_the_same_moments() -> None:
    # the public path: two sketches' merged mean and variance equal the pooled values'
    rng = np.random.default_rng(7)
    a, b = rng.normal(3, 2, 1000), rng.normal(-1, 5, 700)
    left, right = NumericSketch(200), NumericSketch(200)
    left.update(a)
    right.update(b)
    left._settle()
    right._settle()
    state = (left._count, left._mean, left._m2, left._min, left._max)
    want_mean, want_m2 = _old_combine(state, right._count, right._mean, right._m2)
    left.merge(right)
    assert _same(left._mean, want_mean) and _same(left._m2, want_m2)
    assert math.isclose(left._mean, float(np.concatenate([a, b]).mean()), rel_tol=1e-12)
