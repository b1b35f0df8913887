"""Digests over segments: a grouped rule groups the segments that fire as it groups the
features — one incident naming them, each segment's value a member, updated as segments
clear and resolved when none fires — and ``group: segment`` keeps one digest per segment.
The engine runs on scripted findings (the windows' side: tests/unit/test_segments.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.detectors.base import Finding
from watchkeeper.policies.digest import LISTED
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.errors import InvalidDocumentError
from watchkeeper.policies.incident_model import DIGEST, IncidentEvent
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.schema import Policy


def policy(segments: bool = True, **rule: Any) -> Policy:
    base: dict[str, Any] = {"name": "drift", "metric": "psi", "features": "all"}
    base |= {"critical": 0.25} | rule
    extra = {"segments": ["country"]} if segments else {}
    return Policy.model_validate({"model": "fraud", "rules": [base]} | extra)


def finding(value: float, feature: str | None, metric: str = "psi") -> Finding:
    return Finding("fraud", metric, feature, value, "ok", 0, 1, 1000, 100_000)


def step(engine: PolicyEngine, values: dict[str, float], at: int) -> list[IncidentEvent]:
    rule = engine.policy.rules[0]
    found = [finding(v, f or None, rule.metric) for f, v in values.items()]
    return engine.step({rule.key: found}, at)[1]


CALM = {"amount": 0.01, "age": 0.02}


def test_three_segments_firing_are_one_incident_naming_them() -> None:
    engine = PolicyEngine(policy())
    fired = {"amount[country=DE]": 0.41, "amount[country=FR]": 0.33, "amount[country=ES]": 0.27}
    (event,) = step(engine, CALM | fired | {"age[country=DE]": 0.03}, 0)
    assert event.kind == "opened" and event.incident.feature == DIGEST
    assert event.incident.members == fired  # each segment's value, by its slot
    assert event.incident.summary == (
        "amount drifted on fraud in 3 segments (psi critical): "
        "country=DE 0.41, country=FR 0.33, country=ES 0.27"
    )
    # FR clears: the same incident, updated, naming two
    (event,) = step(engine, CALM | fired | {"amount[country=FR]": 0.02}, 1)
    assert event.kind == "updated"
    assert set(event.incident.members) == {"amount[country=DE]", "amount[country=ES]"}
    assert event.incident.summary == (
        "amount drifted on fraud in 2 segments (psi critical): country=DE 0.41, country=ES 0.27"
    )
    # one segment left: the digest reads as a segment's ("… for country=DE")
    calm = dict.fromkeys(fired, 0.01)
    (event,) = step(engine, CALM | calm | {"amount[country=DE]": 0.5}, 2)
    assert event.kind == "updated"
    assert event.incident.summary == (
        "1 feature drifted on fraud for country=DE (psi critical): amount 0.5"
    )
    # none: resolved, saying where the values are now
    (event,) = step(engine, CALM | calm | {"amount[country=DE]": 0.04}, 3)
    assert event.kind == "resolved" and event.incident.feature == DIGEST
    assert event.incident.summary == (
        "resolved: psi on fraud back within its thresholds (amount for country=DE 0.04)"
    )
    assert engine.incidents == {}


def test_features_across_segments_and_the_whole_window() -> None:
    engine = PolicyEngine(policy())
    values = {
        "amount": 0.3,
        "age": 0.01,
        "amount[country=DE]": 0.5,
        "age[country=DE]": 0.4,
        "age[country=FR]": 0.26,
    }
    (event,) = step(engine, values, 0)
    assert len(event.incident.members) == 4
    assert event.incident.summary == (
        "2 features drifted on fraud overall and in 2 segments (psi critical): "
        "country=DE (amount 0.5, age 0.4), overall (amount 0.3), country=FR (age 0.26)"
    )


def test_the_named_segments_are_bounded_and_the_members_keep_them_all() -> None:
    engine = PolicyEngine(policy())
    n = LISTED + 3
    label = "x" * 64  # ingestion cuts a segment value at 64 characters
    fired = {f"amount[country={label}{i}]": 0.3 + i / 100 for i in range(n)}
    (event,) = step(engine, CALM | fired, 0)
    assert event.incident.members == fired
    summary = event.incident.summary
    assert summary.startswith(f"amount drifted on fraud in {n} segments (psi critical): ")
    assert summary.endswith(" and 3 more segments")
    shown = [f"country={label}{i}" for i in range(n)]
    assert [s in summary for s in shown] == [i >= n - LISTED for i in range(n)]  # worst first
    # several features: at most 3 named per segment, then "and N more"
    wide = {f"f{i}[country=DE]": 0.3 + i / 100 for i in range(5)} | {"f0[country=FR]": 0.3}
    (event,) = step(PolicyEngine(policy()), wide, 0)
    assert event.incident.summary == (
        "5 features drifted on fraud in 2 segments (psi critical): "
        "country=DE (f4 0.34, f3 0.33, f2 0.32 and 2 more), country=FR (f0 0.3)"
    )


def test_group_segment_keeps_one_digest_per_segment() -> None:
    engine = PolicyEngine(policy(group="segment"))
    fired = {"amount[country=DE]": 0.41, "age[country=DE]": 0.3, "amount[country=FR]": 0.33}
    events = step(engine, CALM | fired, 0)
    by_slot = {e.incident.feature: e.incident for e in events}
    assert set(by_slot) == {"*[country=DE]", "*[country=FR]"}
    assert by_slot["*[country=DE]"].summary == (
        "2 features drifted on fraud for country=DE (psi critical): amount 0.41, age 0.3"
    )
    events = step(engine, CALM | fired | {"amount[country=FR]": 0.01}, 1)
    assert [(e.kind, e.incident.feature) for e in events] == [("resolved", "*[country=FR]")]


def test_a_change_of_grouping_resolves_the_old_incidents_and_opens_the_new() -> None:
    """Also what an upgrade does to a running daemon's per-segment digests: the state
    carries them, the next tick resolves them and opens the rule's one digest."""
    fired = {"amount[country=DE]": 0.41, "amount[country=FR]": 0.33}
    before = PolicyEngine(policy(group="segment"))
    step(before, CALM | fired, 0)
    engine = PolicyEngine(policy())
    engine.load_state(before.state_dict())
    events = step(engine, CALM | fired, 1)
    assert sorted((e.kind, e.incident.feature) for e in events) == [
        ("opened", DIGEST),
        ("resolved", "*[country=DE]"),
        ("resolved", "*[country=FR]"),
    ]
    # and to one incident per feature and segment
    assert engine.reconcile(policy(group="feature"), 2) == []  # the same rule stays
    events = step(engine, CALM | fired, 3)
    assert sorted((e.kind, e.incident.feature) for e in events) == [
        ("opened", "amount[country=DE]"),
        ("opened", "amount[country=FR]"),
        ("resolved", DIGEST),
    ]


def test_a_whole_window_metric_grouped_by_rule_names_its_segments() -> None:
    rule = {"metric": "latency_p99_ms", "critical": 10_000.0, "group": "rule"}
    engine = PolicyEngine(policy(**rule))
    values = {"": 12_000.0, "[country=DE]": 20_000.0, "[country=FR]": 15_000.0, "[country=ES]": 1.0}
    (event,) = step(engine, values, 0)
    assert event.incident.members == {
        "": 12_000.0,
        "[country=DE]": 20_000.0,
        "[country=FR]": 15_000.0,
    }
    assert event.incident.summary == (
        "latency_p99_ms critical on fraud overall and in 2 segments: "
        "country=DE 2e+04, country=FR 1.5e+04, overall 1.2e+04"
    )
    # without group: rule, one incident per segment, as before
    events = step(PolicyEngine(policy(metric="latency_p99_ms", critical=10_000.0)), values, 0)
    assert sorted(e.incident.feature or "" for e in events) == ["", "[country=DE]", "[country=FR]"]


def test_a_whole_window_metric_alone_in_its_digest_reads_as_the_metric_not_a_feature() -> None:
    # group: segment, one digest per segment: each holds one whole-window value
    engine = PolicyEngine(policy(metric="accuracy", critical=0.8, group="segment"))
    events = step(engine, {"": 0.7, "[country=DE]": 0.6, "[country=FR]": 0.5}, 0)
    assert {e.incident.feature: e.incident.summary for e in events} == {
        "*": "accuracy critical on fraud: 0.7",
        "*[country=DE]": "accuracy critical on fraud for country=DE: 0.6",
        "*[country=FR]": "accuracy critical on fraud for country=FR: 0.5",
    }
    engine = PolicyEngine(policy(metric="latency_p99_ms", critical=10_000.0, group="segment"))
    events = step(engine, {"": 12_000.0, "[country=DE]": 20_000.0}, 0)
    assert {e.incident.feature: e.incident.summary for e in events} == {
        "*": "latency_p99_ms critical on fraud: 1.2e+04",
        "*[country=DE]": "latency_p99_ms critical on fraud for country=DE: 2e+04",
    }
    # group: rule with one segment firing, or the whole window alone
    engine = PolicyEngine(policy(metric="traffic_ratio", critical=0.3, group="rule"))
    (event,) = step(engine, {"": 0.9, "[country=DE]": 0.2, "[country=FR]": 1.1}, 0)
    assert event.incident.summary == "traffic_ratio critical on fraud for country=DE: 0.2"
    engine = PolicyEngine(policy(metric="traffic_ratio", critical=0.3, group="rule"))
    (event,) = step(engine, {"": 0.2, "[country=DE]": 0.9}, 0)
    assert event.incident.summary == "traffic_ratio critical on fraud: 0.2"
    assert all("drifted" not in e.incident.summary for e in events)


def test_without_segments_a_digest_reads_as_before() -> None:
    engine = PolicyEngine(policy(segments=False))
    (event,) = step(engine, {"amount": 0.31, "age": 0.27, "income": 0.01}, 0)
    assert event.incident.summary == (
        "2 features drifted on fraud (psi critical): amount 0.31, age 0.27"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "group: segment needs segments: the policy names no segments"),
        (
            "segments: [country]\nsegment_rules: [other]\n",
            "group: segment needs segments: rule 'drift' does not run per segment (segment_rules)",
        ),
    ],
)
def test_group_segment_without_segments_is_a_located_error(
    tmp_path: Path, extra: str, message: str
) -> None:
    text = (
        f"model: fraud\n{extra}rules:\n"
        "  - {name: other, metric: latency_p99_ms, critical: 100}\n"
        "  - name: drift\n    metric: psi\n    group: segment\n    critical: 0.25\n"
    )
    path = tmp_path / "fraud.yaml"
    path.write_text(text)
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, None, 300.0)
    (error,) = (str(e) for e in info.value.errors)
    line = text.splitlines().index("    group: segment") + 1
    assert error.startswith(f"{path}:{line}:12: rules[1].group:"), error
    assert message in error


def test_an_unknown_grouping_names_the_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "fraud.yaml"
    path.write_text("model: fraud\nrules:\n  - {metric: psi, critical: 0.2, group: segments}\n")
    with pytest.raises(InvalidDocumentError) as info:
        load_policy(path, None, 300.0)
    (error,) = (str(e) for e in info.value.errors)
    assert "rules[0].group" in error and "'rule', 'segment' or 'feature'" in error, error


SLOTS = [
    f"{feature}{segment}"
    for feature in ("amount", "age", "income")
    for segment in ("", "[country=DE]", "[country=FR]", "[country=ES]", "[channel=web]")
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=len(SLOTS), max_size=len(SLOTS)), max_size=6))
def test_one_incident_whose_members_are_exactly_the_firing_slots(ticks: list[list[bool]]) -> None:
    """Over any sequence of ticks: at most one incident for the rule, its members exactly
    the slots past the threshold, opened / updated / resolved as that set changes, and a
    summary of bounded length."""
    engine = PolicyEngine(policy())
    before: set[str] = set()
    for at, fires in enumerate(ticks):
        values = {
            s: (0.3 + i / 100 if f else 0.01)
            for i, (s, f) in enumerate(zip(SLOTS, fires, strict=True))
        }
        events = step(engine, values, at)
        now = {s for s, f in zip(SLOTS, fires, strict=True) if f}
        incidents = list(engine.incidents.values())
        assert [i.members for i in incidents] == ([{s: values[s] for s in now}] if now else [])
        kinds = [e.kind for e in events]
        expected = (
            []
            if now == before
            else ["opened"]
            if not before
            else ["resolved"]
            if not now
            else ["updated"]
        )
        assert kinds == expected
        for incident in incidents:
            assert len(incident.summary) < 400, incident.summary
        before = now
