"""Once labels reach the predictions of an open estimate incident, the checker says so
("estimated accuracy 0.53, realised 0.52"), and the status shows realised beside
estimated per window — on both databases."""

from __future__ import annotations

import numpy as np
import pytest
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.checks.estimates import performance_rows
from watchkeeper.daemon.eventtime.windows import Delta, WindowKey, WindowState
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.estimation_reference import fit_binary_estimation
from watchkeeper.detectors.performance import PerformanceSketch
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.window import Column, ColumnBatch, SketchSettings, WindowSummary
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
