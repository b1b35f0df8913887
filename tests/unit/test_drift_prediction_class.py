"""``watchkeeper drift`` scores the prediction's class and shows whole feature names (F8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from watchkeeper.daemon.cli.main import main


def frame(n: int, seed: int, share: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    return pd.DataFrame(
        {
            "months_employed": rng.normal(size=n),
            "late_payments_last_year": rng.normal(size=n),
            "score": score,
            "decision": (rng.random(n) < share).astype(int),
            "label": (rng.random(n) < score).astype(int),
        }
    )


def psi(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sum((p - q) * np.log(p / q)))


@pytest.mark.parametrize("named", ["--prediction-class", None])
def test_the_class_column_is_scored_with_the_prediction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], named: str | None
) -> None:
    train, batch = frame(5_000, 1, 0.2), frame(3_000, 2, 0.3)
    train.to_csv(tmp_path / "train.csv", index=False)
    # the batch spells the column otherwise: --prediction-class names it
    column = "decided" if named else "decision"
    batch.rename(columns={"decision": column}).to_csv(tmp_path / "batch.csv", index=False)
    ref = tmp_path / "ref.json"
    build = ["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv")]
    extra = ["--prediction-class", "decision", "--label", "label"]
    assert main([*build, "--prediction", "score", *extra, "-o", str(ref)]) == 0
    capsys.readouterr()
    argv = ["drift", "--reference", str(ref), "--current", str(tmp_path / "batch.csv")]
    argv += ["--prediction", "score", "--format", "json"]
    main(argv + ([named, column] if named else []))
    found = json.loads(capsys.readouterr().out)["findings"]
    (klass,) = [f for f in found if f["feature"] == "__prediction_class__" and f["metric"] == "psi"]

    def shares(d: np.ndarray) -> np.ndarray:
        return np.array([(d == 0).mean(), (d == 1).mean()])

    expected = psi(shares(batch["decision"].to_numpy()), shares(train["decision"].to_numpy()))
    assert klass["n_current"] == 3_000
    assert klass["value"] == pytest.approx(expected, rel=1e-12)


def test_without_the_class_column_the_class_is_not_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame(5_000, 1, 0.2).to_csv(tmp_path / "train.csv", index=False)
    frame(3_000, 2, 0.3).drop(columns=["decision"]).to_csv(tmp_path / "batch.csv", index=False)
    ref = tmp_path / "ref.json"
    build = ["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv")]
    assert (
        main(
            [
                *build,
                "--prediction",
                "score",
                "--prediction-class",
                "decision",
                "--label",
                "label",
                "-o",
                str(ref),
            ]
        )
        == 0
    )
    capsys.readouterr()
    argv = ["drift", "--reference", str(ref), "--current", str(tmp_path / "batch.csv")]
    main([*argv, "--prediction", "score", "--format", "json"])
    found = json.loads(capsys.readouterr().out)["findings"]
    assert not [f for f in found if f["feature"] == "__prediction_class__"]
    assert [f for f in found if f["feature"] == "__prediction__"]


def test_the_table_fits_80_columns_with_whole_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    frame(5_000, 1, 0.2).to_csv(tmp_path / "train.csv", index=False)
    frame(3_000, 2, 0.3).to_csv(tmp_path / "batch.csv", index=False)
    ref = tmp_path / "ref.json"
    build = ["reference", "build", "--model", "m", "--from", str(tmp_path / "train.csv")]
    assert (
        main(
            [
                *build,
                "--prediction",
                "score",
                "--prediction-class",
                "decision",
                "--label",
                "label",
                "-o",
                str(ref),
            ]
        )
        == 0
    )
    capsys.readouterr()
    main(
        [
            "drift",
            "--reference",
            str(ref),
            "--current",
            str(tmp_path / "batch.csv"),
            "--prediction",
            "score",
        ]
    )
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    for name in ("late_payments_last_year", "months_employed", "prediction class"):
        assert f"│ {name} " in out, name
