"""The whole-window guard ("no data" below ``min_samples``) counts the model's traffic —
its predictions, or its features rows for a model without predictions — never its
labels: labels of earlier predictions keep arriving after the predictions stop, and no
check reads a window's label rows (realised metrics read the joined pairs of the
predictions' windows, estimates the scored predictions, drift the features and
predictions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from watchkeeper.daemon.checks.assessment import assess
from watchkeeper.daemon.checks.last_seen import LastSeen
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import ColumnBatch
from watchkeeper.detectors.evaluate import evaluate
from watchkeeper.detectors.reservoir import record_keys
from watchkeeper.detectors.window import SketchSettings, WindowSummary
from watchkeeper.policies.engine import PolicyEngine
from watchkeeper.policies.incident_model import NO_DATA
from watchkeeper.policies.loader import load_policy
from watchkeeper.policies.summaries import hhmm

from tests.support import drained, numeric, role_columns, role_rows

MIN = 60_000
SIZE = 5 * MIN
T0 = 1_790_000_000_000 - 1_790_000_000_000 % (24 * 60 * MIN)
AT = T0 + 60 * MIN  # reads the hour [T0, T0 + 1h)
POLICY = """\
model: m
window: 1h
schedule: {every: 1h}
min_samples: 100
rules:
  - {name: drift, metric: psi, features: [x], critical: 0.25}
"""


def store_rows(store: Store, spans: dict[str, int] | None = None, **counts: int) -> None:
    """``counts[role]`` events of each role, spread over the hour from T0 (or over the
    first ``spans[role]`` ms of it)."""
    batches = []
    for partition, (role, n) in enumerate(counts.items()):
        span = (spans or {}).get(role, 60 * MIN)
        ts = T0 + (np.arange(n, dtype=np.int64) * (span // max(n, 1)))
        ids = np.array([f"r{i}" for i in range(n)], dtype=object)
        batches.append(role_rows(role, ts, partition, request_ids=ids, **role_columns(role, n)))
    delta = drained(AT, *batches)
    store.commit("g", delta, {})


@pytest.mark.parametrize(
    ("counts", "no_data"),
    [
        ({"labels": 150}, True),  # the predictions stopped, their labels still come
        ({"predictions": 60, "labels": 60}, True),  # 120 rows, 60 predictions
        ({"predictions": 60, "features": 60}, True),  # the same 60 requests, twice
        ({"predictions": 120, "labels": 10}, False),
        ({"features": 120}, False),  # a model whose features come without predictions
    ],
)
def test_the_guard_counts_traffic_not_labels(
    tmp_path: Path, counts: dict[str, int], no_data: bool
) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    loaded = load_policy(tmp_path / "p.yaml")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store_rows(store, **counts)
        found = assess(store, loaded, PolicyEngine(loaded.policy), lambda: None, SIZE, AT)
    opened = [e.incident.feature for e in found.events if e.kind == "opened"]
    assert (NO_DATA in opened) == no_data
    expected = max(counts.get("predictions", 0), counts.get("features", 0))
    assert found.seen == expected
    if no_data:
        assert f"{expected} events in the last 1h (< 100)" in found.events[0].incident.summary


@pytest.mark.parametrize("traffic", ["predictions", "features"])
def test_no_data_since_is_the_last_traffic_not_the_last_labels(
    tmp_path: Path, traffic: str
) -> None:
    """The predictions (or features) stop at T0 + 30 min, their labels go on to T0 + 1h:
    the model was last seen at 00:30, not in the labels' last window (01:00)."""
    (tmp_path / "p.yaml").write_text(POLICY)
    loaded = load_policy(tmp_path / "p.yaml")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store_rows(store, spans={traffic: 30 * MIN}, **{traffic: 60, "labels": 150})
        found = assess(store, loaded, PolicyEngine(loaded.policy), lambda: None, SIZE, AT)
    (event,) = found.events
    assert event.incident.feature == NO_DATA
    since = hhmm(T0 + 30 * MIN)
    assert since.endswith(" 00:30 UTC")
    assert (
        event.incident.summary == f"no data for m since {since}: 60 events in the last 1h (< 100)"
    )


@pytest.mark.parametrize("run", [1, 2, 5, 12])
def test_last_seen_walks_back_past_the_label_only_windows(tmp_path: Path, run: int) -> None:
    """Six label-only windows after the last prediction: found whatever the first run."""
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store_rows(store, spans={"predictions": 30 * MIN}, predictions=60, labels=150)
        assert LastSeen(run)(store, "m", AT, SIZE) == T0 + 30 * MIN
        assert LastSeen(run)(store, "m", T0 + 10 * MIN, SIZE) == T0 + 10 * MIN
        assert LastSeen(run)(store, "other", AT, SIZE) is None


def test_no_data_since_is_absent_when_only_labels_were_stored(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    loaded = load_policy(tmp_path / "p.yaml")
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store_rows(store, labels=150)
        found = assess(store, loaded, PolicyEngine(loaded.policy), lambda: None, SIZE, AT)
    (event,) = found.events
    assert event.incident.summary == "no data for m: 0 events in the last 1h (< 100)"


def test_a_whole_window_metric_counts_traffic_not_labels() -> None:
    """A latency rule's guard: 60 predictions and 60 labels are 60 latencies, too few."""
    w = WindowSummary("m", "1", T0, SIZE, SketchSettings())
    n = 60
    ts = np.full(n, T0, dtype=np.int64)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    versions = np.array(["1"] * n, dtype=object)
    idx = np.arange(n)
    w.update(
        ColumnBatch(
            "m",
            "predictions",
            ts,
            versions,
            record_keys(0, 0, idx),
            request_ids=ids,
            prediction=numeric(np.zeros(n)),
            latency_ms=np.full(n, 5.0),
        ),
        idx,
    )
    w.update(
        ColumnBatch(
            "m", "labels", ts, versions, record_keys(1, 0, idx), ids, label=numeric(np.ones(n))
        ),
        idx,
    )
    assert (w.count, w.traffic) == (120, 60)
    (found,) = evaluate(None, w, ["latency_p99_ms"], min_samples=100)
    assert found.status == "insufficient_data" and found.n_current == 60
    assert found.details["reason"] == "60 events < min_samples 100"
    (found,) = evaluate(None, w, ["latency_p99_ms"], min_samples=60)
    assert (found.status, found.value, found.n_current) == ("ok", 5.0, 60)
