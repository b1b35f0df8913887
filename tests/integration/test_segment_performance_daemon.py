"""Realised performance per segment in the running daemon, on the real broker and both
stores: predictions carry ``country``, delayed labels come on their own topic, the stored
reference carries each country's accuracy, and an accuracy drop in one country only
opens an incident naming that segment and none for the others."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import select
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.eventtime.windows import WindowKey
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.label_grading import grade_pairs
from watchkeeper.daemon.store.label_join import JoinBuffer, JoinSettings
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.profile import profile_from_window
from watchkeeper.detectors.segments import SegmentSpec
from watchkeeper.detectors.window import SketchSettings, WindowSummary

from tests.integration.test_ingest import fetch, running
from tests.support import create_topic, make_config, wait_until

pytestmark = pytest.mark.broker
COUNTRIES = ("DE", "FR", "US")
PLAN = (SegmentSpec("country", 5, COUNTRIES),)

POLICY = """\
model: fraud
reference: store:default
window: 5s
schedule: {every: 1s}
min_samples: 40
segments: [country]
segment_top_k: 5
segment_rules: [acc]
rules:
  - name: acc
    metric: accuracy
    relative: true
    critical: -0.2
    actions: {critical: [console]}
"""


class Stream(threading.Thread):
    """Predictions stamped now and their labels right after: 95 % right, ``wrong`` of
    them wrong in ``country``."""

    def __init__(self, bootstrap: str, preds: str, labels: str) -> None:
        super().__init__(name="wk-test-segment-performance")
        self.bootstrap, self.preds, self.labels = bootstrap, preds, labels
        self.wrong, self.country = 0.05, "FR"
        self.stop = threading.Event()
        self.rng = np.random.default_rng(5)

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        i = 0
        try:
            while not self.stop.wait(0.05):
                now = int(time.time() * 1000)
                for country in self.rng.choice(COUNTRIES, size=30).tolist():
                    i += 1
                    score = float(self.rng.random())
                    share = self.wrong if country == self.country else 0.05
                    right = self.rng.random() >= share
                    label = int((score >= 0.5) == right)
                    event = {
                        "model": "fraud",
                        "request_id": f"r{i}",
                        "ts": now,
                        "features": {"country": country},
                        "prediction": score,
                    }
                    producer.send(self.preds, orjson.dumps(event))
                    producer.send(
                        self.labels,
                        orjson.dumps(
                            {"model": "fraud", "request_id": f"r{i}", "ts": now, "label": label}
                        ),
                    )
            producer.flush()
        finally:
            producer.close()


def _batches(n: int, seed: int) -> tuple[ColumnBatch, ColumnBatch]:
    rng = np.random.default_rng(seed)
    none = np.zeros(n, dtype=bool)
    score = rng.random(n)
    right = rng.random(n) >= 0.05
    label = ((score >= 0.5) == right).astype(np.float64)
    ids = np.array([f"ref{i}" for i in range(n)], dtype=object)
    versions = np.full(n, "", dtype=object)
    ts = np.zeros(n, dtype=np.int64)
    keys = np.arange(n, dtype=np.uint64)
    preds = ColumnBatch(
        "fraud",
        "predictions",
        ts,
        versions,
        keys,
        request_ids=ids,
        features={
            "country": Column(
                "categorical", rng.choice(COUNTRIES, size=n).astype(object), none, none
            )
        },
        prediction=Column("numeric", score, none, none),
    )
    labels = ColumnBatch(
        "fraud",
        "labels",
        ts,
        versions,
        keys,
        request_ids=ids,
        label=Column("numeric", label, none, none),
    )
    return preds, labels


def store_reference(url: str) -> None:
    """A reference with segments of country and each segment's accuracy (≈ 0.95)."""
    n = 30_000
    preds, labels = _batches(n, 1)
    window = WindowSummary("fraud", "", 0, 1, SketchSettings(segments=lambda m: PLAN))
    window.update(preds, np.arange(n))
    buffer = JoinBuffer()
    buffer.add(preds, 1, PLAN)
    buffer.add(labels, 1, PLAN)
    by_id = {p["request_id"]: p for p in buffer.predictions}
    graded: dict[WindowKey, WindowSummary] = {}
    pairs = [(by_id[lab["request_id"]], lab) for lab in buffer.labels]
    grade_pairs(graded, 1, pairs, JoinSettings().threshold, buffer.plans)
    for part in graded.values():
        window.merge(part)
    profile = profile_from_window(window)
    assert 0.93 < profile.segments["country"].profiles["FR"].metrics["accuracy"] < 0.97
    with Store.open(url) as store:
        store.save_reference(profile)


def api(base: str, path: str) -> Any:
    return json.loads(fetch(base + path)[1])


def test_an_accuracy_drop_in_one_country_opens_an_incident_for_that_segment_only(
    broker: EmbeddedBroker, store_url: str, tmp_path: Path, topic_name: str
) -> None:
    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    labels = create_topic(broker.bootstrap, f"l-{topic_name}")
    store_reference(store_url)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        store_url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
        windows={"size": "5s", "allowed_lateness": "5s"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
    )
    stream = Stream(broker.bootstrap, preds, labels)
    stream.start()
    try:
        with running(config) as daemon:
            assert daemon.http is not None
            base = f"http://{daemon.http.address}"

            def all_evaluated() -> dict[str, dict[str, Any]] | None:
                rows = api(base, "/api/evaluations?rule=acc&limit=50")["evaluations"]
                found = {e["feature"]: e for e in reversed(rows) if "[" in (e["feature"] or "")}
                wanted = [f"[country={c}]" for c in COUNTRIES]
                ok = all(found.get(k, {}).get("value") is not None for k in wanted)
                return found if ok else None

            # normal traffic: each country's accuracy against its own reference segment
            seen = wait_until(all_evaluated, timeout=60)
            assert all(seen[f"[country={c}]"]["decision"] == "ok" for c in COUNTRIES), seen
            assert api(base, "/api/incidents")["incidents"] == []
            # FR's labels now disagree half of the time: an incident for FR only
            stream.wrong = 0.5
            opened = wait_until(
                lambda: [
                    i
                    for i in api(base, "/api/incidents")["incidents"]
                    if i["feature"] == "[country=FR]"
                ],
                timeout=40,
            )
            (incident,) = opened
            assert "country=FR" in incident["summary"]
            assert incident["summary"].startswith("accuracy ")
            latest = all_evaluated()
            assert latest is not None
            for c in ("DE", "US"):
                assert latest[f"[country={c}]"]["decision"] == "ok", latest
            features = {i["feature"] for i in api(base, "/api/incidents")["incidents"]}
            assert features == {"[country=FR]"}
    finally:
        stream.stop.set()
        stream.join()


def test_waiting_predictions_keep_their_segment_labels_across_commits(
    store_url: str,
) -> None:
    """A prediction stored waiting keeps its segment labels; its label, a commit later,
    grades it into its segment; a row stored before segments grades the window only."""
    from watchkeeper.daemon.eventtime.windows import WindowState

    preds, labels = _batches(200, 2)
    with Store.open(store_url) as store:
        first = JoinBuffer()
        first.add(preds, 300_000, PLAN)
        old = first.predictions[0]
        old["segments"] = None  # as stored before migration 0013
        store.commit("g", WindowState(300, 600).drain(), {("p", 0): 1}, joins=first)
        with store.engine.connect() as conn:
            kept = dict(
                conn.execute(
                    select(t.pending_predictions.c.request_id, t.pending_predictions.c.segments)
                ).all()
            )
        assert len(kept) == 200 and kept[old["request_id"]] is None
        country = preds.features["country"].values
        assert json.loads(kept["ref1"]) == {"country": country[1]}
        second = JoinBuffer()
        second.add(labels, 300_000, PLAN)
        out = store.commit("g", WindowState(300, 600).drain(), {("p", 0): 2}, joins=second)
        assert out.joined == {"fraud": 200}
        window = store.window_range("fraud", 0, 300_000)
        assert window is not None and window.performance is not None
        assert window.performance.n == 200
        children = window.segments["country"].children
        sizes = {c: int((country[1:] == c).sum()) for c in COUNTRIES}
        assert {c: ch.performance.n for c, ch in children.items() if ch.performance} == sizes


def test_rows_waiting_before_migration_0013_join_into_their_window_only(
    store_url: str,
) -> None:
    """A database at 0011 with a prediction waiting (no segments column yet) upgrades to
    0013; its label then grades it into its window, and into no segment."""
    from watchkeeper.daemon.eventtime.windows import WindowState

    store = Store.open(store_url, migrate=False)
    try:
        store.migrate("0011")
        with store.engine.begin() as conn:
            conn.execute(text_insert())
        store.migrate()
        preds, labels = _batches(50, 3)
        buffer = JoinBuffer()
        buffer.add(preds, 300_000, PLAN)
        store.commit("g", WindowState(300, 600).drain(), {("p", 0): 1}, joins=buffer)
        old_label = ColumnBatch(
            "fraud",
            "labels",
            np.array([20], dtype=np.int64),
            np.array([""], dtype=object),
            np.array([0], dtype=np.uint64),
            request_ids=np.array(["old"], dtype=object),
            label=Column("numeric", np.array([1.0]), np.zeros(1, bool), np.zeros(1, bool)),
        )
        second = JoinBuffer()
        second.add(labels, 300_000, PLAN)
        second.add(old_label, 300_000, PLAN)
        out = store.commit("g", WindowState(300, 600).drain(), {("p", 0): 2}, joins=second)
        assert out.joined == {"fraud": 51}
        window = store.window_range("fraud", 0, 300_000)
        assert window is not None and window.performance is not None
        assert window.performance.n == 51
        children = window.segments["country"].children.values()
        assert sum(c.performance.n for c in children if c.performance is not None) == 50
    finally:
        store.close()


def text_insert() -> Any:
    """The 0011 schema's row, written with plain SQL (the tables module is at 0013)."""
    from sqlalchemy import text

    return text(
        "INSERT INTO pending_predictions (model, request_id, model_version, "
        "window_start_ms, ts_ms, score, predicted, created_ms) "
        "VALUES ('fraud', 'old', '', 0, 10, 0.9, NULL, 0)"
    )
