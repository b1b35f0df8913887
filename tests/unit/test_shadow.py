"""Shadow comparison summaries, calibration, promotion decisions and the policy section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.shadow.runtime import columns_from_rows, feature_matrix
from watchkeeper.detectors.calibration import CalibrationSketch
from watchkeeper.detectors.shadow import ShadowStats, sample_mask
from watchkeeper.detectors.shadow_findings import shadow_finding
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.promotion import decide
from watchkeeper.policies.shadow import Inputs, Promotion

scores = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=60)


def _stats(cand: list[float], prod: list[float]) -> ShadowStats:
    s = ShadowStats("classification", k=1000)
    c, p = np.array(cand), np.array(prod[: len(cand)] + [0.5] * (len(cand) - len(prod)))
    s.update(c, p, [str(int(v > 0.5)) for v in c], [str(int(v > 0.5)) for v in p])
    labels = np.array([str(int(v > 0.3)) for v in p], dtype=object)
    s.update_labelled(labels, c, p, [str(int(v > 0.5)) for v in c], [str(int(v > 0.5)) for v in p])
    return s


@settings(max_examples=40, deadline=None)
@given(scores, scores, scores, scores)
def test_merge_equals_summarising_everything_at_once(
    a: list[float], b: list[float], c: list[float], d: list[float]
) -> None:
    left, right = _stats(a, b), _stats(c, d)
    whole = _stats(a + c, (b + [0.5] * len(a))[: len(a)] + (d + [0.5] * len(c))[: len(c)])
    left.merge(right)
    got, want = left.metrics(), whole.metrics()
    assert got.keys() == want.keys()
    for name in ("shadow_rows", "shadow_agreement", "shadow_accuracy_delta", "shadow_ece_delta"):
        if name in want:
            assert got[name] == pytest.approx(want[name], abs=1e-9), name
    again = ShadowStats.from_dict(left.to_dict()).metrics()
    assert again == pytest.approx(got, nan_ok=True)


def test_comparison_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    prod = rng.random(500)
    cand = np.clip(prod + rng.normal(0, 0.05, 500), 0, 1)
    y = (rng.random(500) < prod).astype(int)
    s = ShadowStats("classification", k=1000)
    pc, cc = [str(int(v >= 0.5)) for v in prod], [str(int(v >= 0.5)) for v in cand]
    s.update(cand, prod, cc, pc)
    s.update_labelled(np.array([str(v) for v in y], dtype=object), cand, prod, cc, pc)
    m = s.metrics()
    assert m["shadow_agreement"] == pytest.approx(np.mean(np.array(cc) == np.array(pc)))
    assert m["shadow_mean_abs_diff"] == pytest.approx(np.mean(np.abs(cand - prod)))
    acc = np.mean((cand >= 0.5) == y) - np.mean((prod >= 0.5) == y)
    assert m["shadow_accuracy_delta"] == pytest.approx(acc)
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(y, cand) - roc_auc_score(y, prod)
    assert m["shadow_auc_delta"] == pytest.approx(auc, abs=0.01)  # 1,000-bin AUC sketch


def test_ece_matches_guo_et_al_definition() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1, 2000)
    hit = rng.random(2000) < conf**2
    c = CalibrationSketch(15)
    c.update(conf, hit)
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
    ece = sum(
        (bins == b).sum() / conf.size * abs(hit[bins == b].mean() - conf[bins == b].mean())
        for b in range(15)
        if (bins == b).any()
    )
    assert c.ece() == pytest.approx(ece)


def test_sampling_is_by_key_and_nested() -> None:
    keys = np.random.default_rng(2).integers(0, 2**63, 20_000, dtype=np.uint64) * np.uint64(2)
    low, high = sample_mask(keys, 0.05), sample_mask(keys, 0.2)
    assert not (low & ~high).any()  # a lower rate samples a subset
    assert high.mean() == pytest.approx(0.2, abs=0.01)
    assert sample_mask(keys, 1.0).all()


def test_findings_guard_small_samples_and_name_the_candidate() -> None:
    s = _stats([0.9] * 10, [0.8] * 10)
    f = shadow_finding("fraud", "int8", s, "shadow_agreement", (0, 1), min_samples=100)
    assert (f.status, f.feature, f.value) == ("insufficient_data", "int8", None)
    f = shadow_finding("fraud", "int8", s, "shadow_agreement", (0, 1), min_samples=5)
    assert (f.status, f.value) == ("ok", 1.0)
    f = shadow_finding("fraud", "int8", s, "shadow_size_ratio", (0, 1), min_samples=5)
    assert f.status == "insufficient_data" and "baseline" in f.details["reason"]


def test_promotion_waits_for_rows_and_labels_then_decides() -> None:
    p = Promotion(
        when=["shadow_agreement >= 0.99", "shadow_accuracy_delta >= -0.005"],
        min_rows=1000,
        min_labelled_rows=200,
    )
    good = {"shadow_agreement": 0.995, "shadow_accuracy_delta": -0.001}
    assert decide(p, good, rows=999, labelled=500).decision == "pending"
    waiting = decide(p, good, rows=5000, labelled=10)
    assert waiting.decision == "pending" and "labelled" in waiting.reasons[0]
    assert decide(p, good, rows=5000, labelled=500).decision == "promote"
    bad = decide(p, {**good, "shadow_agreement": 0.9}, rows=5000, labelled=10)
    assert bad.decision == "reject"  # a failing condition decides without labels
    assert bad.checks[0]["holds"] is False and bad.checks[1]["holds"] is None


def test_categorical_inputs_are_encoded_per_distinct_value() -> None:
    rows = [{"a": 1.5, "c": "DE"}, {"a": None, "c": "XX"}, {"c": "FR"}]
    spec = Inputs(features=("a", "c", "gone"), encodings={"c": {"DE": 0, "FR": 1}}, unknown=-1)
    x = feature_matrix(spec, columns_from_rows(rows), 3)
    assert x.dtype == np.float32
    assert x[:, 1].tolist() == [0, -1, 1]
    assert x[0, 0] == 1.5 and np.isnan(x[1, 0]) and np.isnan(x[2, 0])
    assert np.isnan(x[:, 2]).all()


BASE = """\
model: fraud
rules:
  - {metric: shadow_agreement, critical: 0.98, candidates: [int8]}
shadow:
  task: classification
  inputs: {features: [a]}
  outputs: {label: label}
  candidates: [{name: int8, onnx: m.onnx}]
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("candidates: [int8]", "candidates: [int4]"), "names candidates ['int4']"),
        (("outputs: {label: label}", "outputs: {score: s}"), "needs outputs.label"),
        (
            ("metric: shadow_agreement", "metric: shadow_agrement"),
            "did you mean 'shadow_agreement'",
        ),
        (("[{name: int8, onnx: m.onnx}]", "[{name: int8, onnx: m.onnx, rate: 2}]"), "rate"),
        (("task: classification", "task: ranking"), "task"),
        (("onnx: m.onnx", "onnx: missing.onnx"), "no ONNX model file"),
    ],
)
def test_policy_shadow_errors_name_the_place(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace(*change))
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    assert message in str(info.value)


def test_promotion_conditions_must_parse(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "  promotion: {when: [shadow_agreement => 0.99]}\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    assert "not a condition" in str(info.value) and "p.yaml:" in str(info.value)
    path.write_text(BASE + "  promotion: {when: [shadow_agreement >= 1e999]}\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    assert "'1e999' in 'shadow_agreement >= 1e999' is not a finite number" in str(info.value)


def test_the_readme_shadow_example_loads() -> None:
    """The README's shadow section is a valid policy section (the docs cannot rot)."""
    import re

    import yaml
    from watchkeeper.policies.shadow import Shadow

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(shadow:\n.*?)```", readme, re.S)
    assert blocks, "the README lost its shadow example"
    for block in blocks:
        shadow = Shadow.model_validate(yaml.safe_load(block)["shadow"])
        assert shadow.promotion is not None and shadow.candidates


def test_decisions_render_a_comparison_table() -> None:
    from watchkeeper.alerts.console import render
    from watchkeeper.alerts.notification import Notification
    from watchkeeper.alerts.slack import blocks, headline
    from watchkeeper.alerts.webhook import payload

    note = Notification(
        kind="reject",
        fingerprint="abc",
        severity="info",
        summary="fraud: candidate int8 rejected: shadow_agreement = 0.9, needs >= 0.99",
        model="fraud",
        policy="fraud",
        rule="promotion",
        metric="",
        feature="int8",
        members={"shadow_agreement": 0.9},
        at_ms=1_795_000_000_000,
        opened_ms=1_795_000_000_000,
        details={
            "candidate": "int8",
            "checks": [{"condition": "shadow_agreement >= 0.99", "value": 0.9, "holds": False}],
            "table": {"shadow_agreement": 0.9, "shadow_latency_p99_ratio": 0.6},
        },
    )
    text = render(note)
    assert "⛔" in text and "FAIL" in text and "shadow_latency_p99_ratio" in text
    assert headline(note).startswith(":no_entry: REJECTED")
    assert any("Shadow comparison" in str(b) for b in blocks(note))
    body = payload(note)
    assert body["type"] == "shadow.reject" and body["decision"]["candidate"] == "int8"


PRODUCTION_ONLY = """\
model: fraud
rules:
  - {metric: attribution_shift, critical: 0.7}
shadow:
  task: regression
  inputs: {features: [a, b]}
  outputs: {score: s}
  baseline: m.onnx
  attributions: {sample_rate: 0.05}
"""


@pytest.mark.parametrize("candidates", ["", "  candidates: []\n"])
def test_a_shadow_section_may_explain_production_without_candidates(
    tmp_path: Path, candidates: str
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "p.yaml"
    path.write_text(PRODUCTION_ONLY + candidates)
    shadow = load_policy(path).policy.shadow
    assert shadow is not None and shadow.candidates == () and shadow.production_only()
    assert shadow.explained() and shadow.attributions.sample_rate == 0.05


@pytest.mark.parametrize(
    ("change", "message", "line"),
    [
        (("  baseline: m.onnx\n", ""), "needs candidates or attributions of production", 5),
        (("{sample_rate: 0.05}", "{enabled: false}"), "needs candidates or attributions", 5),
        (
            ("  attributions:", "  promotion: {when: [shadow_agreement >= 0.9]}\n  attributions:"),
            "promotion decides between candidates: the section has none",
            9,
        ),
    ],
)
def test_a_shadow_section_without_candidates_needs_production_attributions(
    tmp_path: Path, change: tuple[str, str], message: str, line: int
) -> None:
    (tmp_path / "m.onnx").write_bytes(b"")
    path = tmp_path / "p.yaml"
    path.write_text(PRODUCTION_ONLY.replace(*change))
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    text = str(info.value)
    assert message in text and "shadow" in text
    assert f"p.yaml:{line}:" in text, text
