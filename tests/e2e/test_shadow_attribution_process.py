"""The daemon as a process, a production model and two shadow candidates (an identical
copy, and one whose strongest input's weight was zeroed) as real ONNX files, with
attributions on: ``/api/shadow`` carries the three attribution metrics of each
candidate and production's ``attribution_shift``, equal to the exact Shapley values of
the linear models computed here independently (the scenario and its exact computation
are the integration test's, tests/integration/test_shadow_attribution.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats
from watchkeeper.daemon.demo.broker import EmbeddedBroker

from tests.integration.test_shadow_attribution import (
    REFERENCE_ROWS,
    SCALE,
    WEIGHTS,
    ZEROED,
    N,
    attributed_rows,
    attribution_policy,
    background_mean,
    importance,
    prediction_events,
    reference_importance,
    write_models,
)
from tests.support import DaemonProcess, create_topic, policy_daemon, produce, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.broker]
# 4 inputs: top 5 (the default) is all of them
POLICY = attribution_policy(top_k=2, promotion=False)


def test_shadow_candidates_attribution_metrics_in_the_api_of_the_process(
    broker: EmbeddedBroker,
    tmp_path: Path,
    processes: list[DaemonProcess],
) -> None:
    folder = tmp_path / "policies"
    rng = np.random.default_rng(31)
    reference = write_models(folder, POLICY, rng)
    x = (rng.normal(size=(N, 4)) * SCALE).astype(np.float32).astype(np.float64)
    topic = create_topic(broker.bootstrap, f"preds-{time.time_ns()}")
    chosen = attributed_rows(topic, N)
    daemon = policy_daemon(
        tmp_path,
        broker.bootstrap,
        {"predictions": {"name": topic}},
        folder,
        # a whole core and a generous attribution share: every chosen row is attributed
        shadow={
            "flush_interval": "300ms",
            "max_cpu_share": 1.0,
            "attribution_cpu_share": 1.0,
            "queue_batches": 10000,
        },
    )
    produce(broker.bootstrap, topic, prediction_events(x, int(time.time() * 1000)))
    processes.append(daemon.start())

    def complete() -> dict[str, Any] | None:
        """The model's /api/shadow entry once both candidates' chosen rows are attributed
        and production's shift against the reference is computed; None before."""
        body = daemon.get("/api/shadow")
        entry = (body or {}).get("models", {}).get("m")
        if not entry:
            return None
        rows = {r["candidate"]: r for r in entry["candidates"]}
        done = set(rows) == {"copy", "zeroed"} and all(
            (r.get("attribution") or {}).get("rows") == chosen.size for r in rows.values()
        )
        shift = entry.get("attribution_shift") or {}
        if not done or shift.get("rows") != chosen.size or shift.get("value") is None:
            return None
        return dict(entry)

    entry = wait_until(complete, timeout=60, describe=daemon.tail)
    assert entry["protected"] == ["f0"]
    rows = {r["candidate"]: r for r in entry["candidates"]}

    # independently: the exact Shapley values of the linear models, wᵢ (xᵢ − background mean)
    mean = background_mean(reference)
    importances = {
        name: importance(w, x[chosen], mean)
        for name, w in (("production", WEIGHTS), ("copy", WEIGHTS), ("zeroed", ZEROED))
    }
    shares = {k: v / v.sum() for k, v in importances.items()}
    for name in ("copy", "zeroed"):
        c, a = rows[name]["comparison"], rows[name]["attribution"]
        assert c["shadow_attributed_rows"] == chosen.size and a["skipped"] == 0
        rho = scipy_stats.spearmanr(importances["production"], importances[name]).statistic
        assert c["shadow_attribution_rank_corr"] == pytest.approx(rho, abs=1e-9)
        np.testing.assert_allclose(a["production_shares"], shares["production"], atol=1e-5)
        np.testing.assert_allclose(a["candidate_shares"], shares[name], atol=1e-5)
        delta = abs(shares[name][0] - shares["production"][0])
        assert c["shadow_protected_attribution_delta"] == pytest.approx(delta, abs=1e-5)
        # top-k overlap: the share of production's 2 most important features kept
        assert a["top_k"] == 2
        top = set(np.argsort(-importances["production"], kind="stable")[:2])
        own = set(np.argsort(-importances[name], kind="stable")[:2])
        assert c["shadow_attribution_topk_overlap"] == len(top & own) / 2
    assert rows["copy"]["comparison"]["shadow_attribution_topk_overlap"] == 1.0
    # f0 and f1 lead production (|w|·σ = 3 each); without f0, f1 and one of f2 / f3 (1)
    assert rows["zeroed"]["comparison"]["shadow_attribution_topk_overlap"] == 0.5
    assert rows["zeroed"]["comparison"]["shadow_attribution_rank_corr"] < 0.8
    assert rows["zeroed"]["attribution"]["protected"]["feature"] == "f0"

    shift = entry["attribution_shift"]
    assert shift["reference_rows"] == REFERENCE_ROWS
    rho = scipy_stats.spearmanr(reference_importance(reference), importances["production"])
    assert shift["value"] == pytest.approx(rho.statistic, abs=1e-9)
