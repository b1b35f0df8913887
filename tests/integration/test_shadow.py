"""Shadow evaluation end to end on the real broker: real ONNX models made here
(scikit-learn → skl2onnx, onnx.helper), an INT8 candidate made by `watchkeeper compress`,
comparisons equal to a direct offline computation on the same rows, broken candidates
disabled and reported while ingestion and the other candidates go on, and promotion /
rejection announced once each through a signed webhook."""

from __future__ import annotations

import json
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import orjson
import pytest
from onnx import TensorProto, helper
from watchkeeper.daemon.cli.main import main
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.shadow import sample_mask

from tests.integration.test_ingest import fetch, running
from tests.support import SECRET, Receiver, create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
COUNTRIES = {"DE": 0, "FR": 1, "US": 2}
N_FRAUD, N_CHURN = 1200, 400


def _data(n: int, seed: int) -> tuple[np.ndarray[Any, Any], list[str]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    countries = rng.choice(list(COUNTRIES), n).tolist()
    return x, countries


def _matrix(x: np.ndarray[Any, Any], countries: list[str]) -> np.ndarray[Any, Any]:
    codes = np.array([COUNTRIES[c] for c in countries], dtype=np.float64)[:, None]
    return np.hstack([x, codes]).astype(np.float32)


def _models(folder: Path) -> None:
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    x, countries = _data(3000, 1)
    xm = _matrix(x, countries)
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.2 * xm[:, 3] > 0).astype(int)
    with warnings.catch_warnings():  # convergence is beside the point here
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=200, random_state=0).fit(xm, y)
    onx = to_onnx(clf, xm[:1], options={"zipmap": False}, target_opset=17)
    (folder / "fraud.onnx").write_bytes(onx.SerializeToString())
    # a lossy candidate: trained on a tenth of the data, with labels half shuffled
    rng = np.random.default_rng(5)
    y_bad = np.where(rng.random(y.size) < 0.35, 1 - y, y)
    lossy = LogisticRegression().fit(xm[:300], np.where(xm[:300, 1] > 0, y_bad[:300], 1))
    onx = to_onnx(lossy, xm[:1], options={"zipmap": False}, target_opset=17)
    (folder / "lossy.onnx").write_bytes(onx.SerializeToString())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=200, random_state=0)
        reg.fit(xm, 2 * x[:, 0] - x[:, 2])
    (folder / "churn.onnx").write_bytes(to_onnx(reg, xm[:1], target_opset=17).SerializeToString())
    (folder / "broken.onnx").write_bytes(b"this is not an ONNX file")
    # NaN for rows with a negative first feature: sqrt of it, as both probabilities
    w = np.zeros((4, 2), dtype=np.float32)
    w[0, :] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Sqrt", ["xw"], ["probabilities"]),
        ],
        "nan",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 2], w.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "nan.onnx")


POLICY_FRAUD = """\
model: fraud
window: 5m
schedule: {every: 1s}
min_samples: 50
rules:
  - name: agreement
    metric: shadow_agreement
    critical: 0.5
shadow:
  task: classification
  inputs:
    features: [f0, f1, f2, country]
    encodings: {country: {DE: 0, FR: 1, US: 2}}
  outputs: {label: label, probabilities: probabilities}
  baseline: fraud.onnx
  sample_rate: 1.0
  candidates:
    - {name: int8, onnx: fraud.int8-static.onnx}
    - {name: int8-dyn, onnx: fraud.int8-dynamic.onnx}
    - {name: lossy, onnx: lossy.onnx}
    - {name: broken-file, onnx: broken.onnx}
    - name: wrong-input
      onnx: fraud.onnx
      inputs: {name: nope, features: [f0, f1, f2, country]}
    - name: nan-output
      onnx: nan.onnx
      outputs: {probabilities: probabilities}
  promotion:
    when: [shadow_agreement >= 0.95, shadow_mean_abs_diff <= 0.05, shadow_accuracy_delta >= -0.02]
    min_rows: 500
    min_labelled_rows: 300
    over: 1h
    on_promote: [promote]
    on_reject: [promote]
"""

POLICY_CHURN = """\
model: churn
window: 5m
schedule: {every: 1s}
min_samples: 50
rules:
  - name: diff
    metric: shadow_mean_abs_diff
    critical: 1.0
shadow:
  task: regression
  inputs:
    features: [f0, f1, f2, country]
    encodings: {country: {DE: 0, FR: 1, US: 2}}
  outputs: {score: variable}
  candidates:
    - {name: int8, onnx: churn.int8-static.onnx}
"""


def _events(
    model: str, n: int, seed: int, session: ort.InferenceSession
) -> tuple[list[bytes], list[bytes], dict[str, Any]]:
    x, countries = _data(n, seed)
    xm = _matrix(x, countries)
    now = int(time.time() * 1000)
    out = session.run(None, {"X": xm})
    rng = np.random.default_rng(seed + 100)
    preds, labels = [], []
    logged = []
    truth = []
    for i in range(n):
        features = {"f0": float(x[i, 0]), "f1": float(x[i, 1]), "f2": float(x[i, 2])}
        features["country"] = countries[i]
        if model == "fraud":
            p1 = round(float(out[1][i, 1]), 6)
            prediction: Any = [round(1 - p1, 6), p1]
            label: Any = int(rng.random() < (0.9 if p1 > 0.5 else 0.1))
            logged.append(p1)
        else:
            prediction = round(float(out[0][i, 0]), 6)
            label = prediction + float(rng.normal(0, 0.3))
            logged.append(prediction)
        truth.append(label)
        rid = f"{model}-{i}"
        preds.append(
            orjson.dumps(
                {
                    "model": model,
                    "request_id": rid,
                    "ts": now,
                    "features": features,
                    "prediction": prediction,
                    "latency_ms": 5.0,
                }
            )
        )
        labels.append(orjson.dumps({"model": model, "request_id": rid, "ts": now, "label": label}))
    return preds, labels, {"x": xm, "logged": np.array(logged), "truth": np.array(truth)}


def test_shadow_evaluation_on_the_stream(
    broker: Any,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    _models(folder)
    # calibration rows for `watchkeeper compress`, as JSON lines of features
    x, countries = _data(400, 9)
    rows = folder / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps({"features": {"f0": a, "f1": b, "f2": c, "country": k}})
            for (a, b, c), k in zip(x.tolist(), countries, strict=True)
        )
    )
    (folder / "fraud.yaml").write_text(POLICY_FRAUD.replace("[fraud.int8-dynamic.onnx]", ""))
    for model in ("fraud", "churn"):
        args = ["compress", str(folder / f"{model}.onnx"), "--rows", str(rows), "--json"]
        args += ["--features", "f0,f1,f2,country", "--variants", "int8-dynamic,int8-static,fp16"]
        if model == "fraud":
            args = ["compress", str(folder / "fraud.onnx"), "--rows", str(rows), "--json"]
            args += ["--policy", str(folder / "fraud.yaml")]
        assert main(args) == 0
        report = json.loads(capsys.readouterr().out)
        variants = {v["variant"]: v for v in report["variants"]}
        assert set(variants) == {"fp32", "int8-dynamic", "int8-static", "fp16"}
        assert all(not v["error"] for v in variants.values()), variants
        assert variants["fp16"]["batch_ms"] is None  # CPU: agreement and size only
        assert variants["int8-static"]["batch_ms"] > 0
        if model == "fraud":  # (a 4-weight linear model only grows with quantization)
            assert variants["int8-dynamic"]["size_bytes"] < variants["fp32"]["size_bytes"]
            assert variants["int8-dynamic"]["agreement"] >= 0.95
            assert variants["fp16"]["agreement"] >= 0.99
        snippet = (folder / f"{model}.shadow.snippet.yaml").read_text()
        assert f"{model}.int8-static.onnx" in snippet
    (folder / "churn.yaml").write_text(POLICY_CHURN)

    preds_topic = create_topic(broker.bootstrap, f"preds-{time.time_ns()}")
    labels_topic = create_topic(broker.bootstrap, f"labels-{time.time_ns()}")
    monkeypatch.setenv("WK_TEST_SECRET", SECRET)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        f"sqlite:///{tmp_path / 'wk.db'}",
        {"predictions": {"name": preds_topic}, "labels": {"name": labels_topic}},
        policies={"paths": [str(folder)]},
        alerts={
            "channels": {
                "promote": {"type": "webhook", "url": receiver.url, "secret_env": "WK_TEST_SECRET"}
            },
            "group_wait": "0s",
        },
        shadow={"flush_interval": "300ms", "max_cpu_share": 1.0, "queue_batches": 10000},
    )
    fraud = ort.InferenceSession(str(folder / "fraud.onnx"), providers=["CPUExecutionProvider"])
    churn = ort.InferenceSession(str(folder / "churn.onnx"), providers=["CPUExecutionProvider"])
    f_preds, f_labels, f_data = _events("fraud", N_FRAUD, 11, fraud)
    c_preds, c_labels, c_data = _events("churn", N_CHURN, 12, churn)
    # churn is sampled at the default 10 %: by record key, so the rows are known here too
    # (one partition, fraud's events first: churn's are at offsets N_FRAUD…)
    offsets = np.arange(N_FRAUD, N_FRAUD + N_CHURN)
    keys = record_keys(zlib.crc32(preds_topic.encode()), 0, offsets)
    sampled = sample_mask(keys, 0.1)
    n_sampled = int(sampled.sum())
    assert 10 < n_sampled < 80
    with running(config) as daemon:
        produce(broker.bootstrap, preds_topic, f_preds + c_preds)
        store = ShadowStore(daemon.store.engine)  # type: ignore[union-attr]

        def stats() -> dict[str, Any]:
            now = int(time.time() * 1000)
            return {m: store.stats(m, now - 3_600_000, now + 600_000) for m in ("fraud", "churn")}

        wait_until(
            lambda: (
                (s := stats())["fraud"].get("int8") is not None
                and s["fraud"]["int8"].rows == N_FRAUD
                and s["churn"].get("int8") is not None
                and s["churn"]["int8"].rows == n_sampled
            ),
            timeout=90,
            describe=lambda: {
                m: {c: (v.rows, v.dropped, v.errors) for c, v in s.items()}
                for m, s in stats().items()
            },
        )
        produce(broker.bootstrap, labels_topic, f_labels + c_labels)
        wait_until(
            lambda: (
                (s := stats())["fraud"]["int8"].performance["candidate"].n == N_FRAUD
                and s["churn"]["int8"].performance["candidate"].n == n_sampled
            ),
            timeout=90,
        )
        # the decisions: int8 promoted, the lossy and the broken candidates rejected
        wait_until(lambda: len(receiver.received) >= 6, timeout=60)

        def checks_run() -> float:
            return sum(
                daemon.registry.get_sample_value(
                    "watchkeeper_policy_checks_total", {"policy": policy, "outcome": "ok"}
                )
                or 0.0
                for policy in daemon.scheduler.status.policies  # type: ignore[union-attr]
            )

        # several more check rounds of every policy (counted, not timed): nothing may be
        # announced twice by them
        seen = checks_run()
        wait_until(lambda: checks_run() >= seen + 3 * 2, timeout=60)
        status, body = fetch(f"http://{daemon.http.address}/api/shadow")  # type: ignore[union-attr]
        totals = daemon.store.totals()  # type: ignore[union-attr]
        incidents = IncidentStore(daemon.store.engine).incidents("open")  # type: ignore[union-attr]

    assert totals["events"] == N_FRAUD + N_CHURN + N_FRAUD + N_CHURN
    decisions = {d["decision"]["candidate"]: d for d in receiver.received}
    assert len(receiver.received) == 6, [d["type"] for d in receiver.received]
    assert decisions["int8"]["type"] == "shadow.promote"
    assert decisions["int8-dyn"]["type"] == "shadow.promote"
    for name in ("lossy", "broken-file", "wrong-input", "nan-output"):
        assert decisions[name]["type"] == "shadow.reject", decisions[name]
    assert "shadow_agreement" in decisions["lossy"]["decision"]["reasons"][0]
    assert receiver.rejected == 0

    assert status == 200
    table = json.loads(body)["models"]
    fraud_rows = {r["candidate"]: r for r in table["fraud"]["candidates"]}
    reasons = {n: fraud_rows[n]["reason"] for n in ("broken-file", "wrong-input", "nan-output")}
    assert all(fraud_rows[n]["state"] == "disabled" for n in reasons), reasons
    assert "cannot load" in reasons["broken-file"]
    assert "no input named 'nope'" in reasons["wrong-input"]
    assert "NaN" in reasons["nan-output"]
    assert fraud_rows["int8"]["state"] == "active"
    open_candidates = {i["feature"] for i in incidents if i["model"] == "fraud"}
    assert {"__candidate__:broken-file", "__candidate__:nan-output"} <= open_candidates

    # the same numbers computed directly, offline, on the same rows (static INT8: its
    # scales are fixed, so the result does not depend on how rows are batched)
    int8 = ort.InferenceSession(
        str(folder / "fraud.int8-static.onnx"), providers=["CPUExecutionProvider"]
    )
    label, probs = int8.run(None, {"X": f_data["x"]})
    prod_class = (f_data["logged"] > 1 - f_data["logged"]).astype(int)
    agreement = float(np.mean(label == prod_class))
    diff = float(np.mean(np.abs(probs[:, 1] - f_data["logged"])))
    acc_delta = float(np.mean(label == f_data["truth"]) - np.mean(prod_class == f_data["truth"]))
    c = fraud_rows["int8"]["comparison"]
    assert c["shadow_rows"] == N_FRAUD
    assert c["shadow_agreement"] == pytest.approx(agreement, abs=1e-12)
    assert c["shadow_mean_abs_diff"] == pytest.approx(diff, rel=1e-6)
    assert c["shadow_accuracy_delta"] == pytest.approx(acc_delta, abs=1e-12)
    assert c["shadow_size_ratio"] < 1.0
    assert c["shadow_latency_p99_ratio"] > 0

    churn_int8 = ort.InferenceSession(
        str(folder / "churn.int8-static.onnx"), providers=["CPUExecutionProvider"]
    )
    value = churn_int8.run(None, {"X": c_data["x"][sampled]})[0][:, 0]
    logged, truth = c_data["logged"][sampled], c_data["truth"][sampled]
    c = {r["candidate"]: r for r in table["churn"]["candidates"]}["int8"]["comparison"]
    assert c["shadow_rows"] == n_sampled
    assert c["shadow_mean_abs_diff"] == pytest.approx(
        float(np.mean(np.abs(value - logged))), rel=1e-5
    )
    mae_delta = np.mean(np.abs(value - truth)) - np.mean(np.abs(logged - truth))
    assert c["shadow_mae_delta"] == pytest.approx(float(mae_delta), rel=1e-5, abs=1e-9)
