"""Policy files (schema, located errors) and the rule engine on scripted findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.base import Finding
from watchkeeper.policies.auto import auto_threshold
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.incident_model import DIGEST, NO_DATA
from watchkeeper.policies.loader import load_all, load_policy
from watchkeeper.policies.schema import Policy

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


def policy(**rule: object) -> Policy:
    base: dict[str, object] = {
        "metric": "psi",
        "features": ["amount"],
        "warn": 0.1,
        "critical": 0.25,
    }
    base.update(rule)
    return Policy.model_validate({"model": "fraud", "schedule": {"every": "5m"}, "rules": [base]})


def finding(
    value: float | None,
    feature: str | None = "amount",
    metric: str = "psi",
    status: str = "ok",
    n: int = 1000,
    **details: object,
) -> Finding:
    return Finding("fraud", metric, feature, value, status, 0, 1, n, 100_000, dict(details))  # type: ignore[arg-type]


def run(engine: PolicyEngine, values: list[float | None], feature: str = "amount"):
    out = []
    for i, v in enumerate(values):
        status = "ok" if v is not None else "insufficient_data"
        evaluations, events = engine.step(
            {engine.policy.rules[0].key: [finding(v, feature, status=status)]}, i * 300_000
        )
        out.append(
            ([e.decision for e in evaluations], [(e.kind, e.incident.severity) for e in events])
        )
    return out


def test_fires_after_for_evaluations_and_resolves_with_hysteresis() -> None:
    engine = PolicyEngine(policy(**{"for": 2, "resolve": 0.05}))
    steps = run(engine, [0.3, 0.3, 0.3, 0.08, 0.09, 0.04, 0.03])
    events = [e for _, e in steps]
    assert events[0] == []  # pending: one breach, for = 2
    assert events[1] == [("opened", "critical")]
    assert events[2] == []  # still firing: no message per evaluation
    assert events[3] == [] and steps[3][0] == ["hold"]  # 0.08 is between resolve and warn
    assert events[4] == [] and steps[4][0] == ["hold"]
    assert events[5] == [] and steps[5][0] == ["clear"]  # one clear of the two needed
    assert events[6] == [("resolved", "critical")]


def test_a_single_spike_does_not_fire_with_for_two() -> None:
    engine = PolicyEngine(policy(**{"for": 2}))
    assert [e for _, e in run(engine, [0.3, 0.02, 0.3, 0.02])] == [[], [], [], []]


def test_severity_changes_are_one_event_each() -> None:
    engine = PolicyEngine(policy())
    events = [e for _, e in run(engine, [0.12, 0.3, 0.3, 0.15, 0.02])]
    assert events == [
        [("opened", "warn")],
        [("escalated", "critical")],
        [],
        [("de-escalated", "warn")],
        [("resolved", "warn")],
    ]


def test_insufficient_data_changes_nothing() -> None:
    engine = PolicyEngine(policy(**{"for": 2}))
    steps = run(engine, [0.3, None, 0.3])
    assert steps[1][0] == ["insufficient_data"]
    assert steps[2][1] == [("opened", "critical")]  # the streak survived the gap


def test_relative_thresholds_compare_with_the_reference() -> None:
    p = Policy.model_validate(
        {
            "model": "fraud",
            "rules": [{"metric": "accuracy", "relative": True, "warn": -0.01, "critical": -0.02}],
        }
    )
    engine = PolicyEngine(p)
    _, events = engine.step({"accuracy": [finding(0.925, None, "accuracy")]}, 0, {"accuracy": 0.94})
    assert [(e.kind, e.incident.severity) for e in events] == [("opened", "warn")]
    evaluations, events = engine.step(
        {"accuracy": [finding(0.91, None, "accuracy")]}, 1, {"accuracy": 0.94}
    )
    assert evaluations[0].critical == pytest.approx(0.92)
    assert [(e.kind, e.incident.severity) for e in events] == [("escalated", "critical")]
    evaluations, _ = engine.step({"accuracy": [finding(0.91, None, "accuracy")]}, 2, {})
    assert evaluations[0].decision == "insufficient_data"
    assert "reference has no accuracy" in evaluations[0].reason


def test_a_resolved_incident_says_where_its_values_are_now() -> None:
    """Not the last firing comparison ("latency 47 >= 150"): the values that cleared."""
    engine = PolicyEngine(policy(features="all"))
    engine.step({"psi": [finding(0.3, "amount"), finding(0.27, "age")]}, 0)
    _, events = engine.step({"psi": [finding(0.02, "amount"), finding(0.03, "age")]}, 1)
    (event,) = events
    assert event.kind == "resolved"
    assert event.incident.peak == "critical"
    assert event.incident.summary == (
        "resolved: psi on fraud back within its thresholds (age 0.03, amount 0.02)"
    )


def test_many_features_drifting_make_one_digest_incident() -> None:
    engine = PolicyEngine(policy(features="all"))
    names = [f"f{i}" for i in range(12)]
    _, events = engine.step(
        {"psi": [finding(0.3 if i < 9 else 0.01, n) for i, n in enumerate(names)]}, 0
    )
    assert len(events) == 1 and events[0].kind == "opened"
    incident = events[0].incident
    assert incident.feature == DIGEST and len(incident.members) == 9
    assert incident.summary.startswith("9 features drifted on fraud (psi critical)")
    _, events = engine.step(
        {"psi": [finding(0.3 if i < 10 else 0.01, n) for i, n in enumerate(names)]}, 1
    )
    assert [(e.kind, len(e.incident.members)) for e in events] == [("updated", 10)]
    _, events = engine.step({"psi": [finding(0.01, n) for n in names]}, 2)
    assert [e.kind for e in events] == ["resolved"]


def test_per_feature_incidents_when_asked() -> None:
    engine = PolicyEngine(policy(features=["a", "b"], group="feature"))
    _, events = engine.step({"psi": [finding(0.3, "a"), finding(0.3, "b")]}, 0)
    assert sorted(e.incident.feature for e in events) == ["a", "b"]
    assert events[0].incident.fingerprint != events[1].incident.fingerprint


def test_fingerprints_are_stable_across_engines_and_state_round_trips() -> None:
    first = PolicyEngine(policy())
    _, events = first.step({"psi": [finding(0.3)]}, 0)
    second = PolicyEngine(policy())
    second.load_state(first.state_dict())
    _, again = second.step({"psi": [finding(0.01)]}, 1)
    assert again[0].kind == "resolved"
    assert again[0].incident.fingerprint == events[0].incident.fingerprint


def test_no_data_and_failing_checks_are_incidents_of_their_own() -> None:
    engine = PolicyEngine(policy())
    engine.step({"psi": [finding(0.3)]}, 0)
    events = engine.no_data(300_000, 0, 3)
    assert [(e.kind, e.incident.feature) for e in events] == [("opened", NO_DATA)]
    assert "no data for fraud since 1970-01-01 00:00 UTC" in events[0].incident.summary
    assert engine.no_data(600_000, 0, 0) == []  # still the same incident
    drift = [i for i in engine.incidents.values() if i.feature == "amount"]
    assert drift and drift[0].severity == "critical"  # the drift incident kept its state
    _, events = engine.step({"psi": [finding(None, status="error", reason="boom")]}, 900_000)
    kinds = sorted((e.kind, e.incident.feature) for e in events)
    assert kinds == [("opened", "__error__"), ("resolved", NO_DATA)]
    assert any("check psi failed: amount: boom" in e.incident.summary for e in events)
    _, events = engine.step({"psi": [finding(0.01)]}, 1_200_000)
    assert sorted((e.kind, e.incident.feature) for e in events) == [
        ("resolved", "__error__"),
        ("resolved", "amount"),
    ]


def test_removing_a_rule_resolves_its_incidents_with_a_note() -> None:
    engine = PolicyEngine(policy(name="drift"))
    engine.step({"drift": [finding(0.3)]}, 0)
    replacement = Policy.model_validate(
        {
            "model": "fraud",
            "rules": [{"name": "latency", "metric": "latency_p99_ms", "critical": 500}],
        }
    )
    (event,) = engine.reconcile(replacement, 1)
    assert event.kind == "resolved" and "rule 'drift' was removed" in event.note
    assert engine.incidents == {} and engine.members == {}


# -- files ------------------------------------------------------------------------------
def errors(tmp_path: Path, text: str, channels: set[str] | None = None) -> list[str]:
    path = tmp_path / "fraud.yaml"
    path.write_text(text)
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, channels, 300.0)
    return [str(e) for e in info.value.errors]


def test_unknown_metric_is_located_with_a_suggestion(tmp_path: Path) -> None:
    (error,) = errors(tmp_path, "model: fraud\nrules:\n  - metric: psii\n    critical: 0.2\n")
    assert error.startswith(f"{tmp_path / 'fraud.yaml'}:3:13: rules[0].metric:")
    assert "metric 'psii' is not known; did you mean 'psi'?" in error


def test_every_error_is_reported(tmp_path: Path) -> None:
    text = (
        "model: fraud\nwindow: 7m\nschedule: {every: 5m, cron: '* * * * *'}\n"
        "rules:\n  - metric: psi\n    warn: 0.3\n    critical: 0.2\n    colour: red\n"
        "  - metric: accuracy\n    features: [a]\n    critical: 0.9\n"
    )
    found = errors(tmp_path, text)
    # a rule with an unknown key is not checked further (pydantic runs a model's own
    # checks only once its fields are valid): fixing it reveals the rest; the loader's
    # cross-checks (here: the window off the 300 s grid) come with the schema's errors
    assert len(found) == 4, found
    assert "schedule: give exactly one of every" in found[0]
    assert "rules[0].colour: unknown key 'colour'" in found[1]
    assert "accuracy is a whole-window metric: it takes no features" in found[2]
    assert "window: must be a multiple of the daemon's windows.size (300s)" in found[3]
    (swapped,) = errors(tmp_path, "model: m\nrules:\n  - {metric: psi, warn: 0.3, critical: 0.2}\n")
    assert "critical (0.2) must be beyond warn (0.3) on the bad side (above)" in swapped


@pytest.mark.parametrize("bound", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("field", ["warn", "critical", "resolve"])
def test_a_threshold_is_a_finite_number(tmp_path: Path, field: str, bound: str) -> None:
    """``critical: .nan`` would never fire and ``.inf`` always or never: refused, located."""
    other = "" if field == "critical" else ", critical: 0.5"
    text = f"model: m\nrules:\n  - {{metric: psi, {field}: {bound}{other}}}\n"
    (error,) = errors(tmp_path, text)
    assert f"rules[0].{field}:" in error and "finite number" in error


def test_cross_checks_channels_window_and_reference(tmp_path: Path) -> None:
    text = (
        "model: fraud\nwindow: 7m\nreference: missing.json\nrules:\n  - metric: psi\n"
        "    critical: 0.2\n    actions: {critical: [pager]}\n"
    )
    found = errors(tmp_path, text, channels={"oncall", "console"})
    assert any(
        ":2:9: window: must be a multiple of the daemon's windows.size (300s)" in e for e in found
    )
    assert any("reference: no reference profile file at" in e for e in found)
    assert any(
        "rules[0].actions.critical[0]: channel 'pager' is not defined in "
        "alerts.channels (console, oncall)" in e
        for e in found
    )


def test_bad_cron_and_auto_on_an_unsupported_metric(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        "model: m\nschedule: {cron: 'every day'}\nrules:\n"
        "  - metric: wasserstein\n    threshold: auto\n",
    )
    assert any("cron 'every day' is not a crontab expression" in e for e in found)
    assert any("threshold: auto is derived for psi, kl_divergence" in e for e in found)


def test_load_all_keeps_going_past_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("model: a\nrules: [{metric: psi, critical: 0.25}]\n")
    (tmp_path / "bad.yaml").write_text("model: b\nrules: [{metric: nope, critical: 1}]\n")
    (tmp_path / "dup.yaml").write_text("model: a\nrules: [{metric: ks, critical: 0.2}]\n")
    (tmp_path / "a.test.yaml").write_text("not: a policy\n")
    result = load_all([tmp_path])
    # files load in name order: dup.yaml claims policy "a" first, good.yaml then clashes
    assert [(p.policy.model, Path(p.path).name) for p in result.policies] == [("a", "dup.yaml")]
    assert sorted(Path(p).name for p in result.errors) == ["bad.yaml", "good.yaml"]
    assert "also defined in" in result.errors[str(tmp_path / "good.yaml")][0].message


def test_shipped_example_policies_load() -> None:
    result = load_all(
        [EXAMPLES],
        channels={"console", "oncall-slack", "alertmanager", "retrain"},
        window_size_s=300.0,
    )
    assert result.ok, result.errors
    assert len(result.policies) >= 2
    fraud = next(p.policy for p in result.policies if p.policy.model == "fraud")
    psi = next(r for r in fraud.rules if r.metric == "psi")
    kl = next(r for r in fraud.rules if r.metric == "kl_divergence")
    assert psi.critical == 0.25 and kl.critical == 0.2  # the field's habits


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_no_text_crashes_the_policy_loader(text: str) -> None:
    from watchkeeper.policies.yamlsource import parse_yaml, validate_document

    found: list[object] = []
    try:
        validate_document(Policy, parse_yaml(text, "fuzz.yaml"))
    except InvalidDocumentError as exc:
        found = list(exc.errors)
        assert found
    assert all(e.message for e in found)  # type: ignore[attr-defined]


# -- false-alarm budget ------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["psi", "kl_divergence", "js_distance", "ks"])
def test_auto_thresholds_hold_their_false_alarm_rate(metric: str) -> None:
    from watchkeeper.detectors.evaluate import evaluate
    from watchkeeper.detectors.profile import (
        ReferenceProfile,
        bin_counts,
        numeric_profile,
        quantile_edges,
    )
    from watchkeeper.detectors.sketches import NumericSketch
    from watchkeeper.detectors.window import WindowSummary

    rng = np.random.default_rng(21)
    ref_x = rng.normal(size=50_000)
    sketch = NumericSketch(4000)
    sketch.update(ref_x)
    edges = quantile_edges(sketch, 10)
    profile = ReferenceProfile(
        "m", {"x": numeric_profile(sketch, edges, bin_counts(ref_x, edges))}, 50_000
    )
    alpha, n, trials = 0.05, 800, 400
    alarms = 0
    for _ in range(trials):
        window = WindowSummary("m", "1", 0, 1)
        cur = NumericSketch(4000)  # exact at this size: the test isolates sampling noise
        cur.update(rng.normal(size=n))
        window.features["x"] = cur
        (f,) = evaluate(profile, window, [metric])
        threshold = auto_threshold(metric, n, 50_000, int(f.details.get("bins", 10)), alpha)
        alarms += int((f.value or 0) > threshold)
    rate = alarms / trials
    assert rate < 2.5 * alpha, rate  # KS is conservative on binned sketches; others ≈ α
    shifted = NumericSketch(4000)
    shifted.update(rng.normal(0.5, 1, size=n))
    window = WindowSummary("m", "1", 0, 1)
    window.features["x"] = shifted
    (f,) = evaluate(profile, window, [metric])
    assert (f.value or 0) > auto_threshold(metric, n, 50_000, 10, alpha)  # real drift fires


def test_auto_thresholds_shrink_with_window_size_and_grow_with_features() -> None:
    small = auto_threshold("psi", 500, 10**6, 10, 1e-4)
    large = auto_threshold("psi", 500_000, 10**6, 10, 1e-4)
    assert small > 0.05 > large
    assert auto_threshold("psi", 500, 10**6, 10, 1e-4 / 200) > small
