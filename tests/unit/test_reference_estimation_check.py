"""``reference build`` warns when the estimation is biased on the reference's own rows.

Relative ``estimated_*`` rules judge an estimate against the reference's realised value;
an estimation that reads otherwise on the very rows it was fitted on starts that far off
on unchanged data (trial on the Palmer penguins, 2026-12-07: estimated accuracy 0.854
against a realised 0.904, so the model's own test split was critical on every estimate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from watchkeeper.daemon.cli.main import main


def build(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "train.csv", index=False)
    argv = ["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv")]
    argv += ["--prediction", "score", "--label", "label", "-o", str(tmp_path / "ref.json")]
    assert main(argv) == 0


def test_an_under_confident_perfect_ranker_is_named_with_its_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    n = 1_000
    label = rng.random(n) < 0.5
    # every positive above every negative (AUC 1: raw scores kept), but only 0.6 / 0.4
    score = np.where(label, 0.6 + 0.1 * rng.random(n), 0.3 + 0.1 * rng.random(n))
    build(
        tmp_path,
        pd.DataFrame({"x": rng.normal(size=n), "score": score, "label": label.astype(int)}),
    )
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert "raw scores kept" in out
    # independently: the raw scores' expected accuracy is mean(max(s, 1 - s)); realised 1
    expected = float(np.mean(np.maximum(score, 1 - score)))
    assert f"estimated_accuracy {expected:.4f} (realised 1.0000, {expected - 1:+.4f})" in err
    # a warning goes to stderr (a script reading stdout for the notes still sees it)
    assert err.count("warning: on the reference's own rows") == 1
    assert "warning" not in out
    # the profile is the same as without the check: the build only warns
    profile = json.loads((tmp_path / "ref.json").read_text())
    assert profile["estimation"]["model"]["decision"]["calibrate"] is False


def test_calibrated_scores_give_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    score = rng.random(n)
    label = (rng.random(n) < score).astype(int)  # calibrated by construction
    build(tmp_path, pd.DataFrame({"x": rng.normal(size=n), "score": score, "label": label}))
    captured = capsys.readouterr()
    assert "estimation: binary calibrator" in captured.out
    assert "warning" not in captured.out + captured.err


def test_each_metric_named_is_one_drift_would_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The build's warning and ``drift`` judge the same way: every estimate named is past
    its relative warn threshold, computed here from the profile's own numbers."""
    rng = np.random.default_rng(5)
    n = 1_000
    label = rng.random(n) < 0.5
    score = np.where(label, 0.6 + 0.1 * rng.random(n), 0.3 + 0.1 * rng.random(n))
    frame = pd.DataFrame({"x": rng.normal(size=n), "score": score, "label": label.astype(int)})
    build(tmp_path, frame)
    err = capsys.readouterr().err
    parts = err.split("reads ", 1)[1].split(": relative")[0].split(", ")
    named = {p.split()[0]: float(p.split()[1]) for p in parts if p.startswith("estimated_")}
    assert named  # accuracy, at least: 0.6–0.7 expected against a realised 1
    profile = json.loads((tmp_path / "ref.json").read_text())
    realised = profile["metrics"]
    errors = {"estimated_mae", "estimated_rmse"}  # higher is worse
    for metric, value in named.items():
        base = realised[metric.removeprefix("estimated_")]
        delta = value - base
        assert delta >= 0.01 if metric in errors else delta <= -0.01
