"""How an A/B comparison reads: each version's columns side by side, and one sentence per
``ab_*`` value ("version 4 is 1.2 points less accurate than 3, 95 % CI [−1.9, −0.5],
over 41,200 labelled rows of 4 and 41,180 of 3"), built from a finding's details.

Versions come from events: every one shown is clipped here (and escaped by the channel
or page that shows it).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from watchkeeper.detectors.ab import POPULATION_THRESHOLD
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.errors import InsufficientDataError
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary

SIDE_BY_SIDE = (
    "events",
    "predictions",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "score_mean",
    "score_std",
    "score_p10",
    "score_p50",
    "score_p90",
    "top_class",
    "top_class_share",
    "labelled_rows",
    "accuracy",
    "precision",
    "recall",
    "specificity",
    "f1",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "mape",
)
"""The columns shown for each version (those a window allows), in this order: every
realised metric :meth:`~watchkeeper.detectors.performance.PerformanceSketch.metrics`
gives, and the score distribution's mean, spread and deciles 1, 5 and 9; the label-free
estimates (``estimated_*``) follow them when the reference has an estimation."""
SHOWN_CHARS = 64


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def shown(version: str) -> str:
    """A version as text shows it (versions come from events): control characters
    replaced (a log line or a terminal would obey them), and past :data:`SHOWN_CHARS`
    clipped with a short hash of the whole, so two versions alike in their first
    characters (``…-rc1``, ``…-rc2`` image tags) never read, nor fingerprint, the same.

    >>> shown("4\x1b[2J")
    '4?[2J'
    >>> a, b = shown("x" * 70 + "-rc1"), shown("x" * 70 + "-rc2")
    >>> len(a) == SHOWN_CHARS and a != b
    True
    """
    clean = _CONTROL.sub("?", version)
    if len(clean) <= SHOWN_CHARS:
        return clean
    digest = hashlib.sha256(version.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{clean[: SHOWN_CHARS - 10]}…~{digest}"


def natural(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key reading digit runs as numbers: "9" < "10", "v1.9" < "v1.10".

    >>> sorted(["10", "9", "v1.10", "v1.9"], key=natural)
    ['9', '10', 'v1.9', 'v1.10']
    """
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", version)
        if part
    )


def columns(w: WindowSummary, reference: ReferenceProfile | None = None) -> dict[str, Any]:
    """One version's values over a window or a roll-up (absent ones left out); with a
    reference that carries an estimation, its label-free estimates too (``estimated_*``,
    after the others), from the version's own estimate state."""
    out: dict[str, Any] = {"events": w.count}
    prediction = w.prediction
    if prediction is not None:
        out["predictions"] = prediction.count
    if w.latency.count:
        p50, p95, p99 = (float(q) for q in w.latency.quantiles([0.5, 0.95, 0.99]))
        out |= {"latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99}
    if isinstance(prediction, NumericSketch) and prediction.count:
        out["score_mean"] = prediction.mean
        out["score_std"] = math.sqrt(prediction.variance) if prediction.count > 1 else 0.0
        p10, p50, p90 = (float(q) for q in prediction.quantiles([0.1, 0.5, 0.9]))
        out |= {"score_p10": p10, "score_p50": p50, "score_p90": p90}
    klass = w.prediction_class
    if isinstance(klass, CategoryCounts) and klass.count:
        name, n = max(klass.counts.items(), key=lambda kv: (kv[1], kv[0]))
        out["top_class"] = shown(name)
        out["top_class_share"] = n / klass.count
        out.setdefault("predictions", klass.count)
    if w.performance is not None and w.performance.n:
        out["labelled_rows"] = w.performance.n
        out |= w.performance.metrics()
    return {k: out[k] for k in SIDE_BY_SIDE if k in out} | estimates(w, reference)


def estimates(w: WindowSummary, reference: ReferenceProfile | None) -> dict[str, float]:
    """The reference's label-free estimates of the version's predictions (none without
    an estimation, or before the version's windows hold estimate state for it)."""
    est = reference.estimation if reference is not None else None
    sketch = w.estimates.of(est) if est is not None else None
    if est is None or sketch is None:
        return {}
    out = {}
    for metric in est.metrics:
        try:
            value = est.estimate(metric, sketch).value
        except (InsufficientDataError, ValueError):
            continue
        if math.isfinite(value):
            out[metric] = float(value)
    return out


def population(shift: dict[str, dict[str, float]], top: int = 5) -> dict[str, Any]:
    """The features whose distributions differ most between the versions (the policy
    window), and a warning when one differs beyond :data:`POPULATION_THRESHOLD` and three
    times its noise floor: the versions then serve different traffic, and their difference
    compares populations as much as models (docs/comparison.md)."""
    ranked = sorted(shift.items(), key=lambda kv: -kv[1]["js"])
    out: dict[str, Any] = {
        "features": len(shift),
        "largest": [{"feature": shown(n), **v} for n, v in ranked[:top]],
    }
    far = [n for n, v in ranked if v["js"] > max(POPULATION_THRESHOLD, 3 * v["noise_floor"])]
    if far:
        names = ", ".join(shown(n) for n in far[:3])
        out["warning"] = (
            f"the versions' inputs differ ({names}: JS distance above "
            f"{POPULATION_THRESHOLD:g}): they serve different traffic, so a difference "
            "between them compares populations, not only models"
        )
    return out


def _pct(x: float) -> str:
    return f"{x * 100:.1f}".replace("-", "−")


def _num(x: float) -> str:
    return f"{x:.4g}".replace("-", "−")


def _moved(details: dict[str, Any], fmt: Any) -> str:
    """When the kept (narrowed) interval no longer holds this look's estimate, or a look
    gave an interval disjoint from the earlier ones, say so beside it and show the look's
    own interval: the estimate and the kept interval then describe different periods."""
    estimate = details.get("estimate")
    low, high = details.get("low"), details.get("high")
    if estimate is None or low is None or high is None:
        return ""
    outside = not float(low) <= float(estimate) <= float(high)
    if not outside and not details.get("disjoint_looks"):
        return ""
    own = ""
    if details.get("look_low") is not None and details.get("look_high") is not None:
        a, b = fmt(float(details["look_low"])), fmt(float(details["look_high"]))
        own = f"; this look alone: [{a}, {b}]"
    what = (
        "the estimate lies outside the interval kept over the experiment"
        if outside
        else f"{details['disjoint_looks']} look(s) gave an interval disjoint from the kept one"
    )
    return f" ({what}: the difference moved during the experiment{own})"


def sentence(metric: str, baseline: str, candidate: str, details: dict[str, Any]) -> str:
    """What one ``ab_*`` value says, from its finding's details."""
    b, c = shown(baseline), shown(candidate)
    nb, nc = int(details.get("n_baseline", 0)), int(details.get("n_candidate", 0))
    level = f"{details.get('confidence', 0.95) * 100:g} %"
    low, high = float(details.get("low", math.nan)), float(details.get("high", math.nan))
    estimate = details.get("estimate")
    if metric == "ab_accuracy_delta" and estimate is not None:
        more = "more" if estimate > 0 else "less"
        return (
            f"version {c} is {abs(estimate) * 100:.1f} points {more} accurate than {b}, "
            f"{level} CI [{_pct(low)}, {_pct(high)}]{_moved(details, _pct)}, over {nc:,} "
            f"labelled rows of {c} and {nb:,} of {b}"
        )
    if metric in ("ab_mae_delta", "ab_score_mean_delta") and estimate is not None:
        what = "MAE" if metric == "ab_mae_delta" else "mean score"
        rows = "labelled rows" if metric == "ab_mae_delta" else "predictions"
        way = "higher" if estimate > 0 else "lower"
        return (
            f"version {c}'s {what} is {_num(abs(estimate))} {way} than {b}'s, {level} CI "
            f"[{_num(low)}, {_num(high)}]{_moved(details, _num)}, over {nc:,} {rows} of {c} "
            f"and {nb:,} of {b}"
        )
    value = details.get("value")
    if metric in ("ab_score_js_distance", "ab_class_js_distance") and value is not None:
        what = "score distribution" if metric == "ab_score_js_distance" else "predicted classes"
        return (
            f"version {c}'s {what} is at JS distance {value:.3f} from {b}'s (noise floor "
            f"{details.get('noise_floor', 0.0):.3f}), over {nc:,} predictions of {c} and "
            f"{nb:,} of {b}"
        )
    if metric == "ab_population_js_distance" and value is not None:
        feature = shown(str(details.get("feature", "")))
        js, floor = float(details.get("js", 0.0)), float(details.get("noise_floor", 0.0))
        if not value:
            # the value is 0 below 3 noise floors (detectors.ab.population_value): say so,
            # or "0.000" beside "largest JS distance 0.032" reads as a contradiction
            return (
                f"versions {c} and {b} serve alike inputs over the policy window: the largest "
                f"JS distance is {js:.3f} ({feature}), within 3× its noise floor "
                f"{floor:.3f} (= {3 * floor:.3f}), so the value is 0"
            )
        return (
            f"version {c}'s inputs differ from {b}'s: {feature} at JS distance {js:.3f} "
            f"(beyond 3× its noise floor {floor:.3f}) over the policy window, {nc:,} values "
            f"of {c} and {nb:,} of {b}: they serve different traffic, so their differences compare "
            "populations, not only models"
        )
    if metric.startswith("ab_latency_") and value is not None:
        q = metric.removeprefix("ab_latency_").removesuffix("_ratio")
        lo, hi = details.get("sketch_range", [value, value])
        return (
            f"version {c}'s latency {q} is {value:.2f}× {b}'s ({details.get('candidate_ms', 0):.1f}"
            f" ms vs {details.get('baseline_ms', 0):.1f} ms; the sketches allow {lo:.2f}–"
            f"{hi:.2f}×), over {nc:,} requests of {c} and {nb:,} of {b}"
        )
    return f"{metric} of version {c} against {b}: {details.get('reason', 'no value')}"
