"""``watchkeeper report`` finds the reference the model's policy names (F12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from watchkeeper.daemon.cli.main import main
from watchkeeper.detectors.profile import ReferenceProfile, numeric_profile
from watchkeeper.detectors.sketches import NumericSketch

CONFIG = """\
kafka:
  bootstrap_servers: 127.0.0.1:9092
  topics:
    predictions: {name: preds}
store: {url: "sqlite:///wk.db"}
policies: {paths: [policies]}
"""


def setup(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    sketch = NumericSketch(200)
    sketch.update(np.arange(10.0))
    ReferenceProfile("credit", {"income": numeric_profile(sketch, ())}, 10).save(
        tmp_path / "policies" / "credit-ref.json"
    )
    (tmp_path / "policies" / "credit.yaml").write_text(
        "model: credit\nreference: credit-ref.json\nrules: [{metric: psi, critical: 0.25}]\n"
    )
    config = tmp_path / "wk.yaml"
    config.write_text(CONFIG)
    return config


def test_the_policys_profile_file_is_the_default_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = setup(tmp_path)
    window = "2026-12-04T00:50Z/2026-12-04T01:50Z"
    code = main(["report", "--model", "credit", "--window", window, "-c", str(config)])
    # the reference resolved (was: "no stored reference credit/default", exit 1); the
    # empty store then has no windows: nothing to report on is exit 2, as a bad store
    assert code == 2
    assert "no stored windows of credit" in capsys.readouterr().err
    code = main(["report", "--model", "other", "--window", window, "-c", str(config)])
    assert code == 2
    assert "no stored reference other/default (no policy of the model)" in (capsys.readouterr().err)
    args = ["--reference-name", "v9", "--window", window, "-c", str(config)]
    assert main(["report", "--model", "credit", *args]) == 2
    assert "no stored reference credit/v9 (--reference-name v9)" in capsys.readouterr().err
