"""A/B comparisons at the checker's level, on a real (SQLite) store: the roll-up since
the experiment's start equals one roll-up of every window (exactly) while reading only
the unsettled windows at each look; decisions never flip back; the start and the
narrowed intervals survive a restart; ``compare: latest`` takes the two newest versions."""

from __future__ import annotations

import logging
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.checks.ab_checks import ABChecks
from watchkeeper.daemon.checks.ab_report import columns
from watchkeeper.daemon.checks.ab_state import rolled, trimmed
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.ab import ABComparison
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import WindowSummary
from watchkeeper.policies.schema import Policy

SIZE = 300_000  # 5-minute windows
T0 = 1_790_000_000_000 - 1_790_000_000_000 % SIZE


def window(version: str, start: int, n: int, accuracy: float, seed: int) -> WindowSummary:
    """One window of ``n`` classified rows of a version."""
    rng = np.random.default_rng(seed)
    w = WindowSummary("fraud", version, start, SIZE)
    labels = rng.integers(0, 2, n).astype(str)
    hit = rng.random(n) < accuracy
    predicted = np.where(hit, labels, np.where(labels == "1", "0", "1"))
    w.events = {"predictions": n}
    w.first_ts_ms, w.last_ts_ms = start, start + SIZE - 1
    w.performance = PerformanceSketch("classification")
    w.performance.update_classification(labels.tolist(), predicted.tolist())
    w.prediction = NumericSketch()
    w.prediction.update(rng.beta(2, 5, n))
    w.prediction_class = CategoryCounts()
    w.prediction_class.update(predicted.tolist())
    w.latency.update(rng.lognormal(2.0, 0.5, n))
    return w


def commit(store: Store, windows: list[WindowSummary]) -> None:
    delta = Delta(SIZE, {WindowKey(w.model, w.version, w.start_ms): w for w in windows})
    store.commit("g", delta, {})


def policy(compare: object = None, **rule: object) -> Policy:
    return Policy.model_validate(
        {
            "model": "fraud",
            "window": "5m",
            "compare": compare or {"baseline": "3", "candidate": "4"},
            "rules": [{"metric": "ab_accuracy_delta", "critical": -0.01} | rule],
        }
    )


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield s
    s.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=8))
def test_folding_in_any_chunks_equals_one_rollup_of_every_window(chunks: list[int]) -> None:
    parts = [window("4", T0 + i * SIZE, 200 + 37 * i, 0.8, i) for i in range(sum(chunks))]
    whole = WindowSummary.rollup(parts, T0, len(parts) * SIZE, "4")
    base, at = None, 0
    for size in chunks:
        until = T0 + (at + size) * SIZE
        base = trimmed(rolled("fraud", "4", T0, until, base, parts[at : at + size]))
        at += size
    assert base is not None
    # exact state is equal; the KLL sketches hold their bound (their merges are randomised
    # compactions, so merging in other groupings gives other, equally good, sketches)
    assert base.performance is not None and whole.performance is not None
    assert base.performance.to_dict() == whole.performance.to_dict()
    assert base.prediction_class.to_dict() == whole.prediction_class.to_dict()  # type: ignore[union-attr]
    for name in ("prediction", "latency"):
        mine, theirs = getattr(base, name), getattr(whole, name)
        assert (mine.count, mine.min, mine.max) == (theirs.count, theirs.min, theirs.max)
        assert mine.mean == pytest.approx(theirs.mean, rel=1e-12)
        assert mine.variance == pytest.approx(theirs.variance, rel=1e-12)
        ranks = np.linspace(0.01, 0.99, 50)
        q = mine.quantiles(ranks)
        got = theirs.cdf(q)  # the rank, in the whole sketch, of each folded quantile
        assert np.max(np.abs(got - ranks)) <= mine.rank_error + theirs.rank_error
    assert base.events == whole.events and base.features == {}


def test_each_look_rolls_up_everything_since_the_start_reading_only_the_unsettled_windows(
    store: Store,
) -> None:
    checks = ABChecks(store, SIZE, settle_s=600)  # settled 10 min + a window after the end
    p = policy()
    read: list[int] = []
    parts_of, trimmed_of = checks.looks._parts, checks.looks._comparison_parts

    def counting(model: str, version: str, lo: int, hi: int) -> list[WindowSummary]:
        got = parts_of(model, version, lo, hi)
        read.append(len(got))
        return got

    def counting_trimmed(model: str, version: str, lo: int, hi: int) -> list[WindowSummary]:
        got = trimmed_of(model, version, lo, hi)
        assert all(not w.features and not w.segments and not len(w.sample.keys) for w in got)
        read.append(len(got))
        return got

    checks.looks._parts = counting  # type: ignore[method-assign]
    checks.looks._comparison_parts = counting_trimmed  # type: ignore[method-assign]
    every: dict[str, list[WindowSummary]] = {"3": [], "4": []}
    for i in range(40):
        start = T0 + i * SIZE
        new = [window("3", start, 300, 0.9, 2 * i), window("4", start, 280, 0.86, 2 * i + 1)]
        commit(store, new)
        for w in new:
            every[w.version].append(w)
        read.clear()
        findings = checks.findings(p, start, start + SIZE)
        assert sum(read) <= 2 * (2 + 3 + 1) + 2, read  # fold + tail + window, per version
    (finding,) = findings["ab_accuracy_delta"]
    end = T0 + 40 * SIZE
    whole = {v: WindowSummary.rollup(ws, T0, end - T0, v) for v, ws in every.items()}
    direct = ABComparison().compare(whole["3"], whole["4"]).values["ab_accuracy_delta"]
    assert finding.details["estimate"] == direct.value  # exact: ratios of the same counts
    assert finding.details["n_baseline"] == direct.details["n_baseline"] == 40 * 300
    assert finding.details["look_low"] == direct.details["low"]
    last = checks.db.looks("fraud")[0]["last"]
    for version, role in (("4", "candidate"), ("3", "baseline")):
        shown, direct_columns = last["merged"][role], columns(whole[version])
        assert shown.keys() == direct_columns.keys()
        for key in ("events", "predictions", "labelled_rows", "accuracy", "f1", "top_class"):
            assert shown[key] == direct_columns[key], key  # exact: counts
        assert shown["score_mean"] == pytest.approx(direct_columns["score_mean"], rel=1e-12)
    assert finding.details["decision"] == "worse"
    assert finding.value == finding.details["high"] < -0.01  # the bound judged
    assert finding.feature == "4 vs 3"
    points = f"{abs(direct.value) * 100:.1f}"
    assert finding.details["text"].startswith(
        f"version 4 is {points} points less accurate than 3, 95 % CI [−"
    )
    assert finding.details["text"].endswith("over 11,200 labelled rows of 4 and 12,000 of 3")


def run(store: Store, accuracy: object, looks: int, restart_at: int = -1) -> list[dict]:  # type: ignore[type-arg]
    """``looks`` checks, one per window; the candidate's accuracy per window from
    ``accuracy(i)``; a restart (new ABChecks, state from the store) at ``restart_at``."""
    p = policy()
    checks = ABChecks(store, SIZE, settle_s=0)
    seen = []
    for i in range(looks):
        start = T0 + i * SIZE
        rate = accuracy(i)  # type: ignore[operator]
        commit(store, [window("3", start, 400, 0.9, 3 * i), window("4", start, 400, rate, i)])
        if i == restart_at:
            checks = ABChecks(store, SIZE, settle_s=0)
        (f,) = checks.findings(p, start, start + SIZE)["ab_accuracy_delta"]
        seen.append(f.details)
    return seen


def nested(seen: list[dict]) -> bool:  # type: ignore[type-arg]
    lows, highs = [d["low"] for d in seen], [d["high"] for d in seen]
    return all(a <= b for a, b in pairwise(lows)) and all(a >= b for a, b in pairwise(highs))


def test_a_decision_never_flips_back_and_survives_a_restart(store: Store) -> None:
    seen = run(store, lambda i: 0.88, 60, restart_at=30)  # a true 2-point gap
    decisions = [d["decision"] for d in seen]
    first = decisions.index("worse")
    assert set(decisions[:first]) <= {"no_evidence"} and set(decisions[first:]) == {"worse"}
    assert nested(seen)  # every look narrows (the restart read them back)
    assert all(d["look_low"] <= d["low"] <= d["high"] <= d["look_high"] for d in seen)
    assert {d["since_ms"] for d in seen} == {T0}  # the restart kept the experiment's start
    assert not any("disjoint_looks" in d for d in seen)
    assert seen[-1]["low"] < -0.02 < seen[-1]["high"]  # covers the true difference


def test_a_difference_that_moves_keeps_its_decision_and_says_so(store: Store) -> None:
    # much worse for ten windows, then better: this look alone would say "better"
    seen = run(store, lambda i: 0.70 if i < 10 else 0.97, 60)
    decisions = [d["decision"] for d in seen]
    assert set(decisions) == {"worse"} and nested(seen)
    assert seen[-1]["look_low"] > 0  # the look's own interval lies above 0 …
    assert seen[-1]["high"] < 0  # … the kept one does not flip
    assert seen[-1]["disjoint_looks"] > 0
    assert "start a new one (compare.since)" in seen[-1]["warning"]


def test_changing_the_interval_settings_restarts_the_narrowing(store: Store) -> None:
    checks = ABChecks(store, SIZE, settle_s=0)
    for i in range(5):
        commit(
            store,
            [window("3", T0 + i * SIZE, 500, 0.9, i), window("4", T0 + i * SIZE, 500, 0.9, 9 + i)],
        )
    end = T0 + 5 * SIZE
    (a,) = checks.findings(policy(), end - SIZE, end)["ab_accuracy_delta"]
    strict = policy({"baseline": "3", "candidate": "4", "alpha": 0.001})
    (b,) = checks.findings(strict, end - SIZE, end)["ab_accuracy_delta"]
    assert b.details["low"] == b.details["look_low"] < a.details["low"]  # wider, not narrowed
    assert b.details["confidence"] == pytest.approx(0.999)


def test_latest_takes_the_two_newest_versions_by_first_window(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    checks = ABChecks(store, SIZE, settle_s=0)
    p = policy("latest")
    commit(store, [window("1", T0, 300, 0.9, 1)])
    (f,) = checks.findings(p, T0, T0 + SIZE)["ab_accuracy_delta"]
    assert f.status == "insufficient_data"
    assert f.details["reason"] == (
        "compare: latest needs two versions of fraud with at least 100 events each; "
        "seen: 1 (300 events)"
    )
    commit(store, [window("1", T0 + SIZE, 300, 0.9, 2), window("10", T0 + SIZE, 300, 0.9, 3)])
    commit(store, [window("2", T0 + 2 * SIZE, 300, 0.9, 4)])
    with caplog.at_level(logging.INFO):
        (f,) = checks.findings(p, T0 + 2 * SIZE, T0 + 3 * SIZE)["ab_accuracy_delta"]
    assert f.feature == "2 vs 10"  # "10" came before "2" in event time
    assert "candidate 2 against baseline 10 (the two most recent versions" in caplog.text
    assert f.window_start_ms == T0 + 2 * SIZE  # both were seen from there


def test_a_named_version_not_seen_yet_is_insufficient_data_with_the_reason(store: Store) -> None:
    commit(store, [window("3", T0, 300, 0.9, 1)])
    (f,) = ABChecks(store, SIZE, 0).findings(policy(), T0, T0 + SIZE)["ab_accuracy_delta"]
    assert (f.status, f.details["reason"]) == (
        "insufficient_data",
        "version 4 of fraud not seen yet",
    )


def test_label_wait_bounds_the_windows_a_look_reads_afresh(store: Store) -> None:
    checks = ABChecks(store, SIZE, settle_s=7 * 86_400)  # the daemon's label TTL: a week
    short = policy({"baseline": "3", "candidate": "4", "label_wait": "10m"})
    default = policy()
    for i in range(30):
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 100, 0.9, 2 * i), window("4", start, 100, 0.9, 2 * i + 1)]
        )
        checks.findings(short, start, start + SIZE)
    end = T0 + 30 * SIZE
    state = checks.db.load(short.key, "3", "4")
    assert state is not None
    assert state.folded_until_ms == end - 10 * 60_000 - SIZE  # the wait and one window
    assert checks.looks._settle_ms(default.compare) == 86_400_000 + SIZE  # type: ignore[arg-type]


def test_an_incident_of_a_pair_no_longer_in_force_resolves(store: Store) -> None:
    from watchkeeper.policies.engine import PolicyEngine

    p = policy("latest")
    checks = ABChecks(store, SIZE, settle_s=0)
    engine = PolicyEngine(p, 300.0)
    for i in range(12):
        start = T0 + i * SIZE
        commit(
            store, [window("3", start, 400, 0.9, 2 * i), window("4", start, 400, 0.7, 2 * i + 1)]
        )
        _, events = engine.step(checks.findings(p, start, start + SIZE), start + SIZE)
        checks.describe(p, engine, events, start + SIZE)
    (incident,) = engine.incidents.values()
    assert incident.feature == "4 vs 3" and incident.summary.startswith("fraud: version 4 is ")
    start = T0 + 12 * SIZE  # version 5 arrives: the newest pair is now 5 against 4
    commit(store, [window("4", start, 400, 0.7, 99), window("5", start, 400, 0.7, 98)])
    _, events = engine.step(checks.findings(p, start, start + SIZE), start + SIZE)
    checks.describe(p, engine, events, start + SIZE)
    (resolved,) = [e for e in events if e.kind == "resolved"]
    assert resolved.incident.feature == "4 vs 3"
    assert resolved.note == "the A/B pair is no longer in force (now 5 vs 4)"
    assert not engine.incidents and all(m.feature != "4 vs 3" for m in engine.members.values())


@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(0.001, 1)), min_size=1, max_size=30))
def test_narrowing_rejects_exactly_when_some_look_did(looks: list[tuple[float, float]]) -> None:
    """So narrowing keeps the false-positive rate of the confidence sequence ("ever
    rejected over the looks", measured in tests/unit/test_sequential.py): the kept interval
    excludes 0 only if one of the looks' intervals did."""
    from watchkeeper.daemon.checks.ab_state import ABState
    from watchkeeper.detectors.sequential import Interval

    state = ABState("p", "3", "4", 0, 0, {})
    ever = False
    for centre, half in looks:
        iv = Interval(centre, centre - half, centre + half, 0.05, 100, 100, 1.0)
        ever |= not iv.covers(0.0)
        kept = state.narrow("ab_accuracy_delta", iv)
        if state.disjoint:
            return  # a disjoint look keeps the earlier intersection (counted, shown)
        assert kept.low >= iv.low and kept.high <= iv.high
    assert (not kept.covers(0.0)) == ever


def test_the_side_by_side_columns_carry_each_versions_label_free_estimates() -> None:
    from tests.unit.test_estimates_wiring import binary_reference, window_of

    reference, est = binary_reference()
    rng = np.random.default_rng(4)
    confident, unsure = window_of(est, rng.beta(8, 1, 5_000)), window_of(est, rng.beta(2, 2, 5_000))
    a, b = columns(confident, reference), columns(unsure, reference)
    assert a["estimated_accuracy"] > b["estimated_accuracy"]  # confident scores: higher
    direct = est.estimate("estimated_accuracy", confident.estimates.of(est)).value  # type: ignore[arg-type]
    assert a["estimated_accuracy"] == direct
    assert "estimated_accuracy" not in columns(confident)  # no reference: no estimates


def test_a_look_at_an_earlier_tick_than_the_fold_still_answers(store: Store) -> None:
    checks = ABChecks(store, SIZE, settle_s=0)
    for i in range(10):
        commit(
            store,
            [window("3", T0 + i * SIZE, 300, 0.9, i), window("4", T0 + i * SIZE, 300, 0.9, 50 + i)],
        )
    end = T0 + 10 * SIZE
    (late,) = checks.findings(policy(), end - SIZE, end)["ab_accuracy_delta"]
    (early,) = checks.findings(policy(), T0 + 2 * SIZE, T0 + 3 * SIZE)["ab_accuracy_delta"]
    assert late.details["n_baseline"] == 3000
    # the fold's nine windows: a re-run never sees fewer rows than were folded (the set of
    # rows of an experiment only grows, which the intervals' validity needs)
    assert early.details["n_baseline"] == 2700


def test_retention_removes_comparisons_no_longer_looked_at(store: Store) -> None:
    checks = ABChecks(store, SIZE, settle_s=0)
    commit(store, [window("3", T0, 300, 0.9, 1), window("4", T0, 300, 0.9, 2)])
    checks.findings(policy(), T0, T0 + SIZE)
    assert store.prune_model("fraud", T0 + SIZE)["ab_comparisons"] == 0  # looked at then
    assert store.prune_model("fraud", T0 + SIZE + 1)["ab_comparisons"] == 1
    assert checks.db.looks() == []


def test_versions_serving_different_traffic_are_flagged(store: Store) -> None:
    from watchkeeper.detectors.sketches import NumericSketch

    def with_amount(w: WindowSummary, shift: float, seed: int) -> WindowSummary:
        s = NumericSketch()
        s.update(np.random.default_rng(seed).normal(shift, 1.0, 2_000))
        w.features["amount"] = s
        return w

    checks = ABChecks(store, SIZE, settle_s=0)
    commit(
        store,
        [
            with_amount(window("3", T0, 2_000, 0.9, 1), 0.0, 1),
            with_amount(window("4", T0, 2_000, 0.9, 2), 1.0, 2),  # other traffic
        ],
    )
    checks.findings(policy(), T0, T0 + SIZE)
    shift = checks.db.looks()[0]["last"]["window"]["population"]
    assert shift["largest"][0]["feature"] == "amount" and shift["largest"][0]["js"] > 0.1
    assert "the versions' inputs differ (amount" in shift["warning"]
    commit(
        store,
        [
            with_amount(window("3", T0 + SIZE, 2_000, 0.9, 3), 0.0, 3),
            with_amount(window("4", T0 + SIZE, 2_000, 0.9, 4), 0.0, 4),  # the same traffic
        ],
    )
    checks.findings(policy(), T0 + SIZE, T0 + 2 * SIZE)
    alike = checks.db.looks()[0]["last"]["window"]["population"]
    assert (
        "warning" not in alike
        and alike["largest"][0]["js"] < 3 * alike["largest"][0]["noise_floor"]
    )


def test_the_population_check_is_a_metric_rules_and_promotion_conditions_read(
    store: Store,
) -> None:
    from watchkeeper.detectors.ab import js_noise_floor, population_shift

    def with_amount(w: WindowSummary, shift: float, seed: int) -> WindowSummary:
        s = NumericSketch()
        s.update(np.random.default_rng(seed).normal(shift, 1.0, 2_000))
        w.features["amount"] = s
        return w

    checks = ABChecks(store, SIZE, settle_s=0)
    ab = policy(
        {
            "baseline": "3",
            "candidate": "4",
            "promotion": {"when": ["ab_population_js_distance <= 0.1"]},
        },
        metric="ab_population_js_distance",
        critical=0.2,
    )
    windows = [
        with_amount(window("3", T0, 2_000, 0.9, 1), 0.0, 1),
        with_amount(window("4", T0, 2_000, 0.9, 2), 1.0, 2),  # other traffic
    ]
    commit(store, windows)
    (finding,) = checks.findings(ab, T0, T0 + SIZE)[ab.rules[0].key]
    # an independent computation on the stored windows themselves
    expected = population_shift(windows[0], windows[1])["amount"]
    assert finding.value == expected["js"] > 0.2 > 3 * expected["noise_floor"]
    assert expected["noise_floor"] == js_noise_floor(10, 2_000, 2_000)
    assert finding.feature == "4 vs 3" and finding.details["feature"] == "amount"
    assert (finding.window_start_ms, finding.window_end_ms) == (T0, T0 + SIZE)
    assert "version 4's inputs differ from 3's: amount" in finding.details["text"]
    (last,) = checks.db.looks()
    assert last["decision"]["decision"] == "reject"
    assert "ab_population_js_distance <= 0.1 is false" in last["decision"]["reasons"][0]
    # the same traffic in the next policy window: within the noise, the value is 0
    commit(
        store,
        [
            with_amount(window("3", T0 + SIZE, 2_000, 0.9, 3), 0.0, 3),
            with_amount(window("4", T0 + SIZE, 2_000, 0.9, 4), 0.0, 4),
        ],
    )
    (alike,) = checks.findings(ab, T0 + SIZE, T0 + 2 * SIZE)[ab.rules[0].key]
    assert alike.value == 0.0 and alike.status == "ok"
    assert alike.details["js"] < 3 * alike.details["noise_floor"]
    assert alike.details["text"].startswith("versions 4 and 3 serve alike inputs")
    # the text says why its 0 sits beside a non-zero distance: the 3× noise-floor rule
    floor = alike.details["noise_floor"]
    assert f"within 3× its noise floor {floor:.3f} (= {3 * floor:.3f})" in alike.details["text"]
    assert alike.details["text"].endswith("so the value is 0")


def test_without_input_features_the_population_metric_says_why(store: Store) -> None:
    checks = ABChecks(store, SIZE, settle_s=0)
    ab = policy(metric="ab_population_js_distance", critical=0.2)
    commit(store, [window("3", T0, 300, 0.9, 1), window("4", T0, 300, 0.9, 2)])
    (finding,) = checks.findings(ab, T0, T0 + SIZE)[ab.rules[0].key]
    assert finding.status == "insufficient_data" and finding.value is None
    assert "no input feature" in finding.details["reason"]


def test_the_side_by_side_columns_carry_every_realised_metric_and_the_score_quantiles() -> None:
    w = window("4", T0, 2_000, 0.8, 7)
    side = columns(w)
    assert w.performance is not None and w.prediction is not None
    realised = w.performance.metrics()
    assert {"precision", "recall", "specificity"} <= set(realised)
    for name, value in realised.items():  # every realised metric the labels allow
        assert side[name] == value, name
    p10, p50, p90 = w.prediction.quantiles([0.1, 0.5, 0.9])
    assert (side["score_p10"], side["score_p50"], side["score_p90"]) == (p10, p50, p90)
    # regression: the mean absolute percentage error too
    r = WindowSummary("fraud", "4", T0, SIZE)
    r.performance = PerformanceSketch("regression")
    r.performance.update_regression(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0]))
    assert columns(r)["mape"] == r.performance.metrics()["mape"]


def test_status_lists_the_label_free_estimate_columns_it_shows() -> None:
    from watchkeeper.daemon.checks.ab_status import _entry

    merged = {"baseline": {"events": 10, "estimated_accuracy": 0.9}, "candidate": {"events": 9}}
    window_ = {"baseline": {"events": 2, "estimated_f1": 0.5}, "candidate": {}}
    row = {
        "baseline": "3",
        "candidate": "4",
        "since_ms": T0,
        "decision": None,
        "last": {"merged": merged, "window": window_},
    }
    entry = _entry(row)
    cols = entry["columns"]
    assert cols[0] == "events"
    # the estimates after the others, as the columns carry them
    assert cols[-2:] == ["estimated_accuracy", "estimated_f1"]
    # and `watchkeeper status` prints their rows
    from rich.console import Console
    from watchkeeper.daemon.cli.ab import print_ab

    console = Console(record=True, width=200)
    table = {"fraud": {"model": "fraud", "comparisons": [entry]}}
    print_ab(console, table)
    text = console.export_text()
    assert "estimated_accuracy" in text and "0.9" in text.split("estimated_accuracy")[1]
    assert "estimated_f1" in text
