"""Segments: per-segment window state, its merges, the reference's segments, and rules.

The issue's promises: a shift injected into one segment only is found in that segment
and in no other; merged per-segment windows equal the whole window (exactly, on every
exact statistic, and on quantiles with a KLL large enough to hold every value); top-K
plus ``(other)`` stays bounded; the state survives serialisation.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.checks.segment_findings import add_segment_findings
from watchkeeper.daemon.offline.reference import build_reference
from watchkeeper.detectors.category_counts import CategoryCounts
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.profile import ReferenceProfile, profile_from_window
from watchkeeper.detectors.segment_reference import declared_segments, segment_plan
from watchkeeper.detectors.segment_update import feed_groups
from watchkeeper.detectors.segments import OTHER, SegmentSpec, label_of, value_hash
from watchkeeper.detectors.sketches import NumericSketch
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.schema import Policy
from watchkeeper.policies.segments import segment_view

COUNTRIES = ("DE", "FR", "US", "IT", "ES")
EXACT_K = 4000  # KLL holds every value below this many: quantiles are exact


def make_batch(n: int, seed: int, shift: dict[str, float] | None = None) -> ColumnBatch:
    """``n`` prediction events: amount and age numeric, country and channel categorical;
    ``shift`` moves amount by that many σ in the named countries."""
    rng = np.random.default_rng(seed)
    country = rng.choice(COUNTRIES, size=n, p=[0.4, 0.25, 0.2, 0.1, 0.05]).astype(object)
    none = np.zeros(n, dtype=bool)
    null_country = rng.random(n) < 0.02
    country[null_country] = None
    amount = rng.normal(size=n)
    for c, by in (shift or {}).items():
        amount[country == c] += by
    channel = rng.choice(["web", "app", "pos"], size=n).astype(object)

    def numeric(v: np.ndarray[Any, Any]) -> Column:
        return Column("numeric", v, none.copy(), none.copy())

    return ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(seed * 10**7, seed * 10**7 + n, dtype=np.uint64),
        features={
            "amount": numeric(amount),
            "age": numeric(rng.normal(40, 10, size=n)),
            "country": Column("categorical", country, null_country, none.copy()),
            "channel": Column("categorical", channel, none.copy(), none.copy()),
        },
        prediction=numeric(rng.random(n)),
        latency_ms=rng.gamma(2.0, 10.0, size=n),
    )


def window_of(
    batches: list[ColumnBatch],
    plan: tuple[SegmentSpec, ...],
    k: int = 200,
    edges: dict[str, tuple[float, ...]] | None = None,
) -> WindowSummary:
    cut = edges or {}
    settings_ = SketchSettings(
        k=k,
        bins=lambda model, column: cut.get(column),
        segments=lambda model: plan,
        segment_k=k,
    )
    w = WindowSummary("fraud", "1", 0, 10**9, settings_)
    for b in batches:
        w.update(b, np.arange(len(b)))
    return w


def reference_of(batches: list[ColumnBatch], plan: tuple[SegmentSpec, ...]) -> ReferenceProfile:
    """A reference from a window with segments (then cut at its own edges, exactly)."""
    first = profile_from_window(window_of(batches, plan))
    edges = {n: p.edges for n, p in [*first.features.items()] if p.kind == "numeric" and p.edges}
    return profile_from_window(window_of(batches, plan, edges=edges))


PLAN = (SegmentSpec("country", 20, COUNTRIES[:4]), SegmentSpec("channel", 20))


# -- window state ------------------------------------------------------------------------


def _exact(sketch: Any) -> Any:
    """Every exact statistic of a sketch (KLL aside)."""
    if isinstance(sketch, NumericSketch):
        bins = sketch.histogram(sketch._edges) if sketch._edges is not None else None
        return (
            sketch.count,
            sketch.nulls,
            sketch.missing,
            sketch.nans,
            sketch.min,
            sketch.max,
            None if bins is None else bins.tolist(),
        )
    assert isinstance(sketch, CategoryCounts)
    return (dict(sketch.counts), sketch.nulls, sketch.missing, sketch.overflow)


def test_merged_segments_equal_the_whole_window() -> None:
    edges = {"amount": (-1.0, 0.0, 1.0), "age": (30.0, 40.0, 50.0)}
    w = window_of([make_batch(2000, 1), make_batch(1500, 2)], PLAN, k=EXACT_K, edges=edges)
    for feature, split in w.segments.items():
        merged = WindowSummary("fraud", "1", 0, 10**9, SketchSettings(k=EXACT_K))
        for child in split.children.values():
            merged.absorb(child)
        assert merged.events == w.events, feature
        assert merged.count == 3500
        for name, sketch in w.features.items():
            assert _exact(merged.features[name]) == _exact(sketch), (feature, name)
        for name in ("amount", "age"):
            ranks = np.linspace(0, 1, 21)
            mine, whole = merged.features[name], w.features[name]
            assert isinstance(mine, NumericSketch) and isinstance(whole, NumericSketch)
            assert mine.quantiles(ranks).tolist() == whole.quantiles(ranks).tolist()
        assert _exact(merged.latency) == _exact(w.latency)
        assert merged.latency.quantiles([0.5, 0.99]).tolist() == (
            w.latency.quantiles([0.5, 0.99]).tolist()
        )
        assert merged.prediction is not None and w.prediction is not None
        assert _exact(merged.prediction) == _exact(w.prediction)


def test_country_children_hold_exactly_their_rows() -> None:
    b = make_batch(4000, 3)
    w = window_of([b], PLAN, k=EXACT_K)
    country = b.features["country"].values
    split = w.segments["country"]
    assert set(split.children) == {*COUNTRIES[:4], OTHER}
    for label, child in split.children.items():
        rows = (
            np.array([c == label for c in country])
            if label != OTHER
            else np.array([c is None or c not in COUNTRIES[:4] for c in country])
        )
        assert child.count == int(rows.sum())
        amount = child.features["amount"]
        assert isinstance(amount, NumericSketch)
        values = b.features["amount"].values[rows]
        assert amount.count == values.size and amount.min == values.min()
        assert amount.max == values.max()
        assert child.sample.capacity == 0 and not child.segments


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 599), max_size=5, unique=True),
    seed=st.integers(0, 10**6),
    k=st.integers(1, 6),
)
def test_flush_parts_merge_exactly_into_one_pass(cuts: list[int], seed: int, k: int) -> None:
    """Any split of the rows into flushes (and any merge order) gives the segments one
    pass over all rows gives, for a fixed value set and for the hash fallback."""
    b = make_batch(600, seed)
    plan = (SegmentSpec("country", k, COUNTRIES[:k]), SegmentSpec("channel", k))
    settings_ = SketchSettings(k=EXACT_K, segments=lambda model: plan, segment_k=EXACT_K)
    whole = WindowSummary("fraud", "1", 0, 10**9, settings_)
    whole.update(b, np.arange(600))
    bounds = [0, *sorted(cuts), 600]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        part = WindowSummary("fraud", "1", 0, 10**9, settings_)
        part.update(b, np.arange(lo, hi))
        parts.append(WindowSummary.from_dict(json.loads(json.dumps(part.to_dict()))))
    merged = WindowSummary("fraud", "1", 0, 10**9, settings_)
    for part in reversed(parts):
        merged.merge(part)
    for feature in ("country", "channel"):
        mine, theirs = merged.segments[feature], whole.segments[feature]
        assert set(mine.children) == set(theirs.children)
        assert len(mine.children) <= k + 1
        for label, child in theirs.children.items():
            other = mine.children[label]
            assert other.events == child.events
            for name, sketch in child.features.items():
                assert _exact(other.features[name]) == _exact(sketch), (feature, label, name)


def test_hash_fallback_is_bounded_and_deterministic() -> None:
    n = 5000
    rng = np.random.default_rng(4)
    ids = np.array([f"user-{i}" for i in rng.integers(0, 2000, n)], dtype=object)
    none = np.zeros(n, dtype=bool)
    b = ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(n, dtype=np.uint64),
        features={"user": Column("categorical", ids, none, none)},
    )
    w = window_of([b], (SegmentSpec("user", 20),))
    split = w.segments["user"]
    kept = sorted(set(split.children) - {OTHER}, key=value_hash)
    expected = sorted({label_of(v, "categorical") for v in ids}, key=value_hash)[:20]
    assert kept == expected  # the 20 smallest hashes: the same on every replica
    assert sum(c.count for c in split.children.values()) == n
    assert len(split.children) == 21


def test_event_values_are_bounded_and_cleaned() -> None:
    assert label_of("x" * 1000, "categorical") == "x" * 64
    assert label_of("DE]<script>\n", "categorical") == "DE)<script>"
    assert label_of(OTHER, "categorical") != OTHER


def test_serialisation_round_trip() -> None:
    w = window_of([make_batch(1500, 5)], PLAN)
    data = json.loads(json.dumps(w.to_dict()))
    back = WindowSummary.from_dict(data)
    assert back.to_dict() == data
    assert back.segments["country"].spec == PLAN[0]
    old = dict(data)
    del old["segments"]
    assert WindowSummary.from_dict(old).segments == {}  # a window stored before segments


def test_rollup_keeps_segments_in_the_rolled_up_window() -> None:
    a = window_of([make_batch(500, 6)], PLAN)
    b = WindowSummary.from_dict(window_of([make_batch(700, 7)], PLAN).to_dict())
    b.start_ms = 10**9
    for c in b.segments["country"].children.values():
        c.start_ms = 10**9
    up = WindowSummary.rollup([a, b], 0, 2 * 10**9)
    child = up.segments["country"].children["DE"]
    assert (child.start_ms, child.size_ms) == (0, 2 * 10**9)
    assert sum(c.count for c in up.segments["country"].children.values()) == 1200


# -- the reference's segments -------------------------------------------------------------


def test_reference_segments_round_trip_and_old_profiles_load(tmp_path: Path) -> None:
    ref = reference_of([make_batch(5000, 8)], PLAN)
    assert set(ref.segments) == {"country", "channel"}
    path = tmp_path / "ref.json"
    ref.save(path)
    back = ReferenceProfile.load(path)
    assert back.to_dict() == ref.to_dict()
    de = back.segments["country"].profile("DE")
    assert de is not None and de.features["amount"].kind == "numeric"
    whole = back.features["amount"]
    assert de.features["amount"].edges == whole.edges  # the whole reference's bins
    old = ref.to_dict()
    del old["segments"]  # a profile written before segments
    assert ReferenceProfile.from_dict(old).segments == {}


def test_reference_from_a_file_with_segments(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    n = 6000
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "country": rng.choice(["DE", "FR", "US", "IT"], size=n, p=[0.5, 0.3, 0.15, 0.05]),
            "channel": rng.choice([1, 2], size=n),
            "score": rng.random(n),
        }
    )
    frame.loc[::50, "country"] = None
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    ref = build_reference(
        path, "fraud", prediction="score", segments=["country", "channel"], segment_top_k=2
    )
    country = ref.segments["country"]
    assert country.values == ("DE", "FR")
    de = country.profile("DE")
    other = country.profile(OTHER)
    assert de is not None and other is not None
    expected_de = int((frame["country"] == "DE").sum())
    assert de.rows == expected_de
    assert other.rows == n - expected_de - int((frame["country"] == "FR").sum())
    amount = de.features["amount"]
    assert amount.kind == "numeric" and amount.edges == ref.features["amount"].edges
    values = frame.loc[frame["country"] == "DE", "amount"].to_numpy()
    counts = np.bincount(np.searchsorted(amount.edges, values, side="left"))
    assert list(amount.proportions) == (counts / counts.sum()).tolist()  # exact bins
    assert ref.segments["channel"].values == ("1", "2") or ref.segments["channel"].values == (
        "2",
        "1",
    )
    assert de.prediction is not None
    plan = segment_plan([SegmentSpec("country", 20), SegmentSpec("os")], [ref])
    assert plan == (SegmentSpec("country", 2, ("DE", "FR")), SegmentSpec("os"))


def test_declared_segments_first_policy_wins() -> None:
    declared = declared_segments([("fraud", (SegmentSpec("country", 5),)), ("spam", ())])
    assert declared == {"fraud": (SegmentSpec("country", 5),)}


# -- rules per segment ---------------------------------------------------------------------


def _policy(**extra: Any) -> Policy:
    rules = [
        {"name": "drift", "metric": "psi", "features": ["amount"], "warn": 0.1, "critical": 0.25},
        {"name": "lat", "metric": "latency_p99_ms", "critical": 10_000.0},
    ]
    return Policy.model_validate(
        {"model": "fraud", "min_samples": 100, "segments": ["country"], "rules": rules} | extra
    )


def _findings(policy: Policy, reference: ReferenceProfile, window: WindowSummary) -> Any:
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, window, 3600.0)
    return found


def test_a_shift_in_one_segment_is_found_there_and_nowhere_else() -> None:
    plan = (SegmentSpec("country", 20, COUNTRIES),)
    reference = reference_of([make_batch(20_000, 10)], plan)
    edges = {"amount": reference.features["amount"].edges}
    # the window counts the reference's bins exactly, as at ingest
    current = window_of([make_batch(20_000, 11, shift={"FR": 1.0})], plan, edges=edges)
    found = _findings(_policy(), reference, current)
    psi = {f.feature: f for f in found["drift"]}
    assert psi["amount[country=FR]"].value > 0.25
    assert psi["amount[country=FR]"].details["segment"] == {"country": "FR"}
    for label in ("DE", "US", "IT", "ES"):
        assert psi[f"amount[country={label}]"].value < 0.1, label
    # and the engine opens an incident for FR alone, naming the segment
    engine = PolicyEngine(_policy())
    _, events = engine.step(found, 0)
    assert [e.incident.feature for e in events] == ["amount[country=FR]"]
    assert "on fraud.amount for country=FR" in events[0].incident.summary
    assert events[0].incident.summary.startswith("psi ")


def test_sample_size_guard_applies_per_segment() -> None:
    plan = (SegmentSpec("country", 20, COUNTRIES),)
    reference = reference_of([make_batch(20_000, 12)], plan)
    current = window_of([make_batch(2_000, 13)], plan)  # ES: ~100 rows, IT ~200
    found = _findings(_policy(segment_min_samples=150), reference, current)
    psi = {f.feature: f for f in found["drift"]}
    assert psi["amount[country=ES]"].status == "insufficient_data"
    assert "min_samples 150" in psi["amount[country=ES]"].details["reason"]
    assert psi["amount[country=DE]"].status == "ok"


def test_reference_without_segments_says_how_to_fix_it() -> None:
    plan = (SegmentSpec("country", 20),)
    reference = profile_from_window(window_of([make_batch(3000, 14)], ()))
    current = window_of([make_batch(3000, 15)], plan)
    found = _findings(_policy(), reference, current)
    reasons = {f.details["reason"] for f in found["drift"]}
    assert reasons == {
        "the reference has no segments of country: rebuild it with --segments country"
    }
    latency = [f for f in found["lat"] if f.status == "ok"]
    assert latency and all(f.feature.startswith("[country=") for f in latency)


@pytest.mark.parametrize("group", [None, "segment"])
def test_a_digest_rule_groups_the_segments_that_drifted(group: str | None) -> None:
    """By default one incident names both shifted countries (as a digest names features);
    ``group: segment`` gives one per segment. Either resolves once the shift is gone."""
    plan = (SegmentSpec("country", 20, COUNTRIES),)
    reference = reference_of([make_batch(20_000, 16)], plan)
    edges = {"amount": reference.features["amount"].edges}
    current = window_of([make_batch(20_000, 17, shift={"FR": 1.0, "DE": 1.0})], plan, edges=edges)
    rule = {"name": "drift", "metric": "psi", "features": ["amount", "age"], "critical": 0.25}
    policy = _policy(rules=[rule | ({"group": group} if group else {})])
    engine = PolicyEngine(policy)
    found = _findings(policy, reference, current)
    _, events = engine.step(found, 0)
    by_slot = {e.incident.feature: e.incident for e in events}
    psi = {f.feature: f.value for f in found["drift"]}
    if group is None:
        (incident,) = by_slot.values()
        assert incident.feature == "*"
        assert incident.members == {k: psi[k] for k in ("amount[country=DE]", "amount[country=FR]")}
        assert incident.summary.startswith("amount drifted on fraud in 2 segments (psi critical): ")
        assert "country=DE" in incident.summary and "country=FR" in incident.summary
    else:
        assert set(by_slot) == {"*[country=DE]", "*[country=FR]"}
        assert by_slot["*[country=DE]"].summary.startswith(
            "1 feature drifted on fraud for country=DE"
        )
    # back to normal: every incident resolves
    calm = window_of([make_batch(20_000, 18)], plan, edges=edges)
    _, events = engine.step(_findings(policy, reference, calm), 1)
    assert sorted((e.kind, e.incident.feature) for e in events) == sorted(
        ("resolved", slot) for slot in by_slot
    )
    assert engine.incidents == {}


# -- the policy schema ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"segments": ["country", "country"]}, "names a feature twice"),
        ({"segments": ["country"], "segment_top_k": 0}, "greater than or equal to 1"),
        ({"segments": ["country"], "segment_top_k": 101}, "less than or equal to 100"),
        ({"segment_top_k": 5}, "segment_top_k without segments"),
        ({"segments": ["a[b"]}, "should match pattern"),
        ({"segments": ["country"], "segment_rules": ["nope"]}, "not a rule of this policy"),
        ({"segments": ["a", "b", "c", "d", "e"]}, "at most 4 items"),
        ({"segments": ["country"], "segment_topk": 5}, "Extra inputs are not permitted"),
    ],
)
def test_policy_validation(extra: dict[str, Any], message: str) -> None:
    rules = [
        {"metric": "psi", "critical": 0.2},
        {"name": "acc", "metric": "accuracy", "critical": 0.8},
        {"name": "trust", "metric": "estimate_mismatch", "critical": 1.0},
    ]
    with pytest.raises(ValueError, match=message):
        Policy.model_validate({"model": "fraud", "rules": rules} | extra)


def test_policy_defaults() -> None:
    rules = [
        {"metric": "psi", "critical": 0.2},
        {"name": "acc", "metric": "accuracy", "critical": 0.8},
    ]
    policy = Policy.model_validate({"model": "fraud", "rules": rules, "segments": ["country"]})
    assert policy.segment_top_k == 20
    assert policy.segmented_rules() == ["psi", "acc"]  # drift, sanity and realised ones
    assert policy.segment_specs() == (SegmentSpec("country", 20),)
    assert Policy.model_validate({"model": "fraud", "rules": rules}).segmented_rules() == []


def test_grouped_feed_equals_one_update_per_group() -> None:
    rng = np.random.default_rng(20)
    values = rng.normal(size=3000)
    values[::97] = np.nan
    values[::211] = np.inf
    null = rng.random(3000) < 0.03
    column = Column("numeric", np.where(null, np.nan, values), null, np.zeros(3000, dtype=bool))
    sizes = np.array([1000, 0, 1500, 500], dtype=np.intp)
    rows = rng.permutation(3000).astype(np.intp)
    edges = (-1.0, 0.0, 1.0)

    def new() -> NumericSketch:
        s = NumericSketch(EXACT_K)
        s.count_bins_on(edges)
        return s

    grouped = [new() for _ in sizes]
    feed_groups(grouped, column, rows, sizes)
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    for j, sketch in enumerate(grouped):
        one = new()
        part = rows[bounds[j] : bounds[j + 1]]
        present, nulls, missing = column.present(part)
        one.update(present, nulls=nulls, missing=missing)
        assert _exact(sketch) == _exact(one) and (sketch.nans, sketch.infs) == (one.nans, one.infs)
        if one.count:
            assert (
                sketch.quantiles([0.1, 0.5, 0.9]).tolist()
                == one.quantiles([0.1, 0.5, 0.9]).tolist()
            )
            assert sketch.mean == pytest.approx(one.mean, rel=1e-12)
            assert sketch.variance == pytest.approx(one.variance, rel=1e-9)


def test_the_console_reads_a_segment_slot_from_both_sides() -> None:
    reference = reference_of([make_batch(3000, 21)], PLAN)
    window = window_of([make_batch(3000, 22)], PLAN)
    name, ref, win = segment_view(reference, window, "amount[country=DE]")
    assert name == "amount" and ref is reference.segments["country"].profile("DE")
    assert win is window.segments["country"].children["DE"]
    assert segment_view(reference, window, "amount") == ("amount", reference, window)
    assert segment_view(reference, window, "amount[os=ios]")[1:] == (None, None)


def _every_segment_metric() -> list[str]:
    from watchkeeper.detectors.registry import METRICS

    return [n for n, m in METRICS.items() if m.scope in ("column", "window")]


@pytest.mark.parametrize("metric", _every_segment_metric())
def test_every_drift_and_sanity_metric_is_scored_in_every_segment(metric: str) -> None:
    """Each segment gets a value of each column and window metric (those of realised
    and estimated performance: test_segment_performance.py), the traffic ratio against
    the segment's own baseline."""
    from watchkeeper.detectors.evaluate import evaluate
    from watchkeeper.detectors.registry import METRICS

    plan = (SegmentSpec("country", 20, COUNTRIES),)
    reference = reference_of([make_batch(20_000, 30)], plan)
    edges = {"amount": reference.features["amount"].edges}
    batch = make_batch(20_000, 31)
    if metric == "prediction_top_class_share":  # a classifier's predicted classes
        channel = batch.features["channel"]
        batch.prediction = Column("categorical", channel.values, channel.null, channel.missing)
    current = window_of([batch], plan, edges=edges)
    rule = {"name": "r", "metric": metric, "critical": 1e9}
    policy = Policy.model_validate(
        {"model": "fraud", "min_samples": 100, "segments": ["country"], "rules": [rule]}
    )
    traffic = {("country", c, "predictions"): (5.0, 6.0) for c in COUNTRIES}
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, current, 3600.0, traffic)
    split = current.segments["country"]
    segs = reference.segments["country"]
    for label in COUNTRIES:
        mine = [f for f in found["r"] if f.details["segment"] == {"country": label}]
        scored = [f for f in mine if f.status == "ok"]
        assert scored, (label, {f.details.get("reason") for f in mine})
        # the value of the segment's child against the same segment of the reference
        child, ref = split.children[label], segs.profile(label)
        rates = traffic[("country", label, "predictions")] if metric == "traffic_ratio" else ()
        direct = evaluate(ref, child, [metric], duration_s=3600.0, baseline_rates=rates)
        want = {f.feature: f.value for f in direct if f.status == "ok"}
        assert {f.details["feature"]: f.value for f in scored} == want
        assert METRICS[metric].scope != "column" or len(want) >= 1
