"""Policies in the running daemon, on the real broker: drift opens an incident within a
schedule period and resolves when the stream is normal again; policy files reload while
ingestion goes on, and a broken file leaves the last good version in force."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from itertools import pairwise
from pathlib import Path

import numpy as np
import orjson
import pytest
from watchkeeper.daemon.demo.broker import EmbeddedBroker
from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.profile import (
    ReferenceProfile,
    bin_counts,
    numeric_profile,
    quantile_edges,
)
from watchkeeper.detectors.sketches import NumericSketch

from tests.integration.test_ingest import fetch, running
from tests.support import create_topic, make_config, wait_until

pytestmark = pytest.mark.broker

POLICY = """\
model: fraud
reference: store:default
window: 5s
schedule: {{every: 1s}}
min_samples: 40
rules:
  - name: drift
    metric: psi
    features: [amount]
    critical: {critical}
    actions: {{critical: [console]}}
"""


class Stream(threading.Thread):
    """Produces fraud events stamped now, normal or shifted, until stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="wk-test-stream")
        self.bootstrap, self.topic = bootstrap, topic
        self.shift = 0.0
        self.stop = threading.Event()
        self.rng = np.random.default_rng(3)

    def run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        i = 0
        try:
            while not self.stop.wait(0.05):
                now = int(time.time() * 1000)
                for x in self.rng.normal(self.shift, 1.0, 15):
                    i += 1
                    producer.send(
                        self.topic,
                        orjson.dumps(
                            {
                                "model": "fraud",
                                "request_id": f"r{i}",
                                "ts": now,
                                "features": {"amount": float(x)},
                                "prediction": 0.5,
                            }
                        ),
                    )
            producer.flush()
        finally:
            producer.close()


def store_reference(url: str) -> None:
    x = np.random.default_rng(1).normal(size=20_000)
    sketch = NumericSketch(2000)
    sketch.update(x)
    edges = quantile_edges(sketch, 10)
    with Store.open(url) as store:
        store.save_reference(
            ReferenceProfile(
                "fraud", {"amount": numeric_profile(sketch, edges, bin_counts(x, edges))}, 20_000
            )
        )


def api(base: str, path: str) -> dict:
    return json.loads(fetch(base + path)[1])


def test_drift_opens_and_resolves_an_incident_and_policies_reload(
    broker: EmbeddedBroker,
    tmp_path: Path,
    topic_name: str,
) -> None:
    create_topic(broker.bootstrap, topic_name)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store_reference(url)
    policies = tmp_path / "policies"
    policies.mkdir()
    policy_file = policies / "fraud.yaml"
    policy_file.write_text(POLICY.format(critical=0.25))
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
            # normal traffic: evaluations run, nothing fires
            wait_until(
                lambda: len(api(base, "/api/evaluations?rule=drift")["evaluations"]) >= 3,
                timeout=60,
            )
            assert api(base, "/api/incidents")["incidents"] == []
            # drift: an incident within a schedule period of the shifted window filling
            stream.shift = 2.0
            shifted_at = time.monotonic()
            incident = wait_until(lambda: api(base, "/api/incidents")["incidents"], timeout=30)
            assert time.monotonic() - shifted_at < 15  # one 5 s window + 1 s schedule, slack
            (open_incident,) = incident
            assert open_incident["rule"] == "drift" and open_incident["severity"] == "critical"
            assert "psi" in open_incident["summary"] and "fraud.amount" in open_incident["summary"]
            why = api(base, "/api/evaluations?rule=drift&limit=5")["evaluations"]
            assert any(e["decision"] == "breach" and e["critical"] == 0.25 for e in why)
            # back to normal: it resolves
            stream.shift = 0.0
            wait_until(lambda: api(base, "/api/incidents")["incidents"] == [], timeout=40)
            resolved = api(base, "/api/incidents?state=resolved")["incidents"]
            assert resolved[0]["fingerprint"] == open_incident["fingerprint"]

            # hot reload: a valid change takes effect…
            version = api(base, "/api/policies")["policies"][0]["version"]
            policy_file.write_text(POLICY.format(critical=0.5))
            wait_until(
                lambda: api(base, "/api/policies")["policies"][0]["version"] != version, timeout=20
            )
            wait_until(
                lambda: any(
                    e["critical"] == 0.5
                    for e in api(base, "/api/evaluations?rule=drift&limit=3")["evaluations"]
                ),
                timeout=20,
            )
            good_version = api(base, "/api/policies")["policies"][0]["version"]
            # …an invalid one is rejected and the last good version stays in force
            policy_file.write_text(
                POLICY.format(critical=0.5).replace("metric: psi", "metric: psii")
            )
            wait_until(lambda: not api(base, "/api/policies")["last_reload_successful"], timeout=20)
            status = api(base, "/api/policies")
            assert status["policies"][0]["version"] == good_version
            (errors,) = status["errors"].values()
            assert "metric 'psii' is not known; did you mean 'psi'?" in errors[0]
            _, metrics = fetch(base + "/metrics")
            assert "watchkeeper_policy_last_reload_successful 0.0" in metrics
            before = len(api(base, "/api/evaluations?rule=drift&limit=1000")["evaluations"])
            wait_until(
                lambda: (
                    len(api(base, "/api/evaluations?rule=drift&limit=1000")["evaluations"])
                    > before + 1
                ),
                timeout=20,
            )  # still evaluating the old one
            request = urllib.request.Request(base + "/-/reload", data=b"", method="POST")
            try:
                urllib.request.urlopen(request, timeout=10)
                code = 200
            except urllib.error.HTTPError as exc:
                code = exc.code
            assert code == 422
            # ingestion went on throughout
            with Store.open(url, migrate=False) as store:
                assert store.totals()["events"] > 1000
    finally:
        stream.stop.set()
        stream.join()


def test_windows_count_the_bins_of_the_reference_in_force_exactly(
    broker: EmbeddedBroker, tmp_path: Path, topic_name: str
) -> None:
    """The daemon puts each policy's reference in force at ingest: the stored windows
    hold exact counts on its bins (equal to numpy's on the values produced), so PSI
    against it carries no sketch error."""
    from watchkeeper.detectors.profile import NumericProfile
    from watchkeeper.detectors.psi import PSI

    from tests.support import produce

    create_topic(broker.bootstrap, topic_name, partitions=2)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store_reference(url)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "fraud.yaml").write_text(POLICY.format(critical=0.25))
    config = make_config(
        tmp_path,
        broker.bootstrap,
        url,
        {"predictions": {"name": topic_name}},
        windows={"size": "5s", "allowed_lateness": "1h"},
        policies={"paths": [str(policies)]},
        alerts={"channels": {"console": {"type": "console"}}},
    )
    values = np.random.default_rng(5).normal(0.4, 1.3, 3000)  # ≫ k = 200: KLL compacts
    now = int(time.time() * 1000)
    events = [
        orjson.dumps(
            {"model": "fraud", "ts": now, "features": {"amount": float(x)}, "prediction": 0.5}
        )
        for x in values
    ]
    produce(broker.bootstrap, topic_name, events)
    with running(config):

        def stored() -> int:
            with Store.open(url, migrate=False) as store:
                return store.totals()["events"]

        wait_until(lambda: stored() == len(values), timeout=60)
    with Store.open(url, migrate=False) as store:
        reference = store.reference("fraud")
        (window,) = store.windows("fraud")
    assert reference is not None
    profile = reference.features["amount"]
    assert isinstance(profile, NumericProfile)
    sketch = window.summary.features["amount"]
    assert isinstance(sketch, NumericSketch) and sketch.count == len(values)
    assert sketch.counts_exactly(profile.edges)
    bounds = [-np.inf, *profile.edges, np.inf]
    want = [np.count_nonzero((values > lo) & (values <= hi)) for lo, hi in pairwise(bounds)]
    assert sketch.histogram(profile.edges).tolist() == want
    assert PSI().score(profile, sketch).details["error_bound"] == 0.0
