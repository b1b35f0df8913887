"""The label-free estimates wired through the reference profile, the window state, the
policy rules and the reference build (issue 19); the math itself is tested in
test_estimates.py and test_loss_model.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from watchkeeper.daemon.offline.reference import build_reference
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.estimation_reference import (
    Estimation,
    fit_binary_estimation,
    fit_regression_estimation,
)
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.schema import Policy

RNG_SEED = 19


def numeric(v: np.ndarray) -> Column:
    flags = np.zeros(v.size, dtype=bool)
    return Column("numeric", np.asarray(v, dtype=np.float64), flags, flags.copy())


def batch(
    model: str, scores: np.ndarray, features: dict[str, np.ndarray] | None = None
) -> ColumnBatch:
    n = scores.size
    return ColumnBatch(
        model,
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(n, dtype=np.uint64),
        features={k: numeric(v) for k, v in (features or {}).items()},
        prediction=numeric(scores),
    )


def binary_reference(n: int = 20_000, seed: int = RNG_SEED) -> tuple[ReferenceProfile, Estimation]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-2 * x))
    y = rng.random(n) < p
    est = fit_binary_estimation(p, y)
    return ReferenceProfile("fraud", {}, n, estimation=est), est


def window_of(est: Estimation, scores: np.ndarray, start: int = 0) -> WindowSummary:
    w = WindowSummary("fraud", "1", start, 1000, SketchSettings(k=8, estimation=lambda m: est))
    w.update(batch("fraud", scores), np.arange(scores.size))
    return w


def test_a_v2_profile_keeps_its_estimation_and_a_v1_profile_loads_without(tmp_path: Path) -> None:
    profile, est = binary_reference(4000)
    profile.save(tmp_path / "v2.json")
    again = ReferenceProfile.load(tmp_path / "v2.json")
    assert again.estimation == est
    assert json.loads((tmp_path / "v2.json").read_text())["format"] == "watchkeeper.reference/v2"
    old = profile.to_dict()
    old["format"] = "watchkeeper.reference/v1"
    del old["estimation"]
    v1 = ReferenceProfile.from_dict(old)
    assert v1.estimation is None
    w = window_of(est, np.random.default_rng(1).random(500))
    (f,) = evaluate(v1, w, ["estimated_accuracy"], min_samples=10)
    assert f.status == "insufficient_data" and "no estimation" in f.details["reason"]
    with pytest.raises(ValueError, match=r"not a watchkeeper\.reference/v2"):
        ReferenceProfile.from_dict({**old, "format": "watchkeeper.reference/v3"})


def test_window_estimates_equal_the_row_by_row_expectation_and_merge_exactly() -> None:
    _, est = binary_reference()
    rng = np.random.default_rng(5)
    scores = rng.beta(2, 3, size=3000)
    scores[::97] = np.nan  # NaN scores are counted, never crash
    whole = window_of(est, scores)
    parts = [window_of(est, part) for part in np.array_split(scores, 3)]
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    stored = WindowSummary.from_dict(json.loads(json.dumps(merged.to_dict())))
    ref = ReferenceProfile("fraud", {}, 20_000, estimation=est)
    # the direct computation: calibrated p per row, expected confusion row by row
    ok = np.isfinite(scores)
    p = est.calibrator.calibrate(scores[ok])  # type: ignore[union-attr]
    predicted = scores[ok] >= 0.5
    expected_accuracy = float(np.mean(np.where(predicted, p, 1 - p)))
    tp = float(p[predicted].sum())
    expected_precision = tp / predicted.sum()
    for w in (whole, merged, stored):
        found = {
            f.metric: f
            for f in evaluate(
                ref, w, ["estimated_accuracy", "estimated_precision"], min_samples=100
            )
        }
        acc, prec = found["estimated_accuracy"], found["estimated_precision"]
        assert acc.value == pytest.approx(expected_accuracy, rel=1e-12)
        assert prec.value == pytest.approx(expected_precision, rel=1e-12)
        assert acc.n_current == int(ok.sum()) and acc.details["nan_scores"] == int((~ok).sum())
        band = acc.details["band"]
        assert band["lower"] < acc.value < band["upper"] and band["n"] == int(ok.sum())
        assert acc.details["reference"] == est.reference["accuracy"]
    assert stored.estimates.of(est).to_dict() == whole.estimates.of(est).to_dict()  # type: ignore[union-attr]


def test_a_window_summary_of_format_1_loads_with_no_estimates() -> None:
    _, est = binary_reference(4000)
    d = window_of(est, np.random.default_rng(2).random(300)).to_dict()
    assert d["format"] == 2
    d["format"] = 1
    del d["estimates"]
    old = WindowSummary.from_dict(d)
    assert not old.estimates and old.events == {"predictions": 300}


def test_windows_of_two_references_never_mix_their_counts() -> None:
    _, a = binary_reference(4000, seed=1)
    _, b = binary_reference(4000, seed=2)
    wa, wb = window_of(a, np.full(100, 0.7)), window_of(b, np.full(50, 0.7))
    wa.merge(wb)
    assert wa.estimates.of(a).n == 100 and wa.estimates.of(b).n == 50  # type: ignore[union-attr]


def test_min_samples_applies_to_the_estimated_rows() -> None:
    ref, est = binary_reference(4000)
    w = window_of(est, np.random.default_rng(3).random(99))
    (f,) = evaluate(ref, w, ["estimated_accuracy"], min_samples=100)
    assert f.status == "insufficient_data" and f.n_current == 99
    (g,) = evaluate(ref, w, ["estimated_accuracy"], min_samples=99)
    assert g.status == "ok"


def policy(rule: dict[str, Any]) -> Policy:
    return Policy.model_validate({"model": "fraud", "min_samples": 100, "rules": [rule]})


def test_relative_rules_shift_the_references_realised_value() -> None:
    from watchkeeper.detectors.estimate_findings import estimation_bases

    ref, est = binary_reference()
    base = est.reference["accuracy"]
    rng = np.random.default_rng(4)
    # scores pushed toward 0.5: the model is less sure, so it is expected to be less right
    shifted = window_of(est, np.clip(rng.normal(0.5, 0.05, size=5000), 0, 1))
    found = {"drop": evaluate(ref, shifted, ["estimated_accuracy"], min_samples=100)}
    engine = PolicyEngine(
        policy(
            {
                "name": "drop",
                "metric": "estimated_accuracy",
                "relative": True,
                "warn": -0.01,
                "critical": -0.02,
            }
        )
    )
    (evaluation,), events = engine.step(found, 1000, estimation_bases(ref))
    assert evaluation.critical == pytest.approx(base - 0.02)
    assert evaluation.value is not None and evaluation.value < base - 0.02
    assert [e.kind for e in events] == ["opened"] and events[0].incident.severity == "critical"


def test_threshold_auto_sits_z_standard_errors_below_the_reference() -> None:
    from scipy import stats
    from watchkeeper.detectors.estimate_findings import estimation_bases

    ref, est = binary_reference()
    rng = np.random.default_rng(6)
    x = rng.normal(size=5000)
    stable = window_of(est, 1 / (1 + np.exp(-2 * x)))
    found = {"auto": evaluate(ref, stable, ["estimated_accuracy"], min_samples=100)}
    rule = {"name": "auto", "metric": "estimated_accuracy", "threshold": "auto"}
    engine = PolicyEngine(policy(rule))
    (evaluation,), events = engine.step(found, 1000, estimation_bases(ref))
    se = found["auto"][0].details["band"]["standard_error"]
    alpha = 300 / (30 * 86400)
    assert evaluation.critical == pytest.approx(
        est.reference["accuracy"] - stats.norm.isf(alpha) * se
    )
    assert events == [] and evaluation.decision == "ok"


def labelled_window(est: Estimation, x: np.ndarray, y: np.ndarray) -> WindowSummary:
    p = 1 / (1 + np.exp(-2 * x))
    w = window_of(est, p)
    perf = PerformanceSketch("classification")
    perf.update_classification(
        ["1" if v else "0" for v in y], ["1" if s >= 0.5 else "0" for s in p], p
    )
    w.performance = perf
    return w


def test_under_covariate_shift_estimates_track_realised_and_trust_holds() -> None:
    ref, est = binary_reference()
    rng = np.random.default_rng(7)
    x = rng.normal(0.8, 0.6, size=6000)  # inputs moved; P(y | x) as on the reference
    y = rng.random(x.size) < 1 / (1 + np.exp(-2 * x))
    w = labelled_window(est, x, y)
    found = {f.metric: f for f in evaluate(ref, w, ["estimated_accuracy"], min_samples=100)}
    acc = found["estimated_accuracy"]
    band = acc.details["band"]
    assert band["lower"] <= acc.details["realised"] <= band["upper"]
    assert acc.details["n_labelled"] == 6000
    trust = evaluate(ref, w, ["estimate_mismatch"], min_samples=100)
    assert {f.feature for f in trust} == {"estimated_accuracy", "estimated_roc_auc"}
    assert all(f.status == "ok" and f.value is not None and f.value < 1 for f in trust)


def test_when_p_y_given_x_changes_the_trust_check_says_so() -> None:
    ref, est = binary_reference()
    rng = np.random.default_rng(8)
    x = rng.normal(size=6000)
    y = rng.random(x.size) < 1 / (1 + np.exp(2 * x))  # the relation reversed
    w = labelled_window(est, x, y)
    (f, *_) = evaluate(ref, w, ["estimate_mismatch"], min_samples=100)
    assert f.feature == "estimated_accuracy" and f.value is not None and f.value > 2
    assert f.details["disagrees"] and f.details["realised"] < f.details["estimated"]


def test_the_reference_build_fits_binary_and_regression_estimations(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    n = 4000
    x = rng.normal(size=n)
    s = 1 / (1 + np.exp(-2 * x))
    frame = pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], n), "score": s})
    frame["label"] = (rng.random(n) < s).astype(int)
    frame.to_csv(tmp_path / "binary.csv", index=False)
    notes: list[str] = []
    profile = build_reference(
        tmp_path / "binary.csv", "fraud", prediction="score", label="label", notes=notes
    )
    assert profile.estimation is not None and profile.estimation.problem == "binary"
    assert notes[0].startswith("estimation: binary calibrator")
    assert profile.estimation.reference["accuracy"] == pytest.approx(profile.metrics["accuracy"])

    y = 3 * x + rng.normal(size=n) * (1 + (x > 0))
    reg = pd.DataFrame({"x": x, "c": frame["c"], "pred": 3 * x, "y": y})
    reg.to_csv(tmp_path / "reg.csv", index=False)
    notes = []
    profile = build_reference(
        tmp_path / "reg.csv", "price", prediction="pred", label="y", notes=notes
    )
    assert profile.estimation is not None and profile.estimation.problem == "regression"
    assert profile.estimation.reference["mae"] == pytest.approx(profile.metrics["mae"])
    # the window's loss state from the features of its prediction batches
    est = profile.estimation
    w = WindowSummary("price", "1", 0, 1000, SketchSettings(k=8, estimation=lambda m: est))
    feats = {"x": x[:500]}
    w.update(batch("price", 3 * x[:500], feats), np.arange(500))
    direct = fit_free_mae(est, feats, 3 * x[:500])
    (f,) = evaluate(profile, w, ["estimated_mae"], min_samples=100)
    assert f.value == pytest.approx(direct, rel=1e-12)

    notes = []
    unlabelled = build_reference(tmp_path / "binary.csv", "fraud", prediction="score", notes=notes)
    assert unlabelled.estimation is None and notes[0].startswith("no estimation")


def fit_free_mae(est: Estimation, columns: dict[str, np.ndarray], prediction: np.ndarray) -> float:
    """The loss model applied to the rows at once (no window state in between)."""
    from watchkeeper.detectors.loss_model import LossModel

    model = est.model
    assert isinstance(model, LossModel)
    absolute, _ = model.predict(columns, prediction)
    return float(absolute.mean())


def test_fit_regression_estimation_is_what_the_build_stores() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(size=1000)
    est = fit_regression_estimation({"x": x}, x, x + rng.normal(size=1000), params={"max_iter": 10})
    assert Estimation.from_dict(json.loads(json.dumps(est.to_dict()))) == est


def test_a_trust_incident_says_concept_drift_is_suspected() -> None:
    ref, est = binary_reference()
    rng = np.random.default_rng(11)
    x = rng.normal(size=6000)
    w = labelled_window(est, x, rng.random(x.size) < 1 / (1 + np.exp(2 * x)))
    found = {"trust": evaluate(ref, w, ["estimate_mismatch"], min_samples=100)}
    engine = PolicyEngine(
        policy({"name": "trust", "metric": "estimate_mismatch", "warn": 1.0, "critical": 2.0})
    )
    _, events = engine.step(found, 1000)
    summaries = [e.incident.summary for e in events if e.kind == "opened"]
    assert summaries and all(
        s.startswith(
            "performance estimates no longer match realised labels on fraud: "
            "concept drift suspected"
        )
        for s in summaries
    )
    assert {e.incident.feature for e in events} == {"estimated_accuracy", "estimated_roc_auc"}


def test_a_shift_to_where_the_model_is_unsure_is_no_concept_drift() -> None:
    """Reference accuracy ≈ 0.95; the window's inputs sit at the decision boundary, where
    the same P(y | x) makes it ≈ 0.6: estimate and realised agree, no mismatch."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=50_000)
    p = 1 / (1 + np.exp(-6 * x))
    est = fit_binary_estimation(p, rng.random(x.size) < p)
    ref = ReferenceProfile("fraud", {}, x.size, estimation=est)
    assert est.reference["accuracy"] > 0.9
    mismatches = []
    for seed in range(5):
        r = np.random.default_rng(100 + seed)
        xs = r.normal(0, 0.15, 3000)
        ps = 1 / (1 + np.exp(-6 * xs))
        w = window_of(est, ps)
        perf = PerformanceSketch("classification")
        y = r.random(xs.size) < ps
        perf.update_classification(
            ["1" if v else "0" for v in y], ["1" if s >= 0.5 else "0" for s in ps], ps
        )
        w.performance = perf
        (acc,) = evaluate(ref, w, ["estimated_accuracy"], min_samples=100)
        assert acc.value is not None and acc.value < 0.75
        trust = {f.feature: f for f in evaluate(ref, w, ["estimate_mismatch"], min_samples=100)}
        mismatches.append(trust["estimated_accuracy"].value)
    assert max(mismatches) < 1, mismatches


def test_two_policies_on_two_references_both_get_estimate_state() -> None:
    from watchkeeper.daemon.ingest.references_in_force import ReferencesInForce
    from watchkeeper.detectors.estimate_findings import estimate_finding
    from watchkeeper.detectors.window_estimates import MAX_SKETCHES

    first, est1 = binary_reference(6000, seed=1)
    second, est2 = binary_reference(6000, seed=2)
    assert est1.fingerprint != est2.fingerprint
    refs = ReferencesInForce()
    refs.adopt([first, second, first])  # a third policy on the first reference: one state
    assert refs.estimation("fraud") == (est1, est2)
    w = WindowSummary("fraud", "1", 0, 1000, SketchSettings(k=8, estimation=refs.estimation))
    scores = np.random.default_rng(5).random(800)
    w.update(batch("fraud", scores), np.arange(scores.size))
    for profile, est in ((first, est1), (second, est2)):
        state = w.estimates.of(est)
        assert state is not None and state.n == 800
        found = estimate_finding("estimated_accuracy", profile, w, min_samples=100)
        assert found.status == "ok" and found.details["estimation"] == est.fingerprint
    # beyond what a window keeps: refused, and said why
    many = [binary_reference(3000, seed=10 + i)[0] for i in range(MAX_SKETCHES + 1)]
    refs.adopt(many)
    kept = refs.estimation("fraud")
    assert kept is not None and len(kept) == MAX_SKETCHES
    assert f"more than {MAX_SKETCHES} references" in refs.refused["fraud"]
    refs.adopt([first])
    assert refs.estimation("fraud") == (est1,) and not refs.refused


def test_a_regression_window_without_the_features_is_not_ok_and_says_why() -> None:
    from watchkeeper.daemon.checks.performance_rows import compare
    from watchkeeper.detectors.estimate_findings import estimate_finding

    rng = np.random.default_rng(3)
    x = rng.normal(size=4000)
    y = 2 * x + rng.normal(size=4000) * (1 + np.abs(x))
    est = fit_regression_estimation({"x": x}, 2 * x, y, params={"max_iter": 20})
    profile = ReferenceProfile("price", {}, 4000, estimation=est)
    w = WindowSummary("price", "1", 0, 1000, SketchSettings(k=8, estimation=lambda m: est))
    pred = 2 * rng.normal(size=500)
    w.update(batch("price", pred), np.arange(500))  # events without feature x
    found = estimate_finding("estimated_mae", profile, w, min_samples=100)
    assert found.status == "insufficient_data"
    assert "500 predictions left out" in found.details["reason"]
    w.update(batch("price", pred, {"x": pred / 2}), np.arange(500))
    found = estimate_finding("estimated_mae", profile, w, min_samples=100)
    assert found.status == "ok" and found.n_current == 500
    assert found.details["missing_features"] == 500
    row = compare(profile, w)
    assert row is not None and row["missing_features"] == 500
