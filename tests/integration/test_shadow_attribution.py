"""Shadow attributions end to end on the real broker: a production model and two
candidates (an identical copy, and one whose strongest input's weight was zeroed — what a
bad pruning does), real ONNX files made here, a reference profile file whose sample is the
background; the daemon attributes the key-sampled rows, ``/api/shadow`` shows the three
attribution metrics and production's ``attribution_shift`` against the reference's other
rows, equal to the exact Shapley values of the linear models computed here independently,
and the promotion conditions on them promote the copy and reject the other through a
signed webhook."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper
from scipy import stats as scipy_stats
from watchkeeper.daemon.shadow.store import PRODUCTION, ShadowStore
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.shadow import sample_mask

from tests.integration.test_ingest import fetch, running
from tests.support import SECRET, Receiver, create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
FEATURES = ("f0", "f1", "f2", "f3")
WEIGHTS = np.array([3.0, 2.0, 1.0, 0.5])
ZEROED = np.array([0.0, 2.0, 1.0, 0.5])
N = 600
ATTRIBUTION_RATE = 0.5
BACKGROUND = 40
REFERENCE_ROWS = 200  # attributions.reference_rows, the default
SCALE = np.array([1.0, 1.5, 1.0, 2.0])


def attribution_policy(top_k: int | None = None, promotion: bool = True) -> str:
    """The policy of model m: the two attribution rules, production and the two
    candidates in shadow, attributions on half the rows (``top_k``: the overlap's k; the
    default when None), and with ``promotion`` its conditions on them."""
    k = "" if top_k is None else f", top_k: {top_k}"
    text = f"""\
model: m
window: 5m
schedule: {{every: 1s}}
min_samples: 50
reference: ref.json
rules:
  - {{name: ranks, metric: shadow_attribution_rank_corr, critical: 0.8}}
  - {{name: leans, metric: attribution_shift, critical: 0.7}}
shadow:
  task: regression
  inputs: {{features: [f0, f1, f2, f3]}}
  outputs: {{score: variable}}
  baseline: prod.onnx
  sample_rate: 1.0
  protected: [f0]
  attributions: {{sample_rate: 0.5, background_rows: 40{k}}}
  candidates:
    - {{name: copy, onnx: copy.onnx}}
    - {{name: zeroed, onnx: zeroed.onnx}}
"""
    if promotion:
        text += """\
  promotion:
    when: [shadow_attribution_rank_corr >= 0.9, shadow_protected_attribution_delta <= 0.05]
    min_rows: 300
    over: 1h
    on_promote: [hook]
    on_reject: [hook]
"""
    return text


POLICY = attribution_policy()


def linear_onnx(path: Path, weights: np.ndarray[Any, Any]) -> None:
    """A linear regressor ``x · weights + 0.25`` as an ONNX file (input X, output variable)."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["variable"]),
        ],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [4, 1], weights.tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, [1], [0.25]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def write_models(folder: Path, policy: str, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """In ``folder``: prod.onnx, copy.onnx (the same weights), zeroed.onnx (f0's weight
    zeroed), ref.json (a profile whose sample is 400 reference rows, the explainer's
    background) and the policy as m.yaml; returns the reference rows."""
    folder.mkdir(exist_ok=True)
    linear_onnx(folder / "prod.onnx", WEIGHTS)
    linear_onnx(folder / "copy.onnx", WEIGHTS)
    linear_onnx(folder / "zeroed.onnx", ZEROED)
    reference = (rng.normal(size=(400, 4)) * SCALE).astype(np.float32).astype(np.float64)
    sample = tuple({"features": dict(zip(FEATURES, r, strict=True))} for r in reference.tolist())
    profile = ReferenceProfile("m", {}, 400, sample=sample)
    (folder / "ref.json").write_bytes(orjson.dumps(profile.to_dict()))
    (folder / "m.yaml").write_text(policy)
    return reference


def prediction_events(x: np.ndarray[Any, Any], now: int) -> list[bytes]:
    """One event of model m per row of ``x``, its prediction production's."""
    return [
        orjson.dumps(
            {
                "model": "m",
                "request_id": f"r{i}",
                "ts": now,
                "features": dict(zip(FEATURES, x[i].tolist(), strict=True)),
                "prediction": float(x[i] @ WEIGHTS + 0.25),
            }
        )
        for i in range(len(x))
    ]


def attributed_rows(topic: str, n: int) -> np.ndarray[Any, Any]:
    """The offsets of the ``n`` events produced to ``topic`` (one partition) that the
    daemon attributes: those chosen by key at ATTRIBUTION_RATE, the first
    attributions.max_rows_per_window (default 200) of them in offset order (one
    partition, one window: batches come in order)."""
    keys = record_keys(zlib.crc32(topic.encode()), 0, np.arange(n))
    sampled = np.flatnonzero(sample_mask(keys, ATTRIBUTION_RATE))
    assert 200 < sampled.size < 400
    return sampled[:200]


def background_mean(reference: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The mean of the explainer's background: BACKGROUND evenly spaced reference rows."""
    picks = np.linspace(0, len(reference) - 1, BACKGROUND).round().astype(int)
    return np.asarray(reference[picks].mean(axis=0))


def importance(
    weights: np.ndarray[Any, Any], rows: np.ndarray[Any, Any], mean: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Mean |exact Shapley value| per feature of a linear model: |wᵢ (xᵢ − mean)|."""
    return np.asarray(np.abs(weights * (rows - mean)).mean(axis=0))


def reference_importance(reference: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Production's importance on the reference's own rows: REFERENCE_ROWS evenly spaced
    rows of those not in the background (what attribution_shift compares with)."""
    picks = np.linspace(0, len(reference) - 1, BACKGROUND).round().astype(int)
    rest = np.setdiff1d(np.arange(len(reference)), picks)
    at = np.linspace(0, len(rest) - 1, REFERENCE_ROWS).round().astype(int)
    return importance(WEIGHTS, reference[rest[at]], background_mean(reference))


def test_shadow_candidates_attribution_metrics_in_the_api(
    broker: Any, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "policies"
    rng = np.random.default_rng(21)
    reference = write_models(folder, POLICY, rng)
    x = (rng.normal(size=(N, 4)) * SCALE).astype(np.float32).astype(np.float64)
    now = int(time.time() * 1000)
    events = prediction_events(x, now)
    topic = create_topic(broker.bootstrap, f"preds-{time.time_ns()}")
    chosen = attributed_rows(topic, N)
    n_chosen = chosen.size
    monkeypatch.setenv("WK_TEST_SECRET", SECRET)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        f"sqlite:///{tmp_path / 'wk.db'}",
        {"predictions": {"name": topic}},
        policies={"paths": [str(folder)]},
        alerts={
            "channels": {
                "hook": {"type": "webhook", "url": receiver.url, "secret_env": "WK_TEST_SECRET"}
            },
            "group_wait": "0s",
        },
        # a whole core and a generous attribution share: every chosen row is attributed
        shadow={
            "flush_interval": "300ms",
            "max_cpu_share": 1.0,
            "attribution_cpu_share": 1.0,
            "queue_batches": 10000,
        },
    )
    with running(config) as daemon:
        produce(broker.bootstrap, topic, events)
        store = ShadowStore(daemon.store.engine)  # type: ignore[union-attr]

        def attributed() -> dict[str, tuple[int, int]]:
            got = store.stats("m", now - 3_600_000, now + 600_000)
            return {
                name: (s.rows, 0 if s.attribution is None else s.attribution["candidate"].rows)
                for name, s in got.items()
                if name != PRODUCTION
            }

        wait_until(
            lambda: attributed() == {"copy": (N, n_chosen), "zeroed": (N, n_chosen)},
            timeout=90,
            describe=attributed,
        )
        wait_until(lambda: len(receiver.received) >= 2, timeout=60)
        wait_until(lambda: store.reference_attribution("m") is not None, timeout=30)
        base = f"http://{daemon.http.address}"  # type: ignore[union-attr]

        def shift_evaluations() -> list[dict[str, Any]]:
            _, listing = fetch(f"{base}/api/evaluations?rule=leans")
            return [e for e in json.loads(listing)["evaluations"] if e["value"] is not None]

        # the daemon's checker evaluates the rule once both sides are there (every 1 s)
        wait_until(lambda: bool(shift_evaluations()), timeout=30)
        evaluated = shift_evaluations()[0]
        status, body = fetch(f"{base}/api/shadow")

    assert status == 200
    entry = json.loads(body)["models"]["m"]
    assert entry["protected"] == ["f0"]
    rows = {r["candidate"]: r for r in entry["candidates"]}

    # independently: a linear model's exact Shapley values are wᵢ (xᵢ − background mean),
    # the background being BACKGROUND evenly spaced rows of the reference sample
    mean = background_mean(reference)
    importances = {
        name: importance(w, x[chosen], mean)
        for name, w in (("production", WEIGHTS), ("copy", WEIGHTS), ("zeroed", ZEROED))
    }
    shares = {k: v / v.sum() for k, v in importances.items()}
    for name in ("copy", "zeroed"):
        c = rows[name]["comparison"]
        a = rows[name]["attribution"]
        assert c["shadow_attributed_rows"] == n_chosen == a["rows"]
        assert a["skipped"] == 0
        rho = scipy_stats.spearmanr(importances["production"], importances[name]).statistic
        assert c["shadow_attribution_rank_corr"] == pytest.approx(rho, abs=1e-9)
        np.testing.assert_allclose(a["production_shares"], shares["production"], atol=1e-5)
        np.testing.assert_allclose(a["candidate_shares"], shares[name], atol=1e-5)
        delta = abs(shares[name][0] - shares["production"][0])
        assert c["shadow_protected_attribution_delta"] == pytest.approx(delta, abs=1e-5)
    assert rows["copy"]["comparison"]["shadow_attribution_topk_overlap"] == 1.0
    assert rows["zeroed"]["comparison"]["shadow_attribution_rank_corr"] < 0.8
    assert rows["zeroed"]["attribution"]["protected"]["feature"] == "f0"

    # attribution_shift: production's window rows (the chosen ones) against the reference's
    # rows — REFERENCE_ROWS evenly spaced rows of those not in the background
    shift = entry["attribution_shift"]
    assert shift["rows"] == n_chosen and shift["reference_rows"] == REFERENCE_ROWS
    rho = scipy_stats.spearmanr(reference_importance(reference), importances["production"])
    rho = rho.statistic
    assert shift["value"] == pytest.approx(rho, abs=1e-9)
    assert evaluated["metric"] == "attribution_shift" and evaluated["feature"] is None
    assert evaluated["value"] == pytest.approx(rho, abs=1e-9)
    assert evaluated["n_current"] == n_chosen

    decisions = {d["decision"]["candidate"]: d for d in receiver.received}
    assert decisions["copy"]["type"] == "shadow.promote"
    assert decisions["zeroed"]["type"] == "shadow.reject"
    reasons = decisions["zeroed"]["decision"]["reasons"]
    assert any(r.startswith("shadow_attribution_rank_corr = ") for r in reasons), reasons
    assert any(r.startswith("shadow_protected_attribution_delta") for r in reasons), reasons
    assert receiver.rejected == 0


PRODUCTION_ONLY = """\
model: m
window: 5m
schedule: {every: 1s}
min_samples: 50
reference: ref.json
rules:
  - {name: leans, metric: attribution_shift, critical: 0.7}
shadow:
  task: regression
  inputs: {features: [f0, f1, f2, f3]}
  outputs: {score: variable}
  baseline: prod.onnx
  attributions: {sample_rate: 0.5, background_rows: 40}
"""


def test_attribution_shift_of_production_without_candidates(broker: Any, tmp_path: Path) -> None:
    """No candidates: production's rows are sampled at attributions.sample_rate, explained
    with its explainer alone, and a live input distribution that makes the (unchanged)
    model lean on another feature is an attribution_shift incident — equal to the exact
    Shapley values computed here."""
    folder = tmp_path / "policies"
    rng = np.random.default_rng(22)
    reference = write_models(folder, PRODUCTION_ONLY, rng)

    # live: f0 barely varies, f3 ten times more: the model now leans on f3, not f0
    live = np.array([0.05, 1.5, 1.0, 20.0])
    x = (rng.normal(size=(N, 4)) * live).astype(np.float32).astype(np.float64)
    now = int(time.time() * 1000)
    events = [
        orjson.dumps(
            {
                "model": "m",
                "ts": now,
                "features": dict(zip(FEATURES, x[i].tolist(), strict=True)),
                "prediction": float(x[i] @ WEIGHTS + 0.25),
            }
        )
        for i in range(N)
    ]
    topic = create_topic(broker.bootstrap, f"preds-{time.time_ns()}")
    chosen = attributed_rows(topic, N)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        f"sqlite:///{tmp_path / 'wk.db'}",
        {"predictions": {"name": topic}},
        policies={"paths": [str(folder)]},
        shadow={
            "flush_interval": "300ms",
            "max_cpu_share": 1.0,
            "attribution_cpu_share": 1.0,
            "queue_batches": 10000,
        },
    )
    with running(config) as daemon:
        produce(broker.bootstrap, topic, events)
        store = ShadowStore(daemon.store.engine)  # type: ignore[union-attr]

        def production_rows() -> int:
            own = store.stats("m", now - 3_600_000, now + 600_000).get(PRODUCTION)
            return (
                0 if own is None or own.attribution is None else own.attribution["candidate"].rows
            )

        wait_until(lambda: production_rows() == chosen.size, timeout=90, describe=production_rows)
        wait_until(lambda: store.reference_attribution("m") is not None, timeout=30)
        base = f"http://{daemon.http.address}"  # type: ignore[union-attr]

        def incidents() -> list[dict[str, Any]]:
            _, listing = fetch(f"{base}/api/incidents")
            return [i for i in json.loads(listing)["incidents"] if i["rule"] == "leans"]

        (incident,) = wait_until(incidents, timeout=30)
        _, listing = fetch(f"{base}/api/evaluations?rule=leans")
        evaluated = next(e for e in json.loads(listing)["evaluations"] if e["value"] is not None)
        status, body = fetch(f"{base}/api/shadow")
        stored = store.stats("m", now - 3_600_000, now + 600_000)
        page_status, page = fetch(f"{base}/models/m")
        overview_status, overview = fetch(f"{base}/")

    assert status == 200
    entry = json.loads(body)["models"]["m"]
    assert entry["candidates"] == []
    assert set(stored) == {PRODUCTION}  # no candidate windows, no decisions

    window_importance = importance(WEIGHTS, x[chosen], background_mean(reference))
    rho = scipy_stats.spearmanr(reference_importance(reference), window_importance).statistic
    assert rho < 0.7
    shift = entry["attribution_shift"]
    assert shift["rows"] == chosen.size and shift["reference_rows"] == REFERENCE_ROWS
    assert shift["value"] == pytest.approx(rho, abs=1e-9)
    assert shift["window_top"][0] == "f3"
    assert evaluated["value"] == pytest.approx(rho, abs=1e-9)
    assert evaluated["n_current"] == chosen.size
    assert incident["severity"] == "critical" and incident["metric"] == "attribution_shift"
    # the model's console page: no candidate table, production's shift line
    assert page_status == 200
    assert "No shadow candidates." in page and "Attribution shift of production: ρ" in page
    assert overview_status == 200 and 'id="shadow"' not in overview  # no empty table
