"""Once labels reach the predictions of an open estimate incident, the checker says so
("estimated accuracy 0.53, realised 0.52"), and the status shows realised beside
estimated per window — on both databases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.checks.performance_rows import PerformanceRowCache, performance_rows
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey, WindowState
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.estimation_reference import fit_binary_estimation
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.schema import Policy

NOW_MS = 1_795_255_200_000  # a 5-minute boundary
SIZE_MS = 300_000


def test_realised_lands_beside_an_open_estimate_incident(store_url: str) -> None:
    rng = np.random.default_rng(19)
    x = rng.normal(size=20_000)
    p = 1 / (1 + np.exp(-2 * x))
    est = fit_binary_estimation(p, rng.random(x.size) < p)
    profile = ReferenceProfile("fraud", {}, x.size, estimation=est)
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "window": "10m",
            "schedule": {"every": "5m"},
            "rules": [
                {
                    "name": "estimate",
                    "metric": "estimated_accuracy",
                    "relative": True,
                    "critical": -0.1,
                }
            ],
        }
    )
    loaded = LoadedPolicy(policy, "/nowhere/fraud.yaml", "v1")
    n = 2000
    scores = 1 / (1 + np.exp(-2 * rng.normal(0, 0.1, n)))  # unsure: near 0.5
    zeros = np.zeros(n, bool)
    with Store.open(store_url) as store:
        store.save_reference(profile)
        state = WindowState(300, 3600, SketchSettings(estimation=lambda model: est))
        state.add(
            ColumnBatch(
                model="fraud",
                role="predictions",
                ts_ms=NOW_MS + np.arange(n, dtype=np.int64) * 100,
                versions=np.array(["1"] * n, dtype=object),
                keys=record_keys(0, 0, np.arange(n)),
                prediction=Column("numeric", scores, zeros, zeros),
            )
        )
        store.commit("g", state.drain(), {("preds", 0): n})
        checker = Checker(store, IncidentStore(store.engine), 300)
        first = checker.run(loaded, NOW_MS + SIZE_MS)
        assert [e.kind for e in first.events] == ["opened"]
        (evaluation,) = first.evaluations
        assert evaluation.value is not None and evaluation.value < 0.6
        assert checker.run(loaded, NOW_MS + 2 * SIZE_MS).events == []  # no labels yet

        # the labels of 1,900 of the predictions arrive (graded into their window): enough
        # of them (≥ 90 %) for realised and estimated to cover the same predictions
        y = rng.random(n) < scores
        graded = WindowSummary("fraud", "1", NOW_MS, SIZE_MS)
        graded.performance = PerformanceSketch("classification")
        labelled = slice(0, 1900)
        graded.performance.update_classification(
            ["1" if v else "0" for v in y[labelled]],
            ["1" if s >= 0.5 else "0" for s in scores[labelled]],
            scores[labelled],
        )
        key = WindowKey("fraud", "1", NOW_MS)
        store.commit("g", Delta(SIZE_MS, {key: graded}), {("labels", 0): 1900})
        later = checker.run(loaded, NOW_MS + 2 * SIZE_MS)
        (update,) = [e for e in later.events if e.kind == "updated"]
        realised = float(np.mean((scores[labelled] >= 0.5) == y[labelled]))
        assert f"realised {realised:.3f}" in update.note
        assert update.note.startswith(f"estimated accuracy {evaluation.value:.3f}")
        assert "1,900 labels of 2,000 predictions" in update.note
        # said once: the next tick, without new labels, says nothing more
        assert checker.run(loaded, NOW_MS + 2 * SIZE_MS).events == []
        (row,) = performance_rows(store, profile, "fraud", NOW_MS + 2 * SIZE_MS, SIZE_MS)
        assert row["n_estimated"] == n and row["n_labelled"] == 1900
        acc = row["estimated"]["estimated_accuracy"]
        assert acc["value"] == pytest.approx(evaluation.value)
        assert acc["realised"] == pytest.approx(realised)
        assert acc["lower"] < acc["value"] < acc["upper"]
        # the status rows from the request cache: the same rows; a second request
        # parses nothing, a new flush's part of the window is parsed, alone
        cache = PerformanceRowCache()
        at = NOW_MS + 2 * SIZE_MS
        assert performance_rows(store, profile, "fraud", at, SIZE_MS, cache=cache) == [row]
        stored_rows = cache.parsed  # the window's base and parts, each parsed once
        assert stored_rows == 2  # two commits, two parts, none folded yet
        assert performance_rows(store, profile, "fraud", at, SIZE_MS, cache=cache) == [row]
        assert cache.parsed == stored_rows
        store.commit("g", Delta(SIZE_MS, {key: graded}), {("labels", 0): 1900})
        (again,) = performance_rows(store, profile, "fraud", at, SIZE_MS, cache=cache)
        assert cache.parsed == stored_rows + 1 and again["n_labelled"] == 3800
        assert [again] == performance_rows(store, profile, "fraud", at, SIZE_MS)  # uncached
        # a day later, the incident still open: the follow-up reads the windows it was
        # raised on and one policy window after, not everything since
        reads: list[tuple[int | None, int | None]] = []
        windows = store.windows

        def spied(model: str, version: str | None, lo: int | None, hi: int | None) -> Any:
            reads.append((lo, hi))
            return windows(model, version, lo, hi)

        store.windows = spied  # type: ignore[method-assign]
        engine, _ = checker.engine(loaded)
        checker.follow_up.events(loaded, engine, profile, NOW_MS + 288 * SIZE_MS)
        ((lo, hi),) = reads
        assert lo is not None and hi is not None
        assert hi - lo <= 2 * 600_000 + 2 * SIZE_MS


def test_the_trust_check_finds_labels_later_than_the_policy_window(store_url: str) -> None:
    """Labels an hour behind a 10-minute policy window: the policy's own range never has
    them, so the check reads the newest earlier span that does; with P(y | x) changed
    there, the mismatch incident opens (injected ticks, no sleep)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=20_000)
    p = 1 / (1 + np.exp(-2 * x))
    est = fit_binary_estimation(p, rng.random(x.size) < p)
    profile = ReferenceProfile("fraud", {}, x.size, estimation=est)
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "window": "10m",
            "schedule": {"every": "5m"},
            "min_samples": 200,
            "rules": [
                {
                    "name": "trust",
                    "metric": "estimate_mismatch",
                    "critical": 1.0,
                    "options": {"lookback": "3h", "labelled_share": 0.95},
                }
            ],
        }
    )
    loaded = LoadedPolicy(policy, "/nowhere/fraud.yaml", "v1")
    per_window, windows = 600, 24  # two hours of predictions
    zeros = np.zeros(per_window, bool)
    with Store.open(store_url) as store:
        store.save_reference(profile)
        checker = Checker(store, IncidentStore(store.engine), 300)
        state = WindowState(300, 3600, SketchSettings(estimation=lambda model: est))
        scores_of = {}
        for w in range(windows):
            start = NOW_MS + w * SIZE_MS
            scores = 1 / (1 + np.exp(-2 * rng.normal(size=per_window)))
            scores_of[start] = scores
            state.add(
                ColumnBatch(
                    model="fraud",
                    role="predictions",
                    ts_ms=start + np.arange(per_window, dtype=np.int64) * 400,
                    versions=np.array(["1"] * per_window, dtype=object),
                    keys=record_keys(0, w, np.arange(per_window)),
                    prediction=Column("numeric", scores, zeros, zeros),
                )
            )
        store.commit("g", state.drain(), {("preds", 0): per_window * windows})
        end = NOW_MS + windows * SIZE_MS
        tick = end - 2 * SIZE_MS
        first = checker.run(loaded, tick)
        (nothing,) = first.evaluations
        assert nothing.decision == "insufficient_data"  # no label anywhere yet
        # the first hour's labels arrive, with P(y | x) turned around: y = 1 where the
        # model says 0 (concept drift), every prediction graded
        for start in sorted(scores_of)[:12]:
            scores = scores_of[start]
            y = rng.random(per_window) < 1 - scores
            graded = WindowSummary("fraud", "1", start, SIZE_MS)
            graded.performance = PerformanceSketch("classification")
            graded.performance.update_classification(
                ["1" if v else "0" for v in y], ["1" if s >= 0.5 else "0" for s in scores], scores
            )
            key = WindowKey("fraud", "1", start)
            store.commit("g", Delta(SIZE_MS, {key: graded}), {("labels", 0): per_window})
        # a policy window after the last search (which found nothing): searched again
        later = checker.run(loaded, tick + 2 * SIZE_MS)
        assert sorted((e.kind, e.incident.feature) for e in later.events) == [
            ("opened", "estimated_accuracy"),
            ("opened", "estimated_roc_auc"),
        ]
        assert "concept drift suspected" in later.events[0].incident.summary
        (accuracy, *_) = [e for e in later.evaluations if e.feature == "estimated_accuracy"]
        assert accuracy.value is not None and accuracy.value > 1.0
        # the newest labelled span: the last two windows of the first hour, all graded
        assert accuracy.n_current == 2 * per_window
        # searched once; the next ticks within the policy window re-read that span alone
        searches = checker.spans.searches
        again = checker.run(loaded, tick + 2 * SIZE_MS + 1000)
        assert checker.spans.searches == searches
        assert [e.value for e in again.evaluations] == [e.value for e in later.evaluations]


@pytest.mark.parametrize("lag", [False, True], ids=["all-labels", "us-labels-lag"])
def test_the_trust_check_runs_per_segment_and_finds_the_segment_whose_estimate_is_wrong(
    store_url: str, lag: bool
) -> None:
    """Predictions of three countries, every label in; P(y | x) holds in DE and US and is
    turned around in FR (concept drift there only): ``estimate_mismatch`` breaches for
    country=FR and for no other segment, each segment guarded by its own sample size.
    ``lag``: US's labels of the last window have not arrived — the window counts for the
    whole (70 % graded, ``labelled_share: 0.6``) but not for US."""
    from watchkeeper.daemon.store.label_grading import grade_pairs
    from watchkeeper.daemon.store.label_join import JoinBuffer, JoinSettings
    from watchkeeper.detectors.estimate_trust import EstimateTrust
    from watchkeeper.detectors.segments import SegmentSpec

    rng = np.random.default_rng(11)
    x = rng.normal(size=20_000)
    p = 1 / (1 + np.exp(-2 * x))
    est = fit_binary_estimation(p, rng.random(x.size) < p)
    profile = ReferenceProfile("fraud", {}, x.size, estimation=est)
    plan = (SegmentSpec("country", 20, ("DE", "FR", "US", "IT")),)
    policy = Policy.model_validate(
        {
            "model": "fraud",
            "window": "20m",
            "schedule": {"every": "5m"},
            "min_samples": 200,
            "segments": ["country"],
            "segment_min_samples": 300,
            "rules": [
                {
                    "name": "trust",
                    "metric": "estimate_mismatch",
                    "critical": 1.0,
                    "options": {"labelled_share": 0.6},
                }
            ],
        }
    )
    loaded = LoadedPolicy(policy, "/nowhere/fraud.yaml", "v1")
    per_window, windows = 2_000, 4
    countries = np.array(["DE", "FR", "US", "IT"], dtype=object)
    n = per_window * windows
    country = rng.choice(countries, size=n, p=[0.36, 0.31, 0.3, 0.03]).astype(object)
    scores = 1 / (1 + np.exp(-2 * rng.normal(size=n)))
    y = np.where(country == "FR", rng.random(n) < 1 - scores, rng.random(n) < scores)
    zeros = np.zeros(n, bool)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    ts = NOW_MS + np.arange(n, dtype=np.int64) * (windows * SIZE_MS // n)
    preds = ColumnBatch(
        model="fraud",
        role="predictions",
        ts_ms=ts,
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(0, 0, np.arange(n)),
        request_ids=ids,
        features={"country": Column("categorical", country, zeros, zeros)},
        prediction=Column("numeric", scores, zeros, zeros),
    )
    labels = ColumnBatch(
        model="fraud",
        role="labels",
        ts_ms=ts + 1,
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(1, 0, np.arange(n)),
        request_ids=ids,
        label=Column("numeric", y.astype(np.float64), zeros, zeros),
    )
    with Store.open(store_url) as store:
        store.save_reference(profile)
        checker = Checker(store, IncidentStore(store.engine), 300)
        settings_ = SketchSettings(estimation=lambda model: est, segments=lambda model: plan)
        state = WindowState(300, 3600, settings_)
        state.add(preds)
        store.commit("g", state.drain(), {("preds", 0): n})
        # every label joins its prediction, graded into the window and its segments
        buffer = JoinBuffer()
        buffer.add(preds, SIZE_MS, plan)
        buffer.add(labels, SIZE_MS, plan)
        by_id = {r["request_id"]: r for r in buffer.predictions}
        graded: dict[WindowKey, WindowSummary] = {}
        pairs = [(by_id[lab["request_id"]], lab) for lab in buffer.labels]
        last = NOW_MS + (windows - 1) * SIZE_MS
        lagging = (country == "US") & (ts >= last)
        if lag:
            late = set(ids[lagging].tolist())
            pairs = [(pr, lab) for pr, lab in pairs if pr["request_id"] not in late]
        grade_pairs(graded, SIZE_MS, pairs, JoinSettings().threshold, buffer.plans)
        store.commit("g", Delta(SIZE_MS, graded), {("labels", 0): n})
        result = checker.run(loaded, NOW_MS + windows * SIZE_MS)
    by = {e.feature: e for e in result.evaluations if e.rule == "trust"}
    for c in ("DE", "US", "FR"):
        assert f"estimated_accuracy[country={c}]" in by and f"estimated_roc_auc[country={c}]" in by
    fr = by["estimated_accuracy[country=FR]"]
    assert fr.decision == "breach" and fr.value is not None and fr.value > 3
    for c in ("DE", "US"):
        for m in ("estimated_accuracy", "estimated_roc_auc"):
            assert by[f"{m}[country={c}]"].decision == "ok", (m, c)
    # the sample-size guard per segment: IT's ~240 labelled pairs < segment_min_samples
    assert int((country == "IT").sum()) < 300
    assert by["estimated_accuracy[country=IT]"].decision == "insufficient_data"
    opened = sorted(e.incident.feature for e in result.events if e.kind == "opened")
    assert "estimated_accuracy[country=FR]" in opened
    said = next(
        e.incident.summary
        for e in result.events
        if e.incident.feature == "estimated_accuracy[country=FR]"
    )
    assert said.startswith(
        "performance estimates no longer match realised labels on fraud for country=FR: "
        "concept drift suspected (estimated_accuracy off by "
    )
    assert not [f for f in opened if f and ("country=DE" in f or "country=US" in f)]
    # an independent computation on FR's rows alone: realised from the labels, the
    # estimate from a window of FR's predictions only, the band of EstimateTrust
    mine = country == "FR"
    realised = float(np.mean((scores[mine] >= 0.5) == y[mine]))
    alone = WindowSummary("fraud", "1", 0, SIZE_MS, SketchSettings(estimation=lambda m: est))
    alone.update(preds, np.flatnonzero(mine))
    sketch = alone.estimates.of(est)
    assert sketch is not None
    verdict = EstimateTrust().score(
        realised,
        int(mine.sum()),
        est.estimate("estimated_accuracy", sketch),
        est.spreads["accuracy"],
    )
    assert fr.n_current == int(mine.sum())
    us = by["estimated_accuracy[country=US]"]
    counted = (country == "US") & ~lagging if lag else country == "US"
    assert us.n_current == int(counted.sum())  # the lagging window left out for US only
    assert by["estimated_accuracy"].n_current == n - (int(lagging.sum()) if lag else 0)
    assert fr.value == pytest.approx(verdict.mismatch, rel=1e-9)
