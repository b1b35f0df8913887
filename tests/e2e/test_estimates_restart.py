"""Label-free estimates survive a crash (issue 19): the daemon, as a process, is killed
with SIGKILL while it ingests predictions; their labels arrive while it is down; after a
restart the stored estimate state and the realised metrics are complete — equal to a
direct computation over every prediction, each counted once."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker, free_port
from watchkeeper.daemon.offline.reference import build_reference
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.estimate_sketch import BinaryEstimateSketch

from tests.support import (
    DaemonProcess,
    create_topic,
    daemon_config_dict,
    produce,
    stored_events,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.broker]
NOW_MS = 1_795_255_200_000

POLICY = """\
model: fraud
reference: store:default
window: 10m
schedule: {every: 1m}
rules:
  - name: estimated-accuracy
    metric: estimated_accuracy
    relative: true
    warn: -0.05
"""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-2 * x)))


def test_kill_9_between_predictions_and_labels_loses_no_estimate_and_no_label(
    broker: EmbeddedBroker,
    store_url: str,
    tmp_path: Path,
    processes: list[DaemonProcess],
    topic_name: str,
) -> None:
    rng = np.random.default_rng(19)
    x = rng.normal(size=20_000)
    p = sigmoid(x)
    frame = pd.DataFrame({"x": x, "score": p, "label": (rng.random(x.size) < p).astype(int)})
    frame.to_csv(tmp_path / "reference.csv", index=False)
    profile = build_reference(
        tmp_path / "reference.csv", "fraud", prediction="score", label="label"
    )
    est = profile.estimation
    assert est is not None
    with Store.open(store_url) as store:
        store.save_reference(profile)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY)
    # topics of this test alone: the broker is the session's, shared by both stores
    preds = create_topic(broker.bootstrap, f"p-{topic_name}", partitions=3)
    labels = create_topic(broker.bootstrap, f"l-{topic_name}", partitions=2)
    port = free_port()
    data = daemon_config_dict(
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        ingest={"flush_interval": "100ms"},
        http={"listen": f"127.0.0.1:{port}"},
        policies={"paths": [str(policies)]},
    )
    config = write_config(tmp_path / "watchkeeper.yaml", data)
    log = tmp_path / "daemon.log"

    total = 30_000
    scores = sigmoid(rng.normal(0.0, 0.6, total))  # a little less sure than the reference
    outcome = rng.random(total) < scores
    prediction_events = [
        orjson.dumps(
            {
                "model": "fraud",
                "request_id": f"r{i}",
                "ts": NOW_MS + i * 20,  # ten minutes of predictions: two windows
                "features": {"x": 0.0},
                "prediction": float(scores[i]),
            }
        )
        for i in range(total)
    ]

    def policies_loaded() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/policies", timeout=5) as r:
                return bool(json.loads(r.read())["policies"])
        except OSError:
            return False

    first = DaemonProcess(config, log).start()
    processes.append(first)
    wait_until(policies_loaded, timeout=90)
    producer = threading.Thread(
        target=lambda: [
            produce(broker.bootstrap, preds, prediction_events[i : i + 1000])
            for i in range(0, total, 1000)
        ],
        name="wk-test-producer",
    )
    producer.start()
    try:
        wait_until(lambda: stored_events(store_url) > 0, timeout=90)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)  # mid-stream: some predictions uncommitted
        first.proc.wait()
    finally:
        producer.join()
    at_kill = stored_events(store_url)
    assert 0 < at_kill < total
    # the labels arrive while the daemon is down
    produce(
        broker.bootstrap,
        labels,
        [
            orjson.dumps(
                {
                    "model": "fraud",
                    "request_id": f"r{i}",
                    "ts": NOW_MS + i * 20 + 60_000,
                    "label": int(outcome[i]),
                }
            )
            for i in range(total)
        ],
    )
    second = DaemonProcess(config, log).start()
    processes.append(second)
    wait_until(lambda: stored_events(store_url) >= 2 * total, timeout=180)
    assert second.proc is not None
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    with Store.open(store_url, migrate=False) as store:
        assert store.totals()["events"] == 2 * total
        whole = store.window_range("fraud", NOW_MS - 600_000, NOW_MS + 1_200_000)
        assert whole is not None and whole.performance is not None
        state = whole.estimates.of(est)
        assert isinstance(state, BinaryEstimateSketch)
        # every prediction estimated once: the counts equal binning all scores directly
        direct = BinaryEstimateSketch.for_calibrator(est.calibrator)  # type: ignore[arg-type]
        direct.update(est.calibrator, scores)  # type: ignore[arg-type]
        assert state.counts.tolist() == direct.counts.tolist(), log.read_text()[-3000:]
        # every label graded once: realised accuracy equals the direct computation
        assert whole.performance.n == total
        realised = float(np.mean((scores >= 0.5) == outcome))
        assert whole.performance.metrics()["accuracy"] == pytest.approx(realised, abs=1e-12)
