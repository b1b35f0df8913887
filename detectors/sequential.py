"""Always-valid intervals for a difference between two model versions, from mergeable sums.

An A/B comparison is looked at again at every check, for days. A fixed-sample 95 %
interval looked at 200 times excludes the true difference at some look far more often
than 5 % of the time ("peeking"). The interval here is a *confidence sequence*: with
probability ≥ 1 − α it covers the true difference at every look at once, however many
looks there are and whenever one stops (Johari, Koomen, Pekelis & Walsh, "Peeking at A/B
tests", KDD 2017 / "Always valid inference", Operations Research 2022; Howard, Ramdas,
McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Annals of Statistics 2021).

The method: the two-sided normal-mixture boundary (Robbins 1970) with the variance
estimated from the data — the *asymptotic confidence sequence* of Waudby-Smith, Arbour,
Sinha, Kennedy & Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences" (Annals of Statistics 2024), the same two-sided mixture as ``confseq``'s
``TwoSidedNormalMixture`` (Howard et al.). For an estimate Δ̂ of candidate − baseline
with estimated variance V (Σ s²ᵢ / nᵢ over the two versions) after
N = n_baseline + n_candidate rows, and r = N·ρ²::

    Δ̂ ± √( V · (1 + r) / r · (ln(1 + r) + 2 ln(1/α)) )

The same boundary is the mixture sequential probability ratio test (mSPRT) of Johari et
al. with a N(0, τ²) mixture over the effect, τ² = ρ²·N·V: 0 lies outside the interval
exactly when the mixture likelihood ratio Λ = (1 + r)^(-½) · exp(r / (1 + r) · Δ̂² / 2V)
exceeds 1/α (Ville's inequality), and ``p_value`` = min(1, 1/Λ). ρ only sets *where* the
interval is tightest, never its validity: ``tuned_rows`` picks
ρ² = (2 ln(1/α) + ln(1 + 2 ln(1/α))) / tuned_rows, the approximate minimiser of the width
at N = tuned_rows (Waudby-Smith et al.; ``confseq``'s ``best_rho``).

Everything is computed from per-version sufficient statistics — row count, Σx, Σx² —
which are plain sums: they merge exactly across flushes, windows and replicas, and the
interval of the merged sums is the interval of all the rows. A rate (accuracy, error
rate) is a mean of 0/1 values, so Σx = Σx² = the count of ones. :class:`MeanStats` holds
them; :class:`SequentialDifference` turns two of them (or one of paired differences, for
two models on the same rows) into an :class:`Interval`; :func:`decide` reads a decision.

Validity is asymptotic (a time-uniform central limit theorem): it needs rows that are
independent draws with a finite variance, and enough of them (``min_rows`` per version).
The unit tests measure the false-positive rate over 200 looks × 2,000 simulated runs.

>>> baseline = MeanStats.proportion(successes=9_000, n=10_000)    # accuracy 0.90
>>> candidate = MeanStats.proportion(successes=8_700, n=10_000)   # accuracy 0.87
>>> iv = SequentialDifference(alpha=0.05).interval(baseline, candidate)
>>> round(iv.estimate, 4), round(iv.low, 4), round(iv.high, 4)
(-0.03, -0.0438, -0.0162)
>>> decide(iv, higher_is_better=True)
'worse'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from watchkeeper.detectors.errors import InsufficientDataError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Decision = Literal["worse", "better", "no_evidence"]
DEFAULT_ALPHA = 0.05
DEFAULT_TUNED_ROWS = 10_000
DEFAULT_MIN_ROWS = 100


class MeanStats:
    """Row count, Σx and Σx² of one version's per-row values; merges by adding.

    ``binary`` marks 0/1 values (a rate): their variance is then taken as p̃(1 − p̃) with
    p̃ = (k + ½) / (n + 1), so a version with no failure yet still carries uncertainty
    (the Jeffreys-prior point estimate; without it an arm at 100 % would have variance 0).

    >>> s = MeanStats(); s.update(np.array([1.0, 2.0, 3.0])); s.merge(MeanStats.of([4.0]))
    >>> s.n, s.total, s.total_sq, s.mean, round(s.variance, 4)
    (4, 10.0, 30.0, 2.5, 1.6667)
    """

    def __init__(
        self, n: int = 0, total: float = 0.0, total_sq: float = 0.0, *, binary: bool = False
    ):
        if n < 0:
            raise ValueError("a row count is never negative")
        self.n = int(n)
        self.total = float(total)
        self.total_sq = float(total_sq)
        self.binary = binary

    @classmethod
    def of(cls, values: Any) -> MeanStats:
        out = cls()
        out.update(np.asarray(values, dtype=np.float64))
        return out

    @classmethod
    def proportion(cls, successes: int, n: int) -> MeanStats:
        """A rate: ``successes`` ones among ``n`` rows (Σx = Σx² = successes)."""
        if not 0 <= successes <= n:
            raise ValueError(f"{successes} successes among {n} rows")
        return cls(n, float(successes), float(successes), binary=True)

    @classmethod
    def from_moments(cls, n: int, mean: float, m2: float) -> MeanStats:
        """From a count, mean and Σ(x − mean)² (what :class:`NumericSketch` keeps)."""
        if n == 0:
            return cls()
        return cls(n, n * mean, m2 + n * mean * mean)

    def update(self, values: FloatArray) -> None:
        """Add the finite ``values`` (NaN and ±inf are skipped)."""
        finite = values[np.isfinite(values)]
        self.n += int(finite.size)
        self.total += float(finite.sum())
        self.total_sq += float(np.dot(finite, finite))
        self.binary = False

    def update_binary(self, hits: np.ndarray[Any, np.dtype[np.bool_]]) -> None:
        """Add 0/1 outcomes (True = 1), keeping the stats a rate."""
        k = int(np.count_nonzero(hits))
        binary = self.binary or self.n == 0
        self.n += int(hits.size)
        self.total += k
        self.total_sq += k
        self.binary = binary

    def merge(self, other: MeanStats) -> None:
        binary = (self.binary or self.n == 0) and (other.binary or other.n == 0)
        self.n += other.n
        self.total += other.total
        self.total_sq += other.total_sq
        self.binary = binary and self.n > 0

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (n − 1 divisor); for a rate, p̃(1 − p̃) (see the class doc)."""
        if self.binary and self.n:
            p = (self.total + 0.5) / (self.n + 1.0)
            return p * (1.0 - p)
        if self.n < 2:
            return math.nan
        # Σx² − (Σx)²/n loses digits only when mean² ≫ variance (≈ 1e-16·mean²/var
        # relative error): fine for errors, rates and scores, the values compared here
        return max(0.0, self.total_sq - self.total * self.total / self.n) / (self.n - 1)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "sum": self.total, "sum_sq": self.total_sq, "binary": self.binary}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeanStats:
        return cls(int(d["n"]), float(d["sum"]), float(d["sum_sq"]), binary=bool(d["binary"]))

    def __repr__(self) -> str:
        kind = ", binary" if self.binary else ""
        return f"MeanStats(n={self.n}, sum={self.total!r}, sum_sq={self.total_sq!r}{kind})"


@dataclass(frozen=True)
class Interval:
    """An always-valid interval for candidate − baseline, and what it was computed from."""

    estimate: float
    low: float
    high: float
    alpha: float
    n_baseline: int
    n_candidate: int
    p_value: float
    """Always-valid p-value of "no difference" at this look: min(1, 1/Λ)."""
    paired: bool = False

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def narrowed(self, previous: Interval | None) -> Interval:
        """The running intersection with the interval of an earlier look.

        Every interval of a confidence sequence covers at once (with probability 1 − α), so
        their intersection does too, and a decision read from it never flips back. An
        empty intersection (a miss, probability ≤ α, or a difference that moved) keeps the
        earlier intersection, so the decision still never flips; the A/B state counts such
        looks (``disjoint_looks``). This is the only intersection rule.
        """
        if previous is None:
            return self
        low, high = max(self.low, previous.low), min(self.high, previous.high)
        if low > high:
            return previous
        return replace(self, low=low, high=high, p_value=min(self.p_value, previous.p_value))

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "confidence": 1.0 - self.alpha,
            "alpha": self.alpha,
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            "p_value": self.p_value,
            "paired": self.paired,
            "method": "normal-mixture confidence sequence (always valid)",
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interval:
        """Read back :meth:`to_dict` (what a check keeps between looks to narrow it).

        >>> iv = Interval(-0.012, -0.019, -0.005, 0.05, 41_200, 41_180, 0.001)
        >>> Interval.from_dict(iv.to_dict()) == iv
        True
        """
        alpha = float(d["alpha"]) if "alpha" in d else 1.0 - float(d["confidence"])
        return cls(
            float(d["estimate"]),
            float(d["low"]),
            float(d["high"]),
            alpha,
            int(d["n_baseline"]),
            int(d["n_candidate"]),
            float(d["p_value"]),
            bool(d.get("paired", False)),
        )


def mixture_rho2(tuned_rows: float, alpha: float) -> float:
    """ρ² that makes the interval tightest near ``tuned_rows`` rows (Waudby-Smith et al.)."""
    c = 2.0 * math.log(1.0 / alpha)
    return (c + math.log1p(c)) / tuned_rows


def radius(
    variance: FloatArray | float, rows: FloatArray | float, alpha: float, rho2: float
) -> FloatArray:
    """Half-width of the interval for an estimate of variance ``variance`` after ``rows``.

    Vectorised (arrays broadcast), so simulations evaluate thousands of looks at once.
    """
    r = np.asarray(rows, dtype=np.float64) * rho2
    v = np.asarray(variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.sqrt(v * (1.0 + r) / r * (np.log1p(r) + 2.0 * math.log(1.0 / alpha)))
    return out


def log_mixture_ratio(
    estimate: FloatArray | float,
    variance: FloatArray | float,
    rows: FloatArray | float,
    rho2: float,
) -> FloatArray:
    """ln Λ: the normal-mixture likelihood ratio of "difference = estimate's mean" against 0."""
    r = np.asarray(rows, dtype=np.float64) * rho2
    e = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(v > 0, e * e / v, np.where(e == 0, 0.0, np.inf))
    out: FloatArray = -0.5 * np.log1p(r) + r / (1.0 + r) * z2 / 2.0
    return out


class SequentialDifference:
    """Always-valid interval for a difference of means or of rates; see the module doc.

    ``alpha``: 1 − the confidence (0.05 → 95 %). ``tuned_rows``: total rows at which the
    interval is tightest (it is valid at every count). ``min_rows``: fewer rows in a
    version than this and no interval is given (the normal approximation needs some).
    """

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        tuned_rows: int = DEFAULT_TUNED_ROWS,
        min_rows: int = DEFAULT_MIN_ROWS,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha lies in (0, 1)")
        if tuned_rows < 1 or min_rows < 2:
            raise ValueError("tuned_rows ≥ 1 and min_rows ≥ 2")
        self.alpha = alpha
        self.tuned_rows = tuned_rows
        self.min_rows = min_rows
        self._rho2 = mixture_rho2(tuned_rows, alpha)

    def interval(self, baseline: MeanStats, candidate: MeanStats) -> Interval:
        """Candidate − baseline, for two versions seen on different rows (an A/B split)."""
        for name, s in (("baseline", baseline), ("candidate", candidate)):
            if s.n < self.min_rows:
                raise InsufficientDataError(f"{s.n} {name} rows < min_rows {self.min_rows}")
        estimate = candidate.mean - baseline.mean
        variance = baseline.variance / baseline.n + candidate.variance / candidate.n
        return self._interval(estimate, variance, baseline.n + candidate.n, baseline.n, candidate.n)

    def paired(self, differences: MeanStats) -> Interval:
        """Mean of per-row differences candidate − baseline on the *same* rows (shadow)."""
        n = differences.n
        if n < self.min_rows:
            raise InsufficientDataError(f"{n} paired rows < min_rows {self.min_rows}")
        iv = self._interval(differences.mean, differences.variance / n, n, n, n)
        return replace(iv, paired=True)

    def _interval(self, estimate: float, variance: float, rows: int, nb: int, nc: int) -> Interval:
        # the scalar form of radius() and log_mixture_ratio(), without numpy's overhead
        r = rows * self._rho2
        half = math.sqrt(variance * (1 + r) / r * (math.log1p(r) + 2 * math.log(1 / self.alpha)))
        degenerate = 0.0 if estimate == 0 else math.inf  # no variance: certain either way
        z2 = estimate * estimate / variance if variance > 0 else degenerate
        log_ratio = -0.5 * math.log1p(r) + r / (1 + r) * z2 / 2
        p = 1.0 if log_ratio <= 0 else math.exp(-log_ratio)
        return Interval(estimate, estimate - half, estimate + half, self.alpha, nb, nc, p)

    def bounds(
        self,
        baseline: tuple[FloatArray, FloatArray, FloatArray],
        candidate: tuple[FloatArray, FloatArray, FloatArray],
        *,
        binary: bool = False,
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(estimate, low, high) for arrays of (n, Σx, Σx²) per version — many looks or many
        runs at once, the same arithmetic as :meth:`interval` (no ``min_rows`` check)."""

        def moments(n: FloatArray, s: FloatArray, ss: FloatArray) -> tuple[FloatArray, FloatArray]:
            n = np.asarray(n, dtype=np.float64)
            s = np.asarray(s, dtype=np.float64)
            mean = s / n
            if binary:
                p = (s + 0.5) / (n + 1.0)
                return mean, p * (1.0 - p)
            var = np.maximum(0.0, np.asarray(ss, dtype=np.float64) - s * s / n) / (n - 1.0)
            return mean, var

        mb, vb = moments(*baseline)
        mc, vc = moments(*candidate)
        nb = np.asarray(baseline[0], dtype=np.float64)
        nc = np.asarray(candidate[0], dtype=np.float64)
        estimate = mc - mb
        half = radius(vb / nb + vc / nc, nb + nc, self.alpha, self._rho2)
        return estimate, estimate - half, estimate + half


def decide(interval: Interval, *, higher_is_better: bool, margin: float = 0.0) -> Decision:
    """``worse`` when the whole interval lies on the bad side of −margin, ``better`` when it
    lies on the good side of +margin, else ``no_evidence`` (yet).

    With ``margin`` 0 this is the sequential test of "no difference"; a positive margin asks
    for a difference of at least that size (in the metric's units: 0.01 = 1 point).

    >>> iv = Interval(-0.012, -0.019, -0.005, 0.05, 41_200, 41_200, 0.001)
    >>> decide(iv, higher_is_better=True), decide(iv, higher_is_better=True, margin=0.01)
    ('worse', 'no_evidence')
    """
    if margin < 0:
        raise ValueError("margin is a size, never negative")
    low, high = interval.low, interval.high
    if not higher_is_better:
        low, high = -high, -low
    if high < -margin:
        return "worse"
    if low > margin:
        return "better"
    return "no_evidence"
