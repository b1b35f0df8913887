"""``watchkeeper drift --policy FILE`` reads the reference the policy names.

README's example is ``watchkeeper drift --policy fraud.yaml``; the command refused it
("the following arguments are required: --reference") though the policy names its
profile file (trial, 2026-12-07).
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
    return pd.DataFrame({"x": rng.normal(shift, 1.0, n), "kind": rng.choice(["a", "b"], n)})


def setup(tmp_path: Path, reference: str) -> tuple[Path, Path]:
    (tmp_path / "refs").mkdir()
    frame(2_000, 1, 0.0).to_csv(tmp_path / "train.csv", index=False)
    out = tmp_path / "refs" / "ref.json"
    assert main(["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv"),
                 "-o", str(out)]) == 0  # fmt: skip
    (tmp_path / "policies").mkdir()
    policy = tmp_path / "policies" / "m.yaml"
    policy.write_text(
        f"model: m\nreference: {reference}\nwindow: 5m\n"
        "rules:\n  - {name: drift, metric: psi, features: all, critical: 0.25}\n"
    )
    frame(1_000, 2, 1.0).to_csv(tmp_path / "batch.csv", index=False)
    return policy, tmp_path / "batch.csv"


def test_the_policy_reference_file_is_read_relative_to_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, batch = setup(tmp_path, "../refs/ref.json")
    capsys.readouterr()
    argv = ["drift", "--policy", str(policy), "--current", str(batch), "--format", "json"]
    assert main(argv) == 1  # a 1σ shift: critical
    implicit = json.loads(capsys.readouterr().out)
    argv += ["--reference", str(tmp_path / "refs" / "ref.json")]
    assert main(argv) == 1
    assert json.loads(capsys.readouterr().out) == implicit  # the same profile, the same numbers
    (psi,) = [f for f in implicit["findings"] if f["feature"] == "x"]
    assert psi["value"] > 0.25 and psi["severity"] == "critical"


def test_a_stored_reference_or_none_at_all_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, batch = setup(tmp_path, "store:default")
    capsys.readouterr()
    assert main(["drift", "--policy", str(policy), "--current", str(batch)]) == 2
    assert "scores against the stored reference 'default'; give --reference FILE" in (
        capsys.readouterr().err
    )
    assert main(["drift", "--current", str(batch)]) == 2
    assert "give --reference FILE (or --policy naming one)" in capsys.readouterr().err
