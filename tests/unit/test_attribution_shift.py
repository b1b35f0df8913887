"""``attribution_shift`` wired: production's attributions of the window's rows against
those of its reference's rows, through the shadow worker, the store, the checker's rules
and ``/api/shadow``.

The production model is linear (``y = x·w + b``), whose interventional Shapley values
are exactly wᵢ (xᵢ − mean of the background's xᵢ); both sides are checked against that
formula, computed here independently. A window whose feature variances are swapped
reorders the features' importance (|wᵢ|·σᵢ), which is what the metric must catch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from scipy.stats import spearmanr
from watchkeeper.daemon.config_shadow import ShadowConfig
from watchkeeper.daemon.shadow.attributing import REFERENCE_CHUNK
from watchkeeper.daemon.shadow.checks import ShadowChecks, shadow_table
from watchkeeper.daemon.shadow.evaluator import ShadowEvaluator
from watchkeeper.daemon.shadow.rows import Rows
from watchkeeper.daemon.shadow.store import PRODUCTION, ShadowStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.attribution import ATTRIBUTION_METRICS, AttributionSummary
from watchkeeper.detectors.column_batch import Column
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.registry import METRICS
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.loader import load_all, load_policy

from tests.unit.test_shadow_attribution import evaluator_for, linear

SIZE_MS = 60_000
FEATURES = ("f0", "f1", "f2", "f3")
WEIGHTS = np.array([3.0, 2.0, 1.0, 0.5])
BIAS = 0.25
SCALE = np.array([1.0, 1.0, 1.0, 1.0])  # importance |wᵢ|·σᵢ: 3 > 2 > 1 > 0.5
SWAPPED = np.array([0.1, 0.5, 3.0, 10.0])  # importance 0.3 < 1 < 3 < 5: reversed
BACKGROUND, REFERENCE_ROWS = 40, 100

POLICY = """\
model: m
reference: ref.json
min_samples: 10
rules:
  - {name: leans, metric: attribution_shift, critical: 0.7}
shadow:
  task: regression
  inputs: {features: [f0, f1, f2, f3], dtype: float64}
  outputs: {score: variable}
  baseline: prod.onnx
  sample_rate: 1.0
  attributions: {sample_rate: 0.5, background_rows: %d, reference_rows: %d, min_rows: 30}
  candidates:
    - {name: copy, onnx: copy.onnx}
"""


def folder_with(tmp_path: Path) -> Path:
    linear(tmp_path / "prod.onnx", WEIGHTS)
    linear(tmp_path / "copy.onnx", WEIGHTS)
    rng = np.random.default_rng(21)
    reference = rng.normal(size=(300, 4)) * SCALE
    rows = [{"features": dict(zip(FEATURES, r, strict=True))} for r in reference.tolist()]
    profile = ReferenceProfile("m", {}, 300, sample=tuple(rows))
    (tmp_path / "ref.json").write_bytes(orjson.dumps(profile.to_dict()))
    (tmp_path / "m.yaml").write_text(POLICY % (BACKGROUND, REFERENCE_ROWS))
    return tmp_path


def split(folder: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(background, reference rows), chosen here as the docs say: evenly spaced picks for
    the background, evenly spaced picks of the remaining rows for the reference side."""
    sample = ReferenceProfile.load(folder / "ref.json").sample
    x = np.array([[r["features"][f] for f in FEATURES] for r in sample])
    picks = np.unique(np.linspace(0, len(x) - 1, BACKGROUND).round().astype(int))
    rest = np.setdiff1d(np.arange(len(x)), picks)
    at = np.linspace(0, len(rest) - 1, REFERENCE_ROWS).round().astype(int)
    return x[picks], x[rest[at]]


def traffic(n: int, seed: int, scale: np.ndarray[Any, Any], start_ms: int = 0) -> Rows:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * scale
    keys = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    features = {
        f: Column("numeric", x[:, j].copy(), np.zeros(n, bool), np.zeros(n, bool))
        for j, f in enumerate(FEATURES)
    }
    ts = start_ms + np.arange(n, dtype=np.int64) % SIZE_MS
    return Rows("m", "t", 0, n, ts, keys, features, x @ WEIGHTS + BIAS, None, None, None)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.open(f"sqlite:///{tmp_path / 'wk.db'}")
    yield s
    s.close()


def run_window(evaluator: ShadowEvaluator, scale: np.ndarray[Any, Any], start_ms: int) -> None:
    """Enough batches for the reference summary to complete and ≥ 30 attributed rows."""
    for seed in range(REFERENCE_ROWS // REFERENCE_CHUNK + 2):
        evaluator.process(traffic(60, 1000 * start_ms // SIZE_MS + seed, scale, start_ms))
    assert evaluator.flush()


def exact(x: np.ndarray[Any, Any], background: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any] = WEIGHTS * (x - background.mean(axis=0))
    return out


def test_attribution_shift_is_a_shadow_metric_a_rule_can_name() -> None:
    info = METRICS["attribution_shift"]
    assert info.scope == "shadow" and info.direction == "lower_is_worse"
    assert info.factory is None


def test_the_reference_summary_is_exact_disjoint_from_the_background_and_stored(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    shadow = ShadowStore(store.engine)
    run_window(evaluator, SCALE, 0)
    row = shadow.reference_attribution("m")
    assert row is not None
    summary = AttributionSummary.from_dict(row["summary"])
    background, reference = split(folder)
    assert not (reference[:, None, :] == background[None, :, :]).all(axis=2).any()  # disjoint
    phi = exact(reference, background)
    assert summary.rows == REFERENCE_ROWS
    np.testing.assert_allclose(summary.mean_abs(), np.abs(phi).mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(summary.mean(), phi.mean(axis=0), rtol=1e-9, atol=1e-12)
    # the candidate list does not show production's own entry
    assert [r["candidate"] for r in shadow.candidates("m")] == ["copy"]


def test_a_reload_keeps_the_reference_summary_a_changed_reference_recomputes_it(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    run_window(evaluator, SCALE, 0)
    shadow = ShadowStore(store.engine)
    first = shadow.reference_attribution("m")
    assert first is not None
    # a fresh evaluator (a restart) with the same reference reads it back, computes nothing
    again = evaluator_for(folder, store)
    progress = again.attributor.references["m"]
    assert progress.done and progress.identity == first["identity"]
    assert progress.summary.to_dict() == first["summary"]
    # another reference sample: another identity, computed afresh
    rng = np.random.default_rng(99)
    rows = [
        {"features": dict(zip(FEATURES, r, strict=True))}
        for r in (rng.normal(size=(300, 4)) * SWAPPED).tolist()
    ]
    profile = ReferenceProfile("m", {}, 300, sample=tuple(rows))
    (folder / "ref.json").write_bytes(orjson.dumps(profile.to_dict()))
    changed = evaluator_for(folder, store)
    assert "m" not in changed.attributor.references or not changed.attributor.references["m"].done
    # until it is, no window is compared with the reference no longer in force
    pending = shadow.reference_attribution("m")
    assert pending is not None and pending["summary"] is None
    (finding,) = findings_at(folder, store, 0)
    assert finding.status == "insufficient_data"
    assert finding.details["reason"] == "the reference changed: its attributions are being computed"
    run_window(changed, SCALE, SIZE_MS)
    second = shadow.reference_attribution("m")
    assert second is not None and second["identity"] != first["identity"]


def findings_at(folder: Path, store: Store, start_ms: int) -> list[Any]:
    policy = load_policy(folder / "m.yaml").policy
    checks = ShadowChecks(ShadowStore(store.engine), SIZE_MS, lambda note, targets: [])
    return checks.findings(policy, start_ms, start_ms + SIZE_MS)["leans"]


def test_same_distribution_reads_one_and_a_swapped_one_fires_the_rule(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    run_window(evaluator, SCALE, 0)  # window 0: like the reference
    run_window(evaluator, SWAPPED, SIZE_MS)  # window 1: feature variances swapped
    policy = load_policy(folder / "m.yaml").policy
    engine = PolicyEngine(policy)
    background, reference = split(folder)
    reference_importance = np.abs(exact(reference, background)).mean(axis=0)
    stored = ShadowStore(store.engine)

    (steady,) = findings_at(folder, store, 0)
    assert steady.status == "ok" and steady.feature is None
    assert steady.value == pytest.approx(1.0)
    assert steady.n_current >= 30 and steady.n_reference == REFERENCE_ROWS
    _, events = engine.step({"leans": [steady]}, SIZE_MS)
    assert not [e for e in events if e.kind == "opened"]

    (shifted,) = findings_at(folder, store, SIZE_MS)
    # the window's side, independently: exact attributions of the rows production explained
    window = stored.stats("m", SIZE_MS, 2 * SIZE_MS)[PRODUCTION].attribution
    assert window is not None
    expected = spearmanr(reference_importance, window["production"].mean_abs()).statistic
    assert shifted.value == pytest.approx(expected) and shifted.value == pytest.approx(-1.0)
    assert shifted.value < ATTRIBUTION_METRICS["attribution_shift"].threshold
    assert shifted.details["reference_top"][0] == "f0"
    assert shifted.details["window_top"][0] == "f3"
    _, events = engine.step({"leans": [shifted]}, 2 * SIZE_MS)
    opened = [e for e in events if e.kind == "opened"]
    assert len(opened) == 1 and opened[0].incident.metric == "attribution_shift"


def test_the_window_side_equals_the_exact_attributions_of_its_rows(
    tmp_path: Path, store: Store
) -> None:
    from watchkeeper.detectors.shadow import sample_mask

    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    batches = [traffic(60, 7000 + s, SWAPPED) for s in range(3)]
    for rows in batches:
        evaluator.process(rows)
    assert evaluator.flush()
    background, _ = split(folder)
    x = np.vstack([np.column_stack([r.features[f].values for f in FEATURES]) for r in batches])
    keys = np.concatenate([r.keys for r in batches])
    chosen = sample_mask(keys, 0.5)
    window = ShadowStore(store.engine).stats("m", 0, SIZE_MS)[PRODUCTION].attribution
    assert window is not None
    summary = window["production"]
    assert summary.rows == int(chosen.sum())
    phi = exact(x[chosen], background)
    np.testing.assert_allclose(summary.mean_abs(), np.abs(phi).mean(axis=0), rtol=1e-9)


def test_too_few_rows_give_no_finding_with_the_reason(tmp_path: Path, store: Store) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    (none,) = findings_at(folder, store, 0)
    assert none.status == "insufficient_data" and none.value is None
    assert "reference attributions not computed" in none.details["reason"]
    run_window(evaluator, SCALE, 0)
    evaluator.process(traffic(20, 5, SCALE, SIZE_MS))  # ~10 attributed rows < min_rows 30
    assert evaluator.flush()
    (few,) = findings_at(folder, store, SIZE_MS)
    assert few.status == "insufficient_data" and few.value is None
    assert "< min_rows 30" in few.details["reason"]
    _, events = PolicyEngine(load_policy(folder / "m.yaml").policy).step({"leans": [few]}, 1)
    assert not [e for e in events if e.kind == "opened"]


def test_api_shadow_shows_it(tmp_path: Path, store: Store) -> None:
    folder = folder_with(tmp_path)
    evaluator = evaluator_for(folder, store)
    run_window(evaluator, SWAPPED, 0)
    policies = {p.policy.key: p.policy for p in load_all([folder]).policies}
    body = shadow_table(ShadowStore(store.engine), policies, SIZE_MS - 1, SIZE_MS)
    shift = body["models"]["m"]["attribution_shift"]
    assert shift["value"] == pytest.approx(-1.0)
    assert shift["reference_rows"] == REFERENCE_ROWS and shift["rows"] >= 30
    from rich.console import Console
    from watchkeeper.daemon.cli.shadow import print_shadow

    console = Console(record=True, width=200)
    print_shadow(console, body)
    assert "attribution shift of production: ρ -1.000" in console.export_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("  baseline: prod.onnx\n", "shadow.baseline (production's own ONNX file) is not given"),
        ("  sample_rate: 1.0\n", None),
    ],
)
def test_a_rule_on_it_needs_production_s_model_file(
    tmp_path: Path, change: str, message: str | None
) -> None:
    folder = folder_with(tmp_path)
    path = folder / "m.yaml"
    text = path.read_text()
    if message is None:  # attributions switched off instead
        path.write_text(text.replace("attributions: {", "attributions: {enabled: false, "))
        message = "shadow.attributions.enabled is false"
    else:
        path.write_text(text.replace(change, ""))
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path)
    text = str(info.value)
    assert "m.yaml:5:" in text and "rules[0].metric" in text and message in text


def test_a_rule_on_it_takes_no_candidates(tmp_path: Path) -> None:
    folder = folder_with(tmp_path)
    path = folder / "m.yaml"
    path.write_text(
        path.read_text().replace("critical: 0.7}", "critical: 0.7, candidates: [copy]}")
    )
    with pytest.raises(InvalidDocumentError, match="takes no `candidates`"):
        load_policy(path)


def test_the_reference_is_explained_chunk_by_chunk_within_the_budget(
    tmp_path: Path, store: Store
) -> None:
    folder = folder_with(tmp_path)
    now = [0.0]
    evaluator = ShadowEvaluator(
        ShadowConfig(max_cpu_share=0.01, attribution_cpu_share=0.01),  # 1e-4 CPU s per s
        ShadowStore(store.engine),
        "g",
        SIZE_MS,
        CollectorRegistry(),
        monotonic=lambda: now[0],
    )
    loaded = load_all([folder])
    evaluator.configure({p.policy.key: p for p in loaded.policies})
    evaluator.process(traffic(60, 1, SCALE))  # overdraws the saved credit (0.2 ms)
    progress = evaluator.attributor.references.get("m")
    at = 0 if progress is None else progress.next_row
    assert at <= REFERENCE_CHUNK  # at most one chunk ran before the budget was spent
    assert ShadowStore(store.engine).reference_attribution("m") is None

    def unexplained(seed: int) -> Rows:
        rows = traffic(10, seed, SCALE)
        rows.keys |= np.uint64(2**63)  # none chosen for attribution: the reference's turn
        return rows

    evaluator.process(unexplained(2))  # no time passed: still spent
    assert evaluator.attributor.references["m"].next_row == at
    for seed in range(3, 3 + REFERENCE_ROWS // REFERENCE_CHUNK + 1):
        now[0] += 1e3  # paid back (up to its 2 s burst): at least a chunk more
        evaluator.process(unexplained(seed))
        progress = evaluator.attributor.references["m"]
        assert progress.next_row > at or progress.done
        at = progress.next_row
        if progress.done:
            break
    assert progress.done and progress.summary.rows == REFERENCE_ROWS
    assert ShadowStore(store.engine).reference_attribution("m") is not None
    seconds = evaluator.metrics.attribution_seconds.labels("m", "reference")._value.get()
    assert seconds > 0


ALONE = POLICY.replace("  sample_rate: 1.0\n", "").replace(
    "  candidates:\n    - {name: copy, onnx: copy.onnx}\n", ""
)


def alone(tmp_path: Path, attributions: str = "") -> Path:
    """The same model and reference, a shadow section without candidates."""
    folder = folder_with(tmp_path)
    text = ALONE
    if attributions:
        text = text.replace("min_rows: 30}", f"min_rows: 30, {attributions}}}")
    (folder / "m.yaml").write_text(text % (BACKGROUND, REFERENCE_ROWS))
    return folder


def test_without_candidates_production_alone_is_explained_and_the_rule_fires(
    tmp_path: Path, store: Store
) -> None:
    from rich.console import Console
    from watchkeeper.daemon.cli.shadow import print_shadow
    from watchkeeper.detectors.shadow import sample_mask

    folder = alone(tmp_path)
    evaluator = evaluator_for(folder, store)
    setup = evaluator._models["m"]
    assert setup.production_only() and setup.candidates == {} and setup.max_rate == 0.5
    batches = [traffic(60, 100 + s, SCALE, 0) for s in range(REFERENCE_ROWS // REFERENCE_CHUNK + 2)]
    for rows in batches:
        evaluator.process(rows)
    assert evaluator.flush()
    run_window(evaluator, SWAPPED, SIZE_MS)
    stored = ShadowStore(store.engine)
    assert set(stored.stats("m", 0, 2 * SIZE_MS)) == {PRODUCTION}

    # window 0: exactly production's attributions of the rows sampled at the rate
    background, reference = split(folder)
    x = np.vstack([np.column_stack([r.features[f].values for f in FEATURES]) for r in batches])
    # the rows sampled at the rate, the first max_rows_per_window (200) of them in order
    chosen = np.flatnonzero(sample_mask(np.concatenate([r.keys for r in batches]), 0.5))
    assert chosen.size > 200
    chosen = chosen[:200]
    window = stored.stats("m", 0, SIZE_MS)[PRODUCTION].attribution
    assert window is not None and window["production"].rows == chosen.size
    np.testing.assert_allclose(
        window["production"].mean_abs(),
        np.abs(exact(x[chosen], background)).mean(axis=0),
        rtol=1e-9,
    )
    (steady,) = findings_at(folder, store, 0)
    assert steady.status == "ok" and steady.value == pytest.approx(1.0)
    (shifted,) = findings_at(folder, store, SIZE_MS)
    reference_importance = np.abs(exact(reference, background)).mean(axis=0)
    moved = stored.stats("m", SIZE_MS, 2 * SIZE_MS)[PRODUCTION].attribution
    assert moved is not None
    expected = spearmanr(reference_importance, moved["production"].mean_abs()).statistic
    assert shifted.value == pytest.approx(expected) and shifted.value < 0.7
    assert shifted.details["window_top"][0] == "f3"
    policy = load_policy(folder / "m.yaml").policy
    _, events = PolicyEngine(policy).step({"leans": [shifted]}, 2 * SIZE_MS)
    assert [e.incident.metric for e in events if e.kind == "opened"] == ["attribution_shift"]

    # nothing to decide, no candidate rows in /api/shadow, status prints the shift alone
    checks = ShadowChecks(stored, SIZE_MS, lambda note, targets: [])
    assert checks.decisions(policy, 2 * SIZE_MS) == []
    body = shadow_table(stored, {policy.key: policy}, 2 * SIZE_MS - 1, SIZE_MS)
    assert body["models"]["m"]["candidates"] == []
    # the table's span (the policy's window) holds both windows: their merged summary
    both = stored.stats("m", 0, 2 * SIZE_MS)[PRODUCTION].attribution
    assert both is not None and both["production"].rows == 400
    merged = spearmanr(reference_importance, both["production"].mean_abs()).statistic
    assert body["models"]["m"]["attribution_shift"]["value"] == pytest.approx(merged)
    console = Console(record=True, width=200)
    print_shadow(console, body)
    text = console.export_text()
    assert "no candidates" in text and f"attribution shift of production: ρ {merged:.3f}" in text
    attributed = evaluator.metrics.attributed.labels("m", PRODUCTION)._value.get()
    assert attributed == chosen.size + window_rows(stored, SIZE_MS)


def window_rows(stored: ShadowStore, start_ms: int) -> int:
    s = stored.stats("m", start_ms, start_ms + SIZE_MS)[PRODUCTION].attribution
    assert s is not None
    return int(s["production"].rows)


def test_without_candidates_the_window_bound_and_the_budget_hold(
    tmp_path: Path, store: Store
) -> None:
    folder = alone(tmp_path, "max_rows_per_window: 25")
    evaluator = evaluator_for(folder, store)
    for seed in range(4):
        evaluator.process(traffic(60, 200 + seed, SCALE, 0))  # ~120 sampled rows
    assert evaluator.flush()
    assert window_rows(ShadowStore(store.engine), 0) == 25

    # a spent budget: rows chosen are skipped and counted, never waited for
    now = [0.0]
    (tmp_path / "b").mkdir()
    spent = evaluator_for(
        alone(tmp_path / "b"),
        store,
        ShadowConfig(max_cpu_share=0.01, attribution_cpu_share=0.01),
        monotonic=lambda: now[0],
    )
    spent.attributor.budget.credit = -1.0
    rows = traffic(60, 300, SCALE, SIZE_MS)
    spent.process(rows)
    assert spent.flush()
    from watchkeeper.detectors.shadow import sample_mask

    n = int(sample_mask(rows.keys, 0.5).sum())
    window = ShadowStore(store.engine).stats("m", SIZE_MS, 2 * SIZE_MS)[PRODUCTION]
    assert window.attribution_skipped == n and n > 0
    assert spent.metrics.attribution_skipped.labels("m", PRODUCTION)._value.get() == n
