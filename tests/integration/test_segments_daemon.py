"""Segments in the running daemon, on the real broker: events carry a segment feature
(``country``), the stored reference carries its segments, and a shift of ``amount`` in
one country only opens an incident naming that segment and none for the others; a
digest rule over the segments keeps one incident naming the countries that shifted,
and resolves it when the shift is gone."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.column_batch import Column, ColumnBatch
from watchkeeper.detectors.profile import profile_from_window
from watchkeeper.detectors.segments import SegmentSpec
from watchkeeper.detectors.window import SketchSettings, WindowSummary

from tests.integration.test_ingest import fetch, running
from tests.support import create_topic, make_config, wait_until

pytestmark = pytest.mark.broker
COUNTRIES = ("DE", "FR", "US")

POLICY = """\
model: fraud
reference: store:default
window: 5s
schedule: {every: 1s}
min_samples: 40
segments: [country]
segment_top_k: 5
rules:
  - name: drift
    metric: psi
    features: [amount]
    group: feature
    critical: 0.25
    actions: {critical: [console]}
  - name: digest
    metric: psi
    features: [amount]
    group: rule
    critical: 0.25
"""


class Stream(threading.Thread):
    """Fraud events stamped now, amount ~ N(0, 1), shifted by ``shift`` in ``shifted``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="wk-test-segments")
        self.bootstrap, self.topic = bootstrap, topic
        self.shift, self.shifted = 0.0, {"DE"}
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
                    x = self.rng.normal() + (self.shift if country in self.shifted else 0.0)
                    event = {
                        "model": "fraud",
                        "request_id": f"r{i}",
                        "ts": now,
                        "features": {"amount": float(x), "country": country},
                        "prediction": 0.5,
                    }
                    producer.send(self.topic, orjson.dumps(event))
            producer.flush()
        finally:
            producer.close()


def store_reference(url: str) -> None:
    """A reference with segments of country, from rows of the unshifted distribution."""
    n = 30_000
    rng = np.random.default_rng(1)
    none = np.zeros(n, dtype=bool)
    batch = ColumnBatch(
        "fraud",
        "predictions",
        np.zeros(n, dtype=np.int64),
        np.full(n, "", dtype=object),
        np.arange(n, dtype=np.uint64),
        features={
            "amount": Column("numeric", rng.normal(size=n), none, none),
            "country": Column(
                "categorical", rng.choice(COUNTRIES, size=n).astype(object), none, none
            ),
        },
    )
    whole = WindowSummary("fraud", "", 0, 1)
    whole.update(batch, np.arange(n))
    edges = {"amount": profile_from_window(whole).features["amount"].edges}
    plan = (SegmentSpec("country", 5, COUNTRIES),)
    settings = SketchSettings(bins=lambda m, c: edges.get(c), segments=lambda m: plan)
    window = WindowSummary("fraud", "", 0, 1, settings)
    window.update(batch, np.arange(n))
    with Store.open(url) as store:
        store.save_reference(profile_from_window(window, edges=edges))


def api(base: str, path: str) -> Any:
    return json.loads(fetch(base + path)[1])


def test_a_shift_in_one_country_opens_an_incident_for_that_segment_only(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str
) -> None:
    create_topic(broker.bootstrap, topic_name)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store_reference(url)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY)
    config = make_config(
        tmp_path,
        broker.bootstrap,
        url,
        {"predictions": {"name": topic_name}},
        windows={"size": "5s", "allowed_lateness": "5s"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
    )
    stream = Stream(broker.bootstrap, topic_name)
    stream.start()
    try:
        with running(config) as daemon:
            assert daemon.http is not None
            base = f"http://{daemon.http.address}"

            def segment_evaluations() -> dict[str, dict[str, Any]]:
                rows = api(base, "/api/evaluations?rule=drift&limit=50")["evaluations"]
                return {e["feature"]: e for e in reversed(rows) if "[" in (e["feature"] or "")}

            def all_evaluated() -> dict[str, dict[str, Any]] | None:
                found = segment_evaluations()
                wanted = [f"amount[country={c}]" for c in COUNTRIES]
                ok = all(found.get(k, {}).get("value") is not None for k in wanted)
                return found if ok else None

            # normal traffic: every country is evaluated against its own reference segment
            seen = wait_until(all_evaluated, timeout=60)
            assert all(seen[f"amount[country={c}]"]["decision"] == "ok" for c in COUNTRIES)
            assert api(base, "/api/incidents")["incidents"] == []
            # DE shifts: an incident for DE, none for FR or US
            stream.shift = 2.5
            opened = wait_until(
                lambda: [
                    i
                    for i in api(base, "/api/incidents")["incidents"]
                    if i["feature"] == "amount[country=DE]"
                ],
                timeout=40,
            )
            (incident,) = opened
            assert "on fraud.amount for country=DE" in incident["summary"]
            latest = all_evaluated()
            assert latest is not None
            for c in ("FR", "US"):
                assert latest[f"amount[country={c}]"]["decision"] == "ok", latest
            features = {i["feature"] for i in api(base, "/api/incidents")["incidents"]}
            assert not features & {"amount[country=FR]", "amount[country=US]"}

            def digests() -> list[dict[str, Any]]:
                return [
                    i for i in api(base, "/api/incidents")["incidents"] if i["rule"] == "digest"
                ]

            def both() -> dict[str, Any] | None:
                found = digests()
                named = found[0]["members"] if len(found) == 1 else {}
                wanted = {"amount[country=DE]", "amount[country=FR]"}
                return found[0] if wanted <= set(named) else None

            # FR shifts too: the digest rule keeps one incident, naming both countries
            stream.shifted = {"DE", "FR"}
            digest = wait_until(both, timeout=40, describe=digests)
            assert digest["feature"] == "*"
            assert "amount[country=US]" not in digest["members"]
            assert all(v > 0.25 for v in digest["members"].values()), digest
            assert "country=DE" in digest["summary"] and "country=FR" in digest["summary"]
            assert " segments (psi critical): " in digest["summary"]
            # the shift is gone: the digest resolves
            stream.shift = 0.0
            wait_until(lambda: not digests(), timeout=40, describe=digests)
    finally:
        stream.stop.set()
        stream.join()
