"""Label-free estimates in the running daemon, on the real broker (issue 19).

Predictions arrive without labels: the windows keep the estimate state of the reference
in force, and a rule on ``estimated_accuracy`` opens an incident when the scores move to
where the model is unsure. The daemon stops; the labels arrive while it is down; after a
restart they join their predictions, so the stored windows hold the realised metrics
beside the estimates, and no prediction is missing from either.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.offline.reference import build_reference
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.estimation_reference import Estimation

from tests.integration.test_ingest import fetch, running, totals
from tests.support import create_topic, make_config, produce, wait_until

pytestmark = pytest.mark.broker

POLICY = """\
model: fraud
reference: store:default
window: 5s
schedule: {every: 1s}
min_samples: 200
rules:
  - name: estimated-accuracy
    metric: estimated_accuracy
    relative: true
    warn: -0.05
    critical: -0.1
    actions: {critical: [console]}
"""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-2 * x)))


class Predictions(threading.Thread):
    """Prediction events stamped now (no labels), scores from ``spread`` · N(0, 1)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="wk-test-predictions")
        self.bootstrap, self.topic = bootstrap, topic
        self.spread = 1.0
        self.stop = threading.Event()
        self.rng = np.random.default_rng(19)
        self.sent: list[tuple[str, float, int]] = []

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            while not self.stop.wait(0.05):
                now = int(time.time() * 1000)
                for x in self.rng.normal(0.0, self.spread, 20):
                    p = float(sigmoid(np.array(x)))
                    rid = f"r{len(self.sent)}"
                    self.sent.append((rid, p, now))
                    event = {
                        "model": "fraud",
                        "request_id": rid,
                        "ts": now,
                        "features": {"x": float(x)},
                        "prediction": [1 - p, p],
                    }
                    producer.send(self.topic, orjson.dumps(event))
            producer.flush()
        finally:
            producer.close()


def reference(tmp_path: Path, url: str, seed: int = 1, power: float = 1.0) -> Estimation:
    """A reference with labels saved as ``store:default``; ``power`` bends the scores (a
    retrained model: other scores, other calibrator)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=20_000)
    p = sigmoid(x) ** power
    frame = pd.DataFrame({"x": x, "score": p, "label": (rng.random(x.size) < p).astype(int)})
    path = tmp_path / f"reference-{seed}.csv"
    frame.to_csv(path, index=False)
    profile = build_reference(path, "fraud", prediction="score", label="label")
    assert profile.estimation is not None
    with Store.open(url) as store:
        store.save_reference(profile)
    return profile.estimation


def estimates_config(tmp_path: Path, bootstrap: str, url: str, topics: dict[str, Any]) -> Any:
    """The daemon's config: 5 s windows, POLICY in force, the console channel."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY)
    return make_config(
        tmp_path,
        bootstrap,
        url,
        topics,
        windows={"size": "5s", "allowed_lateness": "5s"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
    )


def api(base: str, path: str) -> dict:
    return json.loads(fetch(base + path)[1])


def test_an_estimate_incident_opens_before_labels_and_labels_land_beside_it(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str
) -> None:
    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    labels = create_topic(broker.bootstrap, f"l-{topic_name}")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    est = reference(tmp_path, url)
    base_accuracy = est.reference["accuracy"]
    config = estimates_config(
        tmp_path,
        broker.bootstrap,
        url,
        {"predictions": {"name": preds}, "labels": {"name": labels}},
    )
    stream = Predictions(broker.bootstrap, preds)
    try:
        with running(config) as daemon:
            assert daemon.http is not None
            base = f"http://{daemon.http.address}"
            wait_until(lambda: api(base, "/api/policies")["policies"], timeout=30)
            stream.start()
            # confident scores, as on the reference: estimates near it, nothing fires
            ok = wait_until(
                lambda: [
                    e
                    for e in api(base, "/api/evaluations?rule=estimated-accuracy")["evaluations"]
                    if e["decision"] == "ok"
                ],
                timeout=60,
            )
            assert abs(ok[0]["value"] - base_accuracy) < 0.05
            assert ok[0]["critical"] == pytest.approx(base_accuracy - 0.1)
            assert api(base, "/api/incidents")["incidents"] == []
            # scores near 0.5: the model is unsure, so it is expected to be wrong more often
            stream.spread = 0.1
            shifted_from = len(stream.sent)
            (incident,) = wait_until(
                lambda: [
                    i
                    for i in api(base, "/api/incidents")["incidents"]
                    if i["severity"] == "critical"
                ],
                timeout=40,
            )
            assert incident["rule"] == "estimated-accuracy"
            assert "estimated_accuracy" in incident["summary"]
            # one whole window of unsure scores, to compare with its labels below
            whole_from = stream.sent[shifted_from][2] // 5000 * 5000 + 5000
            wait_until(lambda: stream.sent[-1][2] >= whole_from + 5000, timeout=20)
            stream.stop.set()
            stream.join()
            sent = len(stream.sent)
            wait_until(lambda: totals(config)["events"] == sent, timeout=30)
        # labels arrive while the daemon is down; the outcomes follow the scores (P(y | x)
        # unchanged), so realised accuracy confirms the estimate
        rng = np.random.default_rng(2)
        outcome = {rid: int(rng.random() < p) for rid, p, _ in stream.sent}
        produce(
            broker.bootstrap,
            labels,
            [
                orjson.dumps(
                    {"model": "fraud", "request_id": rid, "ts": ts + 60_000, "label": outcome[rid]}
                )
                for rid, _, ts in stream.sent
            ],
        )
        with running(config) as daemon:
            wait_until(lambda: totals(config)["events"] == 2 * sent, timeout=60)
            assert daemon.http is not None
            # the status shows the windows' realised metrics beside their estimates
            status = api(f"http://{daemon.http.address}", "/api/status")
            rows = status["models"]["fraud"]["performance"]
            assert rows and all(r["n_labelled"] == r["n_estimated"] for r in rows)
            accuracy = rows[0]["estimated"]["estimated_accuracy"]
            assert accuracy["realised"] == rows[0]["realised"]["accuracy"]
            # specificity is realised too (it was null beside estimated_specificity)
            specificity = rows[0]["estimated"]["estimated_specificity"]
            assert specificity["realised"] is not None
            assert specificity["realised"] == rows[0]["realised"]["specificity"]
        first = min(ts for _, _, ts in stream.sent)
        last = max(ts for _, _, ts in stream.sent)
        with Store.open(url, migrate=False) as store:
            whole = store.window_range("fraud", first - 5000, last + 5000)
            assert whole is not None and whole.performance is not None
            state = whole.estimates.of(est)
            assert state is not None
            # nothing lost across the restart: every prediction estimated once, graded once
            assert state.n == sent and whole.performance.n == sent
            # the unsure windows: realised beside estimated, within the band
            # (the windows after the shift: the first whole one on)
            window = store.window_range("fraud", whole_from, last + 5000)
            assert window is not None and window.performance is not None
            found = est.estimate("estimated_accuracy", window.estimates.of(est))  # type: ignore[arg-type]
            realised = window.performance.metrics()["accuracy"]
            assert found.value < base_accuracy - 0.1
            assert found.band is not None
            assert found.band.lower - 0.02 <= realised <= found.band.upper + 0.02
    finally:
        stream.stop.set()
        if stream.is_alive():
            stream.join()


def test_a_reference_rebuilt_in_the_store_reaches_ingest_without_a_reload(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reference build --into-store`` under running policies: new windows count under the
    new calibrator (else every estimate would read "no estimate state" until SIGHUP)."""
    import watchkeeper.daemon.app as app

    monkeypatch.setattr(app, "REFERENCE_REFRESH_S", 0.2)
    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    first = reference(tmp_path, url)
    config = estimates_config(tmp_path, broker.bootstrap, url, {"predictions": {"name": preds}})
    stream = Predictions(broker.bootstrap, preds)
    try:
        with running(config) as daemon:
            _rebuilt_reference_reaches_ingest(daemon, tmp_path, url, config, first, stream)
    finally:
        stream.stop.set()
        if stream.is_alive():
            stream.join(timeout=30)


def _rebuilt_reference_reaches_ingest(
    daemon: Any, tmp_path: Path, url: str, config: Any, first: Estimation, stream: Predictions
) -> None:
    assert daemon.ingestor is not None
    references = daemon.ingestor.references

    def in_force() -> str | None:
        estimations = references.estimation("fraud")
        return None if estimations is None else estimations[0].fingerprint

    wait_until(lambda: in_force() == first.fingerprint, timeout=30)
    rebuilt = reference(tmp_path, url, seed=2, power=2.0)  # saved over store:default
    assert rebuilt.fingerprint != first.fingerprint
    wait_until(lambda: in_force() == rebuilt.fingerprint, timeout=30)
    # the daemon consumes under it (and is connected when it stops: no client torn
    # down half-way through its bootstrap)
    stream.start()
    wait_until(lambda: totals(config)["events"] >= 100, timeout=60)


MULTICLASS_POLICY = """\
model: iris
reference: store:default
window: 5s
schedule: {every: 1s}
min_samples: 100
rules:
  - name: estimated-accuracy
    metric: estimated_accuracy
    relative: true
    warn: -0.5
    critical: -0.6
    actions: {critical: [console]}
"""


def test_multiclass_estimates_from_probability_vectors_on_the_real_broker(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str
) -> None:
    """A 3-class model logging its probability vector: the daemon keeps the multiclass
    estimate state of the reference's calibrators, equal to the row-by-row computation,
    and a rule on ``estimated_accuracy`` evaluates it."""
    from tests.unit.test_estimates_multiclass_ingest import direct, softmax, state_of

    preds = create_topic(broker.bootstrap, f"p-{topic_name}")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    rng = np.random.default_rng(19)
    p = softmax(rng.normal(size=(9000, 3)) * 1.5)
    scores = softmax(np.log(p) * 1.6)  # over-confident: the calibrators correct them
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=9000),
            "p0": scores[:, 0],
            "p1": scores[:, 1],
            "p2": scores[:, 2],
            "top": np.argmax(scores, axis=1),
            "label": [rng.choice(3, p=row) for row in p],
        }
    )
    frame.to_csv(tmp_path / "iris.csv", index=False)
    profile = build_reference(
        tmp_path / "iris.csv",
        "iris",
        prediction="top",
        label="label",
        class_scores={"0": "p0", "1": "p1", "2": "p2"},
    )
    est = profile.estimation
    assert est is not None and est.problem == "multiclass"
    with Store.open(url) as store:
        store.save_reference(profile)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "iris.yaml").write_text(MULTICLASS_POLICY)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        url,
        {"predictions": {"name": preds}},
        windows={"size": "5s", "allowed_lateness": "5s"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
    )
    vectors = softmax(rng.normal(size=(600, 3)) * 2.0)
    with running(config) as daemon:
        assert daemon.http is not None
        base = f"http://{daemon.http.address}"
        wait_until(lambda: api(base, "/api/policies")["policies"], timeout=30)
        # Each wait below is for one thing the daemon does, read from its own counters, and
        # its bound is ~10x its time alone (~3.5 s to join, well under 1 s for the others):
        # once at load ~4.8 a single 30 s wait for all of it ran out. The join is the slow
        # and variable step: Tansu answers a JoinGroup after ~3 s, and kafka-python 3.0.12
        # drops a join that completes while the loop is outside poll() and joins again
        # (tests/integration/test_sources.py::wait_for_assignments).
        metric = daemon.registry.get_sample_value
        wait_until(
            lambda: metric("watchkeeper_assigned_partitions") == 1,
            timeout=60,
            describe=lambda: f"assigned partitions {metric('watchkeeper_assigned_partitions')}",
        )
        now = int(time.time() * 1000)
        produce(
            broker.bootstrap,
            preds,
            [orjson.dumps({"model": "iris", "ts": now, "prediction": v}) for v in vectors.tolist()],
        )
        wait_until(
            lambda: metric("watchkeeper_ingest_records_total", {"topic": preds}) == len(vectors),
            timeout=60,
            describe=lambda: metric("watchkeeper_ingest_records_total", {"topic": preds}),
        )
        wait_until(
            lambda: totals(config)["events"] == len(vectors),
            timeout=30,
            describe=lambda: f"stored {totals(config)}",
        )
        (ok, *_) = wait_until(
            lambda: [
                e
                for e in api(base, "/api/evaluations?rule=estimated-accuracy")["evaluations"]
                if e["decision"] == "ok" and e["value"] is not None
            ],
            timeout=60,
            describe=lambda: api(base, "/api/evaluations?rule=estimated-accuracy"),
        )
    with Store.open(url, migrate=False) as store:
        window = store.window_range("iris", now - 10_000, now + 10_000)
        assert window is not None
        sketch = window.estimates.of(est)
        assert sketch is not None and sketch.n == len(vectors)
        assert state_of(sketch) == direct(est, vectors, np.argmax(vectors, axis=1))  # type: ignore[arg-type]
    expected = est.estimate("estimated_accuracy", sketch).value
    assert ok["value"] == pytest.approx(expected)
