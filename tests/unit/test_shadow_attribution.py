"""Attributions of shadow candidates, wired: real ONNX models made here, the evaluator's
sampling, bound and budget, exact merging into the stored window summaries, the policy's
``protected`` features, and the metrics in rules and promotion decisions.

The models are linear (``y = x·w + b``), whose interventional Shapley values are exactly
wᵢ (xᵢ − mean of the background's xᵢ): the stored sums are checked against that formula,
computed here independently of :mod:`shapley`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper
from prometheus_client import CollectorRegistry
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.shadow.attributing import slice_rows
from watchkeeper.daemon.shadow.checks import attribution, comparison
from watchkeeper.daemon.shadow.evaluator import ShadowEvaluator
from watchkeeper.daemon.shadow.rows import Rows
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.attribution import ATTRIBUTION_METRICS
from watchkeeper.detectors.column_batch import Column
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.shadow import ShadowStats, sample_mask
from watchkeeper.detectors.shadow_findings import shadow_finding
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.loader import load_all, load_policy
from watchkeeper.policies.promotion import decide

SIZE_MS = 60_000
FEATURES = ("f0", "f1", "f2", "f3")
WEIGHTS = np.array([3.0, 2.0, 1.0, 0.5])
BIAS = 0.25

POLICY = """\
model: m
reference: ref.json
rules:
  - {name: ranks, metric: shadow_attribution_rank_corr, critical: 0.8}
  - {name: protected, metric: shadow_protected_attribution_delta, critical: 0.05}
shadow:
  task: regression
  inputs: {features: [f0, f1, f2, f3], dtype: float64}
  outputs: {score: variable}
  baseline: prod.onnx
  sample_rate: 1.0
  protected: [f0]
  attributions: {sample_rate: 0.5, max_rows_per_window: %d, background_rows: 40}
  candidates:
    - {name: copy, onnx: copy.onnx}
    - {name: zeroed, onnx: zeroed.onnx}
  promotion:
    when: [shadow_attribution_rank_corr >= 0.9, shadow_protected_attribution_delta <= 0.05]
    min_rows: 50
"""


def linear(path: Path, weights: np.ndarray[Any, Any]) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["variable"]),
        ],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, len(weights)])],
        [helper.make_tensor_value_info("variable", TensorProto.DOUBLE, [None, 1])],
        [
            helper.make_tensor("W", TensorProto.DOUBLE, [len(weights), 1], weights.tolist()),
            helper.make_tensor("B", TensorProto.DOUBLE, [1], [BIAS]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def folder_with(tmp_path: Path, max_rows: int = 10_000, sample: bool = True) -> Path:
    linear(tmp_path / "prod.onnx", WEIGHTS)
    linear(tmp_path / "copy.onnx", WEIGHTS)
    zeroed = WEIGHTS.copy()
    zeroed[0] = 0.0  # a pruning that dropped the strongest input
    linear(tmp_path / "zeroed.onnx", zeroed)
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(300, 4)) * [1.0, 1.5, 1.0, 2.0] + [0.5, 0.0, -1.0, 0.0]
    rows = [{"features": dict(zip(FEATURES, r, strict=True))} for r in reference.tolist()]
    profile = ReferenceProfile("m", {}, 300, sample=tuple(rows) if sample else ())
    (tmp_path / "ref.json").write_bytes(orjson.dumps(profile.to_dict()))
    (tmp_path / "m.yaml").write_text(POLICY % max_rows)
    return tmp_path


def background_mean(folder: Path, n: int = 40) -> np.ndarray[Any, Any]:
    sample = ReferenceProfile.load(folder / "ref.json").sample
    picks = np.linspace(0, len(sample) - 1, n).round().astype(int)
    return np.array([[sample[i]["features"][f] for f in FEATURES] for i in picks]).mean(axis=0)


def traffic(n: int, seed: int, start_ms: int = 0) -> tuple[Rows, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 1.5, 1.0, 2.0]
    keys = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    features = {
        f: Column("numeric", x[:, j].copy(), np.zeros(n, bool), np.zeros(n, bool))
        for j, f in enumerate(FEATURES)
    }
    ts = start_ms + np.arange(n, dtype=np.int64) * 10
    rows = Rows("m", "t", 0, n, ts, keys, features, x @ WEIGHTS + BIAS, None, None, None)
    return rows, x


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.open(f"sqlite:///{tmp_path / 'wk.db'}")
    yield s
    s.close()


def evaluator_for(
    folder: Path, store: Store, settings: ShadowConfig | None = None, **kw: Any
) -> ShadowEvaluator:
    evaluator = ShadowEvaluator(
        settings or ShadowConfig(max_cpu_share=1.0, attribution_cpu_share=1.0),
        ShadowStore(store.engine),
        "g",
        SIZE_MS,
        CollectorRegistry(),
        **kw,
    )
    loaded = load_all([folder])
    assert loaded.ok, loaded.errors
    evaluator.configure({p.policy.key: p for p in loaded.policies})
    return evaluator


def stored(store: Store) -> dict[str, ShadowStats]:
    return ShadowStore(store.engine).stats("m", 0, 2**62)


def test_stored_attributions_are_the_exact_shapley_values_of_the_linear_models(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    first, x1 = traffic(300, 1)
    second, x2 = traffic(200, 2)
    evaluator.process(first)
    assert evaluator.flush()  # two flushes: the stored sums are merged
    evaluator.process(second)
    assert evaluator.flush()
    x = np.vstack([x1, x2])
    keys = np.concatenate([first.keys, second.keys])
    chosen = sample_mask(keys, 0.5)  # candidate rate 1.0 × attributions.sample_rate 0.5
    assert 150 < chosen.sum() < 350
    mean = background_mean(folder)
    stats = stored(store)
    for name, weights in (("copy", WEIGHTS), ("zeroed", np.array([0.0, 2.0, 1.0, 0.5]))):
        s = stats[name]
        assert s.attribution is not None
        production, candidate = s.attribution["production"], s.attribution["candidate"]
        assert production.rows == candidate.rows == int(chosen.sum())
        for summary, w in ((production, WEIGHTS), (candidate, weights)):
            exact = w * (x[chosen] - mean)  # the linear model's exact Shapley values
            np.testing.assert_allclose(
                summary.mean_abs(), np.abs(exact).mean(axis=0), rtol=1e-9, atol=1e-12
            )
            np.testing.assert_allclose(summary.mean(), exact.mean(axis=0), rtol=1e-9, atol=1e-12)
    spec = load_policy(folder / "m.yaml").policy.shadow
    assert spec is not None
    same = comparison(stats["copy"], spec)
    assert same["shadow_attribution_rank_corr"] == 1.0
    assert same["shadow_attribution_topk_overlap"] == 1.0
    assert same["shadow_protected_attribution_delta"] == pytest.approx(0.0, abs=1e-12)


def test_a_candidate_that_dropped_an_input_is_caught_by_rules_and_promotion(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    rows, _ = traffic(400, 3)
    evaluator.process(rows)
    assert evaluator.flush()
    policy = load_policy(folder / "m.yaml").policy
    spec = policy.shadow
    assert spec is not None and spec.promotion is not None
    stats = stored(store)
    thresholds = {n: m.threshold for n, m in ATTRIBUTION_METRICS.items()}
    values = stats["zeroed"].metrics(spec.attribution_comparison())
    # production ranks f0 first, the candidate last: ρ = 1 − 6·12 / (4·15) = −0.2
    assert values["shadow_attribution_rank_corr"] == pytest.approx(-0.2)
    assert values["shadow_attribution_rank_corr"] < thresholds["shadow_attribution_rank_corr"]
    assert values["shadow_protected_attribution_delta"] > 0.3
    details = attribution(stats["zeroed"], spec)
    assert details["protected"]["feature"] == "f0"
    assert details["protected"]["candidate_share"] == pytest.approx(0.0, abs=1e-12)
    assert details["protected"]["change"] < 0
    assert details["production_top"][0] == "f0" and "f0" not in details["candidate_top"][:3]

    # the policy's rules: one finding per candidate, the zeroed one over the threshold
    for metric, bad in (
        ("shadow_attribution_rank_corr", lambda v: v < 0.8),
        ("shadow_protected_attribution_delta", lambda v: v > 0.05),
    ):
        for name, caught in (("copy", False), ("zeroed", True)):
            finding = shadow_finding(
                "m", name, stats[name], metric, (0, SIZE_MS), 500, spec.attribution_comparison()
            )
            assert finding.status == "ok" and finding.value is not None
            assert bad(finding.value) is caught, (metric, name, finding.value)
            assert finding.n_current == stats[name].attribution["production"].rows  # type: ignore[index]

    # promotion: the copy is promoted, the zeroed candidate rejected by both conditions
    verdicts = {}
    for name in ("copy", "zeroed"):
        s = stats[name]
        verdicts[name] = decide(spec.promotion, s.metrics(spec.attribution_comparison()), s.rows, 0)
    assert verdicts["copy"].decision == "promote"
    assert verdicts["zeroed"].decision == "reject"
    assert [r.split()[0] for r in verdicts["zeroed"].reasons] == [
        "shadow_attribution_rank_corr",
        "shadow_protected_attribution_delta",
    ]


def test_rows_per_window_are_bounded(tmp_path: Path, store: Store) -> None:
    folder = folder_with(tmp_path, max_rows=25)
    evaluator = evaluator_for(folder, store)
    # three windows of rows, offered in two batches each (the bound is per window)
    for seed, start in ((4, 0), (5, 0), (6, SIZE_MS), (7, SIZE_MS), (8, 2 * SIZE_MS)):
        rows, _ = traffic(200, seed, start)
        rows.ts_ms = start + np.arange(200, dtype=np.int64)  # all in the window
        evaluator.process(rows)
    assert evaluator.flush()
    store_ = ShadowStore(store.engine)
    for start in (0, SIZE_MS, 2 * SIZE_MS):
        s = store_.stats("m", start, start + SIZE_MS)["copy"]
        assert s.attribution is not None
        assert s.attribution["production"].rows == 25
        assert s.rows > 25  # every row is still compared; only attribution is bounded


def costing(evaluator: ShadowEvaluator, cpu: list[float], per_model_row: float) -> None:
    """An injected CPU clock: each model row an explainer runs costs ``per_model_row``
    seconds of ``cpu[0]`` (the evaluator was built with ``cpu_clock=lambda: cpu[0]``)."""
    ex = evaluator._models["m"].explainers
    assert ex is not None and ex.production is not None
    for explainer in (ex.production, *ex.per_candidate.values()):

        def predict(z: np.ndarray[Any, Any], inner: Any = explainer.predict) -> Any:
            cpu[0] += len(z) * per_model_row
            return inner(z)

        explainer.predict = predict


def test_over_the_cpu_budget_rows_are_skipped_and_counted(tmp_path: Path, store: Store) -> None:
    folder = folder_with(tmp_path)
    now, cpu = [0.0], [0.0]
    evaluator = evaluator_for(
        folder,
        store,
        ShadowConfig(max_cpu_share=0.01, attribution_cpu_share=0.01),  # 1e-4 s per s
        monotonic=lambda: now[0],
        cpu_clock=lambda: cpu[0],
    )
    costing(evaluator, cpu, 1e-6)  # ≈ 0.56 ms per explained row and model
    ex = evaluator._models["m"].explainers
    assert ex is not None and ex.production is not None
    step = slice_rows(ex.production)
    first, _ = traffic(300, 9)
    chosen = int(sample_mask(first.keys, 0.5).sum())
    assert chosen > step
    evaluator.process(first)  # the saved credit (0.2 ms) lets one slice through …
    second, _ = traffic(300, 10)
    evaluator.process(second)  # … which overdrew it: with no time passing, none of these
    assert evaluator.flush()
    s = stored(store)["copy"]
    assert s.attribution is not None
    assert s.attribution["production"].rows == step
    assert s.attribution_skipped == chosen - step + int(sample_mask(second.keys, 0.5).sum())
    registry = evaluator.metrics.attribution_skipped
    assert registry.labels("m", "copy")._value.get() == s.attribution_skipped
    # time passes: the budget is paid back and attribution goes on
    now[0] += 1e6
    third, _ = traffic(300, 11)
    evaluator.process(third)
    assert evaluator.flush()
    more = stored(store)["copy"]
    assert more.attribution is not None
    assert more.attribution["production"].rows > s.attribution["production"].rows
    assert more.metrics()["shadow_rows"] == 900


def test_the_cpu_budget_holds_slice_by_slice_in_thread_cpu_time(
    tmp_path: Path, store: Store
) -> None:
    """Over a long run of batches, the CPU attribution spends (an injected per-thread
    clock: 1 µs per model row) stays within rate × elapsed + the saved credit + one
    slice, however many rows each batch brings; every chosen row is attributed or
    skipped and counted; the CPU counter counts exactly what the budget was charged."""
    folder = folder_with(tmp_path)
    now, cpu = [0.0], [0.0]
    settings = ShadowConfig(max_cpu_share=0.5, attribution_cpu_share=0.2)  # 0.1 s per s
    evaluator = evaluator_for(
        folder, store, settings, monotonic=lambda: now[0], cpu_clock=lambda: cpu[0]
    )
    costing(evaluator, cpu, 1e-6)
    ex = evaluator._models["m"].explainers
    assert ex is not None and ex.production is not None
    pauses: list[float] = []
    evaluator.attributor.pause = pauses.append
    budget = evaluator.attributor.budget
    rate, saved = budget.rate, budget.capacity
    # one slice: production and both candidates on slice_rows rows, and f(x) of each
    one_slice = 3 * slice_rows(ex.production) * ex.production.model_rows_per_row() * 1e-6
    chosen = 0
    for seed in range(40):
        now[0] += 0.5
        rows, _ = traffic(300, 100 + seed, seed * SIZE_MS)
        chosen += int(sample_mask(rows.keys, 0.5).sum())
        evaluator.process(rows)
        assert cpu[0] <= saved + rate * now[0] + one_slice
    assert cpu[0] >= rate * now[0] * 0.5  # and the budget is used, not left idle
    assert evaluator.flush()
    stats = stored(store)
    for name in ("copy", "zeroed"):
        s = stats[name]
        assert s.attribution is not None
        assert s.attribution["candidate"].rows == s.attribution["production"].rows
        assert s.attribution["candidate"].rows + s.attribution_skipped == chosen
        assert 0 < s.attribution_skipped < chosen
    seconds = evaluator.metrics.attribution_seconds
    sides = ("production", *ex.per_candidate)
    charged = sum(seconds.labels("m", side)._value.get() for side in sides)
    assert charged == pytest.approx(cpu[0])
    # a pause after each model's part of each slice (the running worker waits there)
    attributed = stats["copy"].attribution
    assert attributed is not None
    assert len(pauses) % 3 == 0
    assert len(pauses) // 3 >= attributed["candidate"].rows / slice_rows(ex.production)


def test_without_a_reference_sample_the_first_live_rows_are_the_background(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path, sample=False)
    evaluator = evaluator_for(folder, store)
    assert evaluator.explainers()["m"]["ready"] is False
    first, x1 = traffic(30, 12)
    evaluator.process(first)  # 30 of the 40 background rows
    assert evaluator.explainers()["m"]["ready"] is False
    second, x2 = traffic(30, 13)
    evaluator.process(second)  # the background is complete: these are not attributed yet
    described = evaluator.explainers()["m"]
    assert described["ready"] and described["background"] == "live"
    assert described["background_rows"] == 40 and described["method"] == "exact"
    third, x3 = traffic(200, 14)
    evaluator.process(third)
    assert evaluator.flush()
    mean = np.vstack([x1, x2])[:40].mean(axis=0)
    s = stored(store)["copy"]
    assert s.attribution is not None
    chosen = sample_mask(third.keys, 0.5)
    exact = WEIGHTS * (x3[chosen] - mean)
    np.testing.assert_allclose(
        s.attribution["production"].mean_abs(), np.abs(exact).mean(axis=0), rtol=1e-9
    )


def test_summaries_without_attributions_still_load_and_merge(tmp_path: Path, store: Store) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    rows, _ = traffic(200, 15)
    evaluator.process(rows)
    assert evaluator.flush()
    s = stored(store)["copy"]
    blob = s.to_dict()
    old = {k: v for k, v in blob.items() if not k.startswith("attribution")}
    legacy = ShadowStats.from_dict(old)  # written before attributions existed
    assert legacy.attribution is None and legacy.attribution_skipped == 0
    assert "shadow_attribution_rank_corr" not in legacy.metrics()
    legacy.merge(ShadowStats.from_dict(blob))
    assert legacy.attribution is not None
    assert legacy.attribution["candidate"].to_dict() == s.attribution["candidate"].to_dict()  # type: ignore[index]


def test_protected_features_must_be_inputs(tmp_path: Path) -> None:
    folder = folder_with(tmp_path)
    path = folder / "m.yaml"
    path.write_text(path.read_text().replace("protected: [f0]", "protected: [f0, gender]"))
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    text = str(info.value)
    assert "m.yaml:12:19:" in text and "shadow.protected[1]" in text
    assert "'gender' is not an input feature (inputs.features: f0, f1, f2, f3)" in text


def test_attribution_metrics_are_not_label_based() -> None:
    from watchkeeper.detectors.shadow import label_based
    from watchkeeper.policies.shadow import Promotion

    assert not label_based("shadow_protected_attribution_delta")
    assert label_based("shadow_accuracy_delta")
    # no labelled rows are needed for an attribution condition
    p = Promotion(when=["shadow_protected_attribution_delta <= 0.05"], min_rows=10)
    assert decide(p, {"shadow_protected_attribution_delta": 0.01}, 20, 0).decision == "promote"


def linear32(path: Path, weights: np.ndarray[Any, Any]) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["variable"]),
        ],
        "linear32",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, len(weights)])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        [
            helper.make_tensor("W", TensorProto.FLOAT, [len(weights), 1], weights.tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, [1], [BIAS]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_compress_prints_the_attribution_columns_for_each_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from watchkeeper.daemon.cli.main import main

    linear32(tmp_path / "m.onnx", WEIGHTS)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4))
    (tmp_path / "rows.jsonl").write_text(
        "\n".join(json.dumps({"features": dict(zip(FEATURES, r, strict=True))}) for r in x.tolist())
    )
    args = ["compress", str(tmp_path / "m.onnx"), "--rows", str(tmp_path / "rows.jsonl")]
    args += ["--features", ",".join(FEATURES), "--variants", "int8-dynamic,fp16"]
    assert main([*args, "--protected", "f3", "--attribution-rows", "80", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    variants = {v["variant"]: v for v in report["variants"]}
    assert variants["fp32"]["attribution_rank_corr"] is None  # the yardstick itself
    for name in ("int8-dynamic", "fp16"):
        v = variants[name]
        # a faithful compression of a linear model ranks the inputs alike
        assert v["attribution_rank_corr"] == 1.0 and v["attribution_topk_overlap"] == 1.0
        assert 0 <= v["protected_attribution_delta"] < 0.01
        assert v["attribution"]["rows"] == 80 and v["attribution"]["protected"]["feature"] == "f3"
    snippet = (tmp_path / "m.shadow.snippet.yaml").read_text()
    assert "protected:\n  - f3" in snippet and "shadow_protected_attribution_delta" in snippet
    assert main([*args, "--protected", "f3", "--attribution-rows", "80"]) == 0
    printed = capsys.readouterr()
    assert "attributions vs fp32 (80 rows, background 50, protected: f3)" in printed.out
    assert "rank ρ" in printed.out and "protected Δ share" in printed.out
    assert "overlap" in printed.out  # the three columns, each variant a row
    rows = [line for line in printed.out.splitlines() if " f3) │" in line]  # the protected cell
    assert [line.split("│")[1].strip() for line in rows] == ["int8-dynamic", "fp16"]
    assert all(line.split("│")[2].strip() == "1.000" for line in rows)  # rank ρ
    assert all(line.split("│")[3].strip() == "1.00" for line in rows)  # top-k overlap
    assert "1.000" in printed.out  # the ρ column
    with pytest.raises(SystemExit, match=r"protected features \['gender'\] are not inputs"):
        main([*args, "--protected", "gender"])


def test_status_api_and_slack_show_the_attribution_columns(tmp_path: Path, store: Store) -> None:
    from rich.console import Console
    from watchkeeper.alerts.notification import Notification
    from watchkeeper.alerts.slack import blocks
    from watchkeeper.daemon.cli.shadow import print_shadow
    from watchkeeper.daemon.shadow.checks import shadow_table

    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    rows, _ = traffic(400, 16, start_ms=1_800_000_000_000)
    evaluator.process(rows)
    assert evaluator.flush()
    policy = load_policy(folder / "m.yaml").policy
    body = shadow_table(
        ShadowStore(store.engine), {"m": policy}, 1_800_000_000_000 + SIZE_MS, SIZE_MS
    )
    entry = body["models"]["m"]
    assert entry["protected"] == ["f0"]
    by_name = {r["candidate"]: r for r in entry["candidates"]}
    zeroed = by_name["zeroed"]
    assert zeroed["comparison"]["shadow_attribution_rank_corr"] == pytest.approx(-0.2)
    assert zeroed["comparison"]["shadow_attributed_rows"] == zeroed["attribution"]["rows"] > 30
    assert zeroed["attribution"]["protected"]["feature"] == "f0"
    assert zeroed["attribution"]["skipped"] == 0
    assert zeroed["info"]["attributions"] == "on, background from the reference"
    orjson.dumps(body)  # the API body serialises as is

    console = Console(record=True, width=200)
    print_shadow(console, body)
    text = console.export_text()
    assert "attr ρ" in text and "top-k" in text and "prot Δ" in text
    assert "-0.200" in text and "-0." in text.split("zeroed")[1] and "f0" in text

    s = stored(store)["zeroed"]
    spec = policy.shadow
    assert spec is not None
    note = Notification(
        kind="reject",
        fingerprint="x",
        severity="info",
        summary="m: candidate zeroed rejected",
        model="m",
        policy="m",
        rule="promotion",
        metric="",
        feature="zeroed",
        members={},
        at_ms=0,
        opened_ms=0,
        details={
            "candidate": "zeroed",
            "checks": [],
            "table": comparison(s, spec),
            "attribution": attribution(s, spec),
        },
    )
    slack = str(blocks(note))
    assert "shadow_attribution_rank_corr" in slack and "shadow_protected_attribution_delta" in slack
    assert "protected f0: share of attribution" in slack


def test_scores_only_inference_equals_predicts_scores(tmp_path: Path) -> None:
    """Attributions run the score output alone; it must be the score ``predict`` gives."""
    from watchkeeper.daemon.shadow.runtime import OnnxModel
    from watchkeeper.policies.shadow import Inputs, Outputs

    w = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        "softmax",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3]),
        ],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 3], w.ravel().tolist())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "c.onnx")
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    for outputs in (
        Outputs(label="label", probabilities="probabilities"),
        Outputs(label="label", probabilities="probabilities", positive_class=2),
    ):
        m = OnnxModel(
            "m",
            "c",
            tmp_path / "c.onnx",
            Inputs(features=FEATURES),
            outputs,
            "classification",
            ShadowConfig(),
        )
        np.testing.assert_array_equal(m.scores(x), m.predict(x).scores)
    linear(tmp_path / "r.onnx", WEIGHTS)
    r = OnnxModel(
        "m",
        "r",
        tmp_path / "r.onnx",
        Inputs(features=FEATURES, dtype="float64"),
        Outputs(score="variable"),
        "regression",
        ShadowConfig(),
    )
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(r.scores(x64), r.predict(x64).scores)
    only_label = OnnxModel(
        "m",
        "c",
        tmp_path / "c.onnx",
        Inputs(features=FEATURES),
        Outputs(label="label"),
        "classification",
        ShadowConfig(),
    )
    assert np.isnan(only_label.scores(x)).all()


def test_while_the_queue_is_backed_up_attribution_yields_to_the_candidates(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(
        folder, store, ShadowConfig(max_cpu_share=1.0, attribution_cpu_share=1.0, queue_batches=4)
    )
    waiting, _ = traffic(10, 17)
    for _ in range(3):  # more than half of the 4 queue places taken
        evaluator._queue.put_nowait(waiting)
    rows, _ = traffic(300, 18)
    evaluator.process(rows)
    assert evaluator.flush()
    s = stored(store)["copy"]
    assert s.rows == 300  # the candidate was evaluated
    assert s.attribution is None
    assert s.attribution_skipped == int(sample_mask(rows.keys, 0.5).sum())


def test_a_queue_backing_up_during_a_batch_stops_its_attributions_at_the_slice(
    tmp_path: Path, store: Store
) -> None:
    """The queue is asked before every slice, not only at the batch's start: batches
    offered while the worker explains (here: during its first pause) stop the rest."""
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(
        folder, store, ShadowConfig(max_cpu_share=1.0, attribution_cpu_share=1.0, queue_batches=4)
    )
    waiting, _ = traffic(10, 17)

    def offered_meanwhile(wall_s: float) -> None:
        while evaluator._queue.qsize() < 3:
            evaluator._queue.put_nowait(waiting)

    evaluator.attributor.pause = offered_meanwhile
    rows, _ = traffic(300, 18)
    chosen = int(sample_mask(rows.keys, 0.5).sum())
    evaluator.process(rows)
    assert evaluator.flush()
    s = stored(store)["copy"]
    ex = evaluator._models["m"].explainers
    assert ex is not None and ex.production is not None
    step = slice_rows(ex.production)
    assert s.rows == 300 and s.attribution is not None
    assert s.attribution["candidate"].rows == step < chosen
    assert s.attribution_skipped == chosen - step
