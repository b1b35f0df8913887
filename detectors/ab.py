"""A/B comparison of two live versions of one model, from their window summaries.

Two versions seen on the same stream each have their own :class:`WindowSummary` (window
state is kept per model × version). :class:`ABComparison` reads a baseline's and a
candidate's summaries — one window, or windows rolled up since the comparison started —
and gives the ``ab_*`` metrics of candidate against baseline:

* differences with an always-valid interval (:mod:`sequential`): accuracy (a rate, from
  the confusion counts of joined labels), MAE (a mean of |error|, from the regression
  sums Σ|e| and Σe² the performance sketch keeps) and the mean prediction score (from the
  prediction sketch's count, mean and variance). No new window state is needed for them.
* point values without an interval: latency p50 / p99 ratios from the two KLL latency
  sketches (within their rank error), and the Jensen–Shannon distance between the two
  versions' score distributions on the baseline's deciles, or between their predicted-class
  counts (:mod:`js`, as shadow evaluation compares scores). docs/comparison.md says why
  these carry no interval; the JS value comes with its *noise floor* (:func:`js_noise_floor`):
  what it would typically read with no difference at these sample sizes.

The intervals are valid under repeated looks only over a *growing* set of rows: evaluate
the rolled-up summaries since the comparison's start at every check, not each window on
its own (each fresh window would be a new experiment with its own α).

>>> import numpy as np
>>> from watchkeeper.detectors.performance import PerformanceSketch
>>> a, b = WindowSummary("m", "3", 0, 60_000), WindowSummary("m", "4", 0, 60_000)
>>> for w, wrong in ((a, 1_000), (b, 1_300)):
...     w.performance = PerformanceSketch("classification")
...     predicted = ["0"] * wrong + ["1"] * (10_000 - wrong)
...     w.performance.update_classification(["1"] * 10_000, predicted)
>>> r = ABComparison().compare(a, b)
>>> v = r.values["ab_accuracy_delta"]
>>> round(v.value, 3), v.details["decision"], v.interval is not None and v.interval.high < 0
(-0.03, 'worse', True)
>>> sorted(r.unavailable)[:2]
['ab_class_js_distance', 'ab_latency_p50_ratio']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.detectors.ab_metrics import AB_METRICS
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_sketch import ColumnSketch
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.js import JSDistance
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.profile import (
    ColumnProfile,
    categorical_profile,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_MIN_ROWS,
    DEFAULT_TUNED_ROWS,
    Interval,
    MeanStats,
    SequentialDifference,
    decide,
)
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary

SCORE_BINS = 10  # deciles of the baseline's scores, as shadow evaluation bins them


@dataclass(frozen=True)
class ABValue:
    """One ``ab_*`` value; ``details`` holds the interval, decision and sample sizes."""

    value: float
    interval: Interval | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ABResult:
    values: dict[str, ABValue]
    unavailable: dict[str, str]
    """Metric → why it has no value for these summaries (no labels, too few rows, …)."""


def js_noise_floor(bins: int, n_baseline: int, n_candidate: int) -> float:
    """Typical JS distance (base 2) between two samples of ONE distribution on ``bins`` bins.

    For small differences JSD ≈ (1/8) Σ (p − q)² / m nats, and under no difference
    Σ (p − q)² / m · n_b·n_c / (n_b + n_c) is asymptotically χ² with bins − 1 degrees of
    freedom (the two-sample χ² statistic), so E[JSD] ≈ (bins − 1)(1/n_b + 1/n_c) / (8 ln 2)
    bits; the distance is its square root. A value near the floor is noise, not a change.
    """
    if bins < 2 or n_baseline < 1 or n_candidate < 1:
        return 0.0
    return math.sqrt((bins - 1) * (1 / n_baseline + 1 / n_candidate) / (8 * math.log(2)))


def accuracy_stats(performance: PerformanceSketch) -> MeanStats:
    """Correct predictions among labelled pairs, as a rate (from the confusion counts)."""
    total = sum(performance.confusion.values())
    correct = sum(c for (t, p), c in performance.confusion.items() if t == p)
    return MeanStats.proportion(correct, total)


def abs_error_stats(performance: PerformanceSketch) -> MeanStats:
    """|error| per labelled pair: n, Σ|e| and Σ|e|² (= Σe², which the sketch keeps)."""
    return MeanStats(performance.n, performance.sum_abs, performance.sum_sq)


def score_stats(sketch: NumericSketch) -> MeanStats:
    """Finite prediction scores: n, Σx, Σx² from the sketch's exact count, mean, variance."""
    if not sketch.count:
        return MeanStats()
    return MeanStats.from_moments(sketch.count, sketch.mean, sketch.variance * sketch.count)


class ABComparison:
    """Candidate against baseline, from two versions' window summaries; see the module doc.

    ``alpha``, ``tuned_rows``, ``min_rows`` configure the intervals
    (:class:`SequentialDifference`); ``score_bins`` the JS distance's bins; ``margin`` the
    difference (per metric, in its units) a decision must exceed (default 0).
    """

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        tuned_rows: int = DEFAULT_TUNED_ROWS,
        min_rows: int = DEFAULT_MIN_ROWS,
        score_bins: int = SCORE_BINS,
        margin: dict[str, float] | None = None,
        population: bool = True,
    ) -> None:
        self.sequential = SequentialDifference(alpha, tuned_rows, min_rows)
        self.min_rows = min_rows
        self.score_bins = score_bins
        self.margin = dict(margin or {})
        self.population = population
        """Whether to compare the versions' inputs (``ab_population_js_distance``: it needs
        the summaries' feature sketches)."""

    def compare(
        self,
        baseline: WindowSummary,
        candidate: WindowSummary,
        shift: dict[str, dict[str, float]] | None = None,
    ) -> ABResult:
        """``shift``: :func:`population_shift` of these summaries, if already computed."""
        if baseline.model != candidate.model:
            raise ValueError("an A/B comparison is between versions of one model")
        values: dict[str, ABValue] = {}
        unavailable: dict[str, str] = {}
        for name, compute in (
            ("ab_accuracy_delta", self._accuracy),
            ("ab_mae_delta", self._mae),
            ("ab_score_mean_delta", self._score_mean),
            ("ab_score_js_distance", self._score_js),
            ("ab_class_js_distance", self._class_js),
            ("ab_population_js_distance", lambda b, c: self._population(b, c, shift)),
            ("ab_latency_p50_ratio", lambda b, c: self._latency(b, c, 0.5)),
            ("ab_latency_p99_ratio", lambda b, c: self._latency(b, c, 0.99)),
        ):
            if name == "ab_population_js_distance" and not self.population:
                continue
            try:
                values[name] = compute(baseline, candidate)
            except InsufficientDataError as exc:
                unavailable[name] = str(exc)
        return ABResult(values, unavailable)

    # -- differences with an interval ----------------------------------------------------
    def _difference(self, name: str, baseline: MeanStats, candidate: MeanStats) -> ABValue:
        iv = self.sequential.interval(baseline, candidate)
        info = AB_METRICS[name]
        details: dict[str, Any] = {
            **iv.to_dict(),
            "baseline": baseline.mean,
            "candidate": candidate.mean,
        }
        if info.direction != "two_sided":
            margin = self.margin.get(name, 0.0)
            higher_is_better = info.direction == "lower_is_worse"
            details["decision"] = decide(iv, higher_is_better=higher_is_better, margin=margin)
        else:
            details["decision"] = "changed" if iv.p_value <= iv.alpha else "no_evidence"
        return ABValue(iv.estimate, iv, details)

    def _performance(self, w: WindowSummary, task: str, what: str) -> PerformanceSketch:
        perf = w.performance
        if perf is None or perf.n == 0:
            raise InsufficientDataError(f"version {w.version} has no labelled rows")
        if perf.task != task:
            raise InsufficientDataError(f"{what} needs {task} labels")
        return perf

    def _accuracy(self, b: WindowSummary, c: WindowSummary) -> ABValue:
        pb = self._performance(b, "classification", "accuracy")
        pc = self._performance(c, "classification", "accuracy")
        return self._difference("ab_accuracy_delta", accuracy_stats(pb), accuracy_stats(pc))

    def _mae(self, b: WindowSummary, c: WindowSummary) -> ABValue:
        pb = self._performance(b, "regression", "MAE")
        pc = self._performance(c, "regression", "MAE")
        return self._difference("ab_mae_delta", abs_error_stats(pb), abs_error_stats(pc))

    def _score_mean(self, b: WindowSummary, c: WindowSummary) -> ABValue:
        sb, sc = _numeric(b.prediction, b.version), _numeric(c.prediction, c.version)
        return self._difference("ab_score_mean_delta", score_stats(sb), score_stats(sc))

    # -- point values --------------------------------------------------------------------
    def _score_js(self, b: WindowSummary, c: WindowSummary) -> ABValue:
        sb, sc = _numeric(b.prediction, b.version), _numeric(c.prediction, c.version)
        return self._js(sb, sc)

    def _class_js(self, b: WindowSummary, c: WindowSummary) -> ABValue:
        for w in (b, c):
            if not isinstance(w.prediction_class, CategoryCounts) or not w.prediction_class.count:
                raise InsufficientDataError(f"version {w.version} has no predicted classes")
        assert isinstance(b.prediction_class, CategoryCounts)
        assert isinstance(c.prediction_class, CategoryCounts)
        return self._js(b.prediction_class, c.prediction_class)

    def _js(self, b: ColumnSketch, c: ColumnSketch) -> ABValue:
        if b.count < self.min_rows or c.count < self.min_rows:
            raise InsufficientDataError(
                f"{min(b.count, c.count)} predictions in a version < min_rows {self.min_rows}"
            )
        profile: ColumnProfile
        if isinstance(b, NumericSketch):
            edges = quantile_edges(b, self.score_bins)
            profile, bins = numeric_profile(b, edges), len(edges) + 1
        else:
            profile = categorical_profile(b)
            bins = len(set(b.counts) | set(c.counts if isinstance(c, CategoryCounts) else ()))
        score = JSDistance().score(profile, c)
        floor = js_noise_floor(bins, b.count, c.count)
        details = {**score.details, "noise_floor": floor, "n_baseline": b.count}
        details["n_candidate"] = c.count
        return ABValue(score.value, None, details)

    def _population(
        self, b: WindowSummary, c: WindowSummary, shift: dict[str, dict[str, float]] | None
    ) -> ABValue:
        if shift is None:
            shift = population_shift(b, c, self.min_rows, self.score_bins)
        return population_value(shift)

    def _latency(self, b: WindowSummary, c: WindowSummary, q: float) -> ABValue:
        lb, lc = b.latency, c.latency
        if lb.count < self.min_rows or lc.count < self.min_rows:
            raise InsufficientDataError(
                f"{min(lb.count, lc.count)} latencies in a version < min_rows {self.min_rows}"
            )
        (vb,), (vc,) = lb.quantiles([q]), lc.quantiles([q])
        if not vb > 0:
            raise InsufficientDataError("the baseline's latency quantile is 0")
        # what the sketches' own rank error allows (KLL, 99 % confidence each): the ratio
        # of the candidate's quantile at q ∓ ε to the baseline's at q ± ε
        eb, ec = lb.rank_error, lc.rank_error
        c_lo, c_hi = lc.quantiles([max(0.0, q - ec), min(1.0, q + ec)])
        b_lo, b_hi = lb.quantiles([max(0.0, q - eb), min(1.0, q + eb)])
        details = {
            "baseline_ms": float(vb),
            "candidate_ms": float(vc),
            "rank_error": max(eb, ec),
            "sketch_range": [float(c_lo / b_hi), float(c_hi / b_lo) if b_lo > 0 else math.inf],
            "n_baseline": lb.count,
            "n_candidate": lc.count,
        }
        return ABValue(float(vc / vb), None, details)


POPULATION_THRESHOLD = 0.1
"""A feature's JS distance between the versions above this (and well above its noise
floor) says they serve different traffic: their difference then compares populations."""


def population_shift(
    baseline: WindowSummary,
    candidate: WindowSummary,
    min_rows: int = 100,
    bins: int = SCORE_BINS,
    max_features: int = 200,
) -> dict[str, dict[str, float]]:
    """Per input feature both versions carry (≥ ``min_rows`` values each, at most
    ``max_features`` by name), the JS distance of the candidate's values against the
    baseline's deciles (or categories) and its noise floor: whether the versions were
    assigned the same traffic, the assumption every ``ab_*`` interval rests on.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a, b = WindowSummary("m", "3", 0, 60_000), WindowSummary("m", "4", 0, 60_000)
    >>> for w, shift in ((a, 0.0), (b, 1.0)):
    ...     w.features["x"] = NumericSketch(); w.features["x"].update(rng.normal(shift, 1, 5000))
    >>> out = population_shift(a, b)["x"]
    >>> out["js"] > POPULATION_THRESHOLD > out["noise_floor"]
    True
    """
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(baseline.features) & set(candidate.features))[:max_features]:
        b, c = baseline.features[name], candidate.features[name]
        if b.count < min_rows or c.count < min_rows or type(b) is not type(c):
            continue
        profile: ColumnProfile
        if isinstance(b, NumericSketch):
            edges = quantile_edges(b, bins)
            profile, n_bins = numeric_profile(b, edges), len(edges) + 1
        else:
            assert isinstance(b, CategoryCounts) and isinstance(c, CategoryCounts)
            profile, n_bins = categorical_profile(b), len(set(b.counts) | set(c.counts))
        value = JSDistance().score(profile, c).value
        if value is not None and math.isfinite(value):
            floor = js_noise_floor(n_bins, b.count, c.count)
            out[name] = {
                "js": float(value),
                "noise_floor": floor,
                "n_baseline": b.count,
                "n_candidate": c.count,
            }
    return out


def population_value(shift: dict[str, dict[str, float]]) -> ABValue:
    """``ab_population_js_distance`` from a :func:`population_shift`: the largest JS
    distance of a feature that exceeds three times its noise floor, 0 when none does.
    A threshold of :data:`POPULATION_THRESHOLD` on it fires exactly when the A/B report
    warns that the versions serve different traffic; below three noise floors a distance
    is what two samples of one population typically read (:func:`js_noise_floor`: the
    maximum over many features of pure noise stays near one or two floors).

    >>> population_value({"x": {"js": 0.3, "noise_floor": 0.02, "n_baseline": 900,
    ...     "n_candidate": 800}, "y": {"js": 0.05, "noise_floor": 0.03}}).value
    0.3
    >>> population_value({"y": {"js": 0.05, "noise_floor": 0.03}}).details["feature"]
    'y'
    """
    if not shift:
        raise InsufficientDataError(
            "no input feature with min_rows values in both versions' policy window"
        )
    far = {n: v for n, v in shift.items() if v["js"] > 3 * v["noise_floor"]}
    name, top = max((far or shift).items(), key=lambda kv: (kv[1]["js"], kv[0]))
    details: dict[str, Any] = {
        "feature": name,
        "js": top["js"],
        "noise_floor": top["noise_floor"],
        "features": len(shift),
        "beyond_noise": sorted(far, key=lambda n: -far[n]["js"])[:5],
        "n_baseline": int(top.get("n_baseline", 0)),
        "n_candidate": int(top.get("n_candidate", 0)),
    }
    return ABValue(float(top["js"]) if far else 0.0, None, details)


def _numeric(sketch: ColumnSketch | None, version: str) -> NumericSketch:
    if not isinstance(sketch, NumericSketch) or not sketch.count:
        raise InsufficientDataError(f"version {version} has no numeric prediction scores")
    return sketch
