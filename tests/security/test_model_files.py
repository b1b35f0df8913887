"""Candidate model files: ``max_model_bytes`` counts external data, and external data must
resolve inside the allowed folders (``..`` and symlinks included), checked by watchkeeper
before ONNX Runtime opens anything."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.shadow.runtime import resolve_model_path

from tests.security.probes import rss_bytes


def external_model(folder: Path, location: str, length: int | None = None) -> Path:
    """A tiny model whose one weight lives in external data at ``location``."""
    weight = numpy_helper.from_array(np.zeros((4, 1), dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    if length is not None:
        entry = weight.external_data.add()
        entry.key, entry.value = "length", str(length)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        initializer=[weight],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_external_data_counts_against_max_model_bytes(tmp_path: Path) -> None:
    """Was: a 162-byte .onnx with 400 MB of external data loaded (+3.4 GB RSS)."""
    blob = tmp_path / "weights.bin"
    with open(blob, "wb") as handle:  # sparse: 400 MB on paper, nothing on disk
        handle.truncate(400 * 1024 * 1024)
    path = external_model(tmp_path, "weights.bin")
    assert path.stat().st_size < 1000
    rss = rss_bytes()
    with pytest.raises(ValueError, match=r"external data, more than shadow\.max_model_bytes"):
        resolve_model_path("model.onnx", tmp_path, ShadowConfig(max_model_bytes=64 * 1024 * 1024))
    assert rss_bytes() < rss + 50 * 1024 * 1024  # refused before anything was read


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_external_data_must_stay_inside_the_allowed_folders(tmp_path: Path, how: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"\0" * 16)
    if how == "dotdot":
        location = "../outside/secret.bin"
    elif how == "absolute":
        location = str(secret)
    else:
        os.symlink(secret, models / "link.bin")
        location = "link.bin"
    external_model(models, location, 16)
    with pytest.raises(ValueError, match=r"outside the allowed|relative path"):
        resolve_model_path("model.onnx", models, ShadowConfig())


def test_external_data_inside_the_folder_within_the_bound_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(np.zeros(4, dtype=np.float32).tobytes())
    external_model(tmp_path, "w.bin", 16)
    assert resolve_model_path("model.onnx", tmp_path, ShadowConfig()).name == "model.onnx"
