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
