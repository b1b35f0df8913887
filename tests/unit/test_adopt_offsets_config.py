"""``kafka.adopt_offsets_from`` in the config: another group's name, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchkeeper.daemon.config import load_config
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.policies.errors import InvalidDocumentError

CONFIG = """\
kafka:
  bootstrap_servers: 127.0.0.1:9092
  group_id: wk-new
  adopt_offsets_from: {adopt}
  topics: {{predictions: {{name: preds}}}}
"""


def test_adopt_offsets_from_names_another_group(tmp_path: Path) -> None:
    path = tmp_path / "wk.yaml"
    path.write_text(CONFIG.format(adopt="wk-old"))
    assert load_config(path, clients=option_checks()).kafka.adopt_offsets_from == "wk-old"
    path.write_text(CONFIG.format(adopt="wk-new"))
    with pytest.raises(InvalidDocumentError) as info:
        load_config(path, clients=option_checks())
    assert "adopt_offsets_from is group_id itself ('wk-new')" in str(info.value)
    assert f"{path}:" in str(info.value)
