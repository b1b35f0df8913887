"""What a reference's own estimation says about the reference's own rows.

``relative: true`` on an ``estimated_*`` rule, and ``watchkeeper drift``, judge an estimate
against the reference's *realised* value. An estimator that is biased on its own
reference — raw scores kept because they passed the calibration test, yet under- or
over-confident for the decision — therefore starts that far from its base on unchanged
data (trial on the Palmer penguins, 2026-12-07: a logistic regression's raw scores gave an
estimated accuracy of 0.854 against a realised 0.904 on the 166 reference rows, and every
``estimated_*`` of the model's own test split was critical). The build says so, with the
numbers, instead of letting the first window say it as an alert.
"""

from __future__ import annotations

import pandas as pd
from watchkeeper.daemon.offline.batch_performance import add_batch, judge
from watchkeeper.detectors.estimate_findings import estimation_bases
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import SketchSettings, WindowSummary


def self_check(profile: ReferenceProfile, rows: pd.DataFrame) -> str | None:
    """A warning line when the estimation, run on ``rows`` (the labelled rows it was fitted
    on), reads warn or critical by the verdict ``watchkeeper drift`` gives it
    (:func:`batch_performance.judge`: the metric's relative thresholds, −0.01 / −0.02 for a
    score such as accuracy, +0.01 / +0.02 for an error, from the realised value); None
    otherwise."""
    est = profile.estimation
    names = profile.column_names
    if est is None or "prediction" not in names:
        return None
    window = WindowSummary(profile.model, "reference", 0, 0, SketchSettings())
    add_batch(window, rows, profile, names["prediction"], None, names.get("prediction_class"))
    bases = estimation_bases(profile)
    off = []
    for finding in evaluate(profile, window, sorted(bases), min_samples=1):
        _, verdict = judge(finding, profile)
        if verdict in ("warn", "critical") and finding.value is not None:
            base = bases[finding.metric]
            off.append(
                f"{finding.metric} {finding.value:.4f} (realised {base:.4f},"
                f" {finding.value - base:+.4f})"
            )
    if not off:
        return None
    return (
        "warning: on the reference's own rows the estimation reads "
        + ", ".join(off)
        + ": relative estimated_* rules and `watchkeeper drift` judge estimates against the"
        " realised values, so unchanged data starts that far off (the scores are not"
        " calibrated for the decision; more labelled rows let the calibrator be kept)"
    )
