"""``watchkeeper drift`` never passes a batch on which no metric could be judged.

A batch under ``min_samples`` (the flag's, or the policy's with ``--policy``) made every
finding ``insufficient_data``; the command printed a table of n/a and exited 0, so a CI
gate passed an obviously drifted batch (trial on the Palmer penguins, 2026-12-07).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from watchkeeper.daemon.cli.main import main


def frame(n: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "kind": rng.choice(["a", "b"], n),
            "score": score,
            "label": (rng.random(n) < score).astype(int),
        }
    )


@pytest.fixture
def ref(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    frame(2_000, 1, 0.0).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "ref.json"
    build = ["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv")]
    assert main([*build, "--prediction", "score", "--label", "label", "-o", str(out)]) == 0
    capsys.readouterr()
    return out


def drift(ref: Path, batch: Path, *extra: str) -> list[str]:
    return [
        "drift",
        "--reference",
        str(ref),
        "--current",
        str(batch),
        "--prediction",
        "score",
        *extra,
    ]


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_batch_under_min_samples_exits_2_naming_why(
    ref: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    batch = tmp_path / "small.csv"
    frame(60, 2, 3.0).to_csv(batch, index=False)  # a 3σ shift, but 60 rows < 100
    assert main(drift(ref, batch, "--format", fmt)) == 2
    captured = capsys.readouterr()
    assert "no metric could be judged on the 60 rows of" in captured.err
    assert "60 values < min_samples 100" in captured.err
    if fmt == "json":  # the document is still printed, with every finding's reason
        findings = json.loads(captured.out)["findings"]
        assert findings and all(f["value"] is None for f in findings)


def test_the_policy_min_samples_is_the_one_named(
    ref: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "batch.csv"
    frame(150, 3, 3.0).to_csv(batch, index=False)
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "model: m\nreference: ref.json\nwindow: 5m\nmin_samples: 200\n"
        "rules:\n  - {name: drift, metric: psi, features: all, critical: 0.25}\n"
    )
    assert main(drift(ref, batch, "--policy", str(policy))) == 2
    assert "150 values < min_samples 200" in capsys.readouterr().err


def test_a_batch_with_one_judged_metric_still_gates_on_it(
    ref: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "big.csv"
    frame(1_000, 4, 3.0).to_csv(batch, index=False)
    assert main(drift(ref, batch, "--metrics", "psi")) == 1  # drifted: critical, not 2
    frame(1_000, 5, 0.0).to_csv(batch, index=False)
    assert main(drift(ref, batch, "--metrics", "psi")) == 0
    assert "no metric could be judged" not in capsys.readouterr().err


@pytest.fixture
def unlabelled_ref(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A reference built without --label: it has no accuracy to compare a batch's with."""
    frame(2_000, 1, 0.0)[["x", "score"]].to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "unlabelled.json"
    build = ["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv")]
    assert main([*build, "--prediction", "score", "-o", str(out)]) == 0
    capsys.readouterr()
    return out


def inverted_batch(tmp_path: Path) -> Path:
    batch = frame(2_000, 6, 0.0)
    batch["label"] = 1 - batch["label"]  # accuracy falls to ~0.25: it must not read ok
    path = tmp_path / "inverted.csv"
    batch.to_csv(path, index=False)
    return path


NO_BASE = "the reference has no accuracy to compare with"


@pytest.mark.parametrize("how", ["policy", "metrics"])
def test_a_value_without_a_threshold_is_n_a_and_not_a_pass(
    unlabelled_ref: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    if how == "policy":
        policy = tmp_path / "p.yaml"
        policy.write_text(
            f"model: m\nreference: {unlabelled_ref.name}\nwindow: 5m\nrules:\n"
            "  - {name: acc, metric: accuracy, relative: true, critical: -0.05}\n"
        )
        extra = ["--policy", str(policy)]
    else:
        extra = ["--metrics", "accuracy"]
    argv = drift(unlabelled_ref, inverted_batch(tmp_path), "--label", "label", *extra)
    assert main([*argv, "--format", "json"]) == 2
    captured = capsys.readouterr()
    (found,) = json.loads(captured.out)["findings"]
    assert found["metric"] == "accuracy" and found["value"] < 0.3
    assert found["severity"] == "n/a" and found["details"]["reason"] == NO_BASE
    assert f"no metric could be judged on the 2000 rows of {argv[4]}" in captured.err
    assert f"no threshold applies ({NO_BASE})" in captured.err
    assert "min-samples" not in captured.err  # more rows would not help
    assert main(argv) == 2  # the table says n/a, and why
    out = capsys.readouterr().out
    assert f"n/a: {NO_BASE} (accuracy)" in out
    assert "1 not judged over 2000 rows" in out


def test_one_judged_metric_gates_beside_an_n_a_one(
    unlabelled_ref: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = drift(unlabelled_ref, inverted_batch(tmp_path), "--label", "label")
    assert main([*argv, "--metrics", "psi,accuracy,chi2", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    found = {(f["metric"], f["feature"]): f for f in document["findings"]}
    # the document's totals, counted from its findings: a script need not count them
    severities = [f["severity"] for f in document["findings"]]
    assert (document["critical"], document["warnings"], document["not_judged"]) == (
        severities.count("critical"),
        severities.count("warn"),
        severities.count("n/a"),
    )
    # accuracy, and chi2 on x and on the prediction
    assert document["not_judged"] == 3 and document["rows"] == 2000
    assert found["psi", "x"]["severity"] == "ok"
    assert found["accuracy", None]["severity"] == "n/a"
    chi2 = found["chi2", "x"]
    assert chi2["value"] is not None and chi2["severity"] == "n/a"
    assert chi2["details"]["reason"] == "chi2 has no default threshold: give it a --policy rule"


def test_a_policy_of_live_only_rules_says_so(
    ref: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "big.csv"
    frame(1_000, 7, 3.0).to_csv(batch, index=False)
    policy = tmp_path / "live.yaml"
    policy.write_text(
        "model: m\nreference: ref.json\nwindow: 5m\nrules:\n"
        "  - {name: slow, metric: latency_p99_ms, critical: 200}\n"
        "  - {name: rps, metric: throughput_eps, warn: 1}\n"
    )
    assert main(drift(ref, batch, "--policy", str(policy))) == 2
    err = capsys.readouterr().err
    assert (
        f"{policy} has no column, performance or estimate rules to judge offline "
        "(its rules read latency_p99_ms, throughput_eps;" in err
    )
    assert "min-samples" not in err and "larger batch" not in err


def test_the_daemon_records_the_same_finding_insufficient_data_with_the_same_reason(
    unlabelled_ref: Path, tmp_path: Path
) -> None:
    """The offline n/a is the daemon's ``insufficient_data``: one rule_thresholds answer."""
    from watchkeeper.daemon.offline.drift import policy_findings, summarize_file
    from watchkeeper.detectors.profile import ReferenceProfile
    from watchkeeper.policies.engine import PolicyEngine
    from watchkeeper.policies.schema import Policy

    policy = Policy.model_validate(
        {
            "model": "m",
            "reference": unlabelled_ref.name,
            "window": "5m",
            "rules": [{"name": "acc", "metric": "accuracy", "relative": True, "critical": -0.05}],
        }
    )
    reference = ReferenceProfile.load(unlabelled_ref)
    window = summarize_file(inverted_batch(tmp_path), reference, "score", label="label")
    ((found, verdict),) = policy_findings(policy, reference, window)
    assert verdict == "n/a" and found.details["reason"] == NO_BASE
    evaluations, events = PolicyEngine(policy).step({"acc": [found]}, 0, reference.metrics)
    assert [(e.decision, e.reason) for e in evaluations] == [("insufficient_data", NO_BASE)]
    assert events == []
