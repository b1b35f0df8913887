"""Realised performance per segment: the label join keeps each prediction's segment
labels, grades a pair into its window and into its segments' children, per-segment
performance merges exactly to the whole window's, and a performance rule runs per segment
against the same segment of the reference."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.checks.segment_findings import add_segment_findings
from watchkeeper.daemon.eventtime.windows import WindowKey
from watchkeeper.daemon.offline.reference import build_reference
from watchkeeper.daemon.store.label_grading import grade_pairs
from watchkeeper.daemon.store.label_join import JoinBuffer, JoinSettings
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.estimate_sketch import BinaryEstimateSketch
from watchkeeper.detectors.estimation_reference import fit_binary_estimation
from watchkeeper.detectors.profile import ReferenceProfile, profile_from_window
from watchkeeper.detectors.segments import OTHER, SegmentSpec
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.schema import Policy

COUNTRIES = ("DE", "FR", "US", "IT", "ES")
SIZE = 3_600_000
PLAN = (SegmentSpec("country", 20, COUNTRIES[:4]), SegmentSpec("channel", 20))


def _batches(
    n: int, seed: int, wrong: dict[str, float] | None = None, task: str = "classification"
) -> tuple[ColumnBatch, ColumnBatch, np.ndarray[Any, Any]]:
    """A predictions batch and its labels batch (``n`` request ids); ``wrong``: the share
    of each country's predictions whose label disagrees (else 5 %). Returns the rows'
    countries too."""
    rng = np.random.default_rng(seed)
    none = np.zeros(n, dtype=bool)
    country = rng.choice(COUNTRIES, size=n, p=[0.4, 0.25, 0.2, 0.1, 0.05]).astype(object)
    null_country = rng.random(n) < 0.02
    country[null_country] = None
    channel = rng.choice(["web", "app", "pos"], size=n).astype(object)
    ids = np.array([f"s{seed}-{i}" for i in range(n)], dtype=object)
    ts = np.arange(n, dtype=np.int64) * 10
    if task == "regression":
        score = rng.integers(10, 100, size=n).astype(np.float64)  # no 0 / 1 labels
        truth = score + rng.integers(-5, 6, size=n)
        label = Column("numeric", truth, none.copy(), none.copy())
        prediction = Column("numeric", score, none.copy(), none.copy())
    else:
        score = rng.random(n)
        predicted = score >= 0.5
        share = np.full(n, 0.05)
        for c, p in (wrong or {}).items():
            share[country == c] = p
        flip = rng.random(n) < share
        truth = np.where(flip, ~predicted, predicted).astype(np.int64)
        label = Column("numeric", truth.astype(np.float64), none.copy(), none.copy())
        prediction = Column("numeric", score, none.copy(), none.copy())
    versions = np.full(n, "1", dtype=object)
    keys = np.arange(n, dtype=np.uint64)
    preds = ColumnBatch(
        "fraud",
        "predictions",
        ts,
        versions,
        keys,
        request_ids=ids,
        features={
            "country": Column("categorical", country, null_country, none.copy()),
            "channel": Column("categorical", channel, none.copy(), none.copy()),
        },
        prediction=prediction,
    )
    labels = ColumnBatch("fraud", "labels", ts + 5, versions, keys, request_ids=ids, label=label)
    return preds, labels, country


def _graded(
    preds: ColumnBatch, labels: ColumnBatch, plan: Any = PLAN, parts: int = 1
) -> WindowSummary:
    """Join and grade as the store does (pairs by request id), in ``parts`` commits,
    each graded into a fresh window and merged, as window parts are."""
    buffer = JoinBuffer()
    buffer.add(preds, SIZE, plan)
    buffer.add(labels, SIZE, plan)
    by_id = {p["request_id"]: p for p in buffer.predictions}
    pairs = [(by_id[lab["request_id"]], lab) for lab in buffer.labels]
    out = WindowSummary("fraud", "1", 0, SIZE)
    for chunk in np.array_split(np.arange(len(pairs)), parts):
        graded: dict[WindowKey, WindowSummary] = {}
        grade_pairs(graded, SIZE, [pairs[i] for i in chunk], JoinSettings().threshold, buffer.plans)
        for window in graded.values():
            out.merge(window)
    return out


def test_predictions_keep_their_segment_labels() -> None:
    preds, _, country = _batches(200, 1)
    preds.features["country"].values[0] = "x[y]\x00" * 30  # bounded and cleaned
    preds.features["country"].null[0] = False
    buffer = JoinBuffer()
    buffer.add(preds, SIZE, PLAN)
    rows = [orjson.loads(p["segments"]) for p in buffer.predictions]
    for row, c, ch in zip(rows, country.tolist(), preds.features["channel"].values, strict=True):
        if c is None or c not in COUNTRIES[:4]:
            continue  # the first row's and the out-of-set ones: below
        assert row == {"country": c, "channel": ch}
    assert rows[0]["country"] == OTHER  # outside the fixed value set
    es = [r for r, c in zip(rows, country.tolist(), strict=True) if c == "ES"]
    nulls = [r for r, c in zip(rows, country.tolist(), strict=True) if c is None][1:]
    assert es and all(r["country"] == OTHER for r in es)
    assert nulls and all(r["country"] == OTHER for r in nulls)
    # the hash fallback keeps the (bounded) label: the window decides its K at grading
    fallback = JoinBuffer()
    fallback.add(preds, SIZE, (SegmentSpec("country", 2),))
    first = orjson.loads(fallback.predictions[0]["segments"])["country"]
    assert first == ("x(y)" * 30)[:64]
    # without a plan: no segment labels (graded into the window only)
    plain = JoinBuffer()
    plain.add(preds, SIZE)
    assert {p["segments"] for p in plain.predictions} == {None}


def _children(window: WindowSummary, feature: str) -> dict[str, WindowSummary]:
    return window.segments[feature].children


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    parts=st.integers(1, 4),
    task=st.sampled_from(["classification", "regression"]),
    k=st.integers(1, 5),
)
def test_per_segment_performance_merges_to_the_whole(
    seed: int, parts: int, task: str, k: int
) -> None:
    preds, labels, _ = _batches(600, seed, task=task)
    plan = (SegmentSpec("country", 20, COUNTRIES[:3]), SegmentSpec("channel", k))
    window = _graded(preds, labels, plan, parts)
    assert window.performance is not None
    whole = window.performance
    assert len(_children(window, "channel")) <= k + 1  # hash fallback: bounded
    for feature in ("country", "channel"):
        kids = [c.performance for c in _children(window, feature).values()]
        assert all(p is not None for p in kids)
        assert sum(p.n for p in kids if p is not None) == whole.n == 600
        if task == "regression":
            # integer errors: these sums are exact whatever the order
            for attr in ("sum_abs", "sum_sq", "n_ape"):
                assert sum(getattr(p, attr) for p in kids if p is not None) == getattr(whole, attr)
            ape = sum(p.sum_ape for p in kids if p is not None)  # ratios: rounding only
            assert np.isclose(ape, whole.sum_ape, rtol=1e-12, atol=0)
        else:
            total: Counter[tuple[str, str]] = Counter()
            for p in kids:
                assert p is not None
                total.update(p.confusion)
            assert total == whole.confusion
            assert np.array_equal(sum(p.pos for p in kids if p is not None), whole.pos)
    # and one commit grades what several do
    once = _graded(preds, labels, plan, 1)
    for feature in ("country", "channel"):
        assert {
            label: c.performance.to_dict() if c.performance else None
            for label, c in _children(once, feature).items()
        }.keys() == _children(window, feature).keys()
        for label, child in _children(once, feature).items():
            mine, theirs = child.performance, _children(window, feature)[label].performance
            assert mine is not None and theirs is not None
            assert mine.n == theirs.n
            if task != "regression":
                assert mine.confusion == theirs.confusion


def test_a_segment_child_is_graded_with_exactly_its_rows() -> None:
    preds, labels, country = _batches(2_000, 3, wrong={"FR": 0.4})
    window = _graded(preds, labels)
    truth = labels.label.values if labels.label is not None else None
    assert truth is not None and preds.prediction is not None
    right = (preds.prediction.values >= 0.5).astype(np.int64) == truth
    for c in COUNTRIES[:4]:
        perf = _children(window, "country")[c].performance
        assert perf is not None
        assert perf.metrics()["accuracy"] == right[country == c].mean()  # independent
    other = np.array([c not in COUNTRIES[:4] for c in country.tolist()])
    perf = _children(window, "country")[OTHER].performance
    assert perf is not None and perf.metrics()["accuracy"] == right[other].mean()


def test_pending_rows_stored_before_segments_grade_the_window_only() -> None:
    preds, labels, _ = _batches(300, 4)
    buffer = JoinBuffer()
    buffer.add(preds, SIZE, PLAN)
    buffer.add(labels, SIZE, PLAN)
    by_id = {p["request_id"]: p for p in buffer.predictions}
    old = {rid: {k: v for k, v in p.items() if k != "segments"} for rid, p in by_id.items()}
    for i, rid in enumerate(list(old)):
        if i % 2:
            old[rid]["segments"] = by_id[rid]["segments"]  # half new, half old
    pairs = [(old[lab["request_id"]], lab) for lab in buffer.labels]
    graded: dict[WindowKey, WindowSummary] = {}
    grade_pairs(graded, SIZE, pairs, JoinSettings().threshold, buffer.plans)
    (window,) = graded.values()
    assert window.performance is not None and window.performance.n == 300
    kids = _children(window, "country").values()
    assert sum(c.performance.n for c in kids if c.performance is not None) == 150
    # no plan at all: nothing per segment
    graded = {}
    grade_pairs(graded, SIZE, pairs, JoinSettings().threshold, {})
    (window,) = graded.values()
    assert window.performance is not None and window.performance.n == 300
    assert window.segments == {}


def test_segment_performance_survives_storage_and_rollup() -> None:
    preds, labels, _ = _batches(500, 5)
    window = _graded(preds, labels)
    back = WindowSummary.from_dict(orjson.loads(orjson.dumps(window.to_dict())))
    rolled = WindowSummary.rollup([back, _graded(*_batches(500, 6)[:2])], 0, SIZE)
    de = _children(rolled, "country")["DE"].performance
    assert de is not None
    parts = [
        _children(w, "country")["DE"].performance for w in (window, _graded(*_batches(500, 6)[:2]))
    ]
    assert de.n == sum(p.n for p in parts if p is not None)
    assert de.confusion == sum((p.confusion for p in parts if p is not None), Counter())


# -- rules per segment ---------------------------------------------------------------------


def _policy(**rule: Any) -> Policy:
    rules = [{"name": "acc", "metric": "accuracy", **rule}]
    return Policy.model_validate(
        {"model": "fraud", "min_samples": 100, "segments": ["country"], "rules": rules}
    )


def _reference() -> ReferenceProfile:
    preds, labels, _ = _batches(20_000, 7)
    return profile_from_window(_graded(preds, labels))


def test_an_accuracy_drop_in_one_segment_is_found_there_and_nowhere_else() -> None:
    reference = _reference()
    de_ref = reference.segments["country"].profile("DE")
    assert de_ref is not None and 0.9 < de_ref.metrics["accuracy"] < 1.0
    preds, labels, _ = _batches(20_000, 8, wrong={"FR": 0.30})
    current = _graded(preds, labels)
    policy = _policy(relative=True, warn=-0.03, critical=-0.08)
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, current, 3600.0)
    acc = {f.feature: f for f in found["acc"]}
    assert set(acc) == {f"[country={c}]" for c in (*COUNTRIES[:4], OTHER)}
    fr = acc["[country=FR]"]
    assert fr.status == "ok" and fr.value < 0.75
    assert fr.details["segment"] == {"country": "FR"}
    assert (
        fr.details["reference"] == reference.segments["country"].profiles["FR"].metrics["accuracy"]
    )
    assert fr.n_current == sum(
        1 for c in preds.features["country"].values.tolist() if c == "FR"
    )  # the guard counts labelled rows of the segment
    engine = PolicyEngine(policy)
    _, events = engine.step(found, 0, reference.metrics)
    assert [e.incident.feature for e in events] == ["[country=FR]"]
    assert events[0].incident.severity == "critical"
    assert "country=FR" in events[0].incident.summary


def test_the_guard_counts_a_segments_labelled_pairs() -> None:
    reference = _reference()
    preds, labels, _ = _batches(1_500, 9)
    current = _graded(preds, labels)
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "min_samples": 100,
            "segments": ["country"],
            "segment_min_samples": 200,
            "rules": [{"name": "acc", "metric": "accuracy", "critical": 0.5}],
        }
    )
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, current, 3600.0)
    acc = {f.feature: f for f in found["acc"]}
    assert acc["[country=DE]"].status == "ok"  # ~600 labelled
    assert acc["[country=IT]"].status == "insufficient_data"  # ~150 labelled
    assert "labelled predictions < min_samples 200" in acc["[country=IT]"].details["reason"]


def test_relative_rule_without_the_segments_reference_value_says_so() -> None:
    reference = profile_from_window(WindowSummary("fraud", "1", 0, SIZE))  # no segments
    preds, labels, _ = _batches(3_000, 10)
    current = _graded(preds, labels)
    policy = _policy(relative=True, critical=-0.05)
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, current, 3600.0)
    evaluations, events = PolicyEngine(policy).step(found, 0, {"accuracy": 0.95})
    assert events == []
    reasons = {e.reason for e in evaluations if e.feature == "[country=DE]"}
    assert reasons == {"the reference has no accuracy for country=DE to compare with"}


def test_reference_from_a_file_carries_each_segments_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 5_000
    country = rng.choice(["DE", "FR", "US"], size=n)
    score = rng.random(n)
    wrong = rng.random(n) < np.where(country == "FR", 0.3, 0.05)
    label = np.where(wrong, score < 0.5, score >= 0.5).astype(int)
    frame = pd.DataFrame({"country": country, "x": rng.normal(size=n), "p": score, "y": label})
    path = tmp_path / "train.parquet"
    frame.to_parquet(path)
    profile = build_reference(
        path, "fraud", prediction="p", label="y", segments=["country"], segment_top_k=2
    )
    segs = profile.segments["country"]
    right = (score >= 0.5).astype(int) == label
    for value in segs.values:
        assert segs.profiles[value].metrics["accuracy"] == right[country == value].mean()
    rest = ~np.isin(country, segs.values)
    assert segs.profiles[OTHER].metrics["accuracy"] == right[rest].mean()


# -- label-free estimates per segment ------------------------------------------------------


def _estimating_window(preds: ColumnBatch, est: Any) -> WindowSummary:
    settings_ = SketchSettings(segments=lambda m: PLAN, estimation=lambda m: est)
    window = WindowSummary("fraud", "1", 0, SIZE, settings_)
    half = len(preds) // 2
    window.update(preds, np.arange(half))  # two batches: held back, routed together
    window.update(preds, np.arange(half, len(preds)))
    return window


def test_segment_children_keep_estimate_state_that_merges_to_the_whole() -> None:
    ref_preds, ref_labels, _ = _batches(20_000, 12)
    assert ref_preds.prediction is not None and ref_labels.label is not None
    est = fit_binary_estimation(ref_preds.prediction.values, ref_labels.label.values)
    preds, _, country = _batches(5_000, 13)
    window = _estimating_window(preds, est)
    whole = window.estimates.of(est)
    assert isinstance(whole, BinaryEstimateSketch) and whole.n == 5_000
    for feature in ("country", "channel"):
        kids = [c.estimates.of(est) for c in _children(window, feature).values()]
        assert all(isinstance(k, BinaryEstimateSketch) for k in kids)
        assert np.array_equal(sum(k.counts for k in kids if k is not None), whole.counts)
    # a child's state is what a window of only its rows keeps
    de = np.flatnonzero(country == "DE")
    alone = WindowSummary("fraud", "1", 0, SIZE, SketchSettings(estimation=lambda m: est))
    alone.update(preds, de)
    mine, theirs = _children(window, "country")["DE"].estimates.of(est), alone.estimates.of(est)
    assert mine is not None and theirs is not None and mine.to_dict() == theirs.to_dict()
    # and survives storage
    back = WindowSummary.from_dict(orjson.loads(orjson.dumps(window.to_dict())))
    stored = _children(back, "country")["DE"].estimates.of(est)
    assert stored is not None and stored.to_dict() == mine.to_dict()


def test_an_estimated_accuracy_drop_in_one_segment_is_found_there_only() -> None:
    import dataclasses

    ref_preds, ref_labels, _ = _batches(20_000, 14)
    assert ref_preds.prediction is not None and ref_labels.label is not None
    # calibrated scores: P(y = 1 | s) = s, so a score near 0.5 is a coin flip
    scores = ref_preds.prediction.values
    truth = np.random.default_rng(2).random(scores.size) < scores
    ref_labels.label.values[:] = truth.astype(np.float64)
    est = fit_binary_estimation(ref_preds.prediction.values, ref_labels.label.values)
    reference = dataclasses.replace(
        profile_from_window(_graded(ref_preds, ref_labels)), estimation=est
    )
    preds, _, country = _batches(20_000, 15)
    assert preds.prediction is not None
    fr = country == "FR"  # FR's scores crowd the threshold: the model is unsure there
    preds.prediction.values[fr] = 0.45 + 0.1 * np.random.default_rng(1).random(int(fr.sum()))
    current = _estimating_window(preds, est)
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "min_samples": 100,
            "segments": ["country"],
            "rules": [
                {
                    "name": "est",
                    "metric": "estimated_accuracy",
                    "relative": True,
                    "critical": -0.1,
                }
            ],
        }
    )
    found: dict[str, list[Any]] = {}
    add_segment_findings(found, policy, reference, current, 3600.0)
    by = {f.feature: f for f in found["est"]}
    assert set(by) == {f"[country={c}]" for c in (*COUNTRIES[:4], OTHER)}
    base = reference.segments["country"].profiles["FR"].metrics["accuracy"]
    assert by["[country=FR]"].details["reference"] == base
    assert by["[country=FR]"].value < base - 0.2
    assert by["[country=FR]"].n_current == int(fr.sum())  # guard: scored rows of FR
    for c in ("DE", "US", "IT"):
        assert abs(by[f"[country={c}]"].details["delta"]) < 0.05, c
    _, events = PolicyEngine(policy).step(found, 0, {})
    assert [e.incident.feature for e in events] == ["[country=FR]"]
    assert events[0].incident.summary.startswith("estimated_accuracy ")


def test_segment_labels_of_many_distinct_combinations() -> None:
    """Four hash-fallback features of 70,000 distinct values each: more combinations than
    one int64 codes, so the rows' combinations are found another way; same labels."""
    from watchkeeper.detectors.segments import label_of

    n = 70_000
    none = np.zeros(n, dtype=bool)
    values = {f"f{j}": np.arange(n, dtype=np.float64) * (j + 1) + 0.5 for j in range(4)}
    batch = ColumnBatch(
        "fraud",
        "predictions",
        np.arange(n, dtype=np.int64),
        np.full(n, "1", dtype=object),
        np.arange(n, dtype=np.uint64),
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        features={f: Column("numeric", v, none, none) for f, v in values.items()},
        prediction=Column("numeric", np.full(n, 0.5), none, none),
    )
    buffer = JoinBuffer()
    buffer.add(batch, SIZE, tuple(SegmentSpec(f, 20) for f in values))
    for i in (0, 1, 12_345, n - 1):
        want = {f: label_of(v[i], "numeric") for f, v in values.items()}
        assert orjson.loads(buffer.predictions[i]["segments"]) == want


@settings(max_examples=30, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(["0", "1", "2"]), st.sampled_from(["0", "1", "2"])),
        min_size=0,
        max_size=60,
    ),
    seed=st.integers(0, 100),
)
def test_coded_pairs_grade_as_the_pairs_themselves(pairs: list[tuple[str, str]], seed: int) -> None:
    from watchkeeper.detectors.performance import PerformanceSketch

    scores = np.random.default_rng(seed).random(len(pairs))
    plain, coded = PerformanceSketch("classification"), PerformanceSketch("classification")
    plain.update_classification([t for t, _ in pairs], [p for _, p in pairs], scores)
    distinct = sorted(set(pairs))
    codes = np.array([distinct.index(p) for p in pairs], dtype=np.intp)
    coded.update_coded(distinct, codes, scores)
    assert coded.to_dict() == plain.to_dict()


def test_a_pending_row_with_unreadable_segment_labels_grades_the_window_only() -> None:
    preds, labels, _ = _batches(100, 16)
    buffer = JoinBuffer()
    buffer.add(preds, SIZE, PLAN)
    buffer.add(labels, SIZE, PLAN)
    by_id = {p["request_id"]: p for p in buffer.predictions}
    for i, bad in enumerate(("{not json", "[1, 2]", '"DE"')):
        by_id[f"s16-{i}"]["segments"] = bad
    pairs = [(by_id[lab["request_id"]], lab) for lab in buffer.labels]
    graded: dict[WindowKey, WindowSummary] = {}
    grade_pairs(graded, SIZE, pairs, JoinSettings().threshold, buffer.plans)
    (window,) = graded.values()
    assert window.performance is not None and window.performance.n == 100
    kids = _children(window, "country").values()
    assert sum(c.performance.n for c in kids if c.performance is not None) == 97
