"""Review defects of the A/B wiring, each pinned: incidents survive a restart, the pair
of ``compare: latest`` is stable, a named experiment outlives retention, verdicts from
historical ticks are not sent, a look that fails takes no other rule down, verdicts are
final, sentences do not contradict their interval, shown versions are distinct and
clean."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.ab_promotion import pair_label, verdict
from watchkeeper.daemon.checks.ab_report import sentence, shown
from watchkeeper.daemon.checks.ab_values import statistic
from watchkeeper.daemon.checks.stepping import HELD_MS, roles_read
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.compare import ABCondition, ABPromotion
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import IncidentEvent

from tests.unit.test_ab_checks import SIZE, T0, commit, policy, window


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


def _open_incidents(store: Store, looks: int) -> tuple[PolicyEngine, ABChecks]:
    p = policy()
    checks = ABChecks(store, SIZE, settle_s=0)
    engine = PolicyEngine(p, 300.0)
    for i in range(looks):
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 400, 0.9, 2 * i), window("4", start, 400, 0.7, 2 * i + 1)]
        )
        _, events = engine.step(checks.findings(p, start, start + SIZE), start + SIZE)
        checks.describe(p, engine, events, start + SIZE)
    assert [i.feature for i in engine.incidents.values()] == ["4 vs 3"]
    return engine, checks


def test_a_tick_whose_look_did_not_run_resolves_nothing_after_a_restart(store: Store) -> None:
    engine, _ = _open_incidents(store, 12)
    restored = PolicyEngine(policy(), 300.0)
    restored.load_state(engine.state_dict())
    fresh = ABChecks(store, SIZE, settle_s=0)  # a restart, or another replica leading
    events: list[IncidentEvent] = []
    fresh.describe(policy(), restored, events, T0 + 13 * SIZE)  # assess returned early
    assert events == [] and len(restored.incidents) == 1
    assert fresh.db.in_force(policy().key) == ("3", "4")  # durable, not a cache


def test_a_look_that_found_another_pair_resolves_the_old_pairs_incidents(store: Store) -> None:
    engine, checks = _open_incidents(store, 12)
    other = policy({"baseline": "3", "candidate": "5"})
    start = T0 + 12 * SIZE
    commit(store, [window("3", start, 400, 0.9, 99), window("5", start, 400, 0.9, 98)])
    _, events = engine.step(checks.findings(other, start, start + SIZE), start + SIZE)
    checks.describe(other, engine, events, start + SIZE)
    resolved = [e for e in events if e.kind == "resolved"]
    assert [e.incident.feature for e in resolved] == ["4 vs 3"]
    assert "now 5 vs 3" in resolved[0].note
    assert checks.db.in_force(other.key) == ("3", "5")


def test_latest_ranks_equal_first_windows_in_natural_order(store: Store) -> None:
    commit(store, [window("9", T0, 300, 0.9, 1), window("10", T0, 300, 0.9, 2)])
    (f,) = ABChecks(store, SIZE, 0).findings(policy("latest"), T0, T0 + SIZE)["ab_accuracy_delta"]
    assert f.feature == "10 vs 9"  # 10 is newer than 9, not "10" < "9"


def test_latest_ignores_stray_and_unversioned_events_and_keeps_its_pair(store: Store) -> None:
    checks = ABChecks(store, SIZE, 0)
    p = policy("latest")
    commit(store, [window("3", T0, 300, 0.9, 1), window("4", T0 + SIZE, 300, 0.9, 2)])
    (f,) = checks.findings(p, T0 + SIZE, T0 + 2 * SIZE)["ab_accuracy_delta"]
    assert f.feature == "4 vs 3"
    # a three-event canary and events without a version: neither becomes the candidate
    commit(store, [window("5", T0 + 2 * SIZE, 3, 0.9, 3), window("", T0 + 2 * SIZE, 500, 0.9, 4)])
    (f,) = checks.findings(p, T0 + 2 * SIZE, T0 + 3 * SIZE)["ab_accuracy_delta"]
    assert f.feature == "4 vs 3"
    # once 5 has min_rows events it qualifies: strictly newer, so it takes over
    commit(store, [window("5", T0 + 3 * SIZE, 300, 0.9, 5)])
    (f,) = checks.findings(p, T0 + 3 * SIZE, T0 + 4 * SIZE)["ab_accuracy_delta"]
    assert f.feature == "5 vs 4"


def test_retention_changes_neither_the_latest_pair_nor_a_named_experiment(store: Store) -> None:
    checks = ABChecks(store, SIZE, 0)
    latest, named = policy("latest"), policy()
    commit(store, [window("3", T0, 300, 0.9, 1)])
    commit(
        store, [window("4", T0 + 2 * SIZE, 300, 0.9, 2), window("3", T0 + 2 * SIZE, 300, 0.9, 3)]
    )
    commit(store, [window("4", T0 + 3 * SIZE, 300, 0.9, 4)])
    assert (
        checks.findings(latest, T0 + 3 * SIZE, T0 + 4 * SIZE)["ab_accuracy_delta"][0].feature
        == "4 vs 3"
    )
    checks.findings(named, T0 + 3 * SIZE, T0 + 4 * SIZE)
    store.prune_model("fraud", T0 + 3 * SIZE)  # version 3's windows are gone
    (f,) = checks.findings(latest, T0 + 3 * SIZE, T0 + 4 * SIZE)["ab_accuracy_delta"]
    assert f.feature == "4 vs 3"  # not swapped
    (g,) = checks.findings(named, T0 + 3 * SIZE, T0 + 4 * SIZE)["ab_accuracy_delta"]
    assert "not seen yet" not in str(g.details.get("reason", ""))
    assert g.details["since_ms"] == T0 + 2 * SIZE


def _promoting(store: Store, max_age_s: float, wall_s: float) -> tuple[ABChecks, list[str]]:
    planned: list[str] = []

    def plan(note: Notification, targets: object) -> list[tuple[str, Notification]]:
        planned.append(note.kind)
        return []

    checks = ABChecks(store, SIZE, 0, plan=plan, max_age_s=max_age_s, clock=lambda: wall_s)
    return checks, planned


def test_a_verdict_of_a_historical_tick_is_recorded_not_sent(store: Store) -> None:
    p = policy(
        {
            "baseline": "3",
            "candidate": "4",
            "promotion": {"when": ["ab_latency_p99_ratio <= 100"], "on_promote": ["x"]},
        }
    )
    commit(store, [window("3", T0, 400, 0.9, 1), window("4", T0, 400, 0.9, 2)])
    old, planned = _promoting(store, 3600, T0 / 1000 + 86_400)  # a day behind
    old.findings(p, T0, T0 + SIZE)
    assert planned == []
    (look,) = old.db.looks(p.key)
    assert look["decision"]["decision"] == "promote" and look["decision"]["historical"]


def test_estimate_on_a_metric_without_one_is_rejected_at_load() -> None:
    with pytest.raises(
        ValueError, match=r"ab_latency_p99_ratio carries no interval, so no \.estimate"
    ):
        ABCondition.parse("ab_latency_p99_ratio.estimate <= 1.2")
    # and a stored look lacking the field leaves the verdict pending, never raises
    cond = ABCondition.model_construct(
        metric="ab_latency_p99_ratio", stat="estimate", op="<=", bound=1.2
    )
    got = verdict(
        ABPromotion.model_construct(when=(cond,)),
        {"values": {"ab_latency_p99_ratio": {"value": 1.1}}},
    )
    assert got["decision"] == "pending"


def test_a_look_that_raises_takes_no_other_rule_down(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = ABChecks(store, SIZE, 0)
    commit(store, [window("3", T0, 400, 0.9, 1), window("4", T0, 400, 0.9, 2)])

    def broken(*_: object) -> object:
        raise KeyError("estimate")

    monkeypatch.setattr(checks.looks, "_compare", broken)
    (f,) = checks.findings(policy(), T0, T0 + SIZE)["ab_accuracy_delta"]
    assert f.status == "insufficient_data" and "A/B look failed" in f.details["reason"]
    assert checks.failed_looks == 1


def test_a_verdict_reached_is_final_while_a_point_condition_hovers(store: Store) -> None:
    p = policy(
        {
            "baseline": "3",
            "candidate": "4",
            "promotion": {
                "when": ["ab_latency_p99_ratio <= 1.0"],
                "on_promote": ["x"],
                "on_reject": ["x"],
            },
        }
    )
    checks, planned = _promoting(store, 0, 0)
    for i in range(12):  # the two versions' latencies alike: the ratio hovers around 1
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 400, 0.9, 2 * i), window("4", start, 400, 0.9, 2 * i + 1)]
        )
        checks.findings(p, start, start + SIZE)
    assert len(planned) == 1  # announced once, never swung


def test_a_sentence_says_when_the_estimate_lies_outside_the_kept_interval() -> None:
    details = {
        "estimate": 0.024,
        "low": -0.205,
        "high": -0.185,
        "look_low": 0.01,
        "look_high": 0.04,
        "disjoint_looks": 3,
        "n_baseline": 100,
        "n_candidate": 100,
    }
    text = sentence("ab_accuracy_delta", "3", "4", details)
    assert "95 % CI [−20.5, −18.5]" in text
    assert "outside the interval kept over the experiment" in text
    assert "this look alone: [1.0, 4.0]" in text


def test_versions_alike_in_their_first_64_characters_give_distinct_pairs() -> None:
    base = "registry.example.com/team/fraud-model:" + "x" * 40
    assert pair_label("3", base + "-rc1") != pair_label("3", base + "-rc2")
    assert len(shown(base + "-rc1")) == 64


def test_control_characters_never_reach_what_is_shown() -> None:
    text = shown("4\x1b[31m\r\nforged log line\x07")
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def test_the_fold_waits_for_the_labels_read_so_far(store: Store) -> None:
    # a catch-up: the predictions-driven tick is far ahead of the labels read so far
    labels_mark = T0 + 3 * SIZE
    checks = ABChecks(store, SIZE, 0, labels_until=lambda model, now: labels_mark)
    p = policy()
    for i in range(20):
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 300, 0.9, 2 * i), window("4", start, 300, 0.9, 2 * i + 1)]
        )
    (f,) = checks.findings(p, T0 + 19 * SIZE, T0 + 20 * SIZE)["ab_accuracy_delta"]
    state = checks.db.load(p.key, "3", "4")
    assert state is not None and state.folded_until_ms == T0 + 2 * SIZE  # mark − a window
    # a late label batch for window 10 arrives: it still counts
    commit(store, [window("3", T0 + 10 * SIZE, 50, 0.9, 77)])
    (g,) = checks.findings(p, T0 + 19 * SIZE, T0 + 20 * SIZE)["ab_accuracy_delta"]
    assert g.details["n_baseline"] == f.details["n_baseline"] + 50
    # a labels partition that has shown nothing yet: nothing is folded at all
    held = ABChecks(store, SIZE, 0, labels_until=lambda model, now: HELD_MS)
    restarted = policy({"baseline": "3", "candidate": "4", "since": "2026-09-21T12:00:00Z"})
    held.findings(restarted, T0 + 19 * SIZE, T0 + 20 * SIZE)
    state = held.db.load(p.key, "3", "4")
    assert state is not None and state.folded_until_ms == state.since_ms


def test_a_policy_with_compare_reads_the_labels_stream() -> None:
    p = policy()  # an ab_* rule only, no performance-scope rule
    assert "labels" in roles_read(p, {"predictions", "features", "labels"})


def test_a_two_sided_estimate_reads_the_same_in_a_rule_and_a_promotion_condition() -> None:
    details = {"value": -0.08, "estimate": -0.08, "low": -0.1, "high": -0.06, "decision": "changed"}
    for text in ("ab_score_mean_delta.estimate <= 0.05", "ab_score_mean_delta <= 0.05"):
        cond = ABCondition.parse(text)
        got = verdict(ABPromotion(when=(cond,)), {"values": {"ab_score_mean_delta": details}})
        assert (
            got["checks"][0]["value"]
            == 0.08
            == statistic("ab_score_mean_delta", details, "estimate")
        )
        assert got["checks"][0]["holds"] is False  # the score moved by 0.08, not by −0.08
    low = verdict(
        ABPromotion(when=(ABCondition.parse("ab_score_mean_delta.low > -0.2"),)),
        {"values": {"ab_score_mean_delta": details}},
    )
    assert low["checks"][0]["value"] == -0.1  # the ends stay signed


def test_a_condition_on_a_value_the_task_never_gives_says_why_it_waits() -> None:
    cond = ABCondition.parse("ab_mae_delta.high < 0.1")
    last = {"values": {}, "unavailable": {"ab_mae_delta": "no regression labels (a classifier)"}}
    got = verdict(ABPromotion(when=(cond,)), last)
    assert got["decision"] == "pending"
    assert got["reasons"] == [
        "ab_mae_delta is not available yet (no regression labels (a classifier))"
    ]


def test_a_rerun_before_the_fold_labels_its_finding_with_the_rows_it_covers(store: Store) -> None:
    checks = ABChecks(store, SIZE, 0)
    for i in range(20):
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 300, 0.9, 2 * i), window("4", start, 300, 0.9, 2 * i + 1)]
        )
    checks.findings(policy(), T0 + 19 * SIZE, T0 + 20 * SIZE)
    (f,) = checks.findings(policy(), T0 + 4 * SIZE, T0 + 5 * SIZE)["ab_accuracy_delta"]
    assert f.details["n_baseline"] == 19 * 300  # the fold holds 19 windows …
    assert (f.window_start_ms, f.window_end_ms) == (T0, T0 + 19 * SIZE)  # … and says so


def test_a_look_reads_each_version_at_most_twice(store: Store) -> None:
    """Once for the policy window, whole; once for the windows before it, without their
    feature sketches (none to read here: nothing is unsettled before the window)."""
    checks = ABChecks(store, SIZE, 0)
    calls: list[str] = []
    parts_of = checks.looks._parts

    def counting(model: str, version: str, lo: int, hi: int) -> list[WindowSummary]:
        calls.append(version)
        return parts_of(model, version, lo, hi)

    checks.looks._parts = counting  # type: ignore[method-assign]
    for i in range(6):
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 300, 0.9, 2 * i), window("4", start, 300, 0.9, 2 * i + 1)]
        )
        calls.clear()
        checks.findings(policy(), start, start + SIZE)  # folds, the tail, the policy window
        assert sorted(calls) == ["3", "4"]


def test_through_the_checker_equal_versions_rarely_get_a_decision(tmp_path: Path) -> None:
    """False positives of the whole path (fold, narrowing across looks, decisions kept)
    under no true difference: 20 experiments of 50 looks each at α = 5 %. Each
    experiment is a run of a confidence sequence, so at most ~5 % of them may ever reach
    a decision; 5 or more of 20 would happen with probability 0.26 % at exactly 5 %."""
    decided = 0
    for run in range(20):
        store = Store.open(f"sqlite:///{tmp_path / f'{run}.db'}")
        checks = ABChecks(store, SIZE, 0)
        p = policy({"baseline": "3", "candidate": "4", "label_wait": "5m"})
        reached = False
        for i in range(50):
            start = T0 + i * SIZE
            seed = 1_000 * run + 2 * i
            commit(
                store,
                [window("3", start, 100, 0.85, seed), window("4", start, 100, 0.85, seed + 1)],
            )
            (f,) = checks.findings(p, start, start + SIZE)["ab_accuracy_delta"]
            reached = reached or f.details.get("decision") in ("worse", "better")
        decided += reached
        store.close()
    assert decided <= 4, decided


HOSTILE = "4```*pwned* <https://evil.example|click> <img src=x onerror=alert(1)>"


def test_a_hostile_version_is_inert_in_every_channel_and_page(store: Store) -> None:
    from watchkeeper.alerts.console import render
    from watchkeeper.alerts.slack import blocks
    from watchkeeper.daemon.checks.ab_promotion import notification
    from watchkeeper.daemon.checks.ab_status import ab_table
    from watchkeeper.daemon.http.console import environment

    p = policy({"baseline": "3", "candidate": HOSTILE})
    checks = ABChecks(store, SIZE, 0)
    for i in range(4):
        start = T0 + i * SIZE
        commit(
            store,
            [window("3", start, 400, 0.9, 2 * i), window(HOSTILE, start, 400, 0.8, 2 * i + 1)],
        )
        checks.findings(p, start, start + SIZE)
    state = checks.db.load(p.key, "3", HOSTILE)
    assert state is not None
    decided = {"decision": "reject", "reasons": ["worse"], "checks": []}
    note = notification(p, state, decided, T0, "http://wk")
    section = next(b for b in blocks(note) if "A/B comparison" in str(b))["text"]["text"]
    fenced = section.split("\n", 1)[1]
    assert fenced[3:-3].count("`") == 0  # our fences only
    slack = str(blocks(note))
    assert "<https://evil.example|click>" not in slack and "<img" not in slack
    assert "\x1b" not in render(note)
    (entry,) = ab_table(checks.db, {p.key: p})[p.key]["comparisons"]
    page = environment().get_template("ab_comparison.html").render(ab=entry)
    assert "<img src=x" not in page and "&lt;img src=x" in page
    assert "<https://evil.example" not in page
