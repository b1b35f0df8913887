"""Thresholds from a false-alarm budget (``threshold: auto``).

A fixed PSI of 0.1 means different things at 500 and at 500,000 rows: sampling noise alone
moves PSI by about (1/n + 1/m)·(B − 1) for windows of n rows against a reference of m
over B bins. Under no drift, the binned statistics follow known large-sample laws, so the
threshold that a stable stream crosses with probability α is a quantile of that law:

* PSI ≈ (1/n + 1/m) · χ²(B − 1)  (Yurdakul 2018, "Statistical properties of population
  stability index", via the symmetric-KL / χ² equivalence);
* KL(ref ‖ cur) ≈ χ²(B − 1) / (2n′) and JS divergence ≈ χ²(B − 1) / (8n′) in nats, with
  n′ = nm / (n + m) the effective size (the G-test expansion of KL);
  JS *distance* is the square root of the divergence in bits;
* KS: the two-sample Kolmogorov law, c(α) · √((n + m) / (nm)) with
  c(α) = √(−ln(α / 2) / 2) (Smirnov 1948);
* χ²: the χ²(B − 1) quantile itself.

α is the budget per evaluation and per feature: the policy's period over the false-alarm
interval (one per 30 days at a 5-minute schedule is α = 1/8640), divided by the number of
features the rule checks (Bonferroni), so 200 features do not page 200 times as often as
one. The tests check the realised false-alarm rate on simulated stable streams.

Estimated performance (``estimated_accuracy`` …) has a sampling law of its own: under no
change an estimate sits near the reference's value with the standard error of its band
(the reference's chunk spread scaled to the window's rows,
:mod:`watchkeeper.detectors.sampling_band`), so the auto threshold is the reference's
value moved z(α) standard errors to the metric's bad side (one-sided normal quantile).
"""

from __future__ import annotations

import math
from typing import Any


def estimate_auto_threshold(details: dict[str, Any], alpha: float, above: bool) -> float | str:
    """The estimate a stable window crosses with probability ``alpha`` (from an
    estimate finding's ``details``: its band and the reference value), or why none."""
    base = details.get("reference")
    band = details.get("band")
    if base is None or not band:
        return "threshold: auto needs the reference's spread of this metric (no band)"
    from scipy import stats  # at the first auto threshold, not at the daemon's start

    alpha = min(max(alpha, 1e-15), 0.5)
    z = float(stats.norm.isf(alpha))
    se = float(band["standard_error"])
    return float(base) + z * se if above else float(base) - z * se


def auto_threshold(metric: str, n: int, m: int, bins: int, alpha: float) -> float:
    """The value a stable window of ``n`` rows exceeds with probability ``alpha``."""
    if n <= 0:
        raise ValueError("auto thresholds need the window's sample size")
    m = m if m > 0 else 10**9  # no reference size known: treat the reference as exact
    alpha = min(max(alpha, 1e-15), 0.5)
    dof = max(bins - 1, 1)
    from scipy import stats  # at the first auto threshold, not at the daemon's start

    q = float(stats.chi2.isf(alpha, dof))
    effective = n * m / (n + m)
    if metric == "psi":
        return (1 / n + 1 / m) * q
    if metric == "kl_divergence":
        return q / (2 * effective)
    if metric == "js_distance":
        return math.sqrt(q / (8 * effective) / math.log(2))
    if metric == "chi2":
        return q
    if metric == "ks":
        return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
    raise ValueError(f"no false-alarm threshold is derived for {metric}")
