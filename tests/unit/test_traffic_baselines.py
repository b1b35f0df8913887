"""``traffic_ratio``'s baselines, whole model and per segment, through the checker on a
SQLite store: they count the role the current rate counts (predictions), a segment whose
traffic stops is still evaluated, and a segment's baseline does not depend on when the
checker started, how often the policy ticks, or which policy a name meant before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
PLAN = (SegmentSpec("country", 20, ("DE", "FR")),)


def _policy(model: str = "fraud", every: str | None = None, name: str | None = None) -> Policy:
    doc: dict[str, object] = {
        "model": model,
        "window": "5m",
        "min_samples": 50,
        "segments": ["country"],
        "rules": [{"name": "traffic", "metric": "traffic_ratio", "warn": 0.5, "critical": 0.3}],
    }
    if every is not None:
        doc["schedule"] = {"every": every}
    if name is not None:
        doc["name"] = name
    return Policy.model_validate(doc)


def _batch(
    de: int, fr: int, start_ms: int, seed: int, role: str, model: str = "fraud", us: int = 0
) -> ColumnBatch:
    """``de`` rows of DE and ``fr`` of FR over one window, of ``role``."""
    rng = np.random.default_rng(seed)
    country = np.array(["DE"] * de + ["FR"] * fr + ["US"] * us, dtype=object)
    n = country.size
    zeros = np.zeros(n, bool)
    return ColumnBatch(
        model=model,
        role=role,
        ts_ms=start_ms + np.sort(rng.integers(0, SIZE_MS, n)).astype(np.int64),
        versions=np.array(["1"] * n, dtype=object),
        keys=record_keys(0 if role == "predictions" else 1, seed, np.arange(n)),
        features={"country": Column("categorical", country, zeros, zeros)},
        prediction=Column("numeric", rng.random(n), zeros, zeros)
        if role == "predictions"
        else None,
    )


def _fill(
    store: Store, windows: list[tuple[int, int]], roles: tuple[str, ...], model: str = "fraud"
) -> None:
    state = WindowState(300, 3600, SketchSettings(segments=lambda m: PLAN))
    for i, (de, fr) in enumerate(windows):
        for role in roles:
            state.add(_batch(de, fr, NOW_MS + i * SIZE_MS, i, role, model))
    store.commit("g", state.drain(), {(model, 0): 1})


def _values(checker: Checker, loaded: LoadedPolicy, at_ms: int) -> dict[str | None, float | None]:
    return {e.feature: e.value for e in checker.run(loaded, at_ms).evaluations}


def test_steady_traffic_with_a_features_stream_reads_one(tmp_path: Path) -> None:
    """Each window holds 1,200 DE + 800 FR predictions and the same rows on the features
    role: the ratio is 1 everywhere (every role's count made it 0.5)."""
    loaded = LoadedPolicy(_policy(), str(tmp_path / "f.yaml"), "v1")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        _fill(store, [(1_200, 800)] * (BASELINE_WINDOWS + 1), ("predictions", "features"))
        checker = Checker(store, IncidentStore(store.engine), 300)
        result = checker.run(loaded, NOW_MS + (BASELINE_WINDOWS + 1) * SIZE_MS)
        assert {e.feature: e.value for e in result.evaluations} == {
            None: 1.0,
            "[country=DE]": 1.0,
            "[country=FR]": 1.0,
        }
        assert result.events == []
        # the role's counts, beside every role's
        lo, hi = NOW_MS, NOW_MS + SIZE_MS
        assert store.event_counts("fraud", lo, hi, role="predictions") == [(lo, 2_000)]
        assert store.event_counts("fraud", lo, hi) == [(lo, 4_000)]


def test_a_segment_whose_traffic_stops_reads_zero(tmp_path: Path) -> None:
    """DE falls to a fifth (an incident opens), then stops: its ratio reads 0 (no child in
    the window, no reference: the baseline names it; before, no DE evaluation at all)."""
    loaded = LoadedPolicy(_policy(), str(tmp_path / "f.yaml"), "v1")
    history = [(1_000, 1_000)] * BASELINE_WINDOWS + [(200, 1_000), (0, 2_000)]
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        _fill(store, history, ("predictions",))
        checker = Checker(store, IncidentStore(store.engine), 300)
        first = checker.run(loaded, NOW_MS + (BASELINE_WINDOWS + 1) * SIZE_MS)
        assert {e.feature: e.value for e in first.evaluations}["[country=DE]"] == (200 / 300) / (
            1_000 / 300
        )
        assert [e.incident.feature for e in first.events] == ["[country=DE]"]
        second = checker.run(loaded, NOW_MS + (BASELINE_WINDOWS + 2) * SIZE_MS)
        by_slot = {e.feature: e for e in second.evaluations}
        assert by_slot["[country=DE]"].value == 0.0
        assert by_slot["[country=DE]"].severity == "critical"
        assert second.events == []  # still open, at its new value: not frozen at 0.2
        assert checker.engines[loaded.policy.key].state_dict() != {}


def test_a_policy_ticking_less_often_than_its_window_keeps_its_baseline(tmp_path: Path) -> None:
    """Window 5m, a tick every hour on steady traffic: every tick's segments read 1 on six
    baseline windows, as a checker started at that tick reads (before: only the first
    tick had a baseline; the windows between ticks were never read)."""
    loaded = LoadedPolicy(_policy(every="1h"), str(tmp_path / "f.yaml"), "v1")
    hour = 3_600_000
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        _fill(store, [(300, 200)] * (BASELINE_WINDOWS + 3 * 12 + 1), ("predictions",))
        checker = Checker(store, IncidentStore(store.engine), 300)
        for k in range(4):
            at = NOW_MS + (BASELINE_WINDOWS + 1) * SIZE_MS + k * hour
            values = _values(checker, loaded, at)
            fresh = _values(Checker(store, IncidentStore(store.engine), 300), loaded, at)
            assert values == fresh == {None: 1.0, "[country=DE]": 1.0, "[country=FR]": 1.0}, k
        assert checker.traffic.seeded == 4  # each tick read the windows no tick had read


def test_a_reload_onto_another_model_starts_the_baseline_afresh(tmp_path: Path) -> None:
    """``name: traffic-watch`` on fraud (DE 3,000 a window), reloaded onto churn (DE 30):
    churn's DE reads 1 on churn's baseline (before: fraud's counts, 0.01, critical); a
    forgotten policy reads its span again."""
    fraud = LoadedPolicy(_policy("fraud", name="traffic-watch"), str(tmp_path / "f.yaml"), "v1")
    churn = LoadedPolicy(_policy("churn", name="traffic-watch"), str(tmp_path / "f.yaml"), "v2")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        _fill(store, [(3_000, 1_000)] * (BASELINE_WINDOWS + 2), ("predictions",), "fraud")
        _fill(store, [(30, 100)] * (BASELINE_WINDOWS + 2), ("predictions",), "churn")
        checker = Checker(store, IncidentStore(store.engine), 300)
        at = NOW_MS + (BASELINE_WINDOWS + 1) * SIZE_MS
        assert _values(checker, fraud, at)["[country=DE]"] == 1.0
        assert _values(checker, churn, at + SIZE_MS)["[country=DE]"] == 1.0
        assert checker.traffic.seeded == 2
        checker.traffic.forget("traffic-watch")
        assert _values(checker, churn, at + SIZE_MS)["[country=DE]"] == 1.0
        assert checker.traffic.seeded == 3


def test_a_label_moved_out_of_other_by_a_new_reference_is_not_read_against_zeros(
    tmp_path: Path,
) -> None:
    """Six windows split by ("DE",) (FR and US in ``(other)``), then one by ("DE", "FR")
    on unchanged traffic: DE reads 1; ``(other)`` (now US alone) and FR have no
    comparable baseline window (before: ``(other)`` read 0.4, a warning, and FR a
    baseline of zeros)."""
    loaded = LoadedPolicy(_policy(), str(tmp_path / "f.yaml"), "v1")
    plans = {"plan": (SegmentSpec("country", 1, ("DE",)),)}
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        state = WindowState(300, 3600, SketchSettings(segments=lambda m: plans["plan"]))
        for i in range(BASELINE_WINDOWS):
            state.add(_batch(1_000, 600, NOW_MS + i * SIZE_MS, i, "predictions", us=400))
        store.commit("g", state.drain(), {("fraud", 0): 1})
        plans["plan"] = (SegmentSpec("country", 2, ("DE", "FR")),)
        at = NOW_MS + BASELINE_WINDOWS * SIZE_MS
        state.add(_batch(1_000, 600, at, 99, "predictions", us=400))
        store.commit("g", state.drain(), {("fraud", 0): 2})
        checker = Checker(store, IncidentStore(store.engine), 300)
        result = checker.run(loaded, at + SIZE_MS)
        by_slot = {e.feature: e for e in result.evaluations}
        assert by_slot[None].value == 1.0
        assert by_slot["[country=DE]"].value == 1.0
        for label in ("FR", "(other)"):
            e = by_slot[f"[country={label}]"]
            assert (e.value, e.decision, e.severity) == (None, "insufficient_data", None), label
        assert result.events == []


def test_a_rule_counting_another_role_reads_that_roles_baseline(tmp_path: Path) -> None:
    """``options: {role: features}`` counts the features stream now and in its baseline,
    whole model and per segment: 1,000 feature rows a window beside 2,000 predictions
    read 1 (a predictions baseline made it 0.5)."""
    policy = _policy().model_copy(
        update={"rules": [_policy().rules[0].model_copy(update={"options": {"role": "features"}})]}
    )
    loaded = LoadedPolicy(policy, str(tmp_path / "f.yaml"), "v1")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        state = WindowState(300, 3600, SketchSettings(segments=lambda m: PLAN))
        for i in range(BASELINE_WINDOWS + 1):
            state.add(_batch(1_200, 800, NOW_MS + i * SIZE_MS, i, "predictions"))
            state.add(_batch(600, 400, NOW_MS + i * SIZE_MS, i, "features"))
        store.commit("g", state.drain(), {("fraud", 0): 1})
        checker = Checker(store, IncidentStore(store.engine), 300)
        assert _values(checker, loaded, NOW_MS + (BASELINE_WINDOWS + 1) * SIZE_MS) == {
            None: 1.0,
            "[country=DE]": 1.0,
            "[country=FR]": 1.0,
        }


def test_role_counts_read_again_only_the_windows_whose_total_changed(tmp_path: Path) -> None:
    """The remembered role counts equal a fresh read after more events land in an old
    window (a flush, late events); only that window's summary is read again."""
    from watchkeeper.daemon.checks.traffic_counts import RoleCounts

    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        _fill(store, [(300, 200)] * 4, ("predictions", "features"))
        counts = RoleCounts()
        hi = NOW_MS + 4 * SIZE_MS
        first = counts.counts(store, "fraud", NOW_MS, hi, "predictions")
        assert first == store.event_counts("fraud", NOW_MS, hi, role="predictions")
        assert first == [(NOW_MS + i * SIZE_MS, 500) for i in range(4)]
        assert counts.read == 4
        assert counts.counts(store, "fraud", NOW_MS, hi, "predictions") == first
        assert counts.read == 4  # nothing changed: no summary read
        state = WindowState(300, 10**6, SketchSettings(segments=lambda m: PLAN))
        state.add(_batch(7, 3, NOW_MS + SIZE_MS, 50, "predictions"))
        state.add(_batch(7, 3, NOW_MS + SIZE_MS, 51, "features"))
        store.commit("g", state.drain(), {("fraud", 0): 2})
        again = counts.counts(store, "fraud", NOW_MS, hi, "predictions")
        assert again == store.event_counts("fraud", NOW_MS, hi, role="predictions")
        assert dict(again)[NOW_MS + SIZE_MS] == 510
        assert counts.read == 5
