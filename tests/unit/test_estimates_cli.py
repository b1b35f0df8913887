"""`watchkeeper reference build` fits the estimation; `watchkeeper drift` reports realised
and estimated performance of a batch file, and they gate its exit code (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from watchkeeper.daemon.cli.main import main
from watchkeeper.detectors.profile import ReferenceProfile


def frame(n: int, seed: int, spread: float = 1.0, flipped: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, spread, n)
    score = 1 / (1 + np.exp(-2 * x))
    truth = 1 - score if flipped else score
    return pd.DataFrame({"x": x, "score": score, "label": (rng.random(n) < truth).astype(int)})


def drift(ref: Path, batch: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["drift", "--reference", str(ref), "--current", str(batch), "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def by_metric(report: dict) -> dict[str, dict]:
    return {
        f["metric"] + (f"/{f['feature']}" if f["feature"] else ""): f for f in report["findings"]
    }


def test_reference_build_fits_and_drift_reports_realised_and_estimated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame(20_000, 0).to_csv(tmp_path / "train.csv", index=False)
    ref = tmp_path / "ref.json"
    argv = ["reference", "build", "--model", "fraud", "--from", str(tmp_path / "train.csv")]
    assert main([*argv, "--prediction", "score", "--label", "label", "-o", str(ref)]) == 0
    assert "estimation: binary calibrator" in capsys.readouterr().out
    profile = ReferenceProfile.load(ref)
    assert profile.estimation is not None
    assert profile.column_names == {"prediction": "score", "label": "label"}

    # the same population, labelled: realised and estimated agree with the reference
    frame(4000, 1).to_csv(tmp_path / "same.csv", index=False)
    code, report = drift(ref, tmp_path / "same.csv", capsys)
    found = by_metric(report)
    assert code == 0 and report["critical"] == 0
    for name in ("accuracy", "roc_auc", "estimated_accuracy", "estimated_f1"):
        assert found[name]["severity"] == "ok" and found[name]["value"] is not None
    assert found["estimated_accuracy"]["details"]["band"]["n"] == 4000
    assert found["estimate_mismatch/estimated_accuracy"]["value"] < 1

    # no labels yet, scores near 0.5: only the estimate can tell, and it gates the exit
    unsure = frame(4000, 2, spread=0.1).drop(columns="label")
    unsure.to_csv(tmp_path / "unsure.csv", index=False)
    code, report = drift(ref, tmp_path / "unsure.csv", capsys)
    found = by_metric(report)
    assert code == 1 and "accuracy" not in found
    assert found["estimated_accuracy"]["severity"] == "critical"
    assert found["estimated_accuracy"]["value"] < profile.metrics["accuracy"] - 0.1

    # P(y | x) reversed: the realised metrics fall, the estimates do not see it, and the
    # mismatch says the estimates are no longer to be trusted
    frame(4000, 3, flipped=True).to_csv(tmp_path / "flipped.csv", index=False)
    code, report = drift(ref, tmp_path / "flipped.csv", capsys)
    found = by_metric(report)
    assert code == 1
    assert found["accuracy"]["severity"] == "critical"
    assert found["estimated_accuracy"]["severity"] == "ok"
    assert found["estimate_mismatch/estimated_accuracy"]["severity"] == "critical"

    # the table form shows both tables
    capsys.readouterr()
    main(["drift", "--reference", str(ref), "--current", str(tmp_path / "flipped.csv")])
    out = capsys.readouterr().out
    assert "estimated_accuracy" in out and "realised (labels)" in out


def test_a_reference_without_labels_has_no_estimation_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame(2000, 0).to_csv(tmp_path / "train.csv", index=False)
    ref = tmp_path / "ref.json"
    argv = ["reference", "build", "--model", "fraud", "--from", str(tmp_path / "train.csv")]
    assert main([*argv, "--prediction", "score", "--exclude", "label", "-o", str(ref)]) == 0
    assert "no estimation: it needs --label and --prediction" in capsys.readouterr().out
    assert ReferenceProfile.load(ref).estimation is None


def test_a_reference_built_for_another_decision_threshold_is_refused_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The calibrator counts predicted classes at its build's --threshold, the label join
    at ingest.decision_threshold: two thresholds would compare two classifiers. The
    daemon refuses such an estimation; ``policy check -c`` names file, field and both."""
    from watchkeeper.daemon.ingest.references_in_force import ReferencesInForce, threshold_conflict

    from tests.support import write_config

    frame(5000, 0).to_csv(tmp_path / "train.csv", index=False)
    ref = tmp_path / "ref.json"
    argv = ["reference", "build", "--model", "fraud", "--from", str(tmp_path / "train.csv")]
    argv += ["--prediction", "score", "--label", "label", "--threshold", "0.3", "-o", str(ref)]
    assert main(argv) == 0
    profile = ReferenceProfile.load(ref)
    assert profile.estimation is not None
    refs = ReferencesInForce(decision_threshold=0.5, config_path="watchkeeper.yaml")
    refs.adopt([profile])
    assert refs.estimation("fraud") is None
    assert "ingest.decision_threshold is 0.5" in refs.refused["fraud"]
    assert "decision threshold 0.3" in refs.refused["fraud"]
    agreeing = ReferencesInForce(decision_threshold=0.3)
    agreeing.adopt([profile])
    assert agreeing.estimation("fraud") == (profile.estimation,) and not agreeing.refused
    assert threshold_conflict(profile, None) is None  # not checked without a threshold

    config = write_config(
        tmp_path / "watchkeeper.yaml",
        {
            "kafka": {"bootstrap_servers": "x:1", "topics": {"predictions": {"name": "p"}}},
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "ingest": {"decision_threshold": 0.5},
        },
    )
    policy = tmp_path / "fraud.yaml"
    policy.write_text(
        f"model: fraud\nreference: {ref}\n"
        "rules:\n  - {metric: estimated_accuracy, relative: true, warn: -0.01}\n"
    )
    capsys.readouterr()
    assert main(["policy", "check", str(policy), "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert str(policy) in err and str(config) in err
    assert "ingest.decision_threshold is 0.5" in err and "built for decision threshold 0.3" in err
