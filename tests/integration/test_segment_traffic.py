"""``traffic_ratio`` per segment, through the checker on both databases: a segment's rate
over the median rate of the same segment in the previous policy windows, equal to the
counts computed here from the predictions (a features stream carrying the same rows
counts for nothing); a drop in one country is found there alone; the
baseline is read from the store once (the first tick), then remembered."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import numpy as np
import pytest
from watchkeeper.daemon.checks.assessment import BASELINE_WINDOWS
from watchkeeper.daemon.checks.checker import Checker
from watchkeeper.daemon.eventtime.windows import WindowState
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.segments import SegmentSpec
from watchkeeper.detectors.window import SketchSettings
from watchkeeper.policies.loader import LoadedPolicy
from watchkeeper.policies.schema import Policy

NOW_MS = 1_795_255_200_000  # a 5-minute boundary
SIZE_MS = 300_000
COUNTRIES = np.array(["DE", "FR", "US"], dtype=object)
POLICY = Policy.model_validate(
    {
        "model": "fraud",
        "window": "5m",
        "min_samples": 50,
        "segments": ["country"],
        "rules": [{"name": "traffic", "metric": "traffic_ratio", "warn": 0.5, "critical": 0.3}],
    }
)


def _batch(n: int, start_ms: int, seed: int, keep_de: float) -> ColumnBatch:
    """``n`` events over one window; only a share ``keep_de`` of DE's are kept."""
    rng = np.random.default_rng(seed)
    country = rng.choice(COUNTRIES, size=n, p=[0.5, 0.3, 0.2]).astype(object)
    keep = (country != "DE") | (rng.random(n) < keep_de)
    country = country[keep]
    m = country.size
    zeros = np.zeros(m, bool)
    return ColumnBatch(
        model="fraud",
        role="predictions",
        ts_ms=start_ms + np.sort(rng.integers(0, SIZE_MS, m)).astype(np.int64),
        versions=np.array(["1"] * m, dtype=object),
        keys=record_keys(0, seed, np.arange(m)),
        features={"country": Column("categorical", country, zeros, zeros)},
        prediction=Column("numeric", rng.random(m), zeros, zeros),
    )


def test_a_drop_in_one_country_is_its_traffic_ratio_alone(store_url: str, tmp_path: Path) -> None:
    plan = (SegmentSpec("country", 20, ("DE", "FR", "US")),)
    loaded = LoadedPolicy(POLICY, str(tmp_path / "fraud.yaml"), "v1")
    counts: list[dict[str, int]] = []
    with Store.open(store_url) as store:
        state = WindowState(300, 3600, SketchSettings(segments=lambda model: plan))
        windows = BASELINE_WINDOWS + 1
        for i in range(windows):  # the last window keeps a fifth of DE's traffic
            batch = _batch(2_000 + 97 * i, NOW_MS + i * SIZE_MS, i, 0.2 if i == windows - 1 else 1)
            values, n = np.unique(batch.features["country"].values.astype(str), return_counts=True)
            counts.append(dict(zip(values.tolist(), n.tolist(), strict=True)))
            state.add(batch)
            # the same rows on the features stream: summarised too, never counted as traffic
            keys = record_keys(1, i, np.arange(batch.ts_ms.size))
            state.add(dataclasses.replace(batch, role="features", keys=keys, prediction=None))
        store.commit("g", state.drain(), {("preds", 0): 1})
        checker = Checker(store, IncidentStore(store.engine), 300)
        at = NOW_MS + windows * SIZE_MS
        result = checker.run(loaded, at)
        by_slot = {e.feature: e for e in result.evaluations}
        seconds = SIZE_MS / 1000
        whole = [sum(k.values()) / seconds for k in counts]
        assert by_slot[None].value == whole[-1] / statistics.median(whole[:-1])
        for c in ("DE", "FR", "US"):
            e = by_slot[f"[country={c}]"]
            baseline = statistics.median(k[c] / seconds for k in counts[:-1])
            assert e.value == counts[-1][c] / seconds / baseline, c  # the same division
        assert by_slot["[country=DE]"].value < 0.3 and by_slot["[country=DE]"].severity
        assert all(by_slot[f"[country={c}]"].value > 0.8 for c in ("FR", "US"))
        assert [e.incident.feature for e in result.events] == ["[country=DE]"]
        assert checker.traffic.seeded == 1
        # the next tick reads no baseline span again: the counts are remembered
        checker.run(loaded, at + SIZE_MS)
        assert checker.traffic.seeded == 1


def test_policy_backtest_gives_the_daemons_per_segment_traffic_ratios(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``policy backtest`` replays the ticks with the checker's own baseline memory: the
    same per-segment values at every tick as the daemon's checker on the same store."""
    import datetime as dt
    import json

    from watchkeeper.daemon.cli.main import main
    from watchkeeper.policies.loader import load_all

    from tests.support import store_config

    plan = (SegmentSpec("country", 20, ("DE", "FR", "US")),)
    windows = BASELINE_WINDOWS + 3
    with Store.open(store_url) as store:
        state = WindowState(300, 3600, SketchSettings(segments=lambda model: plan))
        for i in range(windows):  # DE falls to a fifth in the last three windows
            state.add(_batch(2_000, NOW_MS + i * SIZE_MS, i, 0.2 if i >= windows - 3 else 1))
        store.commit("g", state.drain(), {("preds", 0): 1})
    policy = tmp_path / "fraud.yaml"
    policy.write_text(
        "model: fraud\nwindow: 5m\nmin_samples: 50\nsegments: [country]\nrules:\n"
        "  - {name: traffic, metric: traffic_ratio, warn: 0.5, critical: 0.3}\n"
    )
    config = store_config(tmp_path, store_url)
    ticks = [NOW_MS + (BASELINE_WINDOWS + h) * SIZE_MS for h in range(1, 4)]

    def iso(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()

    args = ["policy", "backtest", str(policy), "-c", str(config), "--format", "json"]
    assert main([*args, "--since", "10m", "--until", iso(ticks[-1])]) == 0
    (doc,) = json.loads(capsys.readouterr().out)["policies"]
    replayed = sorted(
        (e["at_ms"], e["feature"], e["value"]) for e in doc["evaluations"] if e["feature"]
    )
    with Store.open(store_url) as store:
        checker = Checker(store, IncidentStore(store.engine), 300)
        (loaded,) = load_all([str(policy)], set(), 300).policies
        daemon = sorted(
            (e.at_ms, e.feature, e.value)
            for at in ticks
            for e in checker.run(loaded, at).evaluations
            if e.feature
        )
    assert replayed == daemon and len(daemon) == 3 * 3
    de = [v for _, f, v in daemon if f == "[country=DE]"]
    assert all(v is not None and v < 0.3 for v in de)
