"""The trial's catch-up (findings F3/F4), in the running daemon on the real broker and both
stores: the labels topic is still empty when the daemon reads a two-hour predictions
backlog, and the labels are produced only once the predictions have been read. Every
historical tick's stored accuracy then equals numpy's over the produced events (none is
"0 labelled predictions"), and the A/B look's since-start labelled counts and delta equal
numpy's (no window was folded before its labels came)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from watchkeeper.daemon.checks.ab_store import ABStore
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.notify.incidents import IncidentStore
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import fetch, running, totals
from tests.support import create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
MIN = 60_000
SIZE = 5 * MIN
WINDOW = 30 * MIN
STEP_MS = 3_000  # one prediction every 3 s of event time
POLICY = """\
model: m
window: 30m
schedule: {every: 5m}
min_samples: 10
rules:
  - {name: acc, metric: accuracy, critical: 0.01, actions: {critical: [console]}}
"""
AB_POLICY = """\
name: m-ab
model: m
window: 30m
schedule: {every: 5m}
compare: {baseline: "1", candidate: "2", min_rows: 50}
rules:
  - {name: ab, metric: ab_accuracy_delta, critical: -0.9, actions: {critical: [console]}}
"""


def events(
    now_ms: int, seed: int
) -> tuple[dict[str, np.ndarray[Any, Any]], list[bytes], list[bytes]]:
    """Predictions of versions 1 and 2 from two hours before ``now_ms`` to 15 minutes
    before it, in event-time order; labels for 80 % of them, 2–10 minutes after their
    prediction, in event-time order (the last one 5 minutes before now: never "live")."""
    rng = np.random.default_rng(seed)
    start = (now_ms - 120 * MIN) // SIZE * SIZE
    ts = np.arange(start, now_ms - 15 * MIN, STEP_MS, dtype=np.int64)
    n = ts.size
    version = rng.choice(np.array(["1", "2"]), n)
    p = rng.random(n)
    predicted = (p >= 0.5).astype(np.int64)
    hit = rng.random(n) < np.where(version == "1", 0.85, 0.75)
    label = np.where(hit, predicted, 1 - predicted)
    labelled = rng.random(n) < 0.8
    label_ts = ts + rng.integers(2 * MIN, 10 * MIN, n)
    preds = [
        orjson.dumps(
            {
                "model": "m",
                "model_version": str(version[i]),
                "request_id": f"r{i}",
                "ts": int(ts[i]),
                "prediction": [1 - float(p[i]), float(p[i])],
                "features": {"x": float(i % 7)},
            }
        )
        for i in range(n)
    ]
    order = np.flatnonzero(labelled)[np.argsort(label_ts[labelled], kind="stable")]
    labels = [
        orjson.dumps(
            {"model": "m", "request_id": f"r{i}", "ts": int(label_ts[i]), "label": int(label[i])}
        )
        for i in order
    ]
    truth = {
        "ts": ts,
        "version": version,
        "labelled": labelled,
        "correct": predicted == label,
    }
    return truth, preds, labels


def accuracy_of(truth: dict[str, np.ndarray[Any, Any]], lo: int, hi: int) -> tuple[float, int]:
    """numpy: accuracy over the labelled predictions with event time in [lo, hi)."""
    m = (truth["ts"] >= lo) & (truth["ts"] < hi) & truth["labelled"]
    return float(truth["correct"][m].mean()), int(m.sum())


def waiting_for_labels(base: str) -> bool:
    status = orjson.loads(fetch(base + "/api/status")[1])
    policies = status.get("policies", {})
    return bool(policies) and all(
        "no labels yet" in str(p.get("waiting_for")) for p in policies.values()
    )


def test_labels_produced_after_a_predictions_backlog_was_read_are_all_evaluated(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    now_ms = int(time.time() * 1000)
    truth, preds, labels = events(now_ms, seed=11)
    preds_topic = create_topic(broker.bootstrap, f"p-{topic_name}", partitions=2)
    labels_topic = create_topic(broker.bootstrap, f"l-{topic_name}", partitions=2)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "m.yaml").write_text(POLICY)
    (policies / "m-ab.yaml").write_text(AB_POLICY)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds_topic}, "labels": {"name": labels_topic}},
        windows={"size": "5m", "allowed_lateness": "1m"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
        ingest={"idle_timeout": "20s", "label_ttl": "15m"},
    )
    half = len(preds) // 2  # each partition in event-time order
    with running(config) as daemon, Store.open(config.store_url(), migrate=False) as store:
        base = f"http://{daemon.http.address}"
        produce(broker.bootstrap, preds_topic, preds[:half], partition=0)
        produce(broker.bootstrap, preds_topic, preds[half:], partition=1)
        wait_until(lambda: totals(config)["events"] == len(preds), timeout=120)
        # the backlog is read, the labels topic caught up and empty: the ticks wait
        # (before the fix they all ran now, on no label)
        wait_until(
            lambda: waiting_for_labels(base),
            timeout=30,
            describe=lambda: orjson.loads(fetch(base + "/api/status")[1])["policies"],
        )
        incidents = IncidentStore(store.engine)
        assert incidents.evaluations("m", "acc", None, 10) == []
        produce(broker.bootstrap, labels_topic, labels[0::2], partition=0)
        produce(broker.bootstrap, labels_topic, labels[1::2], partition=1)
        wait_until(lambda: store.join_counts().get("m", {}).get("joined") == len(labels))
        # the last tick that reads a prediction: every tick up to it evaluated
        last = (int(truth["ts"].max()) // SIZE + 1) * SIZE
        ticks = store.policy_ticks

        wait_until(
            lambda: min(ticks().get("m", 0), ticks().get("m-ab", 0)) >= last,
            timeout=120,
            describe=lambda: orjson.loads(fetch(base + "/api/status")[1])["policies"],
        )
        rows = incidents.evaluations("m", "acc", None, 10_000)
        looks = ABStore(store.engine).looks("m-ab")
        shadow = orjson.loads(fetch(base + "/api/shadow")[1])

    first = int(truth["ts"].min()) // SIZE * SIZE + WINDOW
    historical = [r for r in rows if first <= r["at_ms"] <= last]
    assert sorted(r["at_ms"] for r in historical) == list(range(first, last + 1, SIZE))
    for r in historical:
        value, n = accuracy_of(truth, r["at_ms"] - WINDOW, r["at_ms"])
        assert (r["decision"], r["n_current"]) != ("insufficient_data", 0), r
        assert r["n_current"] == n, r
        assert r["value"] == pytest.approx(value, abs=1e-12), r
    # the A/B look since the experiment's start: every labelled pair of each version
    (look,) = looks
    since, end = look["last"]["since_ms"], look["last"]["at_ms"]
    assert since == int(truth["ts"].min()) // SIZE * SIZE
    m = (truth["ts"] >= since) & (truth["ts"] < end) & truth["labelled"]
    acc = {}
    for v in ("1", "2"):
        sel = m & (truth["version"] == v)
        acc[v] = float(truth["correct"][sel].mean())
        assert look["last"]["merged"]["baseline" if v == "1" else "candidate"]["labelled_rows"] == (
            int(sel.sum())
        )
    details = look["last"]["values"]["ab_accuracy_delta"]
    assert details["estimate"] == pytest.approx(acc["2"] - acc["1"], abs=1e-12)
    (shown,) = shadow["ab"]["m-ab"]["comparisons"]
    assert shown["merged"]["baseline"]["labelled_rows"] == int(
        (m & (truth["version"] == "1")).sum()
    )
    assert shown["merged"]["candidate"]["labelled_rows"] == int(
        (m & (truth["version"] == "2")).sum()
    )
    # and the fold ran (the experiment is longer than the settle span), so it was tested
    with Store.open(store_url, migrate=False) as store:
        state = ABStore(store.engine).load("m-ab", "1", "2")
    assert state is not None and state.folded_until_ms > since
