"""Delayed labels join their predictions across restarts, in either arrival order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.store.store import Store

from tests.integration.test_ingest import running, totals
from tests.support import create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker
NOW_MS = 1_795_255_200_000


def test_labels_join_across_a_restart_and_in_either_order(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    preds = create_topic(broker.bootstrap, f"p-{topic_name}", partitions=2)
    labels = create_topic(broker.bootstrap, f"l-{topic_name}", partitions=2)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
    )
    rng = np.random.default_rng(0)
    n = 400
    p1 = rng.random(n)
    y = (rng.random(n) < p1).astype(int)

    def prediction(i: int) -> bytes:
        return orjson.dumps(
            {
                "model": "fraud",
                "model_version": "3",
                "request_id": f"r{i}",
                "ts": NOW_MS + i,
                "prediction": [1 - float(p1[i]), float(p1[i])],
                "features": {"x": float(i)},
            }
        )

    def label(i: int) -> bytes:
        return orjson.dumps(
            {
                "model": "fraud",
                "request_id": f"r{i}",
                "ts": NOW_MS + 3_600_000 + i,
                "label": int(y[i]),
            }
        )

    # labels 300..399 arrive before their predictions; 0..299 after, across a restart
    produce(broker.bootstrap, labels, [label(i) for i in range(300, n)])
    produce(broker.bootstrap, preds, [prediction(i) for i in range(n)])
    with running(config):
        wait_until(lambda: totals(config)["events"] == n + 100)
    produce(broker.bootstrap, labels, [label(i) for i in range(300)])
    with running(config):
        wait_until(lambda: totals(config)["events"] == 2 * n)
    with Store.open(config.store_url(), migrate=False) as store:
        start = NOW_MS - NOW_MS % 300_000
        window = store.window_range("fraud", start, start + 300_000, "3")
        assert window is not None and window.performance is not None
        perf = window.performance
        assert perf.n == n  # every prediction graded exactly once
        expected_accuracy = float(np.mean((p1 >= 0.5).astype(int) == y))
        assert perf.metrics()["accuracy"] == pytest.approx(expected_accuracy)
        with store.engine.connect() as conn:
            from sqlalchemy import func, select
            from watchkeeper.daemon.store import tables as t

            for table in (t.pending_predictions, t.pending_labels):
                assert conn.execute(select(func.count()).select_from(table)).scalar() == 0


def test_a_late_label_still_joins_its_waiting_prediction(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    """A label late in its own stream is counted late (not in its labels window) but still
    joins the prediction waiting for it, graded into the prediction's window; a late label
    no prediction waits for is dropped and counted, never left waiting."""
    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    labels = create_topic(broker.bootstrap, f"l-{topic_name}")
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        windows={"size": "1m", "allowed_lateness": "1m"},
    )
    ahead = NOW_MS + 10 * 60_000

    def prediction(i: int) -> bytes:
        p = 0.9 if i % 2 else 0.1
        return orjson.dumps(
            {"model": "fraud", "model_version": "3", "request_id": f"r{i}", "ts": NOW_MS + i,
             "prediction": [1 - p, p]}
        )  # fmt: skip

    def label(i: int, ts: int) -> bytes:
        return orjson.dumps({"model": "fraud", "request_id": f"r{i}", "ts": ts, "label": 1})

    produce(broker.bootstrap, preds, [prediction(i) for i in range(10)])
    # labels of other requests move the labels stream 10 minutes on
    produce(broker.bootstrap, labels, [label(i, ahead) for i in range(100, 105)])
    with running(config) as daemon:
        wait_until(lambda: totals(config)["events"] == 15)
        # late in the labels stream (its watermark is 10 min ahead, lateness 1 min): r0..r9
        # have predictions waiting, r50 has none
        produce(broker.bootstrap, labels, [label(i, NOW_MS + 30_000) for i in [*range(10), 50]])
        wait_until(lambda: totals(config)["late_events"] == 11)
        metrics = daemon.registry
        wait_until(
            lambda: (
                metrics.get_sample_value("watchkeeper_late_labels_joined_total", {"model": "fraud"})
                == 10
            )
        )
        assert (
            metrics.get_sample_value("watchkeeper_late_labels_unmatched_total", {"model": "fraud"})
            == 1
        )
    with Store.open(config.store_url(), migrate=False) as store:
        counts = store.join_counts()["fraud"]
        assert counts["joined"] == 10 and counts["pending_predictions"] == 0
        assert counts["pending_labels"] == 5  # r100..r104 still wait; r50 was not stored
        start = NOW_MS - NOW_MS % 60_000
        window = store.window_range("fraud", start, start + 60_000, "3")
        assert window is not None and window.performance is not None
        # graded into the prediction's window: 5 of 10 predicted 1, every label is 1
        assert window.performance.n == 10
        assert window.performance.metrics()["accuracy"] == 0.5
        assert window.events == {"predictions": 10}  # the late labels are in no window
